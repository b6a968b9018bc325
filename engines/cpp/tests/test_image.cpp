// Pixel conversions, PPM/PGM and PFM I/O.
#include <cfenv>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "test_support.hpp"
#include "mirnet/error.hpp"
#include "mirnet/image.hpp"

using namespace mirnet;

namespace {

Image random_image(int w, int h, int depth, unsigned seed) {
    Image img = make_image(w, h, depth);
    std::mt19937 rng(seed);
    for (auto& c : img.codes) c = static_cast<uint16_t>(rng() % (max_code(depth) + 1));
    return img;
}

std::vector<uint8_t> bytes_of(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

}  // namespace

TEST(image, every_8bit_code_round_trips_through_float) {
    for (int c = 0; c < 256; ++c) {
        EXPECT_EQ(static_cast<int>(float_to_u8(u8_to_float(static_cast<uint8_t>(c)))), c);
    }
}

TEST(image, every_16bit_code_round_trips_through_float) {
    for (int c = 0; c < 65536; ++c) {
        EXPECT_EQ(static_cast<int>(float_to_u16(u16_to_float(static_cast<uint16_t>(c)))), c);
    }
}

TEST(image, quantization_clamps_and_rounds_half_to_even) {
    EXPECT_EQ(static_cast<int>(float_to_u8(-0.25f)), 0);
    EXPECT_EQ(static_cast<int>(float_to_u8(1.75f)), 255);
    EXPECT_EQ(static_cast<int>(float_to_u8(std::numeric_limits<float>::quiet_NaN())), 0);
    EXPECT_EQ(static_cast<int>(float_to_u8(std::numeric_limits<float>::infinity())), 255);
    EXPECT_EQ(static_cast<int>(float_to_u8(-std::numeric_limits<float>::infinity())), 0);
    EXPECT_EQ(static_cast<int>(float_to_u8(0.5f)), 128);      // 127.5 -> 128 (even)
    EXPECT_EQ(static_cast<int>(float_to_u16(0.5f)), 32768);   // 32767.5 -> 32768 (even)
    EXPECT_EQ(static_cast<int>(float_to_u16(-0.0f)), 0);
    // Same as numpy: np.round(np.clip(x, 0, 1) * 255) in float32 == nearbyint under round-to-nearest-even.
    std::fesetround(FE_TONEAREST);
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> dist(-0.1f, 1.1f);
    for (int i = 0; i < 200000; ++i) {
        const float v = dist(rng);
        const float clipped = std::min(std::max(v, 0.0f), 1.0f);
        EXPECT_EQ(static_cast<int>(float_to_u8(v)), static_cast<int>(std::nearbyint(clipped * 255.0f)));
        EXPECT_EQ(static_cast<int>(float_to_u16(v)), static_cast<int>(std::nearbyint(clipped * 65535.0f)));
    }
    // Exact half-way products: k + 0.5 for k in 0..254 as float products of (k+0.5)/255.
    for (int k = 0; k < 255; ++k) {
        const float v = (static_cast<float>(k) + 0.5f) / 255.0f;
        const float product = v * 255.0f;
        EXPECT_EQ(static_cast<int>(float_to_u8(v)), static_cast<int>(std::nearbyint(product)));
    }
}

TEST(image, hwc_and_chw_layouts_match) {
    const int h = 2, w = 3;
    uint8_t hwc8[h * w * 3];
    uint16_t hwc16[h * w * 3];
    for (int i = 0; i < h * w * 3; ++i) {
        hwc8[i] = static_cast<uint8_t>(i * 11);
        hwc16[i] = static_cast<uint16_t>(i * 2999);
    }
    float chw[h * w * 3];
    hwc_u8_to_chw(hwc8, h, w, chw);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int c = 0; c < 3; ++c)
                EXPECT_EQ(chw[c * h * w + y * w + x], static_cast<float>(hwc8[(y * w + x) * 3 + c]) / 255.0f);
    uint8_t back8[h * w * 3];
    chw_to_hwc_u8(chw, h, w, back8);
    EXPECT_TRUE(std::memcmp(back8, hwc8, sizeof(hwc8)) == 0);
    hwc_u16_to_chw(hwc16, h, w, chw);
    EXPECT_EQ(chw[1 * h * w + 0], static_cast<float>(hwc16[1]) / 65535.0f);
    uint16_t back16[h * w * 3];
    chw_to_hwc_u16(chw, h, w, back16);
    EXPECT_TRUE(std::memcmp(back16, hwc16, sizeof(hwc16)) == 0);
}

