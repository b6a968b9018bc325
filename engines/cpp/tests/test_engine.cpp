// The Engine interface and the Restorer a pipeline links, with stand-in engines (a pointwise map,
// nearest-neighbour x2, and one that returns NaN), plus the factory's and the OpenVINO manifest
// check's refusals. Real OpenVINO engines are exercised end to end by the run.* CTest cases.
#include <cmath>
#include <fstream>
#include <random>
#include <vector>

#include "test_support.hpp"
#include "mirnet/engine.hpp"
#include "mirnet/restore.hpp"

using namespace mirnet;

namespace {

Manifest manifest_with(const std::string& extra, int scale = 1) {
    return parse_manifest_text(R"({"backend": "openvino", "backend_version": "2026.4.1", "precision": "fp32",
        "device": "CPU", "scale": )" + std::to_string(scale) + extra + "}",
                               "stand-in.json");
}

// out = 1 - in at scale 1; nearest-neighbour upsampling at scale 2; NaN everywhere; or, for a
// model of 6 input channels (two RGB views), the mean of the two views.
class StandInEngine final : public Engine {
public:
    enum class Kind { Invert, Upsample2, NaN, MeanOfViews };
    StandInEngine(Manifest m, Kind kind, Channels channels = {}) : Engine(std::move(m)), kind_(kind) {
        set_channels(channels);
    }
    std::string backend() const override { return "stand-in"; }
    std::string device() const override { return "test"; }
    std::string runtime_version() const override { return "0"; }
    void infer(const float* input, const Shape4& shape, float* output) override {
        shapes.push_back(shape);
        const int64_t h = shape[2], w = shape[3], s = scale();
        if (kind_ == Kind::MeanOfViews) {
            for (int64_t i = 0; i < 3 * h * w; ++i) output[i] = 0.5f * (input[i] + input[i + 3 * h * w]);
            return;
        }
        for (int64_t c = 0; c < 3; ++c)
            for (int64_t y = 0; y < h * s; ++y)
                for (int64_t x = 0; x < w * s; ++x) {
                    const float v = input[(c * h + y / s) * w + x / s];
                    output[(c * h * s + y) * w * s + x] =
                        kind_ == Kind::Invert ? 1.0f - v : kind_ == Kind::NaN ? std::nanf("") : v;
                }
    }
    std::vector<Shape4> shapes;

private:
    Kind kind_;
};

std::vector<uint8_t> random_bytes(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<uint8_t> v(n);
    for (auto& b : v) b = static_cast<uint8_t>(rng() & 0xFF);
    return v;
}

}  // namespace

TEST(restorer, rgb8_with_row_strides_pads_and_crops) {
    auto engine = std::make_unique<StandInEngine>(manifest_with(""), StandInEngine::Kind::Invert);
    StandInEngine* seen = engine.get();
    Restorer restorer(std::move(engine));
    const int w = 7, h = 5;
    const std::size_t stride = 3 * w + 9, out_stride = 3 * w + 3;  // padded rows, as camera buffers have
    const std::vector<uint8_t> src = random_bytes(stride * h, 1);
    std::vector<uint8_t> dst(out_stride * h, 0xAB);
    restorer.restore_rgb8(src.data(), w, h, stride, dst.data(), out_stride);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < 3 * w; ++x) ASSERT_EQ(dst[y * out_stride + x], 255 - src[y * stride + x]) << y << "," << x;
    EXPECT_EQ(dst[out_stride - 1], 0xAB);  // bytes past the row are not touched
    ASSERT_EQ(seen->shapes.size(), 1u);
    EXPECT_EQ(seen->shapes[0], (Shape4{1, 3, 8, 8}));  // padded to the size multiple 4
}

