#include "mirnet/tiling.hpp"

#include <algorithm>
#include <string>

#include "mirnet/error.hpp"

namespace mirnet {

namespace {

std::string s(long long v) { return std::to_string(v); }

struct AxisPlan {
    int run = 0;   // padded length the grid covers
    int tile = 0;  // tile size along the axis
};

AxisPlan plan_axis(const char* name, int n, int64_t pmin, int64_t pmax, int max_tile, int overlap, int multiple) {
    const int min_run = pmin > 0 ? round_up(static_cast<int>(std::min<int64_t>(pmin, 1 << 30)), multiple) : 0;
    if (min_run > pmax) {
        throw Error(std::string("The engine profile admits ") + name + " " + s(pmin) + ".." + s(pmax) +
                    ", which contains no multiple of " + s(multiple) +
                    " (the model's size multiple); rebuild the engine with a wider profile.");
    }
    AxisPlan a;
    a.run = std::max(round_up(n, multiple), min_run);
    const bool fits_profile = a.run <= pmax;
    const bool fits_request = max_tile <= 0 || a.run <= max_tile;
    if (fits_profile && fits_request) {
        a.tile = a.run;
        return a;
    }
    int64_t limit = pmax;
    if (max_tile > 0) limit = std::min<int64_t>(limit, max_tile);
    a.tile = static_cast<int>(limit / multiple * multiple);
    if (a.tile < multiple || a.tile < pmin) {
        throw Error(std::string("Cannot tile the image's ") + name + " of " + s(n) + ": the largest tile allowed (" +
                    s(limit) + ", rounded down to a multiple of " + s(multiple) + " = " + s(a.tile) +
                    ") is below the profile minimum " + s(pmin) + ". Raise the tile size or use another profile.");
    }
    if (overlap >= a.tile) {
        throw Error("Tile overlap " + s(overlap) + " must be smaller than the tile " + name + " " + s(a.tile) +
                    "; choose a smaller overlap.");
    }
    return a;
}

}  // namespace

std::vector<int> tile_origins(int n, int tile, int overlap) {
    if (n < 1 || tile < 1 || overlap < 0 || overlap >= tile) {
        throw Error("tile_origins needs n >= 1, tile >= 1 and 0 <= overlap < tile; got n=" + s(n) +
                    ", tile=" + s(tile) + ", overlap=" + s(overlap) + ".");
    }
    if (n <= tile) {
        return {0};
    }
    const long long stride = tile - overlap;
    const long long k = (static_cast<long long>(n) - overlap + stride - 1) / stride;
    std::vector<int> origins;
    origins.reserve(static_cast<std::size_t>(k));
    for (long long i = 0; i < k; ++i) {
        origins.push_back(static_cast<int>(std::min<long long>(i * stride, n - tile)));
    }
    return origins;
}

std::vector<float> blend_weights(const std::vector<int>& origins, int tile, int n, int overlap, std::size_t index) {
    (void)overlap;  // the ramps use the actual overlap with each neighbour, which is >= overlap
    if (index >= origins.size()) {
        throw Error("blend_weights: tile index " + s(static_cast<long long>(index)) + " is outside " +
                    s(static_cast<long long>(origins.size())) + " tiles.");
    }
    const std::size_t k = origins.size();
    const int extent = std::min(tile, n);
    // Raw trapezoid of tile j at absolute position p.
    auto raw = [&](std::size_t j, int p) -> double {
        const int o = origins[j];
        if (p < o || p >= o + extent) return 0.0;
        double w = 1.0;
        if (j > 0) {
            const int ov = origins[j - 1] + extent - o;  // actual overlap with the previous tile
            if (ov > 0) w = std::min(w, (p - o + 0.5) / ov);
        }
        if (j + 1 < k) {
            const int ov = o + extent - origins[j + 1];  // actual overlap with the next tile
            if (ov > 0) w = std::min(w, (o + extent - p - 0.5) / ov);
        }
        return w;
    };
    std::vector<float> out(static_cast<std::size_t>(extent));
    for (int i = 0; i < extent; ++i) {
        const int p = origins[index] + i;
        double total = 0.0;
        for (std::size_t j = 0; j < k; ++j) total += raw(j, p);
        out[static_cast<std::size_t>(i)] = static_cast<float>(raw(index, p) / total);
    }
    return out;
}

std::vector<Tile> TileGrid::tiles() const {
    std::vector<Tile> out;
    out.reserve(count());
    for (std::size_t r = 0; r < ys.size(); ++r) {
        for (std::size_t c = 0; c < xs.size(); ++c) {
            Tile t;
            t.y = ys[r];
            t.x = xs[c];
            t.h = tile_h;
            t.w = tile_w;
            t.row = r;
            t.col = c;
            out.push_back(t);
        }
    }
    return out;
}

TileGrid TileGrid::scaled(int scale) const {
    if (scale < 1) {
        throw Error("TileGrid::scaled needs a scale >= 1, got " + s(scale) + ".");
    }
    TileGrid g;
    g.height = height * scale;
    g.width = width * scale;
    g.tile_h = tile_h * scale;
    g.tile_w = tile_w * scale;
    g.overlap = overlap * scale;
    for (int y : ys) g.ys.push_back(y * scale);
    for (int x : xs) g.xs.push_back(x * scale);
    for (std::size_t i = 0; i < g.ys.size(); ++i) g.wy.push_back(blend_weights(g.ys, g.tile_h, g.height, g.overlap, i));
    for (std::size_t i = 0; i < g.xs.size(); ++i) g.wx.push_back(blend_weights(g.xs, g.tile_w, g.width, g.overlap, i));
    return g;
}

TileGrid make_tile_grid(int height, int width, int tile_h, int tile_w, int overlap, int multiple) {
    if (multiple < 1 || height < 1 || width < 1 || tile_h < 1 || tile_w < 1 || overlap < 0) {
        throw Error("make_tile_grid needs positive sizes and overlap >= 0; got image " + s(height) + "x" + s(width) +
                    ", tile " + s(tile_h) + "x" + s(tile_w) + ", overlap " + s(overlap) + ", multiple " +
                    s(multiple) + ".");
    }
    TileGrid g;
    g.height = height;
    g.width = width;
    g.overlap = overlap;
    g.tile_h = std::min(tile_h, height);
    g.tile_w = std::min(tile_w, width);
    const char* names[2] = {"height", "width"};
    const int sizes[2] = {g.tile_h, g.tile_w};
    const int lengths[2] = {height, width};
    for (int a = 0; a < 2; ++a) {
        if (sizes[a] % multiple != 0) {
            throw Error(std::string("Tile ") + names[a] + " " + s(sizes[a]) + " is not a multiple of " + s(multiple) +
                        (sizes[a] == lengths[a] ? " (the image " + std::string(names[a]) +
                                                      " fits in one tile: pad the image to the multiple first)"
                                                : "") +
                        ".");
        }
        if (sizes[a] < lengths[a] && overlap >= sizes[a]) {
            throw Error("Tile overlap " + s(overlap) + " must be smaller than the tile " + names[a] + " " +
                        s(sizes[a]) + ".");
        }
    }
    g.ys = tile_origins(height, g.tile_h, g.tile_h < height ? overlap : 0);
    g.xs = tile_origins(width, g.tile_w, g.tile_w < width ? overlap : 0);
    for (std::size_t i = 0; i < g.ys.size(); ++i) g.wy.push_back(blend_weights(g.ys, g.tile_h, height, overlap, i));
    for (std::size_t i = 0; i < g.xs.size(); ++i) g.wx.push_back(blend_weights(g.xs, g.tile_w, width, overlap, i));
    return g;
}

TilePlan plan_tiles(int height, int width, const Profile& profile, int batch, int channels, int max_tile,
                    int overlap, int multiple) {
    if (height < 1 || width < 1) {
        throw Error("plan_tiles: the image is empty (" + s(height) + "x" + s(width) + ").");
    }
    if (multiple < 1 || overlap < 0) {
        throw Error("plan_tiles needs multiple >= 1 and overlap >= 0.");
    }
    if (batch < profile.min[0] || batch > profile.max[0] || channels < profile.min[1] || channels > profile.max[1]) {
        throw Error("The engine profile (" + format_profile(profile) + ") does not admit batch " + s(batch) +
                    " with " + s(channels) + " channels.");
    }
    const AxisPlan ah = plan_axis("height", height, profile.min[2], profile.max[2], max_tile, overlap, multiple);
    const AxisPlan aw = plan_axis("width", width, profile.min[3], profile.max[3], max_tile, overlap, multiple);
    TilePlan plan;
    plan.height = height;
    plan.width = width;
    plan.run_height = ah.run;
    plan.run_width = aw.run;
    plan.grid = make_tile_grid(ah.run, aw.run, ah.tile, aw.tile, overlap, multiple);
    return plan;
}

bool tile_fits_profile(const TileGrid& grid, const Profile& profile, int batch, int channels) {
    return profile_contains(profile, Shape4{batch, channels, grid.tile_h, grid.tile_w});
}

void extract_tile(const TensorNCHW& src, const Tile& t, float* dst) {
    if (src.n != 1 || t.y < 0 || t.x < 0 || t.y + t.h > src.h || t.x + t.w > src.w) {
        throw Error("extract_tile: tile " + s(t.h) + "x" + s(t.w) + " at (" + s(t.y) + ", " + s(t.x) +
                    ") does not lie inside the 1x" + s(src.c) + "x" + s(src.h) + "x" + s(src.w) + " image (N must be 1).");
    }
    for (int c = 0; c < src.c; ++c) {
        for (int y = 0; y < t.h; ++y) {
            const float* row = src.data.data() + src.index(0, c, t.y + y, t.x);
            std::copy(row, row + t.w, dst + (static_cast<std::size_t>(c) * t.h + y) * t.w);
        }
    }
}

void accumulate_tile(TensorNCHW& dst, const TileGrid& grid, const Tile& t, const float* tile) {
    if (dst.n != 1 || dst.h != grid.height || dst.w != grid.width || t.row >= grid.wy.size() ||
        t.col >= grid.wx.size() || t.h != grid.tile_h || t.w != grid.tile_w) {
        throw Error("accumulate_tile: the destination (" + s(dst.h) + "x" + s(dst.w) + ") or the tile does not match the " +
                    s(grid.height) + "x" + s(grid.width) + " grid.");
    }
    const std::vector<float>& wy = grid.wy[t.row];
    const std::vector<float>& wx = grid.wx[t.col];
    for (int c = 0; c < dst.c; ++c) {
        for (int y = 0; y < t.h; ++y) {
            float* out = dst.data.data() + dst.index(0, c, t.y + y, t.x);
            const float* in = tile + (static_cast<std::size_t>(c) * t.h + y) * t.w;
            const float row_weight = wy[static_cast<std::size_t>(y)];
            for (int x = 0; x < t.w; ++x) {
                out[x] += in[x] * row_weight * wx[static_cast<std::size_t>(x)];
            }
        }
    }
}

}  // namespace mirnet