TEST(image, image_tensor_round_trip_8_and_16_bit) {
    for (int depth : {8, 16}) {
        const Image img = random_image(7, 5, depth, 3u + static_cast<unsigned>(depth));
        const TensorNCHW t = image_to_tensor(img);
        EXPECT_EQ(t.n, 1);
        EXPECT_EQ(t.c, 3);
        EXPECT_EQ(t.h, 5);
        EXPECT_EQ(t.w, 7);
        const Image back = tensor_to_image(t, 0, depth);
        EXPECT_TRUE(back.codes == img.codes);
        EXPECT_EQ(back.bit_depth, depth);
    }
}

TEST(image, tensor_to_image_clamps_and_zeroes_nan) {
    TensorNCHW t(1, 3, 1, 2);
    t.data = {-0.5f, 1.5f, std::numeric_limits<float>::quiet_NaN(), 0.25f, 1.0f, 0.0f};
    const Image img = tensor_to_image(t, 0, 8);
    EXPECT_EQ(img.codes[0], 0);    // R(0,0) = -0.5
    EXPECT_EQ(img.codes[3], 255);  // R(0,1) = 1.5
    EXPECT_EQ(img.codes[1], 0);    // G(0,0) = NaN
    EXPECT_EQ(img.codes[4], 64);   // G(0,1) = 0.25 -> 63.75 -> 64
    EXPECT_EQ(count_nonfinite(t.data.data(), t.size()), std::size_t{1});
    EXPECT_THROW_WITH(tensor_to_image(t, 1, 8), "batch index 1");
}

TEST(image, float_images_must_be_finite_and_in_unit_range) {
    Image f = make_image(2, 1, 32);
    f.values = {0.0f, 0.5f, 1.0f, 0.25f, 0.75f, 1.25f};
    EXPECT_THROW_WITH(image_to_tensor(f), "outside [0, 1]");
    f.values[5] = std::numeric_limits<float>::infinity();
    EXPECT_THROW_WITH(image_to_tensor(f), "NaN or infinite");
    f.values[5] = 1.0f;
    const TensorNCHW t = image_to_tensor(f);
    EXPECT_EQ(t.at(0, 2, 0, 1), 1.0f);
    EXPECT_EQ(t.at(0, 1, 0, 0), 0.5f);
}

TEST(image, convert_bit_depth_is_exact_where_possible) {
    const Image img8 = random_image(9, 4, 8, 11);
    const Image img16 = convert_bit_depth(img8, 16);
    for (std::size_t i = 0; i < img8.codes.size(); ++i) EXPECT_EQ(img16.codes[i], img8.codes[i] * 257);
    EXPECT_TRUE(convert_bit_depth(img16, 8).codes == img8.codes);
    EXPECT_TRUE(convert_bit_depth(convert_bit_depth(img8, 32), 8).codes == img8.codes);
    Image one = make_image(1, 1, 16);
    one.codes = {128, 129, 65535};  // 128/257 = 0.498 -> 0, 129/257 = 0.502 -> 1
    const Image down = convert_bit_depth(one, 8);
    EXPECT_EQ(down.codes[0], 0);
    EXPECT_EQ(down.codes[1], 1);
    EXPECT_EQ(down.codes[2], 255);
}

