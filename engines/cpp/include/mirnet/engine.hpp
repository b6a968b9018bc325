// mirnet: one engine interface over the backends (OpenVINO, TensorRT), created from an engine
// manifest by open_engine(), which checks the manifest against this machine before any model is
// loaded and picks the implementation from the manifest's `backend`.
//
// Thread-safety: an Engine is not thread-safe. Use one Engine per thread, or guard every call
// with a mutex. Different Engines may run concurrently.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mirnet/manifest.hpp"
#include "mirnet/profile.hpp"

namespace mirnet {

// What the caller requires of the engine beyond its manifest (refused before loading otherwise).
struct EngineOptions {
    std::optional<std::string> onnx_sha256;  // refuse an engine built from another ONNX file
    std::optional<std::string> precision;    // refuse another precision (fp32 | fp16 | int8[-target])
    int cuda_device = 0;                     // TensorRT: the CUDA device index
    bool allow_engine_host_code = false;     // TensorRT: version-compatible plans embed host code
    bool verbose = false;                    // backend info messages on stderr
};

class Engine {
public:
    virtual ~Engine() = default;
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    const Manifest& manifest() const { return manifest_; }
    const std::string& precision() const { return manifest_.precision; }
    int size_multiple() const { return manifest_.size_multiple; }
    int scale() const { return manifest_.scale; }
    // Shapes the engine takes: within one of the manifest's profiles; none listed = any H x W at
    // 1 x channels().input.
    const std::vector<Profile>& profiles() const { return manifest_.profiles; }
    // The model's input and output channels, read from the loaded model itself.
    const Channels& channels() const { return channels_; }

    virtual std::string backend() const = 0;          // "openvino" | "tensorrt"
    virtual std::string device() const = 0;           // e.g. "CPU (Intel Xeon ...)" or "GPU 0: NVIDIA A10"
    virtual std::string runtime_version() const = 0;  // the loaded OpenVINO / TensorRT library's version

    // Runs one float32 NCHW batch of `shape` (channels().input planes in [0, 1]) from `input` into
    // `output` (channels().output planes, H and W times scale()). Throws mirnet::Error on a shape the
    // engine does not take.
    virtual void infer(const float* input, const Shape4& shape, float* output) = 0;

protected:
    explicit Engine(Manifest manifest) : manifest_(std::move(manifest)) {}
    // What the implementation read from its model (3 and 3 until it says otherwise); throws on < 1.
    void set_channels(Channels channels);

private:
    Manifest manifest_;
    Channels channels_;
};

// The engine of a manifest (`E.json`) or of an engine file (`E` with `E.json` next to it).
// Throws mirnet::Error naming the cause: unreadable/invalid manifest, a backend this build lacks,
// a mismatch with this machine or with `options`, or a load failure.
std::unique_ptr<Engine> open_engine(const std::string& manifest_or_engine, const EngineOptions& options = {});

// The backends compiled into this library, e.g. {"openvino"} or {"openvino", "tensorrt"}.
std::vector<std::string> compiled_backends();

}  // namespace mirnet
