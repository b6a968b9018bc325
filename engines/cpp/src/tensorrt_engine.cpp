// The TensorRT engine (TensorRT 10.x and 11.x, CUDA runtime): the former mirnet_trt's logic
// behind the Engine interface. Order (DESIGN.md: "loading checks the manifest before deserializing
// anything"; DEPLOY_STACK.md §2: TensorRT crashes rather than failing without a usable GPU):
//   1. probe CUDA (device count, properties: name, compute capability) -- no TensorRT object yet
//   2. read the TensorRT library version; check_manifest() against GPU, TensorRT, ONNX, precision
//   3. createInferRuntime, deserializeCudaEngine, check I/O tensors and profiles against the manifest
//   4. per infer(): profile for the shape, setInputShape, H2D copy, enqueueV3, D2H copy
//
// TensorRT calls used: only calls documented for both 10.x (JetPack 6: 10.3) and 11.x (JetPack
// >= 7.2.2: 11.4.1). Sources: the runtime call sequence of NVIDIA/TensorRT
// include/NvInferRuntime.h at 11.1 (DEPLOY_STACK.md §6), the 10.x ICudaEngine/IExecutionContext
// member lists, and the 10.x->11.x removed/deprecated C++ API tables (none of these calls is
// listed there). Nothing removed in 10.0 (enqueueV2, the binding-index API) or in 11.x
// (getDeviceMemorySize, precision builder flags, calibrators) is used. Status: compiled against the
// real public headers of TensorRT 10.3, 10.16 and 11.x with stub libraries (tools/trt_compile_check.sh);
// never run on a GPU here (see README.md, "What is verified where").
//
//   call                                              | 10.x | 11.x | notes
//   --------------------------------------------------+------+------+-------------------------------
//   createInferRuntime(ILogger&)                      |  yes |  yes |
//   ILogger::log(Severity, AsciiChar const*) noexcept |  yes |  yes | implemented here
//   IRuntime::setEngineHostCodeAllowed(bool)          |  yes |  yes | only with --allow-engine-host-code
//   IRuntime::deserializeCudaEngine(void const*, size)|  yes |  yes | 11.x also has IStreamReaderV2
//   ICudaEngine::getNbIOTensors / getIOTensorName     |  yes |  yes |
//   ICudaEngine::getTensorIOMode / getTensorDataType  |  yes |  yes |
//   ICudaEngine::getTensorShape(name)                 |  yes |  yes | the I/O channel counts (-1 = dynamic)
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
#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backends.hpp"
#include "mirnet/error.hpp"
#include "mirnet/image.hpp"

#if !defined(NV_TENSORRT_MAJOR) || NV_TENSORRT_MAJOR < 10
#error "the TensorRT engine needs TensorRT 10 or newer (enqueueV3 and the name-based tensor API)"
#endif

