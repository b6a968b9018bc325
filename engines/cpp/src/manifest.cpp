#include "mirnet/manifest.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <string_view>

#include <nlohmann/json.hpp>

#include "mirnet/error.hpp"
#include "mirnet/image.hpp"  // read_file

namespace mirnet {

namespace {

std::string trim(const std::string& s) {
    std::size_t a = 0, b = s.size();
    while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
    while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
    return s.substr(a, b - a);
}

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

using nlohmann::json;

// Python's json module writes NaN, Infinity and -Infinity (RFC 8259 has no such numbers); outside
// strings they become null, which no field read here may be.
std::string nonfinite_to_null(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            out += c;
            if (c == '\\' && i + 1 < text.size()) out += text[++i];
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') in_string = true;
        bool replaced = false;
        for (std::string_view token : {"-Infinity", "Infinity", "NaN"}) {
            if (text.substr(i, token.size()) == token) {
                out += "null";
                i += token.size() - 1;
                replaced = true;
                break;
            }
        }
        if (!replaced) out += c;
    }
    return out;
}

struct FieldReader {
    const json& root;
    const std::string& source;

    [[noreturn]] void fail(const std::string& field, const std::string& message) const {
        throw Error("Manifest " + source + ": field '" + field + "' " + message);
    }
    const json* get(const char* key) const {
        const auto it = root.find(key);
        return it == root.end() ? nullptr : &*it;
    }

