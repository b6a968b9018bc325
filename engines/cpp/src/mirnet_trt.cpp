// mirnet_trt: run a MIRNet TensorRT engine on one image (TensorRT 10.x and 11.x, CUDA runtime).
//
//   mirnet_trt --engine model.engine --input noisy.png --output restored.png
//              [--manifest model.engine.json] [--onnx-sha256 HEX] [--precision fp16]
//              [--tile N] [--overlap 32] [--bit-depth keep|8|16|32] [--warmup 1]
//              [--iterations 1] [--device 0] [--allow-engine-host-code] [--check] [--json]
//              [--verbose]
//
// Order of operations (DESIGN.md: "loading checks the manifest before deserializing
// anything"; DEPLOY_STACK.md §2: TensorRT crashes rather than failing without a usable GPU):
//   1. read and validate the manifest (<engine>.json)
//   2. probe CUDA: device count, cudaGetDeviceProperties -> name, compute capability
//   3. read the TensorRT library version
//   4. check_manifest(): GPU, compute capability, TensorRT version, ONNX hash, precision
//      -> refuse with a message naming the mismatch; no TensorRT object exists yet
//   5. read the image; mirnet::plan_run picks the profile, reflect-pads to the size multiple
//      (and the profile minimum) and tiles when the image exceeds the profile maximum
//   6. createInferRuntime, deserializeCudaEngine, check I/O tensors and profiles against the
//      manifest
//   7. mirnet::run_tiles: per tile H2D copy, enqueueV3 between two CUDA events, D2H copy;
//      blend; crop; then NaN/Inf check and write.
//   Steps 5 and 7 without TensorRT are unit-tested in tests/test_pipeline.cpp.
//
// TensorRT calls used: only calls documented for both 10.x (JetPack 6: 10.3) and 11.x (JetPack
// >= 7.2.2: 11.4.1). Sources: the runtime call sequence of NVIDIA/TensorRT
// include/NvInferRuntime.h at 11.1 (DEPLOY_STACK.md §6), the 10.x ICudaEngine/IExecutionContext
// member lists, and the 10.x->11.x removed/deprecated C++ API tables (none of these calls is
// listed there). Nothing removed in 10.0 (enqueueV2, the binding-index API) or in 11.x
// (getDeviceMemorySize, precision builder flags, calibrators) is used. Status: compiled only
// against a hand-written stub of these declarations plus the real CUDA 13 headers; never
// against real TensorRT headers, never run on a GPU (see README.md, "What is verified where").
//
//   call                                              | 10.x | 11.x | notes
//   --------------------------------------------------+------+------+-------------------------------
//   createInferRuntime(ILogger&)                      |  yes |  yes |
//   ILogger::log(Severity, AsciiChar const*) noexcept |  yes |  yes | implemented here
//   IRuntime::setEngineHostCodeAllowed(bool)          |  yes |  yes | only with --allow-engine-host-code
//   IRuntime::deserializeCudaEngine(void const*, size)|  yes |  yes | 11.x also has IStreamReaderV2
//   ICudaEngine::getNbIOTensors / getIOTensorName     |  yes |  yes |
//   ICudaEngine::getTensorIOMode / getTensorDataType  |  yes |  yes |
//   ICudaEngine::getNbOptimizationProfiles            |  yes |  yes |
//   ICudaEngine::getProfileShape(name, i, selector)   |  yes |  yes | checked against the manifest
//   ICudaEngine::createExecutionContext()             |  yes |  yes | default allocation strategy
//   IExecutionContext::setOptimizationProfileAsync    |  yes |  yes | only when profile != 0
//   IExecutionContext::setInputShape(name, Dims)      |  yes |  yes | Dims == Dims64 in both
//   IExecutionContext::getTensorShape(name)           |  yes |  yes | output shape after setInputShape
//   IExecutionContext::setTensorAddress(name, ptr)    |  yes |  yes |
//   IExecutionContext::enqueueV3(cudaStream_t)        |  yes |  yes |
//   getInferLibVersion()                              |  yes | n/a  | used only for NV_TENSORRT_MAJOR < 11
//   getInferLib{Major,Minor,Patch,Build}Version()     |  yes |  yes | added in 10.x; used for >= 11
//
// Not compiled or run in this repository's CI (no TensorRT there); see README.md.
#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mirnet/mirnet.hpp"

