// The .npy reader: every dtype it takes (uint8, uint16, float32, float64; H x W x C and H x W) against
// values written here byte for byte as numpy writes them, and each refusal with its cause.
#include <cmath>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "mirnet/npy.hpp"
#include "mirnet/profile.hpp"

using namespace mirnet;

namespace {

// A .npy file (format 1.0) as numpy.save writes it: magic, version, header padded to 64 bytes, data.
template <typename T>
std::vector<uint8_t> npy(const std::string& descr, const std::string& shape, const std::vector<T>& values,
                         const std::string& order = "False") {
    std::string header = "{'descr': '" + descr + "', 'fortran_order': " + order + ", 'shape': (" + shape + "), }";
    header.append(63 - (10 + header.size()) % 64, ' ');
    header += '\n';
    std::string file("\x93NUMPY\x01\x00", 8);
    file += static_cast<char>(header.size() & 0xFF);
    file += static_cast<char>(header.size() >> 8);
    file += header;
    file.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
    return std::vector<uint8_t>(file.begin(), file.end());
}

}  // namespace

TEST(npy, reads_hwc_arrays_of_every_dtype_into_planes) {
    // 2 x 3 pixels x 6 channels: value = pixel * 6 + channel.
    std::vector<uint8_t> codes(36);
    for (std::size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>(i * 7);
    const PlanarInput u8 = decode_npy(npy<uint8_t>("|u1", "2, 3, 6", codes), "a");
    ASSERT_EQ((Shape4{u8.planes.n, u8.planes.c, u8.planes.h, u8.planes.w}), (Shape4{1, 6, 2, 3}));
    EXPECT_EQ(u8.bit_depth, 8);
    for (int c = 0; c < 6; ++c)
        for (int y = 0; y < 2; ++y)
            for (int x = 0; x < 3; ++x)
                ASSERT_FLOAT_EQ(u8.planes.at(0, c, y, x), static_cast<float>(codes[(y * 3 + x) * 6 + c]) / 255.0f);

    const PlanarInput u16 = decode_npy(npy<uint16_t>("<u2", "1, 2, 3", {0, 1, 2, 65535, 32768, 3}), "b");
    EXPECT_EQ(u16.bit_depth, 16);
    EXPECT_FLOAT_EQ(u16.planes.at(0, 0, 0, 1), 1.0f);  // pixel 1, channel 0 = 65535
    EXPECT_FLOAT_EQ(u16.planes.at(0, 2, 0, 0), 2.0f / 65535.0f);

    const PlanarInput f32 = decode_npy(npy<float>("<f4", "2, 2", {0.0f, 0.25f, 0.5f, 1.0f}), "c");  // H x W
    EXPECT_EQ(f32.bit_depth, 32);
    EXPECT_EQ(f32.planes.c, 1);
    EXPECT_FLOAT_EQ(f32.planes.at(0, 0, 1, 0), 0.5f);
    const PlanarInput f64 = decode_npy(npy<double>("<f8", "1, 1, 3", {0.125, 0.5, 0.75}), "d");
    EXPECT_FLOAT_EQ(f64.planes.at(0, 2, 0, 0), 0.75f);
}

TEST(npy, refuses_what_it_cannot_read_naming_the_cause) {
    const std::vector<float> four = {0.0f, 0.25f, 0.5f, 1.0f};
    EXPECT_THROW_WITH(decode_npy({'h', 'e', 'l', 'l', 'o'}, "Array x.npy"), "Array x.npy is not a .npy file");
    EXPECT_THROW_WITH(decode_npy(npy<float>(">f4", "2, 2", four), "x"), "'>f4' values; use uint8, uint16");
    EXPECT_THROW_WITH(decode_npy(npy<int32_t>("<i4", "2, 2", {1, 2, 3, 4}), "x"), "'<i4' values");
    EXPECT_THROW_WITH(decode_npy(npy<float>("<f4", "2, 2", four, "True"), "x"), "Fortran order");
    EXPECT_THROW_WITH(decode_npy(npy<float>("<f4", "4", four), "x"), "an image array is H x W x C");
    EXPECT_THROW_WITH(decode_npy(npy<float>("<f4", "1, 1, 2, 2", four), "x"), "an image array is H x W x C");
    EXPECT_THROW_WITH(decode_npy(npy<float>("<f4", "2, 3", four), "x"), "truncated: 16 of 24 data bytes");
    EXPECT_THROW_WITH(decode_npy(npy<float>("<f4", "2, 2", {0.0f, 1.5f, 0.5f, -0.5f}), "x"),
                      "values in [-0.5, 1.5], outside [0, 1]");
    EXPECT_THROW_WITH(decode_npy(npy<float>("<f4", "2, 2", {0.0f, std::nanf(""), 0.5f, 0.5f}), "x"), "NaN or infinite");
    std::vector<uint8_t> cut = npy<float>("<f4", "2, 2", four);
    cut.resize(20);
    EXPECT_THROW_WITH(decode_npy(cut, "x"), "truncated inside its .npy header");
    EXPECT_THROW_WITH(read_npy("/nonexistent/pair.npy"), "Cannot read /nonexistent/pair.npy");
}
