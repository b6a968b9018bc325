#include "mirnet/pipeline.hpp"

#include <optional>

#include <string>

#include "mirnet/error.hpp"

namespace mirnet {

Shape4 RunPlan::input_shape() const { return Shape4{1, channels.input, tiles.grid.tile_h, tiles.grid.tile_w}; }

Shape4 RunPlan::output_shape() const {
    return Shape4{1, channels.output, static_cast<int64_t>(tiles.grid.tile_h) * scale,
                  static_cast<int64_t>(tiles.grid.tile_w) * scale};
}

std::size_t RunPlan::input_count() const {
    return static_cast<std::size_t>(channels.input) * static_cast<std::size_t>(tiles.grid.tile_h) *
           static_cast<std::size_t>(tiles.grid.tile_w);
}

std::size_t RunPlan::output_count() const {
    return static_cast<std::size_t>(channels.output) * static_cast<std::size_t>(tiles.grid.tile_h) *
           static_cast<std::size_t>(tiles.grid.tile_w) * static_cast<std::size_t>(scale) * static_cast<std::size_t>(scale);
}

RunPlan plan_run(const Manifest& manifest, int height, int width, int max_tile, int overlap, Channels channels) {
    const int m = manifest.size_multiple;
    RunPlan plan;
    plan.scale = manifest.scale;
    plan.channels = channels;
    if (manifest.profiles.empty()) {
        // No profile listed (OpenVINO: dynamic H and W): batch 1 at any size.
        const Profile any_size{{1, channels.input, 1, 1}, {1, channels.input, 1, 1},
                               {1, channels.input, 1 << 20, 1 << 20}};
        plan.tiles = plan_tiles(height, width, any_size, 1, channels.input, max_tile, overlap, m);
        plan.out_grid = plan.scale == 1 ? plan.tiles.grid : plan.tiles.grid.scaled(plan.scale);
        return plan;
    }
    std::optional<std::size_t> profile =
        profile_for_shape(manifest, 1, channels.input, round_up(height, m), round_up(width, m));
    if (!profile) profile = profile_for_tiling(manifest, 1, channels.input);
    if (!profile) {
        throw Error("No optimization profile of " + manifest.source + " accepts batch 1 with " +
                    std::to_string(channels.input) + " channels; rebuild the engine with such a profile.");
    }
    plan.profile = *profile;
    plan.tiles = plan_tiles(height, width, manifest.profiles[*profile], 1, channels.input, max_tile, overlap, m);
    plan.out_grid = plan.scale == 1 ? plan.tiles.grid : plan.tiles.grid.scaled(plan.scale);
    return plan;
}

TensorNCHW pad_for_run(const TensorNCHW& image, const RunPlan& plan) {
    if (image.n != 1 || image.c != plan.channels.input || image.h != plan.tiles.height ||
        image.w != plan.tiles.width) {
        throw Error("pad_for_run: expected a 1x" + std::to_string(plan.channels.input) + "x" +
                    std::to_string(plan.tiles.height) + "x" +
                    std::to_string(plan.tiles.width) + " image, got " + std::to_string(image.n) + "x" +
                    std::to_string(image.c) + "x" + std::to_string(image.h) + "x" + std::to_string(image.w) + ".");
    }
    return reflect_pad(image, plan.tiles.run_height, plan.tiles.run_width);
}

TensorNCHW run_tiles(const TensorNCHW& padded, const RunPlan& plan, float* in, float* out,
                     const std::function<void(std::size_t)>& engine) {
    const TileGrid& grid = plan.tiles.grid;
    if (padded.n != 1 || padded.c != plan.channels.input || padded.h != grid.height || padded.w != grid.width) {
        throw Error("run_tiles: the padded image does not match the plan (" + std::to_string(grid.height) + "x" +
                    std::to_string(grid.width) + ").");
    }
    const std::vector<Tile> tiles = grid.tiles();
    const std::vector<Tile> out_tiles = plan.out_grid.tiles();
    TensorNCHW accumulated(1, plan.channels.output, plan.out_grid.height, plan.out_grid.width);
    for (std::size_t t = 0; t < tiles.size(); ++t) {
        extract_tile(padded, tiles[t], in);
        engine(t);
        accumulate_tile(accumulated, plan.out_grid, out_tiles[t], out);
    }
    return crop(accumulated, 0, 0, plan.tiles.height * plan.scale, plan.tiles.width * plan.scale);
}

}  // namespace mirnet
