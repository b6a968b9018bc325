// mirnet: restore images held in memory -- the API a pipeline links (find_package(mirnet),
// target mirnet::mirnet).
//
//   mirnet::Restorer restorer("denoise.fp16.openvino.blob.json");
//   restorer.restore_rgb8(frame, width, height, stride, out, out_stride);
//
// Inside: conversion to planar float, reflect padding to the model's size multiple (and up to
// the engine profile's minimum), tiling with linearly blended overlaps when the image exceeds the
// profile's maximum (or `tile`), the engine call per tile, cropping and conversion back.
//
// Thread-safety: a Restorer is not thread-safe (it owns one Engine and reuses its buffers). Use
// one Restorer per thread, or guard each call with a mutex. Errors are mirnet::Error exceptions
// whose message names the cause; the output buffer is left unspecified after an error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "mirnet/engine.hpp"
#include "mirnet/error.hpp"
#include "mirnet/image.hpp"

namespace mirnet {

struct RestoreOptions {
    int tile = 0;      // largest tile edge in pixels; 0 = as large as the engine takes
    int overlap = 32;  // overlap between tiles, in pixels
};

// Milliseconds spent in each stage of the last call.
struct StageTimes {
    double pre_ms = 0.0;    // to planar float, padding
    double infer_ms = 0.0;  // the engine calls (summed over tiles), tiling and blending included
    double engine_ms = 0.0; // the Engine::infer calls alone
    double post_ms = 0.0;   // NaN/Inf check, conversion back
};

class Restorer {
public:
    explicit Restorer(std::unique_ptr<Engine> engine, RestoreOptions options = {});
    explicit Restorer(const std::string& manifest_or_engine, RestoreOptions options = {},
                      const EngineOptions& engine_options = {});

    // Interleaved RGB, 8 or 16 bits per sample, rows `stride` bytes apart (>= 3 * width * sample
    // size). The output is (width * scale) x (height * scale) with its own stride. These and
    // restore(Image) need a model of 3 input and 3 output channels (engine().channels()); another
    // throws, naming the planar call it needs.
    void restore_rgb8(const uint8_t* src, int width, int height, std::size_t src_stride, uint8_t* dst,
                      std::size_t dst_stride);
    void restore_rgb16(const uint16_t* src, int width, int height, std::size_t src_stride, uint16_t* dst,
                       std::size_t dst_stride);
    // Planar floats (channels().input x height x width, values in [0, 1]) into channels().output x
    // (height*scale) x (width*scale).
    void restore_planar(const float* src, int width, int height, float* dst);
    // An Image of any bit depth into one of `bit_depth` (0 = the input's).
    Image restore(const Image& image, int bit_depth = 0);
    // 1 x channels().input x H x W planes in [0, 1] (e.g. read_npy: MIRNet-v2's 6-channel dual-pixel
    // input) into an RGB Image of `bit_depth` (8, 16 or 32).
    Image restore(const TensorNCHW& planes, int bit_depth = 32);

    Engine& engine() { return *engine_; }
    const StageTimes& last_times() const { return times_; }

private:
    // 1 x Cin x H x W in, 1 x Cout x (H*scale) x (W*scale) out, times infer/post.
    TensorNCHW run(TensorNCHW input);
    void require_rgb_model(const char* what) const;  // throws unless the model takes and returns 3 channels
    template <typename T, typename RowToChw, typename ChwToRow>
    void restore_interleaved(const T* src, int width, int height, std::size_t src_stride, T* dst,
                             std::size_t dst_stride, RowToChw to_planes, ChwToRow to_rows);

    std::unique_ptr<Engine> engine_;
    RestoreOptions options_;
    StageTimes times_;
};

}  // namespace mirnet