    std::string required_string(const char* key) const {
        const json* v = get(key);
        if (!v) fail(key, "is missing. Rebuild the engine with the toolkit so that its manifest is complete.");
        if (!v->is_string()) fail(key, std::string("must be a string, got ") + v->type_name() + ".");
        return v->get<std::string>();
    }
    std::string optional_string(const char* key, const std::string& fallback = "") const {
        const json* v = get(key);
        if (!v || v->is_null()) return fallback;
        if (!v->is_string()) fail(key, std::string("must be a string, got ") + v->type_name() + ".");
        return v->get<std::string>();
    }
    std::optional<std::string> nullable_string(const char* key) const {
        const json* v = get(key);
        if (!v || v->is_null()) return std::nullopt;
        if (!v->is_string()) fail(key, std::string("must be a string or null, got ") + v->type_name() + ".");
        return v->get<std::string>();
    }
    double optional_number(const char* key, double fallback) const {
        const json* v = get(key);
        if (!v || v->is_null()) return fallback;
        if (!v->is_number()) fail(key, std::string("must be a number, got ") + v->type_name() + ".");
        return v->get<double>();
    }
    int positive_int(const char* key, int fallback) const {
        const double d = optional_number(key, fallback);
        if (!(d >= 1 && d <= 1 << 20) || std::floor(d) != d) {
            fail(key, "must be a positive integer, got " + get(key)->dump() + ".");
        }
        return static_cast<int>(d);
    }
};

Shape4 read_shape(const json* v, const std::string& where, const std::string& source) {
    if (!v) throw Error("Manifest " + source + ": " + where + " is missing.");
    if (!v->is_array() || v->size() != 4) {
        throw Error("Manifest " + source + ": " + where + " must be a list of 4 integers [n, c, h, w], got " +
                    v->dump() + ".");
    }
    Shape4 s{};
    for (std::size_t i = 0; i < 4; ++i) {
        const json& d = (*v)[i];
        const double x = d.is_number() ? d.get<double>() : -1.0;
        if (std::floor(x) != x || x < 1 || x > 1e9) {
            throw Error("Manifest " + source + ": " + where + " must hold positive integers, got " + v->dump() + ".");
        }
        s[i] = static_cast<int64_t>(x);
    }
    return s;
}

const json* member(const json& object, const char* key) {
    const auto it = object.find(key);
    return it == object.end() ? nullptr : &*it;
}

Profile read_profile(const json& p, std::size_t index, const std::string& source) {
    const std::string where = "profiles[" + std::to_string(index) + "]";
    if (!p.is_object()) {
        throw Error("Manifest " + source + ": " + where + " must be an object {min, opt, max}, got " + p.type_name() +
                    ".");
    }
    const json* box = &p;
    if (!member(p, "min")) {  // tolerate {"input": {"min": ..., "opt": ..., "max": ...}}
        const json* inner = member(p, "input");
        if (inner && inner->is_object()) box = inner;
    }
    Profile prof;
    prof.min = read_shape(member(*box, "min"), where + ".min", source);
    prof.opt = read_shape(member(*box, "opt"), where + ".opt", source);
    prof.max = read_shape(member(*box, "max"), where + ".max", source);
    for (std::size_t i = 0; i < 4; ++i) {
        if (prof.min[i] > prof.opt[i] || prof.opt[i] > prof.max[i]) {
            throw Error("Manifest " + source + ": " + where + " is not ordered min <= opt <= max (" +
                        format_profile(prof) + ").");
        }
    }
    return prof;
}

// "8.7" -> {8, 7}
std::optional<std::pair<int, int>> parse_cc(const std::string& text) {
    const std::string t = trim(text);
    const std::size_t dot = t.find('.');
    if (dot == std::string::npos || dot == 0 || dot + 1 >= t.size()) return std::nullopt;
    int major = 0, minor = 0;
    for (std::size_t i = 0; i < dot; ++i) {
        if (!std::isdigit(static_cast<unsigned char>(t[i]))) return std::nullopt;
        major = major * 10 + (t[i] - '0');
    }
    for (std::size_t i = dot + 1; i < t.size(); ++i) {
        if (!std::isdigit(static_cast<unsigned char>(t[i]))) return std::nullopt;
        minor = minor * 10 + (t[i] - '0');
    }
    return std::make_pair(major, minor);
}

std::string normalize_hw_level(std::string level) {
    level = lower(trim(level));
    const std::string prefix = "hardwarecompatibilitylevel.";
    if (level.rfind(prefix, 0) == 0) level = level.substr(prefix.size());
    if (!level.empty() && level[0] == 'k') {  // C++ enum spelling kAMPERE_PLUS
        const std::string rest = level.substr(1);
        if (rest == "ampere_plus" || rest == "same_compute_capability" || rest == "none") level = rest;
    }
    return level.empty() ? "none" : level;
}

std::string join_version(const std::vector<int>& v) {
    std::string out;
    for (std::size_t i = 0; i < v.size(); ++i) out += (i ? "." : "") + std::to_string(v[i]);
    return out;
}

// The checks every backend shares: the ONNX the engine was built from, and its precision.
// Appends to `problems`; true when the engine is stale (a rebuild helps).
bool check_model(const Manifest& m, const std::optional<std::string>& onnx_sha256,
                 const std::optional<std::string>& precision, std::vector<std::string>& problems) {
    bool stale = false;
    if (onnx_sha256) {
        const std::string want = lower(trim(*onnx_sha256));
        const std::string have = lower(trim(m.onnx_sha256));
        if (have.empty()) {
            problems.push_back("ONNX: the manifest records no onnx_sha256, expected " + want);
        } else if (have != want) {
            problems.push_back("ONNX: the engine was built from ONNX sha256 " + have + ", expected " + want +
                               " (the engine is stale for this model)");
            stale = true;
        }
    }
    const std::string want_precision = precision ? lower(trim(*precision)) : "";
    const std::string have_precision = lower(trim(m.precision));
    if (precision && want_precision != have_precision && have_precision.rfind(want_precision + "-", 0) != 0) {
        problems.push_back("precision: the engine is " + m.precision + ", expected " + *precision);
    }

    return stale;
}

constexpr const char* kRebuildTensorRT =
    "TensorRT engines are not portable across TensorRT versions or GPUs: rebuild the engine on this device from "
    "the shipped ONNX (see engines/cpp/README.md, 'Jetson').";
constexpr const char* kRebuildOpenVino =
    "OpenVINO compiled models are tied to the OpenVINO version and device that compiled them: rebuild on this "
    "machine with `mirnet build MODEL.onnx --backend openvino`.";

// "" without problems; else one message listing them, and how to rebuild when the engine is stale.
std::string describe_problems(const Manifest& m, const std::vector<std::string>& problems, bool stale,
                              const char* rebuild) {
    if (problems.empty()) return "";
    std::string out = "Engine manifest " + m.source + " does not match this system:";
    for (const std::string& p : problems) out += "\n  - " + p + ".";
    if (stale) out += std::string("\n") + rebuild;
    return out;
}

}  // namespace

std::vector<int> parse_version(const std::string& text) {
    const std::string t = trim(text);
    std::vector<int> parts;
    std::size_t i = 0;
    while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) {
        long long v = 0;
        while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) {
            v = std::min<long long>(v * 10 + (t[i] - '0'), 1000000000LL);
            ++i;
        }
        parts.push_back(static_cast<int>(v));
        if (i < t.size() && t[i] == '.' && i + 1 < t.size() && std::isdigit(static_cast<unsigned char>(t[i + 1]))) {
            ++i;
        } else {
            break;
        }
    }
    if (parts.empty()) {
        throw Error("'" + text + "' is not a version number (expected e.g. 10.3.0).");
    }
    return parts;
}