namespace mirnet::detail {

namespace {

constexpr const char* kInputName = "input";
constexpr const char* kOutputName = "output";

void check_cuda(cudaError_t status, const char* what) {
    if (status != cudaSuccess) {
        throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(status) + " (" +
                                       cudaGetErrorString(status) + ").");
    }
}

struct DeviceBuffer {
    void* ptr = nullptr;
    std::size_t bytes = 0;
    explicit DeviceBuffer(std::size_t size) : bytes(size) { check_cuda(cudaMalloc(&ptr, size), "cudaMalloc"); }
    ~DeviceBuffer() {
        if (ptr) cudaFree(ptr);
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
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
    return trt_version_from_int(getInferLibVersion());
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

Shape4 to_shape(const nvinfer1::Dims& d) {
    if (d.nbDims != 4) return Shape4{-1, -1, -1, -1};
    return Shape4{d.d[0], d.d[1], d.d[2], d.d[3]};
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
        throw Error("The engine's I/O tensors are [" + found +
                                       "], but the MIRNet contract is one float32 input 'input' and one float32 "
                                       "output 'output' (NCHW RGB in [0, 1]). Export the ONNX with the toolkit "
                                       "(`mirnet export`, FP16/INT8 variants keep FP32 I/O) and rebuild.");
    }
}

// The static channel dimension of an I/O tensor (NCHW; -1 marks a dynamic one, which the contract excludes).
int channel_count(const nvinfer1::ICudaEngine& engine, const char* name) {
    const nvinfer1::Dims dims = engine.getTensorShape(name);
    if (dims.nbDims != 4 || dims.d[1] < 1) {
        throw Error(std::string("The engine's tensor '") + name + "' has shape " + dims_text(dims) +
                    "; the contract is NCHW with a fixed channel count. Rebuild it from the toolkit's ONNX.");
    }
    return static_cast<int>(dims.d[1]);
}

// The manifest's profiles must be the engine's (otherwise the manifest belongs to another plan).
void check_profiles(const nvinfer1::ICudaEngine& engine, const Manifest& m) {
    const int32_t count = engine.getNbOptimizationProfiles();
    if (count != static_cast<int32_t>(m.profiles.size())) {
        throw Error("Manifest " + m.source + " lists " + std::to_string(m.profiles.size()) +
                                       " optimization profile(s), the engine has " + std::to_string(count) +
                                       ": the manifest does not belong to this engine. Rebuild, or pass the right "
                                       "--manifest.");
    }
    using Sel = nvinfer1::OptProfileSelector;
    for (int32_t i = 0; i < count; ++i) {
        Profile p;
        p.min = to_shape(engine.getProfileShape(kInputName, i, Sel::kMIN));
        p.opt = to_shape(engine.getProfileShape(kInputName, i, Sel::kOPT));
        p.max = to_shape(engine.getProfileShape(kInputName, i, Sel::kMAX));
        const Profile& q = m.profiles[static_cast<std::size_t>(i)];
        if (p.min != q.min || p.opt != q.opt || p.max != q.max) {
            throw Error("Profile " + std::to_string(i) + " of the engine is (" +
                                           format_profile(p) + ") but manifest " + m.source + " says (" +
                                           format_profile(q) +
                                           "): the manifest does not belong to this engine.");
        }
    }
}

struct GpuInfo {
    std::string name, cc;
};

GpuInfo probe_gpu(int device) {
    int devices = 0;
    const cudaError_t probe = cudaGetDeviceCount(&devices);
    if (probe != cudaSuccess || devices == 0) {
        throw Error(std::string("No usable CUDA GPU for the TensorRT engine: ") +
                    (probe != cudaSuccess ? std::string(cudaGetErrorName(probe)) + " (" + cudaGetErrorString(probe) + ")"
                                          : std::string("no device found")) +
                    ". On a machine without one, build an OpenVINO engine (`mirnet build MODEL.onnx --backend "
                    "openvino`).");
    }
    if (device >= devices) {
        throw Error("CUDA device " + std::to_string(device) + " does not exist: " + std::to_string(devices) +
                    " device(s) found.");
    }
    check_cuda(cudaSetDevice(device), "cudaSetDevice");
    cudaDeviceProp prop{};
    check_cuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    return GpuInfo{prop.name, std::to_string(prop.major) + "." + std::to_string(prop.minor)};
}

class TensorRTEngine final : public Engine {
public:
    TensorRTEngine(const Manifest& manifest, const EngineOptions& options, GpuInfo gpu, std::string version)
        : Engine(manifest), logger_(options.verbose ? nvinfer1::ILogger::Severity::kINFO
                                                    : nvinfer1::ILogger::Severity::kWARNING),
          gpu_(std::move(gpu)), device_index_(options.cuda_device), version_(std::move(version)) {
        const std::vector<uint8_t> bytes = read_file(manifest.engine_path());
        runtime_.reset(nvinfer1::createInferRuntime(logger_));
        if (!runtime_) throw Error("createInferRuntime failed: " + logger_.last_error());
        if (manifest.version_compatible) runtime_->setEngineHostCodeAllowed(true);
        engine_.reset(runtime_->deserializeCudaEngine(bytes.data(), bytes.size()));
        if (!engine_) {
            throw Error("TensorRT could not deserialize " + manifest.engine_path() + ": " + logger_.last_error() +
                        " Rebuild the engine on this device (README.md, 'Jetson').");
        }
        check_io(*engine_);
        set_channels(Channels{channel_count(*engine_, kInputName), channel_count(*engine_, kOutputName)});
        check_profiles(*engine_, manifest);
        context_.reset(engine_->createExecutionContext());
        if (!context_) throw Error("createExecutionContext failed: " + logger_.last_error());
    }

    std::string backend() const override { return "tensorrt"; }
    std::string device() const override {
        return "GPU " + std::to_string(device_index_) + ": " + gpu_.name + " (compute capability " + gpu_.cc + ")";
    }
    std::string runtime_version() const override { return version_; }