TEST(restorer, rgb16_and_planar_round_trip_through_an_x2_engine) {
    Restorer restorer(std::make_unique<StandInEngine>(manifest_with("", 2), StandInEngine::Kind::Upsample2));
    const int w = 3, h = 2;
    std::vector<uint16_t> src = {0, 1, 2, 65535, 65534, 1000, 7, 8, 9, 300, 400, 500, 11, 12, 13, 60000, 50000, 40000};
    std::vector<uint16_t> dst(3 * w * 2 * h * 2);
    restorer.restore_rgb16(src.data(), w, h, 6 * w, dst.data(), 6 * w * 2);
    for (int y = 0; y < 2 * h; ++y)
        for (int x = 0; x < 2 * w; ++x)
            for (int c = 0; c < 3; ++c) EXPECT_EQ(dst[(y * 2 * w + x) * 3 + c], src[(y / 2 * w + x / 2) * 3 + c]);
    std::vector<float> planar(3 * w * h), out(3 * w * h * 4);
    for (std::size_t i = 0; i < planar.size(); ++i) planar[i] = static_cast<float>(i) / 32.0f;
    restorer.restore_planar(planar.data(), w, h, out.data());
    for (int c = 0; c < 3; ++c)
        for (int y = 0; y < 2 * h; ++y)
            for (int x = 0; x < 2 * w; ++x)
                EXPECT_EQ(out[(c * 2 * h + y) * 2 * w + x], planar[(c * h + y / 2) * w + x / 2]);
}

TEST(restorer, tiles_large_frames_within_the_profile_and_blends_exactly) {
    const std::string profile = R"(, "profiles": [{"min": [1, 3, 16, 16], "opt": [1, 3, 32, 32], "max": [1, 3, 32, 32]}])";
    auto engine = std::make_unique<StandInEngine>(manifest_with(profile), StandInEngine::Kind::Invert);
    StandInEngine* seen = engine.get();
    Restorer restorer(std::move(engine), RestoreOptions{0, 8});
    const int w = 70, h = 45;
    const std::vector<uint8_t> src = random_bytes(3 * w * h, 2);
    std::vector<uint8_t> dst(src.size());
    restorer.restore_rgb8(src.data(), w, h, 3 * w, dst.data(), 3 * w);
    for (std::size_t i = 0; i < src.size(); ++i) ASSERT_EQ(dst[i], 255 - src[i]) << i;
    EXPECT_GT(seen->shapes.size(), 1u);
    for (const Shape4& s : seen->shapes) EXPECT_EQ(s, (Shape4{1, 3, 32, 32}));
}

TEST(restorer, refuses_bad_frames_and_non_finite_output) {
    Restorer restorer(std::make_unique<StandInEngine>(manifest_with(""), StandInEngine::Kind::Invert));
    std::vector<uint8_t> buf(3 * 4 * 4);
    EXPECT_THROW_WITH(restorer.restore_rgb8(buf.data(), 4, 4, 11, buf.data(), 12), "stride is shorter than a row");
    EXPECT_THROW_WITH(restorer.restore_rgb8(buf.data(), 0, 4, 12, buf.data(), 12), "empty frame");
    EXPECT_THROW_WITH(restorer.restore_rgb8(nullptr, 4, 4, 12, buf.data(), 12), "null image buffer");
    std::vector<float> planar(3 * 4 * 4, 0.5f), out(planar.size());
    planar[5] = std::nanf("");
    EXPECT_THROW_WITH(restorer.restore_planar(planar.data(), 4, 4, out.data()), "NaN/Inf");
    Restorer broken(std::make_unique<StandInEngine>(manifest_with(""), StandInEngine::Kind::NaN));
    EXPECT_THROW_WITH(broken.restore_rgb8(buf.data(), 4, 4, 12, buf.data(), 12), "48 NaN/Inf values");
}

