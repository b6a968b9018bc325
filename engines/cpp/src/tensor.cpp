#include "mirnet/tensor.hpp"

#include <algorithm>
#include <limits>
#include <string>

#include "mirnet/error.hpp"

namespace mirnet {

namespace {

std::string dims_text(int n, int c, int h, int w) {
    return std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w);
}

}  // namespace

TensorNCHW::TensorNCHW(int n_, int c_, int h_, int w_, float fill) : n(n_), c(c_), h(h_), w(w_) {
    if (n < 0 || c < 0 || h < 0 || w < 0) {
        throw Error("Tensor dimensions must be non-negative, got " + dims_text(n, c, h, w) + ".");
    }
    const double count = static_cast<double>(n) * c * h * w;
    if (count > static_cast<double>(std::numeric_limits<std::ptrdiff_t>::max() / sizeof(float))) {
        throw Error("Tensor " + dims_text(n, c, h, w) + " is too large to allocate.");
    }
    data.assign(static_cast<std::size_t>(n) * c * h * w, fill);
}

int round_up(int n, int multiple) {
    if (multiple < 1 || n < 0) {
        throw Error("round_up needs n >= 0 and multiple >= 1, got n=" + std::to_string(n) +
                    ", multiple=" + std::to_string(multiple) + ".");
    }
    const long long r = (static_cast<long long>(n) + multiple - 1) / multiple * multiple;
    if (r > std::numeric_limits<int>::max()) {
        throw Error("round_up(" + std::to_string(n) + ", " + std::to_string(multiple) + ") overflows int.");
    }
    return static_cast<int>(r);
}

int reflect_index(long long i, int n) {
    if (n < 1) {
        throw Error("reflect_index needs an axis of at least 1 sample, got " + std::to_string(n) + ".");
    }
    if (i < 0) {
        throw Error("reflect_index needs i >= 0 (padding is bottom/right only), got " + std::to_string(i) + ".");
    }
    if (n == 1) {
        return 0;
    }
    const long long period = 2LL * (n - 1);
    const long long r = i % period;
    return static_cast<int>(r >= n ? period - r : r);
}

void reflect_pad_plane(const float* src, int h, int w, float* dst, int out_h, int out_w) {
    if (h < 1 || w < 1 || out_h < h || out_w < w) {
        throw Error("Cannot reflect-pad a " + std::to_string(h) + "x" + std::to_string(w) + " plane to " +
                    std::to_string(out_h) + "x" + std::to_string(out_w) +
                    ": padding only grows an axis (bottom/right) and needs a non-empty plane.");
    }
    std::vector<int> cols(static_cast<std::size_t>(out_w));
    for (int x = 0; x < out_w; ++x) {
        cols[static_cast<std::size_t>(x)] = reflect_index(x, w);
    }
    for (int y = 0; y < out_h; ++y) {
        const float* row = src + static_cast<std::size_t>(reflect_index(y, h)) * w;
        float* out = dst + static_cast<std::size_t>(y) * out_w;
        for (int x = 0; x < out_w; ++x) {
            out[x] = row[cols[static_cast<std::size_t>(x)]];
        }
    }
}

TensorNCHW reflect_pad(const TensorNCHW& x, int out_h, int out_w) {
    TensorNCHW out(x.n, x.c, out_h, out_w);
    const std::size_t planes = static_cast<std::size_t>(x.n) * x.c;
    for (std::size_t p = 0; p < planes; ++p) {
        reflect_pad_plane(x.data.data() + p * x.plane(), x.h, x.w, out.data.data() + p * out.plane(), out_h, out_w);
    }
    return out;
}

TensorNCHW pad_to_multiple(const TensorNCHW& x, int multiple) {
    return reflect_pad(x, round_up(x.h, multiple), round_up(x.w, multiple));
}

TensorNCHW crop(const TensorNCHW& x, int y0, int x0, int h, int w) {
    if (y0 < 0 || x0 < 0 || h < 0 || w < 0 || static_cast<long long>(y0) + h > x.h ||
        static_cast<long long>(x0) + w > x.w) {
        throw Error("Crop window " + std::to_string(h) + "x" + std::to_string(w) + " at (y=" + std::to_string(y0) +
                    ", x=" + std::to_string(x0) + ") does not lie inside the " + std::to_string(x.h) + "x" +
                    std::to_string(x.w) + " tensor.");
    }
    TensorNCHW out(x.n, x.c, h, w);
    const std::size_t planes = static_cast<std::size_t>(x.n) * x.c;
    for (std::size_t p = 0; p < planes; ++p) {
        const float* src = x.data.data() + p * x.plane();
        float* dst = out.data.data() + p * out.plane();
        for (int y = 0; y < h; ++y) {
            const float* row = src + static_cast<std::size_t>(y0 + y) * x.w + x0;
            std::copy(row, row + w, dst + static_cast<std::size_t>(y) * w);
        }
    }
    return out;
}

}  // namespace mirnet
