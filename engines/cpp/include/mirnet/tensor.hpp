// mirnet_core: planar float tensors (NCHW), reflect padding to a size multiple, cropping.
//
// Padding semantics are those of the Python side (mirnet_ref/inference.py) and of the ONNX
// graph: pad at the bottom and the right only, with the periodic mirror extension
// ("whole-sample symmetric", period 2(n-1)): index i of a padded axis reads
// reflect_index(i, n). For i < 2n-1 this is numpy/torch "reflect" padding; beyond that it
// keeps reflecting, so 1-3 pixel images can be padded to any size; n == 1 replicates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace mirnet {

// A dense float32 tensor in NCHW order (the engine's input/output layout).
struct TensorNCHW {
    int n = 0, c = 0, h = 0, w = 0;
    std::vector<float> data;  // size n*c*h*w, row-major NCHW

    TensorNCHW() = default;
    TensorNCHW(int n, int c, int h, int w, float fill = 0.0f);  // throws on negative/huge dims

    std::size_t size() const { return data.size(); }
    std::size_t plane() const { return static_cast<std::size_t>(h) * static_cast<std::size_t>(w); }
    std::size_t index(int in, int ic, int y, int x) const {
        return ((static_cast<std::size_t>(in) * c + ic) * h + y) * static_cast<std::size_t>(w) + x;
    }
    float& at(int in, int ic, int y, int x) { return data[index(in, ic, y, x)]; }
    float at(int in, int ic, int y, int x) const { return data[index(in, ic, y, x)]; }
};

// Smallest multiple of `multiple` that is >= n (n >= 0, multiple >= 1).
int round_up(int n, int multiple);

// Periodic mirror index: maps any i >= 0 into [0, n) with period 2(n-1); n == 1 -> 0.
int reflect_index(long long i, int n);

// Reflect-pad the bottom/right of one HxW plane to out_h x out_w (out >= in on both axes).
void reflect_pad_plane(const float* src, int h, int w, float* dst, int out_h, int out_w);

// Reflect-pad every plane of x at the bottom/right to out_h x out_w (>= x.h, x.w).
TensorNCHW reflect_pad(const TensorNCHW& x, int out_h, int out_w);

// Reflect-pad H and W up to the next multiple of `multiple` (unchanged when already a multiple).
TensorNCHW pad_to_multiple(const TensorNCHW& x, int multiple);

// Copy the window [y0, y0+h) x [x0, x0+w) of every plane; throws if it leaves the tensor.
TensorNCHW crop(const TensorNCHW& x, int y0, int x0, int h, int w);

}  // namespace mirnet