std::string trt_version_from_int(int encoded) {
    if (encoded < 0) throw Error("Invalid TensorRT version code " + std::to_string(encoded) + ".");
    return std::to_string(encoded / 10000) + "." + std::to_string((encoded / 100) % 100) + "." +
           std::to_string(encoded % 100);
}

namespace {

Manifest parse_manifest(const json& root, const std::string& source) {
    if (!root.is_object()) {
        throw Error("Manifest " + source + ": the top level must be a JSON object, got " + root.type_name() + ".");
    }
    const FieldReader f{root, source};
    Manifest m;
    m.source = source;
    m.backend = f.required_string("backend");
    m.backend_version = f.required_string("backend_version");
    m.precision = f.required_string("precision");
    m.toolkit_version = f.optional_string("toolkit_version");
    m.cuda_driver = f.nullable_string("cuda_driver");
    m.gpu_name = f.nullable_string("gpu_name");
    m.compute_capability = f.nullable_string("compute_capability");
    if (m.compute_capability && !parse_cc(*m.compute_capability)) {
        f.fail("compute_capability", "must look like \"8.7\", got \"" + *m.compute_capability + "\".");
    }
    m.onnx_sha256 = f.optional_string("onnx_sha256");
    m.built_at = f.optional_string("built_at");
    m.task = f.optional_string("task");
    m.build_time_s = f.get("build_time_s") ? f.optional_number("build_time_s", 0.0)
                                           : f.optional_number("build_seconds", 0.0);  // engines/manifest.py
    m.engine_file = f.optional_string("engine_file");
    m.device = f.optional_string("device");
    m.device_name = f.optional_string("device_name");
    m.inference_precision = f.optional_string("inference_precision");
    m.format = static_cast<int>(f.optional_number("format", 0));
    if (m.format > kManifestFormat) {
        f.fail("format", "is " + std::to_string(m.format) + ", newer than this build of mirnet reads (" +
                             std::to_string(kManifestFormat) + "). Update engines/cpp, or rebuild the engine with "
                             "the matching toolkit.");
    }
    m.size_multiple = f.positive_int("size_multiple", 4);
    m.scale = f.positive_int("scale", 1);
    if (const json* p = f.get("parity"); p && p->is_object()) {
        if (const json* passed = member(*p, "passed"); passed && passed->is_boolean()) m.parity_passed = passed->get<bool>();
    }
    if (const json* b = f.get("build_options")) {
        if (!b->is_object() && !b->is_null()) {
            f.fail("build_options", std::string("must be an object, got ") + b->type_name() + ".");
        }
        if (const json* vc = b->is_object() ? member(*b, "version_compatible") : nullptr) {
            if (!vc->is_boolean() && !vc->is_null()) {
                f.fail("build_options.version_compatible", "must be true or false, got " + vc->dump() + ".");
            }
            m.version_compatible = vc->is_boolean() && vc->get<bool>();
        }
        // engines/manifest.py writes "hardware_compatibility"; "hardware_compatibility_level" is
        // accepted too (TensorRT's own name for the setting).
        const char* hw_key = b->is_object() && member(*b, "hardware_compatibility_level")
                                 ? "hardware_compatibility_level"
                                 : "hardware_compatibility";
        if (const json* hw = b->is_object() ? member(*b, hw_key) : nullptr) {
            const std::string field = std::string("build_options.") + hw_key;
            if (hw->is_string()) {
                m.hardware_compatibility_level = normalize_hw_level(hw->get<std::string>());
            } else if (!hw->is_null()) {
                f.fail(field, "must be a string (none, ampere_plus, same_compute_capability) or null, got " +
                                  hw->dump() + ".");
            }
            const std::string& l = m.hardware_compatibility_level;
            if (l != "none" && l != "ampere_plus" && l != "same_compute_capability") {
                f.fail(field, "is '" + l + "'; known levels are none, ampere_plus, same_compute_capability.");
            }
        }
    }
    if (const json* p = f.get("profiles")) {
        if (!p->is_array() && !p->is_null()) {
            f.fail("profiles", std::string("must be a list of {min, opt, max}, got ") + p->type_name() + ".");
        }
        if (p->is_array()) {
            for (std::size_t i = 0; i < p->size(); ++i) m.profiles.push_back(read_profile((*p)[i], i, source));
        }
    }
    return m;
}

}  // namespace

