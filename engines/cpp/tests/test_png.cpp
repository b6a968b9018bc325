// PNG through libpng: fixtures written by pypng and libpng (every colour type, bit depth, row
// filter, Adam7) decode to the project's RGB semantics (grey replicated, low bit depths scaled,
// palettes expanded, alpha dropped, 16-bit kept); exact 8/16-bit round trips; corrupt files.
#include <cstdint>
#include <fstream>
#include <random>
#include <sstream>

#include "test_support.hpp"
#include "mirnet/image.hpp"

using namespace mirnet;

namespace {

// Must match value() in tests/data/make_png_fixtures.py.
uint32_t fixture_value(uint32_t x, uint32_t y, uint32_t c, int bits) {
    uint32_t h = (x + 1) * 2654435761u + (y + 1) * (c + 1) * 40503u + c * 97u;
    h ^= h >> 13;
    h *= 2246822519u;
    h ^= h >> 16;
    return h & ((1u << bits) - 1u);
}

void palette_entry(uint32_t i, uint32_t rgb[3]) {
    rgb[0] = (i * 37) % 256;
    rgb[1] = (i * 91 + 5) % 256;
    rgb[2] = (255 + 256 * 16 - i * 13) % 256;  // (255 - 13 i) mod 256, kept non-negative
}

Image random_image(int w, int h, int depth, unsigned seed) {
    Image img = make_image(w, h, depth);
    std::mt19937 rng(seed);
    for (auto& c : img.codes) c = static_cast<uint16_t>(rng() % (max_code(depth) + 1));
    return img;
}

}  // namespace

TEST(png, fixtures_from_pypng_and_libpng_decode_exactly) {
    std::ifstream list(mirnet::testing::data_dir() + "/fixtures.txt");
    EXPECT_TRUE(list.good());
    std::string line;
    int files = 0;
    while (std::getline(list, line)) {
        if (line.empty()) continue;
        std::istringstream in(line);
        std::string name;
        int ct = 0, bits = 0, w = 0, h = 0, interlaced = 0;
        in >> name >> ct >> bits >> w >> h >> interlaced;
        const Image img = read_image(mirnet::testing::data_dir() + "/" + name);
        EXPECT_EQ(img.width, w);
        EXPECT_EQ(img.height, h);
        EXPECT_EQ(img.bit_depth, bits == 16 ? 16 : 8);
        const uint32_t low_scale = bits < 8 ? 255u / ((1u << bits) - 1u) : 1u;
        for (int y = 0; y < h; ++y) {
            for (int x = 0; x < w; ++x) {
                uint32_t want[3];
                const uint32_t ux = static_cast<uint32_t>(x), uy = static_cast<uint32_t>(y);
                if (ct == 3) {
                    palette_entry(fixture_value(ux, uy, 0, bits), want);
                } else if (ct == 0 || ct == 4) {
                    want[0] = want[1] = want[2] = fixture_value(ux, uy, 0, bits) * low_scale;
                } else {
                    for (uint32_t c = 0; c < 3; ++c) want[c] = fixture_value(ux, uy, c, bits);
                }
                for (int c = 0; c < 3; ++c) {
                    const uint32_t got = img.codes[(static_cast<std::size_t>(y) * w + x) * 3 + c];
                    ASSERT_EQ(got, want[c]) << name << ": pixel (" << x << "," << y << ") channel " << c;
                }
            }
        }
        ++files;
    }
    EXPECT_TRUE(files >= 40);
}

TEST(png, round_trip_8_and_16_bit_is_exact) {
    for (int depth : {8, 16}) {
        for (auto [w, h] : {std::pair{1, 1}, std::pair{2, 3}, std::pair{7, 5}, std::pair{33, 17}}) {
            Image img = random_image(w, h, depth, static_cast<unsigned>(depth * 100 + w));
            // add smooth regions so that every filter type gets chosen somewhere
            for (int y = 0; y < h; ++y)
                for (int x = 0; x < w / 2; ++x)
                    for (int c = 0; c < 3; ++c)
                        img.codes[(static_cast<std::size_t>(y) * w + x) * 3 + c] =
                            static_cast<uint16_t>((x * 3 + y * 5 + c) % (max_code(depth) + 1));
            const std::string path = mirnet::testing::temp_dir() + "/rt" + std::to_string(depth) + "_" + std::to_string(w) + ".png";
            write_image(path, img);
            const Image back = read_image(path);
            EXPECT_EQ(back.width, w);
            EXPECT_EQ(back.height, h);
            EXPECT_EQ(back.bit_depth, depth);
            EXPECT_TRUE(back.codes == img.codes);
        }
    }
}

TEST(png, corrupt_and_truncated_files_are_rejected) {
    const std::vector<uint8_t> good = encode_png(random_image(16, 8, 8, 9));
    std::vector<uint8_t> flipped = good;
    flipped[good.size() / 2] ^= 0x40;  // inside IDAT
    EXPECT_THROW_WITH(decode_png(flipped, "flip.png"), "flip.png: corrupt or truncated PNG");
    std::vector<uint8_t> bad_crc = good;
    bad_crc[29] ^= 0x01;  // the IHDR chunk's CRC (8-byte signature, length, type, 13 data bytes)
    EXPECT_THROW_WITH(decode_png(bad_crc, "crc.png"), "IHDR: CRC error");
    const std::vector<uint8_t> truncated(good.begin(), good.begin() + static_cast<long>(good.size() - 20));
    EXPECT_THROW_WITH(decode_png(truncated, "cut.png"), "truncated");
    std::vector<uint8_t> bad_sig = good;
    bad_sig[1] = 'Q';
    EXPECT_THROW_WITH(decode_png(bad_sig, "sig.png"), "bad signature");
    EXPECT_THROW_WITH(encode_png(make_image(2, 2, 32)), "convert_bit_depth");
}