    void infer(const float* input, const Shape4& shape, float* output) override {
        check_input_shape(manifest(), shape, channels().input);
        select_profile(shape);
        const nvinfer1::Dims in_dims = dims4(shape[0], shape[1], shape[2], shape[3]);
        if (!context_->setInputShape(kInputName, in_dims)) {
            throw Error("setInputShape(" + dims_text(in_dims) + ") was refused: " + logger_.last_error());
        }
        const Shape4 expected{shape[0], channels().output, shape[2] * scale(), shape[3] * scale()};
        const nvinfer1::Dims out_dims = context_->getTensorShape(kOutputName);
        if (to_shape(out_dims) != expected) {
            throw Error("For input " + dims_text(in_dims) + " the engine's output is " + dims_text(out_dims) +
                        ", expected " + format_shape(expected) + " (scale from the manifest).");
        }
        const std::size_t in_bytes = sizeof(float) * static_cast<std::size_t>(shape[0] * shape[1] * shape[2] * shape[3]);
        const std::size_t out_bytes = sizeof(float) * static_cast<std::size_t>(expected[0] * expected[1] * expected[2] *
                                                                               expected[3]);
        reserve(d_in_, in_bytes);
        reserve(d_out_, out_bytes);
        if (!context_->setTensorAddress(kInputName, d_in_->ptr) || !context_->setTensorAddress(kOutputName, d_out_->ptr)) {
            throw Error("setTensorAddress failed: " + logger_.last_error());
        }
        check_cuda(cudaMemcpyAsync(d_in_->ptr, input, in_bytes, cudaMemcpyHostToDevice, stream_.s),
                   "cudaMemcpyAsync (host to device)");
        if (!context_->enqueueV3(stream_.s)) throw Error("enqueueV3 failed: " + logger_.last_error());
        check_cuda(cudaMemcpyAsync(output, d_out_->ptr, out_bytes, cudaMemcpyDeviceToHost, stream_.s),
                   "cudaMemcpyAsync (device to host)");
        check_cuda(cudaStreamSynchronize(stream_.s), "cudaStreamSynchronize");
    }

private:
    void select_profile(const Shape4& shape) {
        const auto wanted = profile_for_shape(manifest(), shape[0], shape[1], shape[2], shape[3]);
        const int32_t index = static_cast<int32_t>(wanted.value_or(0));
        if (index == profile_) return;
        if (!context_->setOptimizationProfileAsync(index, stream_.s)) {
            throw Error("setOptimizationProfileAsync(" + std::to_string(index) + ") failed: " + logger_.last_error());
        }
        check_cuda(cudaStreamSynchronize(stream_.s), "cudaStreamSynchronize");
        profile_ = index;
    }

    static void reserve(std::unique_ptr<DeviceBuffer>& buffer, std::size_t bytes) {
        if (!buffer || buffer->bytes < bytes) buffer = std::make_unique<DeviceBuffer>(bytes);
    }

    Logger logger_;
    GpuInfo gpu_;
    int device_index_;
    std::string version_;
    std::unique_ptr<nvinfer1::IRuntime> runtime_;
    std::unique_ptr<nvinfer1::ICudaEngine> engine_;
    std::unique_ptr<nvinfer1::IExecutionContext> context_;
    Stream stream_;
    std::unique_ptr<DeviceBuffer> d_in_, d_out_;
    int32_t profile_ = 0;
};

}  // namespace

std::unique_ptr<Engine> open_tensorrt_engine(const Manifest& manifest, const EngineOptions& options) {
    GpuInfo gpu = probe_gpu(options.cuda_device);
    const std::string version = trt_library_version();
    if (parse_version(version).front() != NV_TENSORRT_MAJOR) {
        throw Error("libmirnet was compiled against TensorRT " + std::to_string(NV_TENSORRT_MAJOR) +
                    ".x headers but loaded libnvinfer " + version + "; rebuild it against the installed TensorRT.");
    }
    const std::string mismatch =
        check_manifest(manifest, RuntimeInfo{version, gpu.name, gpu.cc}, options.onnx_sha256, options.precision);
    if (!mismatch.empty()) throw Error(mismatch);
    if (manifest.version_compatible && !options.allow_engine_host_code) {
        throw Error("Manifest " + manifest.source + " says the engine is version-compatible: such plans embed host "
                    "code that TensorRT runs on load. Allow it (mirnet_run --allow-engine-host-code) only for "
                    "engines from a trusted source.");
    }
    return std::make_unique<TensorRTEngine>(manifest, options, std::move(gpu), version);
}

}  // namespace mirnet::detail