#if !defined(NV_TENSORRT_MAJOR) || NV_TENSORRT_MAJOR < 10
#error "mirnet_trt needs TensorRT 10 or newer (enqueueV3 and the name-based tensor API)"
#endif

namespace {

using mirnet::Error;

constexpr const char* kInputName = "input";
constexpr const char* kOutputName = "output";

// Exit codes (documented in README.md).
enum ExitCode : int {
    kOk = 0,
    kUsage = 2,
    kManifest = 3,  // manifest missing/invalid, or it does not match this system/engine
    kNoGpu = 4,
    kTensorRT = 5,  // runtime/deserialization/shape/enqueue failure
    kImage = 6,     // reading or writing an image
    kNonFinite = 7, // the engine produced NaN/Inf
};

struct ExitError : Error {
    int code;
    ExitError(int c, const std::string& message) : Error(message), code(c) {}
};

// --- command line -----------------------------------------------------------------------------

struct Options {
    std::string engine, manifest, input, output;
    std::optional<std::string> onnx_sha256, precision;
    int tile = 0;
    int overlap = 32;
    std::string bit_depth = "keep";
    int warmup = 1;
    int iterations = 1;
    int device = 0;
    bool allow_host_code = false;
    bool check_only = false;
    bool system_info = false;
    bool json = false;
    bool verbose = false;
};

const char* kUsageText =
    "usage: mirnet_trt --engine ENGINE --input IMAGE --output IMAGE [options]\n"
    "\n"
    "Restore one image with a MIRNet TensorRT engine built by `mirnet build`.\n"
    "\n"
    "  --engine PATH            serialized TensorRT engine (plan)\n"
    "  --manifest PATH          its manifest (default: ENGINE.json)\n"
    "  --input PATH             .png (8/16-bit, any colour type), .ppm/.pgm (P6/P5), .pfm\n"
    "  --output PATH            .png, .ppm (8/16-bit) or .pfm (float), chosen by suffix\n"
    "  --onnx-sha256 HEX        refuse an engine built from another ONNX file\n"
    "  --precision P            refuse an engine of another precision (fp32|fp16|int8)\n"
    "  --tile N                 largest tile edge in pixels (default: the profile maximum)\n"
    "  --overlap N              tile overlap in pixels (default 32)\n"
    "  --bit-depth D            output depth: keep (the input's), 8, 16, or 32 (float, .pfm)\n"
    "  --warmup N               untimed runs before timing (default 1)\n"
    "  --iterations N           timed runs; the output comes from the last (default 1)\n"
    "  --device N               CUDA device index (default 0)\n"
    "  --allow-engine-host-code allow version-compatible engines (they embed host code: only\n"
    "                           for engines from a trusted source)\n"
    "  --check                  only check the manifest against this GPU/TensorRT and exit\n"
    "  --system                 print this GPU and TensorRT as manifest fields (JSON) and exit\n"
    "  --json                   print the report as JSON on stdout\n"
    "  --verbose                TensorRT info messages\n"
    "\n"
    "Examples:\n"
    "  mirnet_trt --engine denoise.fp16.engine --input noisy.png --output clean.png\n"
    "  mirnet_trt --engine denoise.fp16.engine --check\n"
    "  mirnet_trt --system\n"
    "  mirnet_trt --engine m.engine --input big.png --output out.png --tile 512 --overlap 32 \\\n"
    "             --warmup 3 --iterations 20 --json\n"
    "\n"
    "Exit codes: 0 ok, 2 usage, 3 manifest mismatch/invalid, 4 no CUDA GPU, 5 TensorRT error,\n"
    "6 image I/O error, 7 non-finite output.\n";

int parse_int(const std::string& flag, const std::string& text, int lo, int hi) {
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(text.c_str(), &end, 10);
    if (errno != 0 || end == text.c_str() || *end != '\0' || v < lo || v > hi) {
        throw ExitError(kUsage, flag + " needs an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                    "], got '" + text + "'.");
    }
    return static_cast<int>(v);
}

Options parse_args(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw ExitError(kUsage, a + " needs a value.");
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            std::fputs(kUsageText, stdout);
            std::exit(kOk);
        } else if (a == "--engine") o.engine = value();
        else if (a == "--manifest") o.manifest = value();
        else if (a == "--input") o.input = value();
        else if (a == "--output") o.output = value();
        else if (a == "--onnx-sha256") o.onnx_sha256 = value();
        else if (a == "--precision") o.precision = value();
        else if (a == "--tile") o.tile = parse_int(a, value(), 4, 1 << 16);
        else if (a == "--overlap") o.overlap = parse_int(a, value(), 0, 1 << 15);
        else if (a == "--bit-depth") o.bit_depth = value();
        else if (a == "--warmup") o.warmup = parse_int(a, value(), 0, 1000);
        else if (a == "--iterations") o.iterations = parse_int(a, value(), 1, 100000);
        else if (a == "--device") o.device = parse_int(a, value(), 0, 1023);
        else if (a == "--allow-engine-host-code") o.allow_host_code = true;
        else if (a == "--check") o.check_only = true;
        else if (a == "--system") o.system_info = true;
        else if (a == "--json") o.json = true;
        else if (a == "--verbose") o.verbose = true;
        else throw ExitError(kUsage, "unknown option '" + a + "'.");
    }
    if (o.system_info) return o;
    if (o.engine.empty()) throw ExitError(kUsage, "--engine is required.");
    if (!o.check_only && (o.input.empty() || o.output.empty())) {
        throw ExitError(kUsage, "--input and --output are required (or pass --check).");
    }
    if (o.bit_depth != "keep" && o.bit_depth != "8" && o.bit_depth != "16" && o.bit_depth != "32") {
        throw ExitError(kUsage, "--bit-depth must be keep, 8, 16 or 32, got '" + o.bit_depth + "'.");
    }
    if (o.manifest.empty()) o.manifest = mirnet::manifest_path_for_engine(o.engine);
    return o;
}

