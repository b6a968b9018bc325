#include "mirnet/engine.hpp"

#include "backends.hpp"
#include "mirnet/error.hpp"

namespace mirnet {

std::vector<std::string> compiled_backends() {
    std::vector<std::string> names;
#ifdef MIRNET_WITH_OPENVINO
    names.push_back("openvino");
#endif
#ifdef MIRNET_WITH_TENSORRT
    names.push_back("tensorrt");
#endif
    return names;
}

std::unique_ptr<Engine> open_engine(const std::string& manifest_or_engine, const EngineOptions& options) {
    const Manifest manifest = load_manifest(manifest_path_for_engine(manifest_or_engine));
    std::string built;
    for (const std::string& name : compiled_backends()) built += (built.empty() ? "" : ", ") + name;
#ifdef MIRNET_WITH_OPENVINO
    if (manifest.backend == "openvino") return detail::open_openvino_engine(manifest, options);
#endif
#ifdef MIRNET_WITH_TENSORRT
    if (manifest.backend == "tensorrt") return detail::open_tensorrt_engine(manifest, options);
#endif
    std::string hint;
    if (manifest.backend == "openvino" || manifest.backend == "tensorrt") {
        hint = " This build of libmirnet has no " + manifest.backend +
               " engine: configure engines/cpp where it is found (cmake prints a status line per backend).";
    } else {
        hint = " The C++ side runs OpenVINO and TensorRT engines; build one with `mirnet build MODEL.onnx "
               "--backend openvino` (CPU) or `--backend tensorrt` (NVIDIA GPU).";
    }
    throw Error("Manifest " + manifest.source + " describes a '" + manifest.backend + "' engine (backends in " +
                "this build: " + (built.empty() ? "none" : built) + ")." + hint);
}

void Engine::set_channels(Channels channels) {
    if (channels.input < 1 || channels.output < 1) {
        throw Error("The model of " + manifest_.source + " has " + std::to_string(channels.input) + " input and " +
                    std::to_string(channels.output) + " output channels; a static channel count >= 1 is needed.");
    }
    channels_ = channels;
}

namespace detail {

void check_input_shape(const Manifest& manifest, const Shape4& shape, int channels) {
    const int64_t m = manifest.size_multiple;
    if (shape[0] != 1 || shape[1] != channels || shape[2] < 1 || shape[3] < 1 || shape[2] % m || shape[3] % m) {
        throw Error("Engine " + manifest.source + " takes 1x" + std::to_string(channels) +
                    "xHxW with H and W multiples of " + std::to_string(m) + ", got " + format_shape(shape) + ".");
    }
    if (manifest.profiles.empty()) return;
    for (const Profile& p : manifest.profiles) {
        if (profile_contains(p, shape)) return;
    }
    std::string known;
    for (const Profile& p : manifest.profiles) known += "\n  " + format_profile(p);
    throw Error("Input " + format_shape(shape) + " lies outside every optimization profile of " + manifest.source +
                ":" + known + "\nTile the image (Restorer / mirnet_run do that) or rebuild with a larger profile.");
}

}  // namespace detail

}  // namespace mirnet
