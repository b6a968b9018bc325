// Tile grids: coverage, origins, sizes, blend weights summing to 1, reconstruction, planning
// against an optimization profile.
#include <random>
#include <tuple>

#include "test_support.hpp"
#include "mirnet/tiling.hpp"

using namespace mirnet;

namespace {

Profile make_profile(Shape4 min, Shape4 opt, Shape4 max) {
    Profile p;
    p.min = min;
    p.opt = opt;
    p.max = max;
    return p;
}

// Checks every invariant of one axis; returns the number of tiles.
std::size_t check_axis(int n, int tile, int overlap) {
    const std::vector<int> origins = tile_origins(n, tile, overlap);
    const int extent = std::min(tile, n);
    std::vector<double> coverage(static_cast<std::size_t>(n), 0.0);
    std::vector<int> hits(static_cast<std::size_t>(n), 0);
    for (std::size_t i = 0; i < origins.size(); ++i) {
        EXPECT_TRUE(origins[i] >= 0);
        EXPECT_TRUE(origins[i] + extent <= n);  // origin clamped inside the image
        if (i > 0) {
            EXPECT_TRUE(origins[i] > origins[i - 1]);
            EXPECT_TRUE(origins[i] - origins[i - 1] <= tile - overlap);  // never less overlap than asked
        }
        const std::vector<float> w = blend_weights(origins, tile, n, overlap, i);
        EXPECT_EQ(w.size(), static_cast<std::size_t>(extent));
        for (int k = 0; k < extent; ++k) {
            EXPECT_TRUE(w[static_cast<std::size_t>(k)] > 0.0f);
            EXPECT_TRUE(w[static_cast<std::size_t>(k)] <= 1.0f + 1e-7f);
            coverage[static_cast<std::size_t>(origins[i] + k)] += w[static_cast<std::size_t>(k)];
            hits[static_cast<std::size_t>(origins[i] + k)] += 1;
        }
    }
    for (int p = 0; p < n; ++p) {
        EXPECT_TRUE(hits[static_cast<std::size_t>(p)] >= 1);  // every pixel covered
        EXPECT_NEAR(coverage[static_cast<std::size_t>(p)], 1.0, 1e-6);
    }
    EXPECT_EQ(origins.front(), 0);
    EXPECT_EQ(origins.back() + extent, n);
    return origins.size();
}

}  // namespace

TEST(tiling, tile_origins_examples) {
    EXPECT_TRUE(tile_origins(8, 8, 4) == std::vector<int>({0}));
    EXPECT_TRUE(tile_origins(5, 8, 4) == std::vector<int>({0}));
    EXPECT_TRUE(tile_origins(10, 8, 4) == std::vector<int>({0, 2}));     // last clamped from 4 to 2
    EXPECT_TRUE(tile_origins(13, 8, 4) == std::vector<int>({0, 4, 5}));  // last clamped from 8 to 5
    EXPECT_TRUE(tile_origins(16, 8, 0) == std::vector<int>({0, 8}));
    EXPECT_TRUE(tile_origins(100, 32, 8) == std::vector<int>({0, 24, 48, 68}));
    EXPECT_THROW_WITH(tile_origins(100, 32, 32), "overlap < tile");
    EXPECT_THROW_WITH(tile_origins(0, 32, 8), "n >= 1");
}

TEST(tiling, axis_sweep_covers_every_pixel_with_weights_summing_to_one) {
    std::size_t grids = 0;
    for (int n = 1; n <= 90; ++n)
        for (int tile : {4, 8, 12, 16, 32})
            for (int overlap : {0, 1, 2, 4, 6, 8, 16})
                if (overlap < tile) {
                    check_axis(n, tile, overlap);
                    ++grids;
                }
    EXPECT_TRUE(grids > 2000);
}

TEST(tiling, two_tile_overlap_is_a_linear_ramp) {
    // n = 24, tile 16, overlap 8: tiles [0,16) and [8,24); inside the overlap the weights are
    // (k + 0.5) / 8 for the right tile and the complement for the left one.
    const std::vector<int> o = tile_origins(24, 16, 8);
    EXPECT_TRUE(o == std::vector<int>({0, 8}));
    const std::vector<float> left = blend_weights(o, 16, 24, 8, 0);
    const std::vector<float> right = blend_weights(o, 16, 24, 8, 1);
    for (int k = 0; k < 8; ++k) {
        EXPECT_NEAR(left[static_cast<std::size_t>(k)], 1.0, 1e-7);
        EXPECT_NEAR(right[static_cast<std::size_t>(k)], (k + 0.5) / 8.0, 1e-7);
        EXPECT_NEAR(left[static_cast<std::size_t>(8 + k)], 1.0 - (k + 0.5) / 8.0, 1e-7);
        EXPECT_NEAR(right[static_cast<std::size_t>(8 + k)], 1.0, 1e-7);
    }
}

