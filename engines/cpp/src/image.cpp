#include "mirnet/image.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "image_internal.hpp"
#include "mirnet/error.hpp"

namespace mirnet {

namespace detail {

void check_dimensions(long long width, long long height, const std::string& what) {
    if (width < 1 || height < 1) {
        throw Error(what + ": image has an empty dimension (" + std::to_string(width) + "x" +
                    std::to_string(height) + ").");
    }
    if (static_cast<double>(width) * static_cast<double>(height) > static_cast<double>(kMaxPixels)) {
        throw Error(what + ": image of " + std::to_string(width) + "x" + std::to_string(height) +
                    " pixels exceeds the limit of 2^28 pixels; split it into smaller images.");
    }
}

void check_unit_range(const float* values, std::size_t count, const std::string& what, const std::string& remedy) {
    float lo = 0.0f, hi = 1.0f;
    for (std::size_t i = 0; i < count; ++i) {
        const float v = values[i];
        if (!std::isfinite(v)) {
            throw Error(what + " contains NaN or infinite values. The models need finite pixel values in [0, 1]; "
                        "fix or re-export the file.");
        }
        lo = std::min(lo, v);
        hi = std::max(hi, v);
    }
    if (lo < 0.0f || hi > 1.0f) {
        std::ostringstream msg;
        msg << what << " has values in [" << lo << ", " << hi
            << "], outside [0, 1]. The models expect display-referred values in [0, 1]; " << remedy << ".";
        throw Error(msg.str());
    }
}

}  // namespace detail

namespace {

float round_half_even(float v) {
    float f = std::floor(v);
    const float d = v - f;  // exact for |v| < 2^24
    if (d > 0.5f || (d == 0.5f && std::fmod(f, 2.0f) != 0.0f)) {
        f += 1.0f;
    }
    return f;
}

template <typename T>
T quantize(float value, float max_value) {
    if (!(value > 0.0f)) {  // negatives, zero and NaN
        return 0;
    }
    if (value >= 1.0f) {
        return static_cast<T>(max_value);
    }
    return static_cast<T>(round_half_even(value * max_value));
}

std::string lower_suffix(const std::string& path) {
    const std::string ext = std::filesystem::path(path).extension().string();
    std::string out(ext.size(), '\0');
    std::transform(ext.begin(), ext.end(), out.begin(), [](unsigned char ch) {
        return static_cast<char>(std::tolower(ch));
    });
    return out;
}

// --- a cursor over a PNM/PFM header ---------------------------------------------------------
struct HeaderReader {
    const std::vector<uint8_t>& bytes;
    std::string what;
    std::size_t pos = 0;