// --- CUDA helpers -------------------------------------------------------------------------------

void check_cuda(cudaError_t status, const char* what) {
    if (status != cudaSuccess) {
        throw ExitError(kTensorRT, std::string("CUDA error in ") + what + ": " + cudaGetErrorName(status) + " (" +
                                       cudaGetErrorString(status) + ").");
    }
}

struct DeviceBuffer {
    void* ptr = nullptr;
    explicit DeviceBuffer(std::size_t bytes) { check_cuda(cudaMalloc(&ptr, bytes), "cudaMalloc"); }
    ~DeviceBuffer() {
        if (ptr) cudaFree(ptr);
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

struct PinnedBuffer {
    float* ptr = nullptr;
    explicit PinnedBuffer(std::size_t count) {
        void* p = nullptr;
        check_cuda(cudaMallocHost(&p, count * sizeof(float)), "cudaMallocHost");
        ptr = static_cast<float*>(p);
    }
    ~PinnedBuffer() {
        if (ptr) cudaFreeHost(ptr);
    }
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;
};

struct Stream {
    cudaStream_t s = nullptr;
    Stream() { check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags"); }
    ~Stream() {
        if (s) cudaStreamDestroy(s);
    }
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
};

struct Event {
    cudaEvent_t e = nullptr;
    Event() { check_cuda(cudaEventCreate(&e), "cudaEventCreate"); }
    ~Event() {
        if (e) cudaEventDestroy(e);
    }
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;
};

float elapsed_ms(const Event& start, const Event& stop) {
    float ms = 0.0f;
    check_cuda(cudaEventElapsedTime(&ms, start.e, stop.e), "cudaEventElapsedTime");
    return ms;
}

// --- TensorRT helpers ---------------------------------------------------------------------------

class Logger : public nvinfer1::ILogger {
public:
    explicit Logger(Severity threshold) : threshold_(threshold) {}
    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
        if (severity > threshold_) return;
        const char* level = severity == Severity::kINTERNAL_ERROR ? "internal error"
                            : severity == Severity::kERROR        ? "error"
                            : severity == Severity::kWARNING      ? "warning"
                            : severity == Severity::kINFO         ? "info"
                                                                  : "verbose";
        std::fprintf(stderr, "[TensorRT %s] %s\n", level, msg ? msg : "");
        if (severity <= Severity::kERROR) last_error_ = msg ? msg : "";
    }
    const std::string& last_error() const { return last_error_; }

private:
    Severity threshold_;
    std::string last_error_;
};

std::string trt_library_version() {
#if NV_TENSORRT_MAJOR >= 11
    return std::to_string(getInferLibMajorVersion()) + "." + std::to_string(getInferLibMinorVersion()) + "." +
           std::to_string(getInferLibPatchVersion()) + "." + std::to_string(getInferLibBuildVersion());
#else
    // (major * 100 + minor) * 100 + patch. The library's build number is not available through
    // an API known to exist in 10.3, and the headers' NV_TENSORRT_BUILD may differ from the
    // installed library's, so only major.minor.patch is reported; check_manifest then compares
    // those three components.
    return mirnet::trt_version_from_int(getInferLibVersion());
#endif
}

std::string dims_text(const nvinfer1::Dims& d) {
    std::string s;
    for (int32_t i = 0; i < d.nbDims; ++i) s += (i ? "x" : "") + std::to_string(d.d[i]);
    return d.nbDims < 0 ? "<invalid>" : s;
}

nvinfer1::Dims dims4(int64_t n, int64_t c, int64_t h, int64_t w) {
    nvinfer1::Dims d{};
    d.nbDims = 4;
    d.d[0] = n;
    d.d[1] = c;
    d.d[2] = h;
    d.d[3] = w;
    return d;
}

mirnet::Shape4 to_shape(const nvinfer1::Dims& d) {
    if (d.nbDims != 4) return mirnet::Shape4{-1, -1, -1, -1};
    return mirnet::Shape4{d.d[0], d.d[1], d.d[2], d.d[3]};
}

const char* dtype_name(nvinfer1::DataType t) {
    switch (t) {
        case nvinfer1::DataType::kFLOAT: return "float32";
        case nvinfer1::DataType::kHALF: return "float16";
        case nvinfer1::DataType::kINT8: return "int8";
        case nvinfer1::DataType::kINT32: return "int32";
        default: return "another type";
    }
}

// The engine must have exactly the ONNX contract's I/O: float32 `input` and `output`.
void check_io(const nvinfer1::ICudaEngine& engine) {
    const int32_t n = engine.getNbIOTensors();
    bool have_in = false, have_out = false;
    std::string found;
    for (int32_t i = 0; i < n; ++i) {
        const char* name = engine.getIOTensorName(i);
        const bool is_input = engine.getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT;
        const nvinfer1::DataType type = engine.getTensorDataType(name);
        found += std::string(found.empty() ? "" : ", ") + (is_input ? "input '" : "output '") + name + "' " +
                 dtype_name(type);
        if (std::strcmp(name, kInputName) == 0 && is_input && type == nvinfer1::DataType::kFLOAT) have_in = true;
        if (std::strcmp(name, kOutputName) == 0 && !is_input && type == nvinfer1::DataType::kFLOAT) have_out = true;
    }
    if (n != 2 || !have_in || !have_out) {
        throw ExitError(kManifest, "The engine's I/O tensors are [" + found +
                                       "], but the MIRNet contract is one float32 input 'input' and one float32 "
                                       "output 'output' (NCHW RGB in [0, 1]). Export the ONNX with the toolkit "
                                       "(`mirnet export`, FP16/INT8 variants keep FP32 I/O) and rebuild.");
    }
}

// The manifest's profiles must be the engine's (otherwise the manifest belongs to another plan).
void check_profiles(const nvinfer1::ICudaEngine& engine, const mirnet::Manifest& m) {
    const int32_t count = engine.getNbOptimizationProfiles();
    if (count != static_cast<int32_t>(m.profiles.size())) {
        throw ExitError(kManifest, "Manifest " + m.source + " lists " + std::to_string(m.profiles.size()) +
                                       " optimization profile(s), the engine has " + std::to_string(count) +
                                       ": the manifest does not belong to this engine. Rebuild, or pass the right "
                                       "--manifest.");
    }
    using Sel = nvinfer1::OptProfileSelector;
    for (int32_t i = 0; i < count; ++i) {
        mirnet::Profile p;
        p.min = to_shape(engine.getProfileShape(kInputName, i, Sel::kMIN));
        p.opt = to_shape(engine.getProfileShape(kInputName, i, Sel::kOPT));
        p.max = to_shape(engine.getProfileShape(kInputName, i, Sel::kMAX));
        const mirnet::Profile& q = m.profiles[static_cast<std::size_t>(i)];
        if (p.min != q.min || p.opt != q.opt || p.max != q.max) {
            throw ExitError(kManifest, "Profile " + std::to_string(i) + " of the engine is (" +
                                           mirnet::format_profile(p) + ") but manifest " + m.source + " says (" +
                                           mirnet::format_profile(q) +
                                           "): the manifest does not belong to this engine.");
        }
    }
}

// --- the run -------------------------------------------------------------------------------------

struct Report {
    std::string gpu, cc, trt, cuda_runtime, cuda_driver;
    std::size_t profile = 0;
    int in_h = 0, in_w = 0, run_h = 0, run_w = 0, tile_h = 0, tile_w = 0, overlap = 0;
    std::size_t tiles = 0;
    std::vector<double> gpu_ms;   // per timed iteration: sum over tiles of enqueueV3 time
    std::vector<double> e2e_ms;   // per timed iteration: the whole pass on the GPU clock (copies,
                                  // enqueues, and the host tiling/blending between tiles)
    double wall_ms = 0.0;         // whole run on the host clock (incl. image I/O and blending)
};

double median(std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string cuda_version_text(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }

int run(const Options& o) {
    const auto wall_start = std::chrono::steady_clock::now();
    Report r;

    // 1. Manifest first: nothing else is worth doing without it.
    mirnet::Manifest manifest;
    if (!o.system_info) {
        try {
            manifest = mirnet::load_manifest(o.manifest);
        } catch (const Error& e) {
            throw ExitError(kManifest, e.what());
        }
    }

    // 2. CUDA device, before any TensorRT object exists.
    int devices = 0;
    const cudaError_t probe = cudaGetDeviceCount(&devices);
    if (probe != cudaSuccess || devices == 0) {
        throw ExitError(kNoGpu, std::string("No usable CUDA GPU: ") +
                                    (probe != cudaSuccess ? std::string(cudaGetErrorName(probe)) + " (" +
                                                                cudaGetErrorString(probe) + ")"
                                                          : std::string("no device found")) +
                                    ". mirnet_trt needs an NVIDIA GPU with a working driver; on a machine without "
                                    "one, use the ONNX Runtime CPU path of the Python toolkit (`mirnet infer`).");
    }
    if (o.device >= devices) {
        throw ExitError(kNoGpu, "--device " + std::to_string(o.device) + " does not exist: " +
                                    std::to_string(devices) + " CUDA device(s) found.");
    }
    check_cuda(cudaSetDevice(o.device), "cudaSetDevice");
    cudaDeviceProp prop{};
    check_cuda(cudaGetDeviceProperties(&prop, o.device), "cudaGetDeviceProperties");
    r.gpu = prop.name;
    r.cc = std::to_string(prop.major) + "." + std::to_string(prop.minor);
    int runtime_version = 0, driver_version = 0;
    cudaRuntimeGetVersion(&runtime_version);
    cudaDriverGetVersion(&driver_version);
    r.cuda_runtime = cuda_version_text(runtime_version);
    r.cuda_driver = cuda_version_text(driver_version);

    // 3.-4. TensorRT version and the manifest check.
    r.trt = trt_library_version();
    if (mirnet::parse_version(r.trt).front() != NV_TENSORRT_MAJOR) {
        throw ExitError(kTensorRT, "mirnet_trt was compiled against TensorRT " + std::to_string(NV_TENSORRT_MAJOR) +
                                       ".x headers but loaded libnvinfer " + r.trt +
                                       "; rebuild mirnet_trt against the installed TensorRT.");
    }
    if (o.system_info) {  // the fields a hand-written manifest needs (README.md, "Jetson")
        using mirnet::json::Member;
        using mirnet::json::Value;
        std::printf("%s\n", mirnet::json::dump(Value::object({
                                                   Member{"backend", Value::string("tensorrt")},
                                                   Member{"backend_version", Value::string(r.trt)},
                                                   Member{"gpu_name", Value::string(r.gpu)},
                                                   Member{"compute_capability", Value::string(r.cc)},
                                                   Member{"cuda_driver", Value::string(r.cuda_driver)},
                                               }))
                                .c_str());
        return kOk;
    }
    const std::string mismatch =
        mirnet::check_manifest(manifest, mirnet::RuntimeInfo{r.trt, r.gpu, r.cc}, o.onnx_sha256, o.precision);
    if (!mismatch.empty()) throw ExitError(kManifest, mismatch);
    if (manifest.version_compatible && !o.allow_host_code) {
        throw ExitError(kManifest, "Manifest " + manifest.source +
                                       " says the engine is version-compatible: such plans embed host code that "
                                       "TensorRT runs on load. Pass --allow-engine-host-code if the engine comes "
                                       "from a trusted source.");
    }
    if (o.check_only) {
        if (o.json) {
            using mirnet::json::Member;
            using mirnet::json::Value;
            std::printf("%s\n", mirnet::json::dump(Value::object({
                                                       Member{"ok", Value::boolean(true)},
                                                       Member{"manifest", Value::string(manifest.source)},
                                                       Member{"gpu", Value::string(r.gpu)},
                                                       Member{"compute_capability", Value::string(r.cc)},
                                                       Member{"tensorrt", Value::string(r.trt)},
                                                   }))
                                    .c_str());
        } else {
            std::printf("OK: %s matches this system (GPU '%s', compute capability %s, TensorRT %s).\n",
                        manifest.source.c_str(), r.gpu.c_str(), r.cc.c_str(), r.trt.c_str());
        }
        return kOk;
    }

    // 5. Image, profile, padding, tiles: all before TensorRT, so bad input fails fast.
    mirnet::Image image;
    try {
        image = mirnet::read_image(o.input);
    } catch (const Error& e) {
        throw ExitError(kImage, e.what());
    }
    mirnet::TensorNCHW input;
    try {
        input = mirnet::image_to_tensor(image);
    } catch (const Error& e) {
        throw ExitError(kImage, "Image " + o.input + ": " + e.what());
    }
    r.in_h = input.h;
    r.in_w = input.w;
    mirnet::RunPlan plan;
    try {
        plan = mirnet::plan_run(manifest, input.h, input.w, o.tile, o.overlap);
    } catch (const Error& e) {
        throw ExitError(kUsage, e.what());
    }
    const mirnet::TileGrid& grid = plan.tiles.grid;
    r.profile = plan.profile;
    r.run_h = plan.tiles.run_height;
    r.run_w = plan.tiles.run_width;
    r.tile_h = grid.tile_h;
    r.tile_w = grid.tile_w;
    r.tiles = grid.count();
    r.overlap = grid.count() > 1 ? grid.overlap : 0;
    const mirnet::TensorNCHW padded = mirnet::pad_for_run(input, plan);
    const int m = manifest.size_multiple;
    if (!plan.tiles.tiled() && (r.run_h != mirnet::round_up(input.h, m) || r.run_w != mirnet::round_up(input.w, m))) {
        std::fprintf(stderr,
                     "note: %dx%d is below the profile minimum; reflect-padded to %dx%d (a profile admitting the "
                     "size gives results closer to the ONNX model's)\n",
                     input.h, input.w, r.run_h, r.run_w);
    }

    // 6. TensorRT runtime and engine.
    Logger logger(o.verbose ? nvinfer1::ILogger::Severity::kINFO : nvinfer1::ILogger::Severity::kWARNING);
    std::vector<uint8_t> engine_bytes;
    try {
        engine_bytes = mirnet::read_file(o.engine);
    } catch (const Error& e) {
        throw ExitError(kTensorRT, e.what());
    }
    std::unique_ptr<nvinfer1::IRuntime> runtime(nvinfer1::createInferRuntime(logger));
    if (!runtime) throw ExitError(kTensorRT, "createInferRuntime failed: " + logger.last_error());
    if (manifest.version_compatible) runtime->setEngineHostCodeAllowed(true);
    std::unique_ptr<nvinfer1::ICudaEngine> engine(runtime->deserializeCudaEngine(engine_bytes.data(), engine_bytes.size()));
    if (!engine) {
        throw ExitError(kTensorRT, "TensorRT could not deserialize " + o.engine + ": " + logger.last_error() +
                                       " Rebuild the engine on this device (README.md, 'Jetson').");
    }
    engine_bytes.clear();
    engine_bytes.shrink_to_fit();
    check_io(*engine);
    check_profiles(*engine, manifest);

    // 7. Context, shapes, buffers, then warm-up and timed passes over all tiles.
    Stream stream;
    std::unique_ptr<nvinfer1::IExecutionContext> context(engine->createExecutionContext());
    if (!context) throw ExitError(kTensorRT, "createExecutionContext failed: " + logger.last_error());
    if (plan.profile != 0) {
        if (!context->setOptimizationProfileAsync(static_cast<int32_t>(plan.profile), stream.s)) {
            throw ExitError(kTensorRT, "setOptimizationProfileAsync(" + std::to_string(plan.profile) +
                                           ") failed: " + logger.last_error());
        }
        check_cuda(cudaStreamSynchronize(stream.s), "cudaStreamSynchronize");
    }
    const mirnet::Shape4 in_shape = plan.input_shape();
    const nvinfer1::Dims in_dims = dims4(in_shape[0], in_shape[1], in_shape[2], in_shape[3]);
    if (!context->setInputShape(kInputName, in_dims)) {
        throw ExitError(kTensorRT, "setInputShape(" + dims_text(in_dims) + ") was refused by profile " +
                                       std::to_string(plan.profile) + ": " + logger.last_error());
    }
    const nvinfer1::Dims out_dims = context->getTensorShape(kOutputName);
    if (to_shape(out_dims) != plan.output_shape()) {
        throw ExitError(kTensorRT, "For input " + dims_text(in_dims) + " the engine's output is " +
                                       dims_text(out_dims) + ", expected " + mirnet::format_shape(plan.output_shape()) +
                                       " (scale " + std::to_string(plan.scale) + " from the manifest).");
    }
    const std::size_t in_count = plan.input_count(), out_count = plan.output_count();
    DeviceBuffer d_in(in_count * sizeof(float)), d_out(out_count * sizeof(float));
    PinnedBuffer h_in(in_count), h_out(out_count);
    if (!context->setTensorAddress(kInputName, d_in.ptr) || !context->setTensorAddress(kOutputName, d_out.ptr)) {
        throw ExitError(kTensorRT, "setTensorAddress failed: " + logger.last_error());
    }

    Event infer_start, infer_stop, e2e_start, e2e_stop;
    double infer_ms = 0.0;
    // One tile: H2D, enqueueV3 timed by two events, D2H; the result is in h_out on return.
    auto engine_call = [&](std::size_t) {
        check_cuda(cudaMemcpyAsync(d_in.ptr, h_in.ptr, in_count * sizeof(float), cudaMemcpyHostToDevice, stream.s),
                   "cudaMemcpyAsync (host to device)");
        check_cuda(cudaEventRecord(infer_start.e, stream.s), "cudaEventRecord");
        if (!context->enqueueV3(stream.s)) {
            throw ExitError(kTensorRT, "enqueueV3 failed: " + logger.last_error());
        }
        check_cuda(cudaEventRecord(infer_stop.e, stream.s), "cudaEventRecord");
        check_cuda(cudaMemcpyAsync(h_out.ptr, d_out.ptr, out_count * sizeof(float), cudaMemcpyDeviceToHost, stream.s),
                   "cudaMemcpyAsync (device to host)");
        check_cuda(cudaStreamSynchronize(stream.s), "cudaStreamSynchronize");
        infer_ms += elapsed_ms(infer_start, infer_stop);
    };
    mirnet::TensorNCHW output;
    for (int pass = 0; pass < o.warmup + o.iterations; ++pass) {
        infer_ms = 0.0;
        check_cuda(cudaEventRecord(e2e_start.e, stream.s), "cudaEventRecord");
        output = mirnet::run_tiles(padded, plan, h_in.ptr, h_out.ptr, engine_call);
        check_cuda(cudaEventRecord(e2e_stop.e, stream.s), "cudaEventRecord");
        check_cuda(cudaEventSynchronize(e2e_stop.e), "cudaEventSynchronize");
        if (pass >= o.warmup) {
            r.gpu_ms.push_back(infer_ms);
            r.e2e_ms.push_back(elapsed_ms(e2e_start, e2e_stop));
        }
    }

    // The output is already cropped to the image (times scale): reject NaN/Inf, write.
    const std::size_t bad = mirnet::count_nonfinite(output.data.data(), output.size());
    if (bad) {
        throw ExitError(kNonFinite, "The engine produced " + std::to_string(bad) + " NaN/Inf values (precision " +
                                        manifest.precision +
                                        "). FP16 engines can overflow in global pooling at large sizes: check the "
                                        "parity report, or build with the FP32-island FP16 ONNX / FP32.");
    }
    // "keep" = the input's depth; a float (PFM) input written to PNG/PPM becomes 16-bit.
    int depth = o.bit_depth == "keep" ? image.bit_depth : std::stoi(o.bit_depth);
    if (o.bit_depth == "keep" && depth == 32 && mirnet::format_for_path(o.output) != mirnet::ImageFormat::PFM) {
        depth = 16;
    }
    try {
        mirnet::write_image(o.output, mirnet::tensor_to_image(output, 0, depth));
    } catch (const Error& e) {
        throw ExitError(kImage, e.what());
    }
    r.wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall_start).count();

    if (o.json) {
        using mirnet::json::Member;
        using mirnet::json::Value;
        auto numbers = [](const std::vector<double>& v) {
            std::vector<Value> out;
            for (double d : v) out.push_back(Value::number(d));
            return Value::array(std::move(out));
        };
        const Value report = Value::object({
            Member{"engine", Value::string(o.engine)},
            Member{"manifest", Value::string(manifest.source)},
            Member{"input", Value::string(o.input)},
            Member{"output", Value::string(o.output)},
            Member{"gpu", Value::string(r.gpu)},
            Member{"compute_capability", Value::string(r.cc)},
            Member{"tensorrt", Value::string(r.trt)},
            Member{"cuda_runtime", Value::string(r.cuda_runtime)},
            Member{"cuda_driver", Value::string(r.cuda_driver)},
            Member{"precision", Value::string(manifest.precision)},
            Member{"profile", Value::number(static_cast<double>(r.profile))},
            Member{"image", Value::array({Value::number(r.in_h), Value::number(r.in_w)})},
            Member{"run", Value::array({Value::number(r.run_h), Value::number(r.run_w)})},
            Member{"tile", Value::array({Value::number(r.tile_h), Value::number(r.tile_w)})},
            Member{"tiles", Value::number(static_cast<double>(r.tiles))},
            Member{"overlap", Value::number(r.overlap)},
            Member{"warmup", Value::number(o.warmup)},
            Member{"iterations", Value::number(o.iterations)},
            Member{"gpu_ms", numbers(r.gpu_ms)},
            Member{"gpu_ms_median", Value::number(median(r.gpu_ms))},
            Member{"e2e_ms", numbers(r.e2e_ms)},
            Member{"e2e_ms_median", Value::number(median(r.e2e_ms))},
            Member{"wall_ms", Value::number(r.wall_ms)},
        });
        std::printf("%s\n", mirnet::json::dump(report).c_str());
    } else {
        std::printf("GPU        %s (compute capability %s), CUDA runtime %s, driver %s, TensorRT %s\n",
                    r.gpu.c_str(), r.cc.c_str(), r.cuda_runtime.c_str(), r.cuda_driver.c_str(), r.trt.c_str());
        std::printf("engine     %s (%s, profile %zu: %s)\n", o.engine.c_str(), manifest.precision.c_str(), r.profile,
                    mirnet::format_profile(manifest.profiles[r.profile]).c_str());
        std::printf("image      %dx%d -> run %dx%d in %zu tile(s) of %dx%d (overlap %d)\n", r.in_h, r.in_w, r.run_h,
                    r.run_w, r.tiles, r.tile_h, r.tile_w, r.overlap);
        std::printf("timing     enqueueV3 %.3f ms, with copies %.3f ms (median of %d, %d warm-up), wall %.1f ms\n",
                    median(r.gpu_ms), median(r.e2e_ms), o.iterations, o.warmup, r.wall_ms);
        std::printf("wrote      %s (%d-bit)\n", o.output.c_str(), depth);
    }
    return kOk;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(parse_args(argc, argv));
    } catch (const ExitError& e) {
        std::fprintf(stderr, "mirnet_trt: %s\n", e.what());
        if (e.code == kUsage) std::fprintf(stderr, "Run mirnet_trt --help for usage.\n");
        return e.code;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mirnet_trt: %s\n", e.what());
        return kTensorRT;
    }
}