TEST(image, ppm_8bit_round_trip_is_exact) {
    for (auto [w, h] : {std::pair{1, 1}, std::pair{7, 5}, std::pair{64, 3}}) {
        const Image img = random_image(w, h, 8, static_cast<unsigned>(w * 31 + h));
        const std::vector<uint8_t> bytes = encode_ppm(img);
        EXPECT_TRUE(bytes.size() > static_cast<std::size_t>(w * h * 3));
        const Image back = decode_pnm(bytes, "test");
        EXPECT_EQ(back.width, w);
        EXPECT_EQ(back.height, h);
        EXPECT_EQ(back.bit_depth, 8);
        EXPECT_TRUE(back.codes == img.codes);
    }
}

TEST(image, ppm_16bit_round_trip_is_exact_through_files) {
    Image img = random_image(13, 6, 16, 5);
    img.codes[0] = 0;
    img.codes[1] = 1;
    img.codes[2] = 255;
    img.codes[3] = 256;
    img.codes[4] = 65535;
    const std::string path = mirnet::testing::temp_dir() + "/rt16.ppm";
    write_image(path, img);
    const Image back = read_image(path);
    EXPECT_EQ(back.bit_depth, 16);
    EXPECT_TRUE(back.codes == img.codes);
    // maxval 65535, big-endian samples
    const std::vector<uint8_t> bytes = read_file(path);
    const std::string header = "P6\n13 6\n65535\n";
    EXPECT_TRUE(std::string(bytes.begin(), bytes.begin() + static_cast<long>(header.size())) == header);
    EXPECT_EQ(static_cast<int>(bytes[header.size() + 6]), 1);  // sample 3 = 256 -> 0x01 0x00
    EXPECT_EQ(static_cast<int>(bytes[header.size() + 7]), 0);
}

TEST(image, pnm_header_comments_grey_and_odd_maxval) {
    std::string p6 = "P6\n# made by hand\n2 1 # trailing comment\n255\n";
    p6 += std::string("\x01\x02\x03\xFD\xFE\xFF", 6);
    const Image a = decode_pnm(bytes_of(p6), "p6");
    EXPECT_EQ(a.width, 2);
    EXPECT_EQ(a.codes[5], 255);
    EXPECT_EQ(a.codes[0], 1);

    std::string p5 = "P5 3 1 255\n";
    p5 += std::string("\x00\x80\xFF", 3);
    const Image g = decode_pnm(bytes_of(p5), "p5");
    EXPECT_EQ(g.codes[3], 128);
    EXPECT_EQ(g.codes[4], 128);
    EXPECT_EQ(g.codes[5], 128);  // grey replicated to RGB
    EXPECT_EQ(g.codes[8], 255);

    std::string p5_1000 = "P5 2 1 1000\n";
    p5_1000 += std::string("\x03\xE8\x00\x00", 4);  // 1000, 0 big-endian
    const Image r = decode_pnm(bytes_of(p5_1000), "p5-1000");
    EXPECT_EQ(r.bit_depth, 16);
    EXPECT_EQ(r.codes[0], 65535);
    EXPECT_EQ(r.codes[3], 0);

    std::string p5_15 = "P5 1 1 15\n";
    p5_15 += std::string("\x0F", 1);
    EXPECT_EQ(decode_pnm(bytes_of(p5_15), "p5-15").codes[0], 255);
}