Manifest parse_manifest_text(std::string_view text, const std::string& source) {
    json root;
    try {
        root = json::parse(nonfinite_to_null(text));
    } catch (const json::parse_error& e) {
        throw Error("Manifest " + source + " is not valid JSON: " + e.what());
    }
    return parse_manifest(root, source);
}

Manifest load_manifest(const std::string& path) {
    std::vector<uint8_t> bytes;
    try {
        bytes = read_file(path);
    } catch (const Error& e) {
        throw Error(std::string(e.what()) +
                    " Every engine needs its manifest (<engine>.json, written by `mirnet build`).");
    }
    return parse_manifest_text(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), path);
}

std::string Manifest::engine_path() const {
    if (engine_file.empty()) {
        throw Error("Manifest " + source + " names no engine_file; rebuild the engine with `mirnet build`.");
    }
    if (engine_file.find('/') != std::string::npos) {
        throw Error("Manifest " + source + ": engine_file '" + engine_file +
                    "' must be a file name next to the manifest, not a path.");
    }
    const std::size_t slash = source.rfind('/');
    return (slash == std::string::npos ? std::string() : source.substr(0, slash + 1)) + engine_file;
}

std::string manifest_path_for_engine(const std::string& engine_path) {
    const bool is_json = engine_path.size() >= 5 && engine_path.compare(engine_path.size() - 5, 5, ".json") == 0;
    return is_json ? engine_path : engine_path + ".json";
}

std::string check_manifest(const Manifest& m, const RuntimeInfo& rt, const std::optional<std::string>& onnx_sha256,
                           const std::optional<std::string>& precision) {
    std::vector<std::string> problems;
    bool rebuild_hint = false;

    if (lower(m.backend) != "tensorrt") {
        problems.push_back("backend: the manifest describes a '" + m.backend +
                           "' artifact, not a TensorRT engine; run it with the Python runner (`mirnet infer`) or "
                           "build a TensorRT engine with `mirnet build --backend tensorrt`");
    } else {
        // TensorRT version.
        std::vector<int> built, here;
        bool parsed = true;
        try {
            built = parse_version(m.backend_version);
            here = parse_version(rt.trt_version);
        } catch (const Error&) {
            parsed = false;
            problems.push_back("TensorRT version: cannot compare the engine's '" + m.backend_version +
                               "' with this runtime's '" + rt.trt_version + "'");
        }
        if (parsed) {
            if (m.version_compatible) {
                // Version-compatible plans load on the same or a later TensorRT of the same major, and
                // 10.x plans also on 11.x (DEPLOY_STACK.md §1.4; as engines/manifest.py checks).
                std::vector<int> b3 = built, h3 = here;
                b3.resize(3, 0);
                h3.resize(3, 0);
                if (h3 < b3 || h3[0] > b3[0] + 1) {
                    problems.push_back("TensorRT version: the engine was built version-compatible with TensorRT " +
                                       m.backend_version + " (it loads on TensorRT " + join_version(b3) + " up to " +
                                       std::to_string(b3[0] + 1) + ".x), but this runtime is TensorRT " +
                                       rt.trt_version);
                    rebuild_hint = true;
                }
            } else {
                const std::size_t n = std::max<std::size_t>(3, std::min(built.size(), here.size()));
                std::vector<int> b = built, h = here;
                b.resize(n, 0);
                h.resize(n, 0);
                if (b != h) {
                    problems.push_back("TensorRT version: the engine was built with TensorRT " + m.backend_version +
                                       ", this runtime is TensorRT " + rt.trt_version +
                                       "; an engine loads only on the TensorRT version that built it");
                    rebuild_hint = true;
                }
            }
        }

        // GPU.
        const auto here_cc = parse_cc(rt.compute_capability);
        const std::string here_gpu = "'" + rt.gpu_name + "' (compute capability " + rt.compute_capability + ")";
        const std::string built_gpu = "'" + m.gpu_name.value_or("?") + "' (compute capability " +
                                      m.compute_capability.value_or("?") + ")";
        const std::string& level = m.hardware_compatibility_level;
        if (!here_cc) {
            problems.push_back("GPU: cannot read this GPU's compute capability '" + rt.compute_capability + "'");
        } else if (level == "ampere_plus") {
            if (here_cc->first < 8) {
                problems.push_back("GPU: the engine was built hardware-compatible for Ampere or newer (compute "
                                   "capability >= 8.0), this GPU is " + here_gpu);
                rebuild_hint = true;
            }
        } else if (!m.gpu_name && !m.compute_capability) {
            problems.push_back("GPU: the manifest records no GPU (gpu_name and compute_capability are null), so "
                               "the engine cannot be matched to this GPU " + here_gpu);
            rebuild_hint = true;
        } else {
            if (m.compute_capability && parse_cc(*m.compute_capability) != here_cc) {
                problems.push_back("GPU: the engine was built for GPU " + built_gpu + ", this GPU is " + here_gpu);
                rebuild_hint = true;
            } else if (level != "same_compute_capability" && m.gpu_name && trim(*m.gpu_name) != trim(rt.gpu_name)) {
                problems.push_back("GPU: the engine was built on GPU " + built_gpu + ", this GPU is " + here_gpu +
                                   " (same compute capability, but engines are tuned per GPU model; build with "
                                   "hardware_compatibility_level=same_compute_capability to share one)");
                rebuild_hint = true;
            } else if (level == "same_compute_capability" && !m.compute_capability) {
                problems.push_back("GPU: the engine is marked same_compute_capability but the manifest records no "
                                   "compute_capability");
            }
        }
        if (m.profiles.empty()) {
            problems.push_back("profiles: the manifest lists no optimization profile, so no input shape can be "
                               "chosen");
        }
    }

    const bool stale = check_model(m, onnx_sha256, precision, problems) || rebuild_hint;
    return describe_problems(m, problems, stale, kRebuildTensorRT);
}

