// mirnet_core: cover an image larger than an engine's profile with overlapping tiles.
//
// Tiling runs on the image after it was reflect-padded to the size multiple, so every tile
// (size a multiple of 4) can be fed to the engine as it is. Along each axis of length n with
// tile size t and overlap o (0 <= o < t):
//   * n <= t: one tile, origin 0, size n;
//   * n > t:  k = ceil((n - o) / (t - o)) tiles at origins i * (t - o), the last one clamped
//             to n - t, so every origin lies in [0, n - t] and the tiles cover [0, n).
// Blending: each tile weighs its pixels with a trapezoid that ramps linearly over `o` pixels
// from every edge it shares with a neighbour (edges on the image border are not ramped), and
// the weights of all tiles covering a pixel are normalised to sum to 1 (they already do where
// exactly two tiles overlap by exactly o; normalising also covers the clamped last tile).
// Weights are separable: w(y, x) = wy(y) * wx(x).
#pragma once

#include <cstddef>
#include <vector>

#include "mirnet/profile.hpp"
#include "mirnet/tensor.hpp"

namespace mirnet {

struct Tile {
    int y = 0, x = 0;  // origin in the (padded) image
    int h = 0, w = 0;  // size
    std::size_t row = 0, col = 0;  // position in the grid
};

struct TileGrid {
    int height = 0, width = 0;   // the image the grid covers
    int tile_h = 0, tile_w = 0;  // tile size (== height/width for a single tile on that axis)
    int overlap = 0;
    std::vector<int> ys, xs;     // tile origins per axis
    std::vector<std::vector<float>> wy, wx;  // per-axis blend weights (tile_h / tile_w long)

    std::size_t count() const { return ys.size() * xs.size(); }
    std::vector<Tile> tiles() const;  // row-major
    // The same grid on an image `scale` times larger (for super-resolution outputs).
    TileGrid scaled(int scale) const;
};

// Tile origins along one axis (see the header comment); throws on invalid arguments.
std::vector<int> tile_origins(int n, int tile, int overlap);

// Blend weights of tile `index` (length `tile`), normalised over all tiles of the axis.
std::vector<float> blend_weights(const std::vector<int>& origins, int tile, int n, int overlap,
                                 std::size_t index);

// A grid over a height x width image; tile sizes must be multiples of `multiple` unless the
// axis fits into one tile (then its tile is the whole axis). Throws with a clear message.
TileGrid make_tile_grid(int height, int width, int tile_h, int tile_w, int overlap, int multiple = 4);

// How to run an image of (unpadded) height x width through an engine profile:
// pad to the size multiple and, if needed, up to the profile's minimum (by reflection), then
// tile when the padded image exceeds the profile's maximum.
struct TilePlan {
    int height = 0, width = 0;          // original image
    int run_height = 0, run_width = 0;  // after padding; the grid covers this
    TileGrid grid;
    bool tiled() const { return grid.count() > 1; }
};

// max_tile: largest tile edge wanted (0 = as large as the profile allows); overlap in pixels.
TilePlan plan_tiles(int height, int width, const Profile& profile, int batch = 1, int channels = 3,
                    int max_tile = 0, int overlap = 32, int multiple = 4);

// Does a batch x channels x tile shape of this grid lie inside the profile?
bool tile_fits_profile(const TileGrid& grid, const Profile& profile, int batch = 1, int channels = 3);

// Copy tile `t` of every plane of `src` (1xCxHxW over the grid's image) into `dst` (C*t.h*t.w).
void extract_tile(const TensorNCHW& src, const Tile& t, float* dst);

// dst += tile * wy * wx for tile `t` (C*t.h*t.w floats); dst starts zeroed and covers the grid.
void accumulate_tile(TensorNCHW& dst, const TileGrid& grid, const Tile& t, const float* tile);

}  // namespace mirnet
