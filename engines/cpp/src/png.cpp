// PNG decoder/encoder on top of zlib (inflate/deflate/crc32). Compiled in only when CMake
// found zlib (MIRNET_HAVE_PNG); otherwise the functions throw a message saying how to get it.
//
// Decoder: PNG 1.2 / ISO 15948 critical chunks (IHDR, PLTE, IDAT, IEND), every colour type
// (grey, RGB, palette, grey+alpha, RGBA) and bit depth (1, 2, 4, 8, 16), all five filters,
// Adam7 interlacing, CRC check on every chunk. Ancillary chunks (gAMA, iCCP, tRNS, text, ...)
// are skipped, as OpenCV's IMREAD_UNCHANGED path effectively does for the colour channels:
// no gamma/colour management is applied and alpha is dropped.
// Encoder: 8/16-bit RGB (colour type 2), non-interlaced, per-row adaptive filter (minimum sum
// of absolute differences, libpng's heuristic), zlib level 6.
#include <algorithm>
#include <array>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "image_internal.hpp"
#include "mirnet/error.hpp"
#include "mirnet/image.hpp"

#ifdef MIRNET_HAVE_PNG
#include <zlib.h>
#endif

namespace mirnet {

#ifndef MIRNET_HAVE_PNG

bool png_supported() { return false; }

Image decode_png(const std::vector<uint8_t>&, const std::string& what) {
    throw Error(what + ": is a PNG, but this build of mirnet_core has no PNG support (zlib was not found when "
                       "it was configured). Install zlib's development files (Debian/Ubuntu: apt-get install "
                       "zlib1g-dev) and re-run cmake, or convert the image to PPM/PFM.");
}

std::vector<uint8_t> encode_png(const Image&) {
    throw Error("this build of mirnet_core has no PNG support (zlib was not found when it was configured). "
                "Install zlib's development files (Debian/Ubuntu: apt-get install zlib1g-dev) and re-run cmake, "
                "or write .ppm/.pfm instead.");
}

#else

bool png_supported() { return true; }

namespace {

const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

uint32_t be32(const uint8_t* p) {
    return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
           (static_cast<uint32_t>(p[2]) << 8) | static_cast<uint32_t>(p[3]);
}

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
    out.push_back(static_cast<uint8_t>(v >> 24));
    out.push_back(static_cast<uint8_t>(v >> 16));
    out.push_back(static_cast<uint8_t>(v >> 8));
    out.push_back(static_cast<uint8_t>(v));
}

uint32_t crc_of(const uint8_t* data, std::size_t size) {
    uLong crc = crc32(0L, Z_NULL, 0);
    while (size > 0) {
        const uInt chunk = static_cast<uInt>(std::min<std::size_t>(size, 1u << 30));
        crc = crc32(crc, data, chunk);
        data += chunk;
        size -= chunk;
    }
    return static_cast<uint32_t>(crc);
}

struct Pass {
    int x0, y0, dx, dy;
};
const Pass kAdam7[7] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                        {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};

std::size_t pass_extent(std::size_t size, int start, int step) {
    return size > static_cast<std::size_t>(start) ? (size - start + step - 1) / step : 0;
}

uint8_t paeth(int a, int b, int c) {
    const int p = a + b - c;
    const int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
    if (pa <= pb && pa <= pc) return static_cast<uint8_t>(a);
    if (pb <= pc) return static_cast<uint8_t>(b);
    return static_cast<uint8_t>(c);
}

// Reverse the filter of one row in place; prev is the previous (already unfiltered) row of the
// same pass, or nullptr for its first row.
void unfilter_row(int filter, uint8_t* row, const uint8_t* prev, std::size_t rowbytes, std::size_t bpp,
                  const std::string& what) {
    switch (filter) {
        case 0:
            return;
        case 1:
            for (std::size_t i = bpp; i < rowbytes; ++i) row[i] = static_cast<uint8_t>(row[i] + row[i - bpp]);
            return;
        case 2:
            if (prev) {
                for (std::size_t i = 0; i < rowbytes; ++i) row[i] = static_cast<uint8_t>(row[i] + prev[i]);
            }
            return;
        case 3:
            for (std::size_t i = 0; i < rowbytes; ++i) {
                const int left = i >= bpp ? row[i - bpp] : 0;
                const int up = prev ? prev[i] : 0;
                row[i] = static_cast<uint8_t>(row[i] + ((left + up) >> 1));
            }
            return;
        case 4:
            for (std::size_t i = 0; i < rowbytes; ++i) {
                const int left = i >= bpp ? row[i - bpp] : 0;
                const int up = prev ? prev[i] : 0;
                const int up_left = (prev && i >= bpp) ? prev[i - bpp] : 0;
                row[i] = static_cast<uint8_t>(row[i] + paeth(left, up, up_left));
            }
            return;
        default:
            throw Error(what + ": invalid PNG row filter type " + std::to_string(filter) + " (corrupt file).");
    }
}

std::vector<uint8_t> inflate_all(const std::vector<uint8_t>& in, std::size_t expected, const std::string& what) {
    std::vector<uint8_t> out(expected);
    z_stream zs;
    std::memset(&zs, 0, sizeof(zs));
    if (inflateInit(&zs) != Z_OK) {
        throw Error(what + ": zlib inflateInit failed (out of memory?).");
    }
    std::size_t in_off = 0, out_off = 0;
    const std::size_t kStep = std::size_t{1} << 30;
    bool ended = false;
    while (true) {
        if (zs.avail_in == 0 && in_off < in.size()) {
            const std::size_t n = std::min(kStep, in.size() - in_off);
            zs.next_in = const_cast<Bytef*>(in.data() + in_off);
            zs.avail_in = static_cast<uInt>(n);
            in_off += n;
        }
        if (zs.avail_out == 0 && out_off < out.size()) {
            const std::size_t n = std::min(kStep, out.size() - out_off);
            zs.next_out = out.data() + out_off;
            zs.avail_out = static_cast<uInt>(n);
            out_off += n;
        }
        if (zs.avail_out == 0) {
            break;  // every expected byte produced; trailing compressed data is ignored (as libpng warns)
        }
        const int ret = inflate(&zs, Z_NO_FLUSH);
        if (ret == Z_STREAM_END) {
            ended = true;
            break;
        }
        if (ret == Z_BUF_ERROR && zs.avail_in == 0 && in_off >= in.size()) {
            break;  // input exhausted before the end of the stream
        }
        if (ret != Z_OK && ret != Z_BUF_ERROR) {
            const std::string msg = zs.msg ? zs.msg : "error " + std::to_string(ret);
            inflateEnd(&zs);
            throw Error(what + ": corrupt PNG image data (zlib: " + msg + ").");
        }
    }
    const std::size_t produced = out_off - zs.avail_out;
    inflateEnd(&zs);
    if (produced < expected) {
        throw Error(what + ": PNG image data is truncated: " + std::to_string(produced) + " of " +
                    std::to_string(expected) + " bytes decompressed" + (ended ? "" : " (stream incomplete)") + ".");
    }
    return out;
}

std::vector<uint8_t> deflate_all(const std::vector<uint8_t>& in) {
    z_stream zs;
    std::memset(&zs, 0, sizeof(zs));
    if (deflateInit(&zs, 6) != Z_OK) {
        throw Error("zlib deflateInit failed (out of memory?).");
    }
    std::vector<uint8_t> out;
    std::size_t in_off = 0;
    const std::size_t kStep = std::size_t{1} << 30;
    uint8_t buffer[1 << 16];
    int ret = Z_OK;
    do {
        if (zs.avail_in == 0 && in_off < in.size()) {
            const std::size_t n = std::min(kStep, in.size() - in_off);
            zs.next_in = const_cast<Bytef*>(in.data() + in_off);
            zs.avail_in = static_cast<uInt>(n);
            in_off += n;
        }
        const int flush = in_off >= in.size() ? Z_FINISH : Z_NO_FLUSH;
        zs.next_out = buffer;
        zs.avail_out = sizeof(buffer);
        ret = deflate(&zs, flush);
        if (ret == Z_STREAM_ERROR) {
            deflateEnd(&zs);
            throw Error("zlib deflate failed.");
        }
        out.insert(out.end(), buffer, buffer + (sizeof(buffer) - zs.avail_out));
    } while (ret != Z_STREAM_END);
    deflateEnd(&zs);
    return out;
}

void write_chunk(std::vector<uint8_t>& out, const char* type, const uint8_t* data, std::size_t size) {
    put_be32(out, static_cast<uint32_t>(size));
    const std::size_t start = out.size();
    out.insert(out.end(), type, type + 4);
    if (size > 0) {
        out.insert(out.end(), data, data + size);
    }
    put_be32(out, crc_of(out.data() + start, size + 4));
}

}  // namespace

