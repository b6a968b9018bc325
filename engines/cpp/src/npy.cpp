// The .npy reader (format: numpy.lib.format, versions 1.0, 2.0 and 3.0). The header is a Python dict
// literal written by numpy, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (64, 64, 6), }:
// the three keys are found by name, so their order and spacing do not matter.
#include "mirnet/npy.hpp"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <utility>

#include "image_internal.hpp"
#include "mirnet/error.hpp"
#include "mirnet/image.hpp"

namespace mirnet {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr std::size_t kMagicSize = 6;

// The header's text after `'key':`, leading spaces dropped; throws when the key is missing.
std::string after_key(const std::string& header, const std::string& key, const std::string& what) {
    const std::size_t at = header.find("'" + key + "'");
    const std::size_t colon = at == std::string::npos ? at : header.find(':', at);
    if (colon == std::string::npos) throw Error(what + ": the .npy header has no '" + key + "' field: " + header);
    const std::size_t first = header.find_first_not_of(' ', colon + 1);
    return first == std::string::npos ? "" : header.substr(first);
}

// The text between `open` (the first character) and the next `close`; throws when it is not there.
std::string enclosed(const std::string& text, char open, char close, const std::string& key, const std::string& what) {
    const std::size_t end = text.empty() || text[0] != open ? std::string::npos : text.find(close, 1);
    if (end == std::string::npos) throw Error(what + ": the .npy header's '" + key + "' is malformed: " + text);
    return text.substr(1, end - 1);
}

std::vector<long long> parse_shape(const std::string& text, const std::string& what) {
    std::vector<long long> shape;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t digits = text.find_first_of("0123456789", pos);
        if (digits == std::string::npos) break;
        const std::size_t used = std::min(text.find_first_not_of("0123456789", digits), text.size()) - digits;
        if (used > 9) throw Error(what + " has shape (" + text + "), too large for an image.");
        shape.push_back(std::stoll(text.substr(digits, used)));
        pos = digits + used;
    }
    if (shape.size() < 2 || shape.size() > 3) {
        throw Error(what + " has shape (" + text + "); an image array is H x W x C (or H x W).");
    }
    return shape;
}

// Bytes per value and bit depth of a little-endian dtype numpy writes ('|u1', '<u2', '<f4', '<f8').
std::pair<std::size_t, int> dtype_of(const std::string& descr, const std::string& what) {
    if (descr == "|u1" || descr == "<u1") return {1, 8};
    if (descr == "<u2") return {2, 16};
    if (descr == "<f4") return {4, 32};
    if (descr == "<f8") return {8, 32};
    throw Error(what + " holds '" + descr + "' values; use uint8, uint16, float32 or float64, little-endian "
                "(arr.astype(np.float32)).");
}

template <typename T>
T load_le(const uint8_t* p) {
    T value;
    std::memcpy(&value, p, sizeof(T));  // the hosts libmirnet targets (x86-64, aarch64) are little-endian
    return value;
}

}  // namespace

bool is_npy(const std::vector<uint8_t>& bytes) {
    return bytes.size() >= kMagicSize && std::memcmp(bytes.data(), kMagic, kMagicSize) == 0;
}

PlanarInput decode_npy(const std::vector<uint8_t>& bytes, const std::string& what) {
    if (!is_npy(bytes) || bytes.size() < 10) throw Error(what + " is not a .npy file (no NUMPY magic string).");
    const int major = bytes[6];
    const std::size_t length_bytes = major == 1 ? 2 : 4;
    if (major < 1 || major > 3 || bytes.size() < 8 + length_bytes) {
        throw Error(what + " is a .npy file of format " + std::to_string(major) + ", which mirnet does not read (1-3).");
    }
    std::size_t header_length = 0;
    for (std::size_t i = 0; i < length_bytes; ++i) header_length |= std::size_t{bytes[8 + i]} << (8 * i);
    const std::size_t data_start = 8 + length_bytes + header_length;
    if (data_start > bytes.size()) throw Error(what + " is truncated inside its .npy header.");
    const std::string header(bytes.begin() + static_cast<std::ptrdiff_t>(8 + length_bytes),
                             bytes.begin() + static_cast<std::ptrdiff_t>(data_start));

    const auto [value_size, bit_depth] = dtype_of(enclosed(after_key(header, "descr", what), '\'', '\'', "descr", what),
                                                  what);
    if (after_key(header, "fortran_order", what).rfind("False", 0) != 0) {
        throw Error(what + " is stored in Fortran order; save a C-ordered array (np.ascontiguousarray).");
    }
    const std::vector<long long> shape = parse_shape(enclosed(after_key(header, "shape", what), '(', ')', "shape", what),
                                                     what);
    const long long height = shape[0], width = shape[1], channels = shape.size() == 3 ? shape[2] : 1;
    detail::check_dimensions(width, height, what);
    if (channels < 1 || channels > 64) {
        throw Error(what + " has " + std::to_string(channels) + " channels in its last axis; an image array is "
                    "H x W x C with C the model's input channels.");
    }
    const std::size_t plane = static_cast<std::size_t>(height) * static_cast<std::size_t>(width);
    const std::size_t count = plane * static_cast<std::size_t>(channels);
    if (bytes.size() - data_start < count * value_size) {
        throw Error(what + " is truncated: " + std::to_string(bytes.size() - data_start) + " of " +
                    std::to_string(count * value_size) + " data bytes.");
    }

    PlanarInput input{TensorNCHW(1, static_cast<int>(channels), static_cast<int>(height), static_cast<int>(width)),
                      bit_depth};
    const uint8_t* data = bytes.data() + data_start;
    for (std::size_t i = 0; i < count; ++i) {  // HWC -> CHW
        const uint8_t* p = data + i * value_size;
        float v = 0.0f;
        switch (value_size) {
            case 1: v = u8_to_float(*p); break;
            case 2: v = u16_to_float(load_le<uint16_t>(p)); break;
            case 4: v = load_le<float>(p); break;
            default: v = static_cast<float>(load_le<double>(p)); break;
        }
        const std::size_t c = i % static_cast<std::size_t>(channels), pixel = i / static_cast<std::size_t>(channels);
        input.planes.data[c * plane + pixel] = v;
    }
    if (bit_depth == 32) {
        detail::check_unit_range(input.planes.data.data(), count, what,
                                 "rescale it, or save it as uint8/uint16 codes");
    }
    return input;
}

PlanarInput read_npy(const std::string& path) { return decode_npy(read_file(path), "Array " + path); }

}  // namespace mirnet