TEST(image, pnm_errors_are_clear) {
    EXPECT_THROW_WITH(decode_pnm(bytes_of("P3\n1 1\n255\n0 0 0\n"), "ascii.ppm"), "expected magic P6 or P5");
    EXPECT_THROW_WITH(decode_pnm(bytes_of("P6\n2 2\n255\nabc"), "short.ppm"), "truncated");
    EXPECT_THROW_WITH(decode_pnm(bytes_of("P6\n2 x\n255\n"), "bad.ppm"), "height");
    EXPECT_THROW_WITH(decode_pnm(bytes_of("P6\n0 2\n255\n"), "empty.ppm"), "empty dimension");
    EXPECT_THROW_WITH(decode_pnm(bytes_of("P6\n1 1\n70000\n"), "maxval.ppm"), "maxval must be 1..65535");
    EXPECT_THROW_WITH(decode_pnm(bytes_of("P5 1 1 10\n\x0B"), "over.pgm"), "exceeds maxval");
    EXPECT_THROW_WITH(decode_image(bytes_of("GIF89a...."), "x.gif"), "not a recognised image");
    EXPECT_THROW_WITH(read_image(mirnet::testing::temp_dir() + "/does-not-exist.ppm"), "does-not-exist.ppm");
}

TEST(image, pfm_round_trip_is_bit_exact_and_rows_run_bottom_up) {
    Image f = make_image(3, 2, 32);
    for (std::size_t i = 0; i < f.values.size(); ++i) f.values[i] = static_cast<float>(i) / 17.0f + 1e-7f;
    f.values[0] = 0.0f;
    f.values[1] = 1.0f;
    f.values[2] = 0.1234567891f;
    const std::string path = mirnet::testing::temp_dir() + "/rt.pfm";
    write_image(path, f);
    const Image back = read_image(path);
    EXPECT_EQ(back.bit_depth, 32);
    EXPECT_TRUE(std::memcmp(back.values.data(), f.values.data(), f.values.size() * sizeof(float)) == 0);
    // The first stored row is the bottom row (y = 1).
    const std::vector<uint8_t> bytes = read_file(path);
    const std::string header = "PF\n3 2\n-1.0\n";
    float first = 0.0f;
    std::memcpy(&first, bytes.data() + header.size(), 4);  // test hosts are little-endian
    EXPECT_EQ(first, f.values[3 * 3 + 0]);
}

TEST(image, pfm_big_endian_and_grey) {
    // "Pf" grey 1x2, big-endian (positive scale): bottom row 0.25, top row 0.75.
    std::string pf = "Pf\n1 2\n1.0\n";
    pf += std::string("\x3E\x80\x00\x00", 4);  // 0.25f big-endian (bottom row, y = 1)
    pf += std::string("\x3F\x40\x00\x00", 4);  // 0.75f big-endian (top row, y = 0)
    const Image g = decode_pfm(bytes_of(pf), "grey.pfm");
    EXPECT_EQ(g.values[0], 0.75f);
    EXPECT_EQ(g.values[2], 0.75f);
    EXPECT_EQ(g.values[3], 0.25f);
    EXPECT_THROW_WITH(decode_pfm(bytes_of("PF\n1 1\n0\n"), "zero.pfm"), "non-zero number");
    EXPECT_THROW_WITH(decode_pfm(bytes_of("PF\n1 1\n-1.0\n\x00\x00"), "short.pfm"), "truncated");
}

TEST(image, write_chooses_format_by_suffix_and_refuses_lossy_cases) {
    const Image img = random_image(4, 4, 8, 1);
    EXPECT_THROW_WITH(write_image(mirnet::testing::temp_dir() + "/x.jpg", img), "unknown image suffix");
    const Image f = convert_bit_depth(img, 32);
    EXPECT_THROW_WITH(write_image(mirnet::testing::temp_dir() + "/x.ppm", f), "convert_bit_depth");
    const std::string pfm = mirnet::testing::temp_dir() + "/codes.pfm";
    write_image(pfm, img);  // codes -> floats is lossless
    EXPECT_TRUE(convert_bit_depth(read_image(pfm), 8).codes == img.codes);
    EXPECT_TRUE(format_for_path("A.PNG") == ImageFormat::PNG);
    EXPECT_TRUE(format_for_path("a.pnm") == ImageFormat::PNM);
    EXPECT_THROW_WITH(write_image(mirnet::testing::temp_dir() + "/no-such-dir/x.ppm", img), "Cannot write");
}