Image decode_png(const std::vector<uint8_t>& bytes, const std::string& what) {
    if (bytes.size() < 8 || std::memcmp(bytes.data(), kSignature, 8) != 0) {
        throw Error(what + ": not a PNG file (bad signature).");
    }
    uint32_t width = 0, height = 0;
    int bit_depth = 0, color_type = -1, interlace = 0;
    bool seen_ihdr = false, seen_iend = false;
    std::vector<std::array<uint8_t, 3>> palette;
    std::vector<uint8_t> idat;
    std::size_t pos = 8;
    while (pos < bytes.size()) {
        if (bytes.size() - pos < 12) {
            throw Error(what + ": PNG is truncated (incomplete chunk header at byte " + std::to_string(pos) + ").");
        }
        const uint32_t length = be32(bytes.data() + pos);
        const uint8_t* type_ptr = bytes.data() + pos + 4;
        const std::string type(reinterpret_cast<const char*>(type_ptr), 4);
        if (length > 0x7FFFFFFFu || bytes.size() - pos - 12 < length) {
            throw Error(what + ": PNG is truncated (chunk " + type + " at byte " + std::to_string(pos) +
                        " declares " + std::to_string(length) + " bytes).");
        }
        const uint8_t* data = type_ptr + 4;
        if (crc_of(type_ptr, length + 4) != be32(data + length)) {
            throw Error(what + ": CRC mismatch in PNG chunk " + type + " (corrupt file).");
        }
        pos += 12 + static_cast<std::size_t>(length);
        if (!seen_ihdr && type != "IHDR") {
            throw Error(what + ": PNG does not start with an IHDR chunk (found " + type + ").");
        }
        if (type == "IHDR") {
            if (seen_ihdr || length != 13) {
                throw Error(what + ": invalid PNG IHDR chunk.");
            }
            seen_ihdr = true;
            width = be32(data);
            height = be32(data + 4);
            bit_depth = data[8];
            color_type = data[9];
            interlace = data[12];
            if (data[10] != 0 || data[11] != 0 || interlace > 1) {
                throw Error(what + ": unsupported PNG compression/filter/interlace method (" +
                            std::to_string(data[10]) + "/" + std::to_string(data[11]) + "/" +
                            std::to_string(interlace) + ").");
            }
            bool ok = false;
            switch (color_type) {
                case 0: ok = bit_depth == 1 || bit_depth == 2 || bit_depth == 4 || bit_depth == 8 || bit_depth == 16; break;
                case 3: ok = bit_depth == 1 || bit_depth == 2 || bit_depth == 4 || bit_depth == 8; break;
                case 2: case 4: case 6: ok = bit_depth == 8 || bit_depth == 16; break;
                default: ok = false;
            }
            if (!ok) {
                throw Error(what + ": invalid PNG colour type " + std::to_string(color_type) + " with bit depth " +
                            std::to_string(bit_depth) + ".");
            }
            detail::check_dimensions(width, height, what);
        } else if (type == "PLTE") {
            if (length % 3 != 0 || length == 0 || length > 768) {
                throw Error(what + ": invalid PNG palette (PLTE of " + std::to_string(length) + " bytes).");
            }
            palette.clear();
            for (uint32_t i = 0; i < length; i += 3) {
                palette.push_back({data[i], data[i + 1], data[i + 2]});
            }
        } else if (type == "IDAT") {
            idat.insert(idat.end(), data, data + length);
        } else if (type == "IEND") {
            seen_iend = true;
            break;
        } else if (!(type_ptr[0] & 0x20)) {
            throw Error(what + ": PNG has an unknown critical chunk '" + type + "' that this decoder cannot skip.");
        }
    }
    if (!seen_ihdr) {
        throw Error(what + ": PNG has no IHDR chunk.");
    }
    if (!seen_iend) {
        throw Error(what + ": PNG is truncated (no IEND chunk).");
    }
    if (idat.empty()) {
        throw Error(what + ": PNG has no image data (no IDAT chunk).");
    }
    if (color_type == 3 && palette.empty()) {
        throw Error(what + ": palette PNG without a PLTE chunk.");
    }

    const int channels = color_type == 0 || color_type == 3 ? 1 : color_type == 2 ? 3 : color_type == 4 ? 2 : 4;
    const std::size_t bits_per_pixel = static_cast<std::size_t>(channels) * bit_depth;
    const std::size_t bpp = std::max<std::size_t>(1, bits_per_pixel / 8);
    const std::size_t W = width, H = height;

    std::vector<Pass> passes;
    if (interlace) {
        passes.assign(kAdam7, kAdam7 + 7);
    } else {
        passes.push_back({0, 0, 1, 1});
    }
    std::size_t expected = 0;
    for (const Pass& p : passes) {
        const std::size_t pw = pass_extent(W, p.x0, p.dx), ph = pass_extent(H, p.y0, p.dy);
        if (pw && ph) expected += ph * (1 + (pw * bits_per_pixel + 7) / 8);
    }
    std::vector<uint8_t> raw = inflate_all(idat, expected, what);

    const int out_depth = bit_depth == 16 ? 16 : 8;
    Image image = make_image(static_cast<int>(W), static_cast<int>(H), out_depth);
    const uint32_t low_bit_scale = bit_depth < 8 ? 255u / ((1u << bit_depth) - 1u) : 1u;
    std::size_t offset = 0;
    for (const Pass& p : passes) {
        const std::size_t pw = pass_extent(W, p.x0, p.dx), ph = pass_extent(H, p.y0, p.dy);
        if (!pw || !ph) continue;
        const std::size_t rowbytes = (pw * bits_per_pixel + 7) / 8;
        const uint8_t* prev = nullptr;
        for (std::size_t py = 0; py < ph; ++py) {
            uint8_t* row = raw.data() + offset + 1;
            unfilter_row(raw[offset], row, prev, rowbytes, bpp, what);
            const std::size_t y = p.y0 + py * p.dy;
            for (std::size_t px = 0; px < pw; ++px) {
                uint32_t s[4] = {0, 0, 0, 0};
                for (int c = 0; c < channels; ++c) {
                    const std::size_t k = px * channels + c;
                    if (bit_depth == 16) {
                        s[c] = (static_cast<uint32_t>(row[2 * k]) << 8) | row[2 * k + 1];
                    } else if (bit_depth == 8) {
                        s[c] = row[k];
                    } else {
                        const std::size_t bit = k * bit_depth;
                        const int shift = 8 - bit_depth - static_cast<int>(bit % 8);
                        s[c] = (row[bit / 8] >> shift) & ((1u << bit_depth) - 1u);
                    }
                }
                uint32_t r, g, b;
                if (color_type == 3) {
                    if (s[0] >= palette.size()) {
                        throw Error(what + ": palette index " + std::to_string(s[0]) + " is outside the " +
                                    std::to_string(palette.size()) + "-entry PLTE (corrupt file).");
                    }
                    r = palette[s[0]][0];
                    g = palette[s[0]][1];
                    b = palette[s[0]][2];
                } else if (channels <= 2) {  // grey, grey+alpha
                    r = g = b = s[0] * low_bit_scale;
                } else {  // RGB, RGBA
                    r = s[0];
                    g = s[1];
                    b = s[2];
                }
                const std::size_t x = p.x0 + px * p.dx;
                uint16_t* dst = image.codes.data() + (y * W + x) * 3;
                dst[0] = static_cast<uint16_t>(r);
                dst[1] = static_cast<uint16_t>(g);
                dst[2] = static_cast<uint16_t>(b);
            }
            prev = row;
            offset += 1 + rowbytes;
        }
    }
    return image;
}