TEST(tiling, grid_2d_weights_sum_to_one_and_tiles_are_multiples_of_4) {
    for (auto [h, w, th, tw, ov] : {std::tuple{52, 72, 16, 24, 8}, std::tuple{720, 1280, 256, 256, 32},
                                    std::tuple{8, 1000, 64, 128, 16}, std::tuple{4, 4, 4, 4, 0}}) {
        const TileGrid g = make_tile_grid(h, w, th, tw, ov);
        EXPECT_EQ(g.tile_h % 4, 0);
        EXPECT_EQ(g.tile_w % 4, 0);
        std::vector<double> sum(static_cast<std::size_t>(h) * static_cast<std::size_t>(w), 0.0);
        for (const Tile& t : g.tiles()) {
            EXPECT_TRUE(t.y >= 0 && t.x >= 0 && t.y + t.h <= h && t.x + t.w <= w);
            for (int y = 0; y < t.h; ++y)
                for (int x = 0; x < t.w; ++x)
                    sum[static_cast<std::size_t>(t.y + y) * static_cast<std::size_t>(w) + static_cast<std::size_t>(t.x + x)] +=
                        static_cast<double>(g.wy[t.row][static_cast<std::size_t>(y)]) * g.wx[t.col][static_cast<std::size_t>(x)];
        }
        for (double s : sum) EXPECT_NEAR(s, 1.0, 1e-6);
    }
    EXPECT_THROW_WITH(make_tile_grid(64, 64, 30, 32, 8), "not a multiple of 4");
    EXPECT_THROW_WITH(make_tile_grid(63, 64, 64, 32, 8), "pad the image to the multiple first");
    EXPECT_THROW_WITH(make_tile_grid(64, 64, 32, 32, 32), "overlap 32 must be smaller");
}

TEST(tiling, identity_model_reconstructs_the_image) {
    TensorNCHW img(1, 3, 52, 72);
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> dist(0.0f, 1.0f);
    for (float& v : img.data) v = dist(rng);
    const TileGrid g = make_tile_grid(52, 72, 16, 24, 8);
    EXPECT_TRUE(g.count() > 6);
    TensorNCHW out(1, 3, 52, 72);
    std::vector<float> buffer(3 * static_cast<std::size_t>(g.tile_h) * g.tile_w);
    for (const Tile& t : g.tiles()) {
        extract_tile(img, t, buffer.data());
        accumulate_tile(out, g, t, buffer.data());
    }
    for (std::size_t i = 0; i < img.size(); ++i) EXPECT_NEAR(out.data[i], img.data[i], 2e-6);
}

TEST(tiling, scaled_grid_for_super_resolution_outputs) {
    const TileGrid g = make_tile_grid(40, 40, 16, 16, 4);
    const TileGrid s = g.scaled(2);
    EXPECT_EQ(s.height, 80);
    EXPECT_EQ(s.tile_w, 32);
    EXPECT_EQ(s.ys.size(), g.ys.size());
    for (std::size_t i = 0; i < s.ys.size(); ++i) EXPECT_EQ(s.ys[i], 2 * g.ys[i]);
    std::vector<double> sum(80, 0.0);
    for (std::size_t i = 0; i < s.xs.size(); ++i)
        for (int k = 0; k < s.tile_w; ++k) sum[static_cast<std::size_t>(s.xs[i] + k)] += s.wx[i][static_cast<std::size_t>(k)];
    for (double v : sum) EXPECT_NEAR(v, 1.0, 1e-6);
}

TEST(tiling, plan_pads_to_multiple_and_profile_min_then_tiles_above_max) {
    const Profile p = make_profile({1, 3, 16, 16}, {1, 3, 32, 32}, {1, 3, 64, 64});
    // Fits: only padded to the multiple.
    TilePlan a = plan_tiles(30, 41, p);
    EXPECT_TRUE(!a.tiled());
    EXPECT_EQ(a.run_height, 32);
    EXPECT_EQ(a.run_width, 44);
    EXPECT_TRUE(tile_fits_profile(a.grid, p));
    // Smaller than the profile minimum: reflect-padded up to it.
    TilePlan b = plan_tiles(5, 5, p);
    EXPECT_TRUE(!b.tiled());
    EXPECT_EQ(b.run_height, 16);
    EXPECT_EQ(b.run_width, 16);
    // Wider than the maximum: tiled along W only.
    TilePlan c = plan_tiles(30, 200, p, 1, 3, 0, 8);
    EXPECT_TRUE(c.tiled());
    EXPECT_EQ(c.grid.ys.size(), std::size_t{1});
    EXPECT_EQ(c.grid.tile_h, 32);
    EXPECT_EQ(c.grid.tile_w, 64);
    EXPECT_EQ(c.run_width, 200);
    EXPECT_TRUE(tile_fits_profile(c.grid, p));
    // A requested tile size below the maximum.
    TilePlan d = plan_tiles(300, 300, p, 1, 3, 50, 8);
    EXPECT_EQ(d.grid.tile_h, 48);
    EXPECT_EQ(d.grid.tile_w, 48);
    EXPECT_TRUE(tile_fits_profile(d.grid, p));
    // Every tile of the plan lies inside the profile and the grid covers the padded image.
    for (const Tile& t : d.grid.tiles()) EXPECT_TRUE(t.y + t.h <= d.run_height && t.x + t.w <= d.run_width);
    EXPECT_TRUE(!tile_fits_profile(make_tile_grid(128, 128, 128, 128, 0), p));
}

TEST(tiling, plan_errors_name_the_problem) {
    const Profile p = make_profile({1, 3, 16, 16}, {1, 3, 32, 32}, {1, 3, 64, 64});
    EXPECT_THROW_WITH(plan_tiles(300, 300, p, 1, 3, 0, 64), "overlap 64 must be smaller");
    EXPECT_THROW_WITH(plan_tiles(300, 300, p, 2, 3), "does not admit batch 2");
    EXPECT_THROW_WITH(plan_tiles(300, 300, p, 1, 3, 8), "below the profile minimum 16");
    const Profile odd = make_profile({1, 3, 17, 17}, {1, 3, 18, 18}, {1, 3, 19, 19});
    EXPECT_THROW_WITH(plan_tiles(18, 18, odd), "contains no multiple of 4");
}
