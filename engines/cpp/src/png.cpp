// PNG through libpng: every colour type and bit depth libpng reads (grey, RGB, palette,
// grey+alpha, RGBA; 1-16 bits; Adam7), converted to the project's semantics (mirnet_ref/images.py):
// grey replicated to RGB, palettes expanded, 1/2/4-bit grey scaled to 8 bits, alpha dropped, no
// gamma or colour management. Written as 8/16-bit RGB. libpng checks CRCs and reports truncation.
//
// libpng reports errors by longjmp. Each call into libpng runs in a function whose locals are all
// set before setjmp and never changed after it (state lives behind pointers), as the libpng manual
// requires; no C++ object is destroyed by the jump.
#include <png.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <string>

#include "image_internal.hpp"
#include "mirnet/error.hpp"
#include "mirnet/image.hpp"

namespace mirnet {

namespace {

// libpng's messages go here instead of stderr; the last one names the failure.
struct PngState {
    const std::vector<uint8_t>* input = nullptr;
    std::size_t offset = 0;
    std::vector<uint8_t>* output = nullptr;
    char message[256] = "";
};

PngState& state_of(png_structp png) { return *static_cast<PngState*>(png_get_error_ptr(png)); }

void on_error(png_structp png, png_const_charp message) {
    PngState& s = state_of(png);
    std::snprintf(s.message, sizeof s.message, "%s", message ? message : "libpng error");
    png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}  // benign (e.g. unknown ancillary chunks)

void read_from_memory(png_structp png, png_bytep data, png_size_t length) {
    PngState& s = *static_cast<PngState*>(png_get_io_ptr(png));
    if (s.input->size() - s.offset < length) png_error(png, "file truncated (read past the end)");
    std::memcpy(data, s.input->data() + s.offset, length);
    s.offset += length;
}

void write_to_memory(png_structp png, png_bytep data, png_size_t length) {
    std::vector<uint8_t>& out = *static_cast<PngState*>(png_get_io_ptr(png))->output;
    out.insert(out.end(), data, data + length);
}

void flush_memory(png_structp) {}

struct ReadHandles {
    png_structp png = nullptr;
    png_infop info = nullptr;
    ~ReadHandles() { png_destroy_read_struct(&png, info ? &info : nullptr, nullptr); }
};

struct WriteHandles {
    png_structp png = nullptr;
    png_infop info = nullptr;
    ~WriteHandles() { png_destroy_write_struct(&png, info ? &info : nullptr); }
};

// Header, transforms and all rows into `image` (allocated here once the size is known); false on a
// libpng error, whose message is in `state`.
bool decode_rows(ReadHandles* handles, PngState* state, Image* image, std::vector<png_bytep>* rows,
                 const std::string* what) {
    png_structp png = handles->png;
    png_infop info = handles->info;
    if (setjmp(png_jmpbuf(png))) return false;
    png_set_read_fn(png, state, read_from_memory);
    png_read_info(png, info);
    const png_uint_32 width = png_get_image_width(png, info);
    const png_uint_32 height = png_get_image_height(png, info);
    const int depth = png_get_bit_depth(png, info);
    const int colour = png_get_color_type(png, info);
    detail::check_dimensions(static_cast<long long>(width), static_cast<long long>(height), *what);
    png_set_expand(png);                                          // palette -> RGB, 1/2/4-bit grey -> 8 bits
    if (!(colour & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);  // grey replicated
    png_set_strip_alpha(png);                                     // alpha (and tRNS) dropped
    if (depth == 16) png_set_swap(png);                           // host order for the uint16_t codes below
    png_set_interlace_handling(png);                              // Adam7
    png_read_update_info(png, info);
    *image = make_image(static_cast<int>(width), static_cast<int>(height), depth == 16 ? 16 : 8);
    if (png_get_rowbytes(png, info) != static_cast<std::size_t>(width) * 3 * (depth == 16 ? 2 : 1)) {
        png_error(png, "unexpected row layout after conversion to RGB");
    }
    rows->assign(height, nullptr);
    if (depth == 16) {
        for (png_uint_32 y = 0; y < height; ++y)
            (*rows)[y] = reinterpret_cast<png_bytep>(image->codes.data() + static_cast<std::size_t>(y) * width * 3);
        png_read_image(png, rows->data());
    } else {
        // 8-bit rows are read into a byte buffer, then widened to the uint16_t codes.
        std::vector<uint8_t>* bytes = state->output;
        bytes->assign(static_cast<std::size_t>(width) * height * 3, 0);
        for (png_uint_32 y = 0; y < height; ++y) (*rows)[y] = bytes->data() + static_cast<std::size_t>(y) * width * 3;
        png_read_image(png, rows->data());
        std::copy(bytes->begin(), bytes->end(), image->codes.begin());
    }
    png_read_end(png, nullptr);  // reads (and CRC-checks) the chunks after the image data
    return true;
}

bool encode_rows(WriteHandles* handles, PngState* state, const Image* image, std::vector<uint8_t>* scratch,
                 std::vector<png_bytep>* rows) {
    png_structp png = handles->png;
    png_infop info = handles->info;
    if (setjmp(png_jmpbuf(png))) return false;
    png_set_write_fn(png, state, write_to_memory, flush_memory);
    const png_uint_32 width = static_cast<png_uint_32>(image->width);
    const png_uint_32 height = static_cast<png_uint_32>(image->height);
    png_set_IHDR(png, info, width, height, image->bit_depth, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    const std::size_t samples = image->sample_count();
    rows->assign(height, nullptr);
    if (image->bit_depth == 16) {
        scratch->resize(samples * 2);
        for (std::size_t i = 0; i < samples; ++i) {  // PNG stores 16-bit samples big-endian
            (*scratch)[2 * i] = static_cast<uint8_t>(image->codes[i] >> 8);
            (*scratch)[2 * i + 1] = static_cast<uint8_t>(image->codes[i] & 0xFF);
        }
    } else {
        scratch->resize(samples);
        for (std::size_t i = 0; i < samples; ++i) (*scratch)[i] = static_cast<uint8_t>(image->codes[i]);
    }
    const std::size_t row_bytes = scratch->size() / height;
    for (png_uint_32 y = 0; y < height; ++y) (*rows)[y] = scratch->data() + y * row_bytes;
    png_write_image(png, rows->data());
    png_write_end(png, nullptr);
    return true;
}

}  // namespace

Image decode_png(const std::vector<uint8_t>& bytes, const std::string& what) {
    if (bytes.size() < 8 || png_sig_cmp(bytes.data(), 0, 8) != 0) {
        throw Error(what + ": not a PNG file (bad signature).");
    }
    PngState state;
    std::vector<uint8_t> eight_bit_rows;
    state.input = &bytes;
    state.output = &eight_bit_rows;
    ReadHandles handles;
    handles.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, on_error, on_warning);
    if (handles.png) handles.info = png_create_info_struct(handles.png);
    if (!handles.png || !handles.info) throw Error(what + ": out of memory while starting libpng.");
    Image image;
    std::vector<png_bytep> rows;
    if (!decode_rows(&handles, &state, &image, &rows, &what)) {
        throw Error(what + ": corrupt or truncated PNG (libpng: " + state.message + ").");
    }
    return image;
}

std::vector<uint8_t> encode_png(const Image& image) {
    if (image.bit_depth != 8 && image.bit_depth != 16) {
        throw Error("PNG holds 8- or 16-bit codes; convert float images first (convert_bit_depth) or write .pfm.");
    }
    detail::check_dimensions(image.width, image.height, "PNG output");
    std::vector<uint8_t> out;
    PngState state;
    state.output = &out;
    WriteHandles handles;
    handles.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &state, on_error, on_warning);
    if (handles.png) handles.info = png_create_info_struct(handles.png);
    if (!handles.png || !handles.info) throw Error("out of memory while starting libpng.");
    std::vector<uint8_t> scratch;
    std::vector<png_bytep> rows;
    if (!encode_rows(&handles, &state, &image, &scratch, &rows)) {
        throw Error(std::string("libpng could not encode the image: ") + state.message + ".");
    }
    return out;
}

}  // namespace mirnet
