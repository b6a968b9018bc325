// The run sequence around an engine call, without a backend: profile choice, padding, tiling, blending,
// cropping, with stand-in engines (identity; a per-pixel function; nearest-neighbour x2).
#include <random>
#include <vector>

#include "test_support.hpp"
#include "mirnet/pipeline.hpp"

using namespace mirnet;

namespace {

Manifest manifest_with(const std::string& profiles, int scale = 1) {
    return parse_manifest_text(R"({"backend": "tensorrt", "backend_version": "10.3.0", "precision": "fp16",
        "gpu_name": "Orin", "compute_capability": "8.7", "scale": )" + std::to_string(scale) +
                                   R"(, "profiles": )" + profiles + "}",
                               "pipeline.json");
}

TensorNCHW random_image(int h, int w, unsigned seed) {
    TensorNCHW t(1, 3, h, w);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(0.0f, 1.0f);
    for (float& v : t.data) v = dist(rng);
    return t;
}

// Runs `plan` with an engine that applies f to every value (a pointwise "model").
template <typename F>
TensorNCHW run_pointwise(const TensorNCHW& image, const RunPlan& plan, F f, std::size_t* calls) {
    std::vector<float> in(plan.input_count()), out(plan.output_count());
    return run_tiles(pad_for_run(image, plan), plan, in.data(), out.data(), [&](std::size_t) {
        ++*calls;
        for (std::size_t i = 0; i < in.size(); ++i) out[i] = f(in[i]);
    });
}

}  // namespace

TEST(pipeline, fits_profile_pads_to_multiple_and_crops_back) {
    const Manifest m = manifest_with(R"([{"min":[1,3,16,16],"opt":[1,3,64,64],"max":[1,3,128,128]}])");
    const TensorNCHW img = random_image(45, 71, 1);
    const RunPlan plan = plan_run(m, 45, 71);
    EXPECT_TRUE(!plan.tiles.tiled());
    EXPECT_TRUE(plan.input_shape() == Shape4({1, 3, 48, 72}));
    std::size_t calls = 0;
    const TensorNCHW out = run_pointwise(img, plan, [](float v) { return 1.0f - v; }, &calls);
    EXPECT_EQ(calls, std::size_t{1});
    EXPECT_EQ(out.h, 45);
    EXPECT_EQ(out.w, 71);
    for (std::size_t i = 0; i < img.size(); ++i) EXPECT_NEAR(out.data[i], 1.0f - img.data[i], 1e-6);
}

TEST(pipeline, tiny_images_are_padded_to_the_profile_minimum) {
    const Manifest m = manifest_with(R"([{"min":[1,3,16,16],"opt":[1,3,64,64],"max":[1,3,128,128]}])");
    for (auto [h, w] : {std::pair{1, 1}, std::pair{1, 2}, std::pair{3, 5}}) {
        const TensorNCHW img = random_image(h, w, 2);
        const RunPlan plan = plan_run(m, h, w);
        EXPECT_TRUE(plan.input_shape() == Shape4({1, 3, 16, 16}));
        std::size_t calls = 0;
        const TensorNCHW out = run_pointwise(img, plan, [](float v) { return v; }, &calls);
        EXPECT_TRUE(out.data == img.data);
    }
}

TEST(pipeline, large_images_are_tiled_within_the_profile_and_blend_exactly) {
    const Manifest m = manifest_with(R"([{"min":[1,3,16,16],"opt":[1,3,32,32],"max":[1,3,48,64]},
                                         {"min":[1,3,8,8],"opt":[1,3,16,16],"max":[1,3,32,32]}])");
    const TensorNCHW img = random_image(150, 97, 3);
    const RunPlan plan = plan_run(m, 150, 97, 0, 8);
    EXPECT_EQ(plan.profile, std::size_t{0});  // the larger profile is used for tiling
    EXPECT_TRUE(plan.tiles.tiled());
    EXPECT_TRUE(profile_contains(m.profiles[0], plan.input_shape()));
    std::size_t calls = 0;
    const TensorNCHW out = run_pointwise(img, plan, [](float v) { return 0.5f * v + 0.25f; }, &calls);
    EXPECT_EQ(calls, plan.tiles.grid.count());
    EXPECT_TRUE(calls > 4);
    for (std::size_t i = 0; i < img.size(); ++i) EXPECT_NEAR(out.data[i], 0.5f * img.data[i] + 0.25f, 2e-6);
}

