#include "mirnet/restore.hpp"

#include <chrono>

#include "mirnet/error.hpp"
#include "mirnet/pipeline.hpp"

namespace mirnet {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

void check_frame(const void* src, const void* dst, int width, int height, std::size_t src_stride,
                 std::size_t dst_stride, std::size_t src_row, std::size_t dst_row) {
    if (!src || !dst) throw Error("Restorer: null image buffer.");
    if (width < 1 || height < 1) {
        throw Error("Restorer: empty frame (" + std::to_string(width) + "x" + std::to_string(height) + ").");
    }
    if (src_stride < src_row || dst_stride < dst_row) {
        throw Error("Restorer: a row stride is shorter than a row (input " + std::to_string(src_stride) + " < " +
                    std::to_string(src_row) + " or output " + std::to_string(dst_stride) + " < " +
                    std::to_string(dst_row) + " bytes).");
    }
}

// Interleaved rows (with a stride) <-> 1x3xHxW planes, one row at a time through `convert`.
template <typename T, typename RowToChw>
TensorNCHW planes_from_rows(const T* src, int width, int height, std::size_t stride, RowToChw convert) {
    TensorNCHW t(1, 3, height, width);
    std::vector<float> row_planes(3 * static_cast<std::size_t>(width));
    const std::size_t plane = t.plane();
    for (int y = 0; y < height; ++y) {
        const T* row = reinterpret_cast<const T*>(reinterpret_cast<const uint8_t*>(src) + y * stride);
        convert(row, 1, width, row_planes.data());
        for (int c = 0; c < 3; ++c) {
            std::copy_n(row_planes.data() + c * static_cast<std::size_t>(width), width,
                        t.data.data() + c * plane + static_cast<std::size_t>(y) * width);
        }
    }
    return t;
}

template <typename T, typename ChwToRow>
void rows_from_planes(const TensorNCHW& t, T* dst, std::size_t stride, ChwToRow convert) {
    std::vector<float> row_planes(3 * static_cast<std::size_t>(t.w));
    for (int y = 0; y < t.h; ++y) {
        for (int c = 0; c < 3; ++c) {
            std::copy_n(t.data.data() + c * t.plane() + static_cast<std::size_t>(y) * t.w, t.w,
                        row_planes.data() + c * static_cast<std::size_t>(t.w));
        }
        convert(row_planes.data(), 1, t.w, reinterpret_cast<T*>(reinterpret_cast<uint8_t*>(dst) + y * stride));
    }
}

void check_planes(const TensorNCHW& planes) {
    const std::size_t bad = count_nonfinite(planes.data.data(), planes.size());
    if (bad) throw Error("Restorer: the planar input holds " + std::to_string(bad) + " NaN/Inf values.");
}

}  // namespace

Restorer::Restorer(std::unique_ptr<Engine> engine, RestoreOptions options)
    : engine_(std::move(engine)), options_(options) {
    if (!engine_) throw Error("Restorer needs an engine.");
}

Restorer::Restorer(const std::string& manifest_or_engine, RestoreOptions options, const EngineOptions& engine_options)
    : Restorer(open_engine(manifest_or_engine, engine_options), options) {}

void Restorer::require_rgb_model(const char* what) const {
    const Channels& channels = engine_->channels();
    if (channels.input != 3) {
        const std::string c = std::to_string(channels.input);
        throw Error("The engine's model takes " + c + " input channels, " + what + " holds 3 (RGB). Feed it 1x" + c +
                    "xHxW planes: Restorer::restore(TensorNCHW), or an H x W x " + c + " .npy array to mirnet_run "
                    "(MIRNet-v2's dual-pixel defocus model: the left and the right view, "
                    "np.concatenate([left, right], axis=2)).");
    }
    if (channels.output != 3) {
        throw Error("The engine's model returns " + std::to_string(channels.output) + " channels, " + what +
                    " holds 3 (RGB): use Restorer::restore_planar.");
    }
}