std::vector<uint8_t> encode_png(const Image& image) {
    if (image.bit_depth != 8 && image.bit_depth != 16) {
        throw Error("PNG stores 8- or 16-bit codes; this image has bit depth " + std::to_string(image.bit_depth) +
                    ". Convert it with convert_bit_depth(image, 8 or 16) or write .pfm.");
    }
    detail::check_dimensions(image.width, image.height, "encode_png");
    if (image.codes.size() != image.sample_count()) {
        throw Error("encode_png: image holds " + std::to_string(image.codes.size()) + " codes, expected " +
                    std::to_string(image.sample_count()) + ".");
    }
    const std::size_t W = image.width, H = image.height;
    const std::size_t bytes_per_sample = image.bit_depth / 8;
    const std::size_t bpp = 3 * bytes_per_sample;
    const std::size_t rowbytes = W * bpp;
    std::vector<uint8_t> raw;
    raw.reserve(H * (rowbytes + 1));
    std::vector<uint8_t> cur(rowbytes), prev(rowbytes, 0);
    std::array<std::vector<uint8_t>, 5> candidates;
    for (auto& c : candidates) c.resize(rowbytes);
    for (std::size_t y = 0; y < H; ++y) {
        const uint16_t* src = image.codes.data() + y * W * 3;
        for (std::size_t i = 0; i < W * 3; ++i) {
            if (bytes_per_sample == 1) {
                if (src[i] > 255) {
                    throw Error("encode_png: code " + std::to_string(src[i]) + " does not fit 8 bits.");
                }
                cur[i] = static_cast<uint8_t>(src[i]);
            } else {
                cur[2 * i] = static_cast<uint8_t>(src[i] >> 8);
                cur[2 * i + 1] = static_cast<uint8_t>(src[i] & 0xFF);
            }
        }
        std::size_t best = 0;
        unsigned long long best_cost = ULLONG_MAX;
        for (int f = 0; f < 5; ++f) {
            std::vector<uint8_t>& out = candidates[static_cast<std::size_t>(f)];
            unsigned long long cost = 0;
            for (std::size_t i = 0; i < rowbytes; ++i) {
                const int left = i >= bpp ? cur[i - bpp] : 0;
                const int up = y > 0 ? prev[i] : 0;
                const int up_left = (y > 0 && i >= bpp) ? prev[i - bpp] : 0;
                int predictor = 0;
                switch (f) {
                    case 1: predictor = left; break;
                    case 2: predictor = up; break;
                    case 3: predictor = (left + up) >> 1; break;
                    case 4: predictor = paeth(left, up, up_left); break;
                    default: predictor = 0;
                }
                out[i] = static_cast<uint8_t>(cur[i] - predictor);
                cost += static_cast<unsigned long long>(std::abs(static_cast<int>(static_cast<int8_t>(out[i]))));
            }
            if (cost < best_cost) {
                best_cost = cost;
                best = static_cast<std::size_t>(f);
            }
        }
        raw.push_back(static_cast<uint8_t>(best));
        raw.insert(raw.end(), candidates[best].begin(), candidates[best].end());
        std::swap(prev, cur);
    }
    const std::vector<uint8_t> compressed = deflate_all(raw);

    std::vector<uint8_t> out(kSignature, kSignature + 8);
    std::vector<uint8_t> ihdr;
    put_be32(ihdr, static_cast<uint32_t>(W));
    put_be32(ihdr, static_cast<uint32_t>(H));
    ihdr.push_back(static_cast<uint8_t>(image.bit_depth));
    ihdr.push_back(2);  // colour type: RGB
    ihdr.push_back(0);  // compression: deflate
    ihdr.push_back(0);  // filter method 0
    ihdr.push_back(0);  // no interlace
    write_chunk(out, "IHDR", ihdr.data(), ihdr.size());
    const std::size_t kIdatMax = std::size_t{1} << 23;
    for (std::size_t off = 0; off < compressed.size(); off += kIdatMax) {
        write_chunk(out, "IDAT", compressed.data() + off, std::min(kIdatMax, compressed.size() - off));
    }
    write_chunk(out, "IEND", nullptr, 0);
    return out;
}

#endif  // MIRNET_HAVE_PNG

}  // namespace mirnet