TEST(pipeline, scale_2_engine_output_is_stitched_on_the_output_grid) {
    const Manifest m = manifest_with(R"([{"min":[1,3,8,8],"opt":[1,3,16,16],"max":[1,3,24,24]}])", 2);
    const TensorNCHW img = random_image(30, 41, 4);
    const RunPlan plan = plan_run(m, 30, 41, 0, 8);
    EXPECT_TRUE(plan.tiles.tiled());
    EXPECT_TRUE(plan.output_shape() == Shape4({1, 3, 48, 48}));
    std::vector<float> in(plan.input_count()), out(plan.output_count());
    const int th = plan.tiles.grid.tile_h, tw = plan.tiles.grid.tile_w;
    const TensorNCHW result = run_tiles(pad_for_run(img, plan), plan, in.data(), out.data(), [&](std::size_t) {
        for (int c = 0; c < 3; ++c)  // nearest-neighbour x2 "super-resolution"
            for (int y = 0; y < 2 * th; ++y)
                for (int x = 0; x < 2 * tw; ++x)
                    out[(static_cast<std::size_t>(c) * 2 * th + y) * 2 * tw + x] =
                        in[(static_cast<std::size_t>(c) * th + y / 2) * tw + x / 2];
    });
    EXPECT_EQ(result.h, 60);
    EXPECT_EQ(result.w, 82);
    for (int c = 0; c < 3; ++c)
        for (int y = 0; y < 60; ++y)
            for (int x = 0; x < 82; ++x) EXPECT_NEAR(result.at(0, c, y, x), img.at(0, c, y / 2, x / 2), 2e-6);
}

TEST(pipeline, plans_the_models_channels_in_and_out) {
    const Manifest m = manifest_with(R"([{"min":[1,6,16,16],"opt":[1,6,64,64],"max":[1,6,64,64]}])");
    EXPECT_THROW_WITH(plan_run(m, 60, 60), "accepts batch 1 with 3 channels");
    const RunPlan plan = plan_run(m, 60, 90, 0, 8, Channels{6, 3});
    EXPECT_TRUE(plan.tiles.tiled());  // 90 columns exceed the profile's 64
    const int64_t th = plan.tiles.grid.tile_h, tw = plan.tiles.grid.tile_w;
    EXPECT_EQ(plan.input_shape(), (Shape4{1, 6, th, tw}));
    EXPECT_EQ(plan.output_shape(), (Shape4{1, 3, th, tw}));
    EXPECT_EQ(plan.input_count(), static_cast<std::size_t>(6 * th * tw));
    EXPECT_EQ(plan.output_count(), static_cast<std::size_t>(3 * th * tw));
    EXPECT_THROW_WITH(pad_for_run(TensorNCHW(1, 3, 60, 90), plan), "expected a 1x6x60x90 image");
    const TensorNCHW padded = pad_for_run(TensorNCHW(1, 6, 60, 90, 0.25f), plan);
    std::vector<float> in(plan.input_count()), out(plan.output_count());
    const TensorNCHW result = run_tiles(padded, plan, in.data(), out.data(), [&](std::size_t) {
        std::copy_n(in.begin() + static_cast<std::ptrdiff_t>(3 * th * tw), out.size(), out.begin());  // right view
    });
    EXPECT_EQ((Shape4{result.n, result.c, result.h, result.w}), (Shape4{1, 3, 60, 90}));
    for (float v : result.data) ASSERT_NEAR(v, 0.25f, 1e-6f);
}

TEST(pipeline, no_usable_profile_is_an_error) {
    const Manifest m = manifest_with(R"([{"min":[2,3,16,16],"opt":[2,3,64,64],"max":[4,3,128,128]}])");
    EXPECT_THROW_WITH(plan_run(m, 64, 64), "accepts batch 1 with 3 channels");
    const Manifest ok = manifest_with(R"([{"min":[1,3,16,16],"opt":[1,3,64,64],"max":[1,3,128,128]}])");
    const RunPlan plan = plan_run(ok, 64, 64);
    EXPECT_THROW_WITH(pad_for_run(TensorNCHW(1, 3, 10, 10), plan), "expected a 1x3x64x64 image");
}