    [[noreturn]] void fail(const std::string& message) const {
        throw Error(what + ": " + message);
    }
    static bool is_space(uint8_t ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f'; }
    void skip_space_and_comments(bool allow_comments) {
        while (pos < bytes.size()) {
            if (is_space(bytes[pos])) {
                ++pos;
            } else if (allow_comments && bytes[pos] == '#') {
                while (pos < bytes.size() && bytes[pos] != '\n' && bytes[pos] != '\r') {
                    ++pos;
                }
            } else {
                break;
            }
        }
    }
    std::string token(bool allow_comments, const char* name) {
        skip_space_and_comments(allow_comments);
        const std::size_t start = pos;
        while (pos < bytes.size() && !is_space(bytes[pos]) && !(allow_comments && bytes[pos] == '#')) {
            ++pos;
        }
        if (start == pos) {
            fail(std::string("truncated header: missing the ") + name + ".");
        }
        return std::string(reinterpret_cast<const char*>(bytes.data()) + start, pos - start);
    }
    long long integer(bool allow_comments, const char* name) {
        const std::string text = token(allow_comments, name);
        long long value = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (ec != std::errc() || end != text.data() + text.size() || value < 0) {
            fail(std::string("header field ") + name + " is not a non-negative integer: '" + text + "'.");
        }
        return value;
    }
    // The single whitespace byte that separates the header from the raster.
    void end_of_header() {
        if (pos >= bytes.size() || !is_space(bytes[pos])) {
            fail("header is not followed by a whitespace byte (corrupt or truncated file).");
        }
        ++pos;
    }
};

}  // namespace

// --- basic helpers ------------------------------------------------------------------------------

uint32_t max_code(int bit_depth) {
    if (bit_depth == 8) return 255u;
    if (bit_depth == 16) return 65535u;
    throw Error("Integer images have 8 or 16 bits per sample, not " + std::to_string(bit_depth) + ".");
}

Image make_image(int width, int height, int bit_depth) {
    if (bit_depth != 8 && bit_depth != 16 && bit_depth != 32) {
        throw Error("Image bit depth must be 8, 16 or 32 (float), not " + std::to_string(bit_depth) + ".");
    }
    detail::check_dimensions(width, height, "make_image");
    Image image;
    image.width = width;
    image.height = height;
    image.bit_depth = bit_depth;
    if (bit_depth == 32) {
        image.values.assign(image.sample_count(), 0.0f);
    } else {
        image.codes.assign(image.sample_count(), 0);
    }
    return image;
}

float u8_to_float(uint8_t code) { return static_cast<float>(code) / 255.0f; }
float u16_to_float(uint16_t code) { return static_cast<float>(code) / 65535.0f; }
uint8_t float_to_u8(float value) { return quantize<uint8_t>(value, 255.0f); }
uint16_t float_to_u16(float value) { return quantize<uint16_t>(value, 65535.0f); }

void hwc_u8_to_chw(const uint8_t* hwc, int height, int width, float* chw) {
    const std::size_t plane = static_cast<std::size_t>(height) * width;
    for (std::size_t p = 0; p < plane; ++p) {
        for (std::size_t c = 0; c < 3; ++c) {
            chw[c * plane + p] = u8_to_float(hwc[p * 3 + c]);
        }
    }
}

void hwc_u16_to_chw(const uint16_t* hwc, int height, int width, float* chw) {
    const std::size_t plane = static_cast<std::size_t>(height) * width;
    for (std::size_t p = 0; p < plane; ++p) {
        for (std::size_t c = 0; c < 3; ++c) {
            chw[c * plane + p] = u16_to_float(hwc[p * 3 + c]);
        }
    }
}

void chw_to_hwc_u8(const float* chw, int height, int width, uint8_t* hwc) {
    const std::size_t plane = static_cast<std::size_t>(height) * width;
    for (std::size_t p = 0; p < plane; ++p) {
        for (std::size_t c = 0; c < 3; ++c) {
            hwc[p * 3 + c] = float_to_u8(chw[c * plane + p]);
        }
    }
}

void chw_to_hwc_u16(const float* chw, int height, int width, uint16_t* hwc) {
    const std::size_t plane = static_cast<std::size_t>(height) * width;
    for (std::size_t p = 0; p < plane; ++p) {
        for (std::size_t c = 0; c < 3; ++c) {
            hwc[p * 3 + c] = float_to_u16(chw[c * plane + p]);
        }
    }
}

std::size_t count_nonfinite(const float* data, std::size_t count) {
    std::size_t bad = 0;
    for (std::size_t i = 0; i < count; ++i) {
        bad += std::isfinite(data[i]) ? 0 : 1;
    }
    return bad;
}

void image_to_chw(const Image& image, float* chw) {
    const std::size_t plane = static_cast<std::size_t>(image.height) * image.width;
    if (image.is_float()) {
        if (image.values.size() != image.sample_count()) {
            throw Error("image_to_chw: float image holds " + std::to_string(image.values.size()) +
                        " values, expected " + std::to_string(image.sample_count()) + ".");
        }
        detail::check_unit_range(image.values.data(), image.values.size(), "The float image",
                                 "tone-map or rescale it, or save it as 8- or 16-bit PNG/PPM");
        for (std::size_t p = 0; p < plane; ++p) {
            for (std::size_t c = 0; c < 3; ++c) {
                chw[c * plane + p] = image.values[p * 3 + c];
            }
        }
        return;
    }
    if (image.codes.size() != image.sample_count()) {
        throw Error("image_to_chw: image holds " + std::to_string(image.codes.size()) + " codes, expected " +
                    std::to_string(image.sample_count()) + ".");
    }
    const float scale = static_cast<float>(max_code(image.bit_depth));
    for (std::size_t p = 0; p < plane; ++p) {
        for (std::size_t c = 0; c < 3; ++c) {
            chw[c * plane + p] = static_cast<float>(image.codes[p * 3 + c]) / scale;
        }
    }
}

TensorNCHW image_to_tensor(const Image& image) {
    TensorNCHW t(1, 3, image.height, image.width);
    image_to_chw(image, t.data.data());
    return t;
}

Image chw_to_image(const float* chw, int height, int width, int bit_depth) {
    Image image = make_image(width, height, bit_depth);
    const std::size_t plane = static_cast<std::size_t>(height) * width;
    for (std::size_t p = 0; p < plane; ++p) {
        for (std::size_t c = 0; c < 3; ++c) {
            const float v = chw[c * plane + p];
            if (bit_depth == 8) {
                image.codes[p * 3 + c] = float_to_u8(v);
            } else if (bit_depth == 16) {
                image.codes[p * 3 + c] = float_to_u16(v);
            } else {
                image.values[p * 3 + c] = std::isnan(v) ? 0.0f : std::clamp(v, 0.0f, 1.0f);
            }
        }
    }
    return image;
}

Image tensor_to_image(const TensorNCHW& tensor, int index, int bit_depth) {
    if (tensor.c != 3) {
        throw Error("tensor_to_image needs 3 channels (RGB), the tensor has " + std::to_string(tensor.c) + ".");
    }
    if (index < 0 || index >= tensor.n) {
        throw Error("tensor_to_image: batch index " + std::to_string(index) + " is outside a batch of " +
                    std::to_string(tensor.n) + ".");
    }
    return chw_to_image(tensor.data.data() + static_cast<std::size_t>(index) * 3 * tensor.plane(), tensor.h,
                        tensor.w, bit_depth);
}

Image convert_bit_depth(const Image& image, int bit_depth) {
    if (image.bit_depth == bit_depth) {
        return image;
    }
    Image out = make_image(image.width, image.height, bit_depth);
    const std::size_t n = image.sample_count();
    if (image.is_float()) {
        for (std::size_t i = 0; i < n; ++i) {
            out.codes[i] = bit_depth == 8 ? float_to_u8(image.values[i]) : float_to_u16(image.values[i]);
        }
    } else if (bit_depth == 32) {
        const float scale = static_cast<float>(max_code(image.bit_depth));
        for (std::size_t i = 0; i < n; ++i) {
            out.values[i] = static_cast<float>(image.codes[i]) / scale;
        }
    } else if (bit_depth == 16) {  // 8 -> 16: exact, 255 * 257 = 65535
        for (std::size_t i = 0; i < n; ++i) {
            out.codes[i] = static_cast<uint16_t>(image.codes[i] * 257u);
        }
    } else {  // 16 -> 8: nearest code (v / 257 rounded; never exactly half-way)
        for (std::size_t i = 0; i < n; ++i) {
            out.codes[i] = static_cast<uint16_t>((image.codes[i] * 2u + 257u) / 514u);
        }
    }
    return out;
}

// --- PNM (P5/P6) ----------------------------------------------------------------------------

Image decode_pnm(const std::vector<uint8_t>& bytes, const std::string& what) {
    HeaderReader r{bytes, what};
    if (bytes.size() < 2 || bytes[0] != 'P' || (bytes[1] != '5' && bytes[1] != '6')) {
        r.fail("not a binary PPM/PGM file (expected magic P6 or P5). ASCII P2/P3 and PAM are not supported.");
    }
    const bool rgb = bytes[1] == '6';
    r.pos = 2;
    const long long width = r.integer(true, "width");
    const long long height = r.integer(true, "height");
    const long long maxval = r.integer(true, "maxval");
    r.end_of_header();
    if (maxval < 1 || maxval > 65535) {
        r.fail("maxval must be 1..65535, got " + std::to_string(maxval) + ".");
    }
    detail::check_dimensions(width, height, what);
    const int in_channels = rgb ? 3 : 1;
    const std::size_t bytes_per_sample = maxval < 256 ? 1 : 2;
    const std::size_t samples = static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * in_channels;
    const std::size_t needed = samples * bytes_per_sample;
    if (bytes.size() - r.pos < needed) {
        r.fail("truncated: " + std::to_string(needed) + " bytes of pixel data expected, " +
               std::to_string(bytes.size() - r.pos) + " found.");
    }
    const int depth = maxval < 256 ? 8 : 16;
    const uint32_t target = max_code(depth);
    Image image = make_image(static_cast<int>(width), static_cast<int>(height), depth);
    const uint8_t* p = bytes.data() + r.pos;
    for (std::size_t i = 0; i < samples; ++i) {
        uint32_t v = bytes_per_sample == 1 ? p[i] : (static_cast<uint32_t>(p[2 * i]) << 8) | p[2 * i + 1];
        if (v > static_cast<uint32_t>(maxval)) {
            r.fail("sample value " + std::to_string(v) + " exceeds maxval " + std::to_string(maxval) + ".");
        }
        if (static_cast<uint32_t>(maxval) != target) {  // rescale to the full 8/16-bit range, rounded
            v = static_cast<uint32_t>((static_cast<uint64_t>(v) * target * 2 + static_cast<uint64_t>(maxval)) /
                                      (2 * static_cast<uint64_t>(maxval)));
        }
        if (rgb) {
            image.codes[i] = static_cast<uint16_t>(v);
        } else {
            image.codes[3 * i] = image.codes[3 * i + 1] = image.codes[3 * i + 2] = static_cast<uint16_t>(v);
        }
    }
    return image;
}

std::vector<uint8_t> encode_ppm(const Image& image) {
    if (image.bit_depth != 8 && image.bit_depth != 16) {
        throw Error("PPM stores 8- or 16-bit codes; this image has bit depth " + std::to_string(image.bit_depth) +
                    ". Convert it with convert_bit_depth(image, 8 or 16) or write .pfm.");
    }
    detail::check_dimensions(image.width, image.height, "encode_ppm");
    if (image.codes.size() != image.sample_count()) {
        throw Error("encode_ppm: image holds " + std::to_string(image.codes.size()) + " codes, expected " +
                    std::to_string(image.sample_count()) + ".");
    }
    const std::string header = "P6\n" + std::to_string(image.width) + " " + std::to_string(image.height) + "\n" +
                               std::to_string(max_code(image.bit_depth)) + "\n";
    std::vector<uint8_t> out(header.begin(), header.end());
    const std::size_t n = image.sample_count();
    out.reserve(out.size() + n * (image.bit_depth / 8));
    for (std::size_t i = 0; i < n; ++i) {
        const uint16_t v = image.codes[i];
        if (image.bit_depth == 8) {
            if (v > 255) {
                throw Error("encode_ppm: code " + std::to_string(v) + " does not fit 8 bits.");
            }
            out.push_back(static_cast<uint8_t>(v));
        } else {
            out.push_back(static_cast<uint8_t>(v >> 8));
            out.push_back(static_cast<uint8_t>(v & 0xFF));
        }
    }
    return out;
}

// --- PFM ------------------------------------------------------------------------------------

namespace {

bool host_is_little_endian() {
    const uint32_t probe = 1;
    uint8_t first = 0;
    std::memcpy(&first, &probe, 1);
    return first == 1;
}

}  // namespace

Image decode_pfm(const std::vector<uint8_t>& bytes, const std::string& what) {
    HeaderReader r{bytes, what};
    if (bytes.size() < 2 || bytes[0] != 'P' || (bytes[1] != 'F' && bytes[1] != 'f')) {
        r.fail("not a PFM file (expected magic PF or Pf).");
    }
    const bool rgb = bytes[1] == 'F';
    r.pos = 2;
    const long long width = r.integer(false, "width");
    const long long height = r.integer(false, "height");
    const std::string scale_text = r.token(false, "scale");
    r.end_of_header();
    double scale = 0.0;
    {
        const auto [end, ec] = std::from_chars(scale_text.data(), scale_text.data() + scale_text.size(), scale);
        if (ec != std::errc() || end != scale_text.data() + scale_text.size() || scale == 0.0 ||
            !std::isfinite(scale)) {
            r.fail("the scale/endianness field must be a non-zero number, got '" + scale_text + "'.");
        }
    }
    detail::check_dimensions(width, height, what);
    const bool file_little = scale < 0.0;
    const int in_channels = rgb ? 3 : 1;
    const std::size_t w = static_cast<std::size_t>(width), h = static_cast<std::size_t>(height);
    const std::size_t needed = w * h * in_channels * 4;
    if (bytes.size() - r.pos < needed) {
        r.fail("truncated: " + std::to_string(needed) + " bytes of float data expected, " +
               std::to_string(bytes.size() - r.pos) + " found.");
    }
    Image image = make_image(static_cast<int>(width), static_cast<int>(height), 32);
    const uint8_t* p = bytes.data() + r.pos;
    const bool swap = file_little != host_is_little_endian();
    for (std::size_t row = 0; row < h; ++row) {
        const std::size_t y = h - 1 - row;  // PFM rows run bottom to top
        for (std::size_t x = 0; x < w; ++x) {
            for (int c = 0; c < in_channels; ++c) {
                uint8_t b[4];
                std::memcpy(b, p, 4);
                p += 4;
                if (swap) {
                    std::swap(b[0], b[3]);
                    std::swap(b[1], b[2]);
                }
                float v;
                std::memcpy(&v, b, 4);
                const std::size_t base = (y * w + x) * 3;
                if (rgb) {
                    image.values[base + static_cast<std::size_t>(c)] = v;
                } else {
                    image.values[base] = image.values[base + 1] = image.values[base + 2] = v;
                }
            }
        }
    }
    return image;
}

std::vector<uint8_t> encode_pfm(const Image& image) {
    detail::check_dimensions(image.width, image.height, "encode_pfm");
    const Image f = image.is_float() ? image : convert_bit_depth(image, 32);
    if (f.values.size() != f.sample_count()) {
        throw Error("encode_pfm: image holds " + std::to_string(f.values.size()) + " values, expected " +
                    std::to_string(f.sample_count()) + ".");
    }
    const bool little = host_is_little_endian();
    const std::string header = "PF\n" + std::to_string(f.width) + " " + std::to_string(f.height) + "\n" +
                               (little ? "-1.0" : "1.0") + "\n";
    std::vector<uint8_t> out(header.begin(), header.end());
    const std::size_t row_bytes = static_cast<std::size_t>(f.width) * 3 * 4;
    out.resize(header.size() + row_bytes * static_cast<std::size_t>(f.height));
    uint8_t* dst = out.data() + header.size();
    for (int row = 0; row < f.height; ++row) {
        const int y = f.height - 1 - row;
        std::memcpy(dst + static_cast<std::size_t>(row) * row_bytes,
                    f.values.data() + static_cast<std::size_t>(y) * f.width * 3, row_bytes);
    }
    return out;
}

// --- dispatch and files -----------------------------------------------------------------------

Image decode_image(const std::vector<uint8_t>& bytes, const std::string& what) {
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (bytes.size() >= 8 && std::memcmp(bytes.data(), png_magic, 8) == 0) {
        return decode_png(bytes, what);
    }
    if (bytes.size() >= 2 && bytes[0] == 'P') {
        if (bytes[1] == '5' || bytes[1] == '6') return decode_pnm(bytes, what);
        if (bytes[1] == 'F' || bytes[1] == 'f') return decode_pfm(bytes, what);
    }
    throw Error(what + ": not a recognised image (" + std::to_string(bytes.size()) +
                " bytes). Supported: PNG, binary PPM/PGM (P6/P5), PFM, and H x W x C .npy arrays (NumPy magic). "
                "Convert the file, e.g. with ImageMagick or OpenCV.");
}

ImageFormat format_for_path(const std::string& path) {
    const std::string ext = lower_suffix(path);
    if (ext == ".png") return ImageFormat::PNG;
    if (ext == ".ppm" || ext == ".pnm") return ImageFormat::PNM;
    if (ext == ".pfm") return ImageFormat::PFM;
    throw Error("Cannot write " + path + ": unknown image suffix '" + ext +
                "'. Use .png (8/16-bit), .ppm (8/16-bit) or .pfm (float).");
}

Image read_image(const std::string& path) { return decode_image(read_file(path), "Image " + path); }

void write_image(const std::string& path, const Image& image) {
    const ImageFormat format = format_for_path(path);
    std::vector<uint8_t> bytes;
    try {
        switch (format) {
            case ImageFormat::PNG: bytes = encode_png(image); break;
            case ImageFormat::PNM: bytes = encode_ppm(image); break;
            case ImageFormat::PFM: bytes = encode_pfm(image); break;
        }
    } catch (const Error& e) {
        throw Error("Cannot write " + path + ": " + e.what());
    }
    write_file_atomic(path, bytes);
}

std::vector<uint8_t> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw Error("Cannot read " + path + ": " + std::strerror(errno) +
                    ". Check that the path exists and is a readable file.");
    }
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    if (size < 0) {
        throw Error("Cannot read " + path + ": it is not a regular file.");
    }
    in.seekg(0, std::ios::beg);
    std::vector<uint8_t> bytes(static_cast<std::size_t>(size));
    if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size)) {
        throw Error("Cannot read " + path + ": read failed after " + std::to_string(in.gcount()) + " of " +
                    std::to_string(size) + " bytes.");
    }
    return bytes;
}

void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes) {
    static std::atomic<unsigned long long> counter{0};
    const auto ticks = std::chrono::steady_clock::now().time_since_epoch().count();
    const std::string tmp = path + ".tmp-" + std::to_string(static_cast<unsigned long long>(ticks)) + "-" +
                            std::to_string(counter.fetch_add(1));
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) {
            throw Error("Cannot write " + path + ": " + std::strerror(errno) +
                        ". Check that the folder exists and is writable.");
        }
        out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        out.flush();
        if (!out) {
            out.close();
            std::remove(tmp.c_str());
            throw Error("Cannot write " + path + ": writing failed (disk full?).");
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        std::remove(tmp.c_str());
        throw Error("Cannot write " + path + ": renaming the temporary file failed: " + ec.message() + ".");
    }
}

}  // namespace mirnet