TEST(restorer, feeds_a_six_channel_model_planes_padded_to_the_manifests_multiple) {
    auto engine = std::make_unique<StandInEngine>(manifest_with(R"(, "size_multiple": 8)"),
                                                  StandInEngine::Kind::MeanOfViews, Channels{6, 3});
    StandInEngine* seen = engine.get();
    Restorer restorer(std::move(engine));
    const int w = 21, h = 13;
    TensorNCHW views(1, 6, h, w);
    std::mt19937 rng(3);
    for (float& v : views.data) v = static_cast<float>(rng() % 1000) / 999.0f;
    const Image restored = restorer.restore(views, 32);
    ASSERT_EQ(seen->shapes.size(), 1u);
    EXPECT_EQ(seen->shapes[0], (Shape4{1, 6, 16, 24}));  // 13x21 padded to the multiple 8, six planes
    ASSERT_EQ(restored.width, w);
    ASSERT_EQ(restored.height, h);
    for (int c = 0; c < 3; ++c)
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x)
                ASSERT_FLOAT_EQ(restored.values[(static_cast<std::size_t>(y) * w + x) * 3 + c],
                                0.5f * (views.at(0, c, y, x) + views.at(0, c + 3, y, x)));
    std::vector<float> out(3 * static_cast<std::size_t>(w) * h);
    restorer.restore_planar(views.data.data(), w, h, out.data());  // channels().input planes in
    EXPECT_FLOAT_EQ(out[0], 0.5f * (views.data[0] + views.at(0, 3, 0, 0)));

    // An RGB image cannot feed it: refused, naming the planar input it needs.
    std::vector<uint8_t> frame(3 * static_cast<std::size_t>(w) * h);
    EXPECT_THROW_WITH(restorer.restore_rgb8(frame.data(), w, h, 3 * w, frame.data(), 3 * w),
                      "takes 6 input channels, an interleaved RGB frame holds 3 (RGB). Feed it 1x6xHxW planes");
    EXPECT_THROW_WITH(restorer.restore(make_image(w, h, 8)), ".npy array to mirnet_run");
    EXPECT_THROW_WITH(restorer.restore(TensorNCHW(1, 3, h, w)), "takes 1x6xHxW planes, got 1x3x13x21");
}

TEST(engine, factory_refuses_other_backends_and_missing_manifests) {
    const std::string dir = mirnet::testing::temp_dir();
    std::ofstream(dir + "/ort.onnx.json") << R"({"backend": "onnxruntime", "backend_version": "1.20", "precision": "fp32"})";
    EXPECT_THROW_WITH(open_engine(dir + "/ort.onnx"), "describes a 'onnxruntime' engine");
    EXPECT_THROW_WITH(open_engine(dir + "/missing.json"), "Every engine needs its manifest");
    std::ofstream(dir + "/broken.json") << R"({"backend": "openvino", "backend_version": )";
    EXPECT_THROW_WITH(open_engine(dir + "/broken.json"), "is not valid JSON");
}

TEST(engine, openvino_manifest_check_names_every_mismatch) {
    Manifest m = manifest_with(R"(, "device_name": "Intel Xeon", "onnx_sha256": "abc", "engine_file": "m.blob")");
    const OpenVinoInfo here{"2026.4.1", {"CPU"}, "Intel Xeon"};
    EXPECT_EQ(check_openvino_manifest(m, here), "");
    EXPECT_EQ(m.engine_path(), "m.blob");
    const std::string other = check_openvino_manifest(m, OpenVinoInfo{"2025.3.0", {"CPU"}, "AMD EPYC"}, "def", "int8");
    for (const char* part : {"compiled by OpenVINO 2026.4.1, this runtime is OpenVINO 2025.3.0", "this CPU is 'AMD EPYC'",
                             "built from ONNX sha256 abc, expected def", "the engine is fp32, expected int8",
                             "rebuild on this machine"}) {
        EXPECT_NE(other.find(part), std::string::npos) << part << " not in: " << other;
    }
    const std::string no_gpu = check_openvino_manifest(manifest_with(R"(, "device": "GPU")"), here);
    EXPECT_NE(no_gpu.find("device GPU, which OpenVINO does not see here (devices: CPU)"), std::string::npos) << no_gpu;
    Manifest trt = manifest_with("");
    trt.backend = "tensorrt";
    EXPECT_NE(check_openvino_manifest(trt, here).find("not an OpenVINO engine"), std::string::npos);
}