TensorNCHW Restorer::run(TensorNCHW input) {
    auto started = Clock::now();
    const RunPlan plan = plan_run(engine_->manifest(), input.h, input.w, options_.tile, options_.overlap,
                                  engine_->channels());
    const TensorNCHW padded = pad_for_run(input, plan);
    std::vector<float> in(plan.input_count()), out(plan.output_count());
    times_.pre_ms += ms_since(started);

    started = Clock::now();
    const Shape4 shape = plan.input_shape();
    times_.engine_ms = 0.0;
    TensorNCHW output = run_tiles(padded, plan, in.data(), out.data(), [&](std::size_t) {
        const auto call = Clock::now();
        engine_->infer(in.data(), shape, out.data());
        times_.engine_ms += ms_since(call);
    });
    times_.infer_ms = ms_since(started);

    started = Clock::now();
    const std::size_t bad = count_nonfinite(output.data.data(), output.size());
    if (bad) {
        throw Error("The engine produced " + std::to_string(bad) + " NaN/Inf values (" + engine_->backend() + ", " +
                    engine_->precision() + "); check its parity report, or use an FP32 engine.");
    }
    times_.post_ms = ms_since(started);
    return output;
}

template <typename T, typename RowToChw, typename ChwToRow>
void Restorer::restore_interleaved(const T* src, int width, int height, std::size_t src_stride, T* dst,
                                   std::size_t dst_stride, RowToChw to_planes, ChwToRow to_rows) {
    require_rgb_model("an interleaved RGB frame");
    const std::size_t row = 3 * sizeof(T) * static_cast<std::size_t>(width);
    check_frame(src, dst, width, height, src_stride, dst_stride, row, row * engine_->scale());
    times_ = StageTimes{};
    auto started = Clock::now();
    TensorNCHW input = planes_from_rows(src, width, height, src_stride, to_planes);
    times_.pre_ms = ms_since(started);
    const TensorNCHW output = run(std::move(input));
    started = Clock::now();
    rows_from_planes(output, dst, dst_stride, to_rows);
    times_.post_ms += ms_since(started);
}

void Restorer::restore_rgb8(const uint8_t* src, int width, int height, std::size_t src_stride, uint8_t* dst,
                            std::size_t dst_stride) {
    restore_interleaved(src, width, height, src_stride, dst, dst_stride, hwc_u8_to_chw, chw_to_hwc_u8);
}

void Restorer::restore_rgb16(const uint16_t* src, int width, int height, std::size_t src_stride, uint16_t* dst,
                             std::size_t dst_stride) {
    restore_interleaved(src, width, height, src_stride, dst, dst_stride, hwc_u16_to_chw, chw_to_hwc_u16);
}

void Restorer::restore_planar(const float* src, int width, int height, float* dst) {
    check_frame(src, dst, width, height, 1, 1, 1, 1);
    times_ = StageTimes{};
    auto started = Clock::now();
    TensorNCHW input(1, engine_->channels().input, height, width);
    std::copy_n(src, input.size(), input.data.begin());
    check_planes(input);
    times_.pre_ms = ms_since(started);
    const TensorNCHW output = run(std::move(input));
    started = Clock::now();
    std::copy(output.data.begin(), output.data.end(), dst);
    times_.post_ms += ms_since(started);
}

Image Restorer::restore(const TensorNCHW& planes, int bit_depth) {
    const Channels& channels = engine_->channels();
    if (planes.n != 1 || planes.c != channels.input) {
        throw Error("The engine's model takes 1x" + std::to_string(channels.input) + "xHxW planes, got " +
                    std::to_string(planes.n) + "x" + std::to_string(planes.c) + "x" + std::to_string(planes.h) + "x" +
                    std::to_string(planes.w) + ".");
    }
    if (channels.output != 3) require_rgb_model("an image");
    times_ = StageTimes{};
    auto started = Clock::now();
    check_planes(planes);
    times_.pre_ms = ms_since(started);
    const TensorNCHW output = run(planes);
    started = Clock::now();
    Image restored = tensor_to_image(output, 0, bit_depth);
    times_.post_ms += ms_since(started);
    return restored;
}

Image Restorer::restore(const Image& image, int bit_depth) {
    require_rgb_model("an image");
    times_ = StageTimes{};
    auto started = Clock::now();
    TensorNCHW input = image_to_tensor(image);
    times_.pre_ms = ms_since(started);
    const TensorNCHW output = run(std::move(input));
    started = Clock::now();
    Image restored = tensor_to_image(output, 0, bit_depth ? bit_depth : image.bit_depth);
    times_.post_ms += ms_since(started);
    return restored;
}

}  // namespace mirnet
