// mirnet: the engine manifest (<engine>.json) and the checks made before an engine is loaded
// (TensorRT crashes rather than failing cleanly on a foreign engine; an OpenVINO compiled blob
// loads only on the OpenVINO version and device it was compiled for).
//
// Fields read (others are ignored): toolkit_version, backend,
// backend_version, cuda_driver, gpu_name, compute_capability, onnx_sha256, precision,
// profiles [{min,opt,max}], build_options {version_compatible?, hardware_compatibility? |
// hardware_compatibility_level?}, build_time_s | build_seconds, built_at, parity, task,
// size_multiple, scale (the ONNX metadata's, which engines/cache.py copies into every manifest; absent
// in manifests from before: 4, MIRNet's, and 1), engine_file, format (<= 1); for OpenVINO also
// device ("CPU", "GPU", "NPU"), device_name (its FULL_DEVICE_NAME) and inference_precision (the
// INFERENCE_PRECISION_HINT it was compiled with, e.g. "f32"). JSON is read with nlohmann/json;
// NaN/Infinity, which Python's json module writes (an infinite PSNR in `parity`), read as null.
// Required: backend, backend_version, precision. A profile may also be written as
// {"input": {"min", "opt", "max"}} (keyed by the input tensor name).
// engines/manifest.py (the Python writer) is the reference for names and semantics.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "mirnet/profile.hpp"

namespace mirnet {

constexpr int kManifestFormat = 1;  // newest manifest "format" this code reads

struct Manifest {
    std::string source;  // where it was read from (for messages)
    std::string toolkit_version;
    std::string backend;          // "tensorrt" | "openvino" | "onnxruntime"
    std::string backend_version;  // e.g. "10.3.0" or "10.3.0.26"
    std::optional<std::string> cuda_driver;
    std::optional<std::string> gpu_name;
    std::optional<std::string> compute_capability;  // "8.7"
    std::string onnx_sha256;
    std::string precision;  // "fp32" | "fp16" | "int8" | "int8-<target>" (as the ONNX declares it)
    std::vector<Profile> profiles;
    bool version_compatible = false;                 // build_options.version_compatible
    std::string hardware_compatibility_level = "none";  // none | ampere_plus | same_compute_capability
    double build_time_s = 0.0;  // build_time_s, or build_seconds as engines/manifest.py writes it
    std::string built_at;
    std::optional<bool> parity_passed;  // parity.passed, when the parity stage ran
    std::string task;
    int size_multiple = 4;
    int scale = 1;
    std::string engine_file;  // file name of the engine, next to the manifest
    int format = 0;
    std::string device;               // OpenVINO device ("CPU"); empty for TensorRT
    std::string device_name;          // OpenVINO FULL_DEVICE_NAME at build time
    std::string inference_precision;  // OpenVINO INFERENCE_PRECISION_HINT ("f32", "bf16", ...)

    // The engine file: engine_file next to the manifest (throws if the manifest names none).
    std::string engine_path() const;
};

// Parse a manifest; throws mirnet::Error naming `source` and the field.
Manifest parse_manifest_text(std::string_view text, const std::string& source = "manifest");
Manifest load_manifest(const std::string& path);

// "<engine>.json", e.g. model.engine -> model.engine.json; a path ending in .json is returned as is.
std::string manifest_path_for_engine(const std::string& engine_path);

// What the running system is, as the C++ runner measures it.
struct RuntimeInfo {
    std::string trt_version;         // "10.3.0" (or with build: "10.3.0.26")
    std::string gpu_name;            // cudaDeviceProp::name
    std::string compute_capability;  // "8.7"
};

// What the running OpenVINO is.
struct OpenVinoInfo {
    std::string version;      // ov::get_openvino_version().buildNumber, e.g. "2026.4.1-..."
    std::vector<std::string> devices;  // ov::Core::get_available_devices()
    std::string device_name;  // FULL_DEVICE_NAME of the manifest's device (empty if not available)
};

// Empty string when the OpenVINO engine may be loaded here; otherwise one message naming every
// mismatch (backend, OpenVINO version, device missing, other CPU/GPU model, ONNX hash, precision).
std::string check_openvino_manifest(const Manifest& manifest, const OpenVinoInfo& runtime,
                                    const std::optional<std::string>& onnx_sha256 = std::nullopt,
                                    const std::optional<std::string>& precision = std::nullopt);

// Empty string when the TensorRT engine may be loaded here; otherwise one message naming every
// mismatch (backend, TensorRT version, GPU, compute capability, ONNX hash, precision, profiles)
// and what to do. onnx_sha256 / precision are checked only when given; precision "int8"
// accepts a manifest's "int8-<target>". TensorRT versions are compared on the components both
// strings have (at least major.minor.patch): the C++ runtime may know no build number.
std::string check_manifest(const Manifest& manifest, const RuntimeInfo& runtime,
                           const std::optional<std::string>& onnx_sha256 = std::nullopt,
                           const std::optional<std::string>& precision = std::nullopt);

// Index of the profile whose [min, max] contains the shape (closest opt H*W wins, then the
// lowest index); nullopt if none does.
std::optional<std::size_t> profile_for_shape(const Manifest& manifest, int64_t n, int64_t c, int64_t h, int64_t w);

// Profile to tile with: admits batch n and c channels, largest max H*W; nullopt if none.
std::optional<std::size_t> profile_for_tiling(const Manifest& manifest, int64_t n, int64_t c);

// Version helpers. parse_version("10.3.0.26") -> {10,3,0,26}; leading numeric components only;
// throws if there is none.
std::vector<int> parse_version(const std::string& text);
// getInferLibVersion() encoding (major*100 + minor)*100 + patch -> "major.minor.patch".
std::string trt_version_from_int(int encoded);

}  // namespace mirnet