std::string check_openvino_manifest(const Manifest& m, const OpenVinoInfo& rt,
                                    const std::optional<std::string>& onnx_sha256,
                                    const std::optional<std::string>& precision) {
    std::vector<std::string> problems;
    bool rebuild_hint = false;
    if (lower(m.backend) != "openvino") {
        problems.push_back("backend: the manifest describes a '" + m.backend +
                           "' artifact, not an OpenVINO engine; build one with `mirnet build --backend openvino`");
    } else {
        if (m.backend_version != rt.version) {
            problems.push_back("OpenVINO version: the engine was compiled by OpenVINO " + m.backend_version +
                               ", this runtime is OpenVINO " + rt.version +
                               "; a compiled model loads only on the version that compiled it");
            rebuild_hint = true;
        }
        if (m.device.empty()) {
            problems.push_back("device: the manifest names no OpenVINO device");
        } else if (std::find(rt.devices.begin(), rt.devices.end(), m.device) == rt.devices.end()) {
            std::string seen;
            for (const std::string& d : rt.devices) seen += (seen.empty() ? "" : ", ") + d;
            problems.push_back("device: the engine was compiled for OpenVINO device " + m.device +
                               ", which OpenVINO does not see here (devices: " + (seen.empty() ? "none" : seen) + ")");
        } else if (!m.device_name.empty() && trim(m.device_name) != trim(rt.device_name)) {
            problems.push_back("device: the engine was compiled for " + m.device + " '" + m.device_name +
                               "', this " + m.device + " is '" + rt.device_name + "'");
            rebuild_hint = true;
        }
    }
    const bool stale = check_model(m, onnx_sha256, precision, problems) || rebuild_hint;
    return describe_problems(m, problems, stale, kRebuildOpenVino);
}

std::optional<std::size_t> profile_for_shape(const Manifest& m, int64_t n, int64_t c, int64_t h, int64_t w) {
    std::optional<std::size_t> best;
    double best_distance = 0.0;
    for (std::size_t i = 0; i < m.profiles.size(); ++i) {
        const Profile& p = m.profiles[i];
        if (!profile_contains(p, Shape4{n, c, h, w})) continue;
        const double distance = std::fabs(static_cast<double>(p.opt[2]) * static_cast<double>(p.opt[3]) -
                                          static_cast<double>(h) * static_cast<double>(w));
        if (!best || distance < best_distance) {
            best = i;
            best_distance = distance;
        }
    }
    return best;
}

std::optional<std::size_t> profile_for_tiling(const Manifest& m, int64_t n, int64_t c) {
    std::optional<std::size_t> best;
    double best_area = -1.0;
    for (std::size_t i = 0; i < m.profiles.size(); ++i) {
        const Profile& p = m.profiles[i];
        if (n < p.min[0] || n > p.max[0] || c < p.min[1] || c > p.max[1]) continue;
        const double area = static_cast<double>(p.max[2]) * static_cast<double>(p.max[3]);
        if (area > best_area) {
            best = i;
            best_area = area;
        }
    }
    return best;
}

}  // namespace mirnet
