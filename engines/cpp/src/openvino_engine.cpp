// The OpenVINO engine: a model compiled once by `mirnet build --backend openvino` (OpenVINO's
// exported compiled model, the format of its model cache) is imported here, on the device and with
// the inference precision the manifest records, after the manifest was checked against this
// OpenVINO and device. Input and output are wrapped in ov::Tensor views of the caller's buffers.
#include <openvino/openvino.hpp>

#include <fstream>
#include <sstream>

#include "backends.hpp"
#include "mirnet/error.hpp"

namespace mirnet::detail {

namespace {

// The static channel dimension of a model port (NCHW); throws when the model leaves it dynamic.
int channel_count(const ov::Output<const ov::Node>& port, const std::string& path) {
    const ov::PartialShape& shape = port.get_partial_shape();
    if (shape.rank().is_dynamic() || shape.rank().get_length() != 4 || shape[1].is_dynamic()) {
        throw Error("The OpenVINO engine " + path + " has a " + port.get_any_name() + " of shape " + shape.to_string() +
                    "; the contract is NCHW with a fixed channel count. Rebuild it from the toolkit's ONNX.");
    }
    return static_cast<int>(shape[1].get_length());
}

// Release and build number, e.g. "2026.4.1-22982" of "2026.4.1-22982-e213a147257-releases/2026/4",
// as engines/openvino_build.py records it: compiled models load only on the build that compiled them.
std::string openvino_version() {
    const std::string full = ov::get_openvino_version().buildNumber;
    const std::size_t first = full.find('-');
    return full.substr(0, first == std::string::npos ? first : full.find('-', first + 1));
}

OpenVinoInfo describe_runtime(ov::Core& core, const std::string& device) {
    OpenVinoInfo info;
    info.version = openvino_version();
    info.devices = core.get_available_devices();
    for (const std::string& d : info.devices) {
        if (d == device) info.device_name = core.get_property(device, ov::device::full_name);
    }
    return info;
}

// The properties the model was compiled with, so that import_model() sees the same ones.
ov::AnyMap compile_properties(const Manifest& manifest) {
    ov::AnyMap properties{{ov::hint::performance_mode.name(), ov::hint::PerformanceMode::LATENCY}};
    if (!manifest.inference_precision.empty()) {
        properties[ov::hint::inference_precision.name()] = ov::element::Type(manifest.inference_precision);
    }
    return properties;
}

class OpenVinoEngine final : public Engine {
public:
    OpenVinoEngine(const Manifest& manifest, ov::CompiledModel compiled, std::string device_name)
        : Engine(manifest), compiled_(std::move(compiled)), request_(compiled_.create_infer_request()),
          device_name_(std::move(device_name)) {
        const std::string path = manifest.engine_path();
        set_channels(Channels{channel_count(compiled_.input(), path), channel_count(compiled_.output(), path)});
    }

    std::string backend() const override { return "openvino"; }
    std::string device() const override { return manifest().device + " (" + device_name_ + ")"; }
    std::string runtime_version() const override { return openvino_version(); }

    void infer(const float* input, const Shape4& shape, float* output) override {
        check_input_shape(manifest(), shape, channels().input);
        const ov::Shape in_shape{static_cast<size_t>(shape[0]), static_cast<size_t>(shape[1]),
                                 static_cast<size_t>(shape[2]), static_cast<size_t>(shape[3])};
        const ov::Shape out_shape{in_shape[0], static_cast<size_t>(channels().output),
                                  in_shape[2] * static_cast<size_t>(scale()), in_shape[3] * static_cast<size_t>(scale())};
        try {
            // Views of the caller's buffers: OpenVINO reads the input and writes the output in place.
            request_.set_input_tensor(ov::Tensor(ov::element::f32, in_shape, const_cast<float*>(input)));
            request_.set_output_tensor(ov::Tensor(ov::element::f32, out_shape, output));
            request_.infer();
        } catch (const ov::Exception& e) {
            throw Error("OpenVINO inference on " + format_shape(shape) + " failed (" + manifest().source +
                        "): " + e.what());
        }
    }

private:
    ov::CompiledModel compiled_;
    ov::InferRequest request_;
    std::string device_name_;
};

}  // namespace

std::unique_ptr<Engine> open_openvino_engine(const Manifest& manifest, const EngineOptions& options) {
    ov::Core core;
    const OpenVinoInfo runtime = describe_runtime(core, manifest.device);
    const std::string mismatch = check_openvino_manifest(manifest, runtime, options.onnx_sha256, options.precision);
    if (!mismatch.empty()) throw Error(mismatch);
    const std::string path = manifest.engine_path();
    std::ifstream blob(path, std::ios::binary);
    if (!blob) throw Error("Cannot read the OpenVINO engine " + path + " that " + manifest.source + " names.");
    try {
        ov::CompiledModel compiled = core.import_model(blob, manifest.device, compile_properties(manifest));
        const auto inputs = compiled.inputs();
        const auto outputs = compiled.outputs();
        if (inputs.size() != 1 || outputs.size() != 1 || inputs[0].get_element_type() != ov::element::f32 ||
            outputs[0].get_element_type() != ov::element::f32) {
            throw Error("The OpenVINO engine " + path + " does not have the toolkit's contract of one float32 input "
                        "and one float32 output (NCHW in [0, 1]); rebuild it from the toolkit's ONNX.");
        }
        return std::make_unique<OpenVinoEngine>(manifest, std::move(compiled), runtime.device_name);
    } catch (const ov::Exception& e) {
        throw Error("OpenVINO " + runtime.version + " could not load " + path + " on " + manifest.device + ": " +
                    e.what() + " Rebuild it with `mirnet build MODEL.onnx --backend openvino`.");
    }
}

}  // namespace mirnet::detail
