// The backend implementations open_engine() dispatches to (internal, not installed). Each checks
// the manifest against its runtime before loading the engine file.
#pragma once

#include <memory>

#include "mirnet/engine.hpp"

namespace mirnet::detail {

std::unique_ptr<Engine> open_openvino_engine(const Manifest& manifest, const EngineOptions& options);
std::unique_ptr<Engine> open_tensorrt_engine(const Manifest& manifest, const EngineOptions& options);

// Throws mirnet::Error unless `shape` is 1 x channels x H x W inside one of the manifest's profiles
// (any H x W when it lists none) with H and W multiples of its size_multiple.
void check_input_shape(const Manifest& manifest, const Shape4& shape, int channels);

}  // namespace mirnet::detail
