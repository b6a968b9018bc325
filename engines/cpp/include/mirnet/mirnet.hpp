// mirnet_core umbrella header.
#pragma once

#include "mirnet/error.hpp"
#include "mirnet/image.hpp"
#include "mirnet/json.hpp"
#include "mirnet/manifest.hpp"
#include "mirnet/pipeline.hpp"
#include "mirnet/profile.hpp"
#include "mirnet/tensor.hpp"
#include "mirnet/tiling.hpp"
