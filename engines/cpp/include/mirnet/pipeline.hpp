// mirnet: the engine-independent part of a run (what every Engine needs around its call):
// choose the profile, pad, tile, call the engine per tile, blend, crop. The engine is a
// callback, so the whole sequence is tested on CPU with stand-in "models".
#pragma once

#include <cstddef>
#include <functional>

#include "mirnet/manifest.hpp"
#include "mirnet/tensor.hpp"
#include "mirnet/tiling.hpp"

namespace mirnet {

struct RunPlan {
    std::size_t profile = 0;  // index into manifest.profiles
    int scale = 1;            // output pixels per input pixel (manifest.scale)
    Channels channels;        // the model's input and output channels
    TilePlan tiles;           // input side: padded size and tile grid
    TileGrid out_grid;        // output side: the same grid times `scale`

    Shape4 input_shape() const;   // 1 x channels.input x tile_h x tile_w, what setInputShape gets
    Shape4 output_shape() const;  // 1 x channels.output x tile_h*scale x tile_w*scale
    std::size_t input_count() const;
    std::size_t output_count() const;
};

// Profile whose [min, max] admits the image padded to the size multiple (closest opt), else
// the largest profile for tiling; then plan_tiles(). Throws if no profile takes batch 1 with
// channels.input. A manifest without profiles (OpenVINO, dynamic shapes) takes any size: one tile
// unless max_tile asks.
RunPlan plan_run(const Manifest& manifest, int height, int width, int max_tile = 0, int overlap = 32,
                 Channels channels = {});

// Reflect-pad a 1 x channels.input x H x W image (bottom/right) to the plan's run size.
TensorNCHW pad_for_run(const TensorNCHW& image, const RunPlan& plan);

// For every tile: copy it into `in` (input_count floats), call engine(tile_index), which must
// leave the tile's result in `out` (output_count floats); blend; crop to (H*scale, W*scale)
// where H x W is plan.tiles.height x width.
TensorNCHW run_tiles(const TensorNCHW& padded, const RunPlan& plan, float* in, float* out,
                     const std::function<void(std::size_t)>& engine);

}  // namespace mirnet
