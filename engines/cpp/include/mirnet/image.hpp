// mirnet: image files and pixel conversions.
//
// An Image is always RGB, interleaved HWC, as the Python side (mirnet_ref/images.py) sees it:
// grey files are replicated to three equal channels, alpha is dropped, palettes are expanded.
// Integer images keep their codes exactly (bit_depth 8 or 16); float images (PFM) keep their
// float values (bit_depth 32).
//
// Formats:
//   PPM/PGM  binary P6/P5, maxval 1..65535 (255 -> 8-bit codes, 65535 -> 16-bit codes, other
//            maxvals are rescaled with rounding to 8/16 bits); written as P6 maxval 255/65535.
//   PFM      "PF" (RGB) and "Pf" (grey), either byte order; written as PF little-endian.
//   PNG      through libpng: all colour types and bit depths, Adam7, CRCs checked; 1/2/4-bit grey
//            is scaled to 8 bits; 16-bit files keep 16-bit codes; written as 8/16-bit RGB.
// Reading detects the format from the file's first bytes; writing chooses it by suffix
// (.ppm/.pnm -> PPM, .pfm -> PFM, .png -> PNG) and replaces the file atomically.
//
// Float <-> code conversion follows the Python side: code / max_code in float32 on the way in;
// on the way out clamp to [0, 1], multiply by max_code in float32 and round to nearest with
// ties to even (numpy's np.round); NaN becomes 0 (callers should reject NaN first, see
// count_nonfinite).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mirnet/tensor.hpp"

namespace mirnet {

struct Image {
    static constexpr int channels = 3;
    int width = 0;
    int height = 0;
    int bit_depth = 8;             // 8 or 16: integer codes in `codes`; 32: floats in `values`
    std::vector<uint16_t> codes;   // HWC RGB codes in [0, 2^bit_depth - 1] (bit_depth 8/16)
    std::vector<float> values;     // HWC RGB floats (bit_depth 32)

    std::size_t sample_count() const { return static_cast<std::size_t>(width) * height * channels; }
    bool is_float() const { return bit_depth == 32; }
};

// A zero-filled width x height RGB image of bit depth 8, 16 or 32.
Image make_image(int width, int height, int bit_depth);

// Maximum code of an integer bit depth: 255 or 65535 (throws for other depths).
uint32_t max_code(int bit_depth);

// --- scalar conversions -------------------------------------------------------------------
float u8_to_float(uint8_t code);
float u16_to_float(uint16_t code);
uint8_t float_to_u8(float value);    // clamp [0,1], round half to even, NaN -> 0
uint16_t float_to_u16(float value);  // clamp [0,1], round half to even, NaN -> 0

// --- buffer conversions: interleaved HWC RGB <-> planar CHW (one NCHW batch item) ---------
void hwc_u8_to_chw(const uint8_t* hwc, int height, int width, float* chw);
void hwc_u16_to_chw(const uint16_t* hwc, int height, int width, float* chw);
void chw_to_hwc_u8(const float* chw, int height, int width, uint8_t* hwc);
void chw_to_hwc_u16(const float* chw, int height, int width, uint16_t* hwc);

// Number of NaN/Inf values in a float buffer (an engine output with any is broken).
std::size_t count_nonfinite(const float* data, std::size_t count);

// --- Image <-> tensor -----------------------------------------------------------------------
// Image -> 1x3xHxW float32 in [0, 1]. Float images must be finite and inside [0, 1]
// (as in Python); otherwise throws, naming the offending range.
TensorNCHW image_to_tensor(const Image& image);
// Writes the 3xHxW planes of `image` to `chw` (3*H*W floats).
void image_to_chw(const Image& image, float* chw);
// Batch item `index` of an NCHW tensor with C == 3 -> Image of bit depth 8, 16 (quantized
// as above) or 32 (values clamped to [0, 1]).
Image tensor_to_image(const TensorNCHW& tensor, int index, int bit_depth);
Image chw_to_image(const float* chw, int height, int width, int bit_depth);

// Convert between bit depths: 8 <-> 16 exactly (x257 / rounded /257), codes -> float
// (code / max), float -> codes (quantized as above).
Image convert_bit_depth(const Image& image, int bit_depth);

// --- files ----------------------------------------------------------------------------------
enum class ImageFormat { PNM, PFM, PNG };

ImageFormat format_for_path(const std::string& path);       // by suffix; throws if unknown
Image read_image(const std::string& path);                  // format sniffed from content
void write_image(const std::string& path, const Image& image);  // format by suffix, atomic

Image decode_image(const std::vector<uint8_t>& bytes, const std::string& what);
Image decode_pnm(const std::vector<uint8_t>& bytes, const std::string& what);
Image decode_pfm(const std::vector<uint8_t>& bytes, const std::string& what);
Image decode_png(const std::vector<uint8_t>& bytes, const std::string& what);
std::vector<uint8_t> encode_ppm(const Image& image);  // bit depth 8 or 16
std::vector<uint8_t> encode_pfm(const Image& image);  // any bit depth (codes -> code/max)
std::vector<uint8_t> encode_png(const Image& image);  // bit depth 8 or 16

// Whole-file helpers (also used for engines): throw mirnet::Error naming the path.
std::vector<uint8_t> read_file(const std::string& path);
void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes);

}  // namespace mirnet
