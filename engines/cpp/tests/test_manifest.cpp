// Engine manifests: parsing (tolerant of extra fields), checks against the running system,
// profile selection, version helpers.
#include <string>

#include "harness.hpp"
#include "mirnet/image.hpp"
#include "mirnet/manifest.hpp"

using namespace mirnet;

namespace {

// What the Python side writes (plus fields the C++ side does not know).
const char* kManifest = R"({
  "toolkit_version": "0.3.0",
  "backend": "tensorrt",
  "backend_version": "10.3.0.26",
  "cuda_driver": "12.6",
  "gpu_name": "Orin",
  "compute_capability": "8.7",
  "onnx_sha256": "ABCDEF0123456789",
  "precision": "fp16",
  "profiles": [
    {"min": [1, 3, 64, 64], "opt": [1, 3, 128, 128], "max": [1, 3, 256, 256]},
    {"min": [1, 3, 180, 320], "opt": [1, 3, 720, 1280], "max": [1, 3, 720, 1280]}
  ],
  "build_options": {"workspace_mib": 4096, "strongly_typed": true, "timing_cache": "timing.cache"},
  "build_time_s": 312.5,
  "built_at": "2026-11-24T10:00:00Z",
  "parity": {"psnr_db": {"256x256": Infinity, "720x1280": 51.2}, "passed": true},
  "task": "denoise",
  "size_multiple": 4,
  "scale": 1,
  "future_field": {"nested": [1, 2, 3]}
})";

RuntimeInfo orin() { return RuntimeInfo{"10.3.0", "Orin", "8.7"}; }

Manifest with(const std::string& from, const std::string& to) {
    std::string text = kManifest;
    const std::size_t at = text.find(from);
    if (at == std::string::npos) mt::fail(__FILE__, __LINE__, "fixture lacks " + from);
    text.replace(at, from.size(), to);
    return parse_manifest_text(text, "test.engine.json");
}

}  // namespace

TEST_CASE("manifest", parses_every_field_and_tolerates_extra_ones) {
    const Manifest m = parse_manifest_text(kManifest, "model.engine.json");
    CHECK_EQ(m.backend, std::string("tensorrt"));
    CHECK_EQ(m.backend_version, std::string("10.3.0.26"));
    CHECK(m.gpu_name && *m.gpu_name == "Orin");
    CHECK(m.compute_capability && *m.compute_capability == "8.7");
    CHECK(m.cuda_driver && *m.cuda_driver == "12.6");
    CHECK_EQ(m.precision, std::string("fp16"));
    CHECK_EQ(m.profiles.size(), std::size_t{2});
    CHECK_EQ(m.profiles[1].opt[2], 720);
    CHECK_EQ(m.profiles[1].max[3], 1280);
    CHECK_EQ(m.size_multiple, 4);
    CHECK_EQ(m.scale, 1);
    CHECK_EQ(m.build_time_s, 312.5);
    CHECK_EQ(m.task, std::string("denoise"));
    CHECK(!m.version_compatible);
    CHECK_EQ(m.hardware_compatibility_level, std::string("none"));
    CHECK(m.parity.find("passed")->as_bool());
    CHECK(m.raw.find("future_field") != nullptr);
    CHECK_EQ(check_manifest(m, orin()), std::string());
}

TEST_CASE("manifest", nulls_and_alternative_profile_spelling) {
    const Manifest m = parse_manifest_text(
        R"({"backend": "onnxruntime", "backend_version": "1.31.1", "precision": "int8", "gpu_name": null,
            "compute_capability": null, "cuda_driver": null, "parity": null, "build_options": null,
            "profiles": [{"input": {"min": [1,3,8,8], "opt": [1,3,8,8], "max": [2,3,16,16]}}]})",
        "ort.json");
    CHECK(!m.gpu_name);
    CHECK(!m.compute_capability);
    CHECK_EQ(m.profiles.size(), std::size_t{1});
    CHECK_EQ(m.profiles[0].max[0], 2);
}

TEST_CASE("manifest", malformed_manifests_name_the_field) {
    CHECK_THROWS_WITH(parse_manifest_text("[1]", "a.json"), "top level must be a JSON object");
    CHECK_THROWS_WITH(parse_manifest_text("{\"backend\": \"tensorrt\"}", "b.json"), "field 'backend_version' is missing");
    CHECK_THROWS_WITH(with("\"backend\": \"tensorrt\"", "\"backend\": 7"), "field 'backend' must be a string, got number");
    CHECK_THROWS_WITH(with("\"min\": [1, 3, 64, 64]", "\"min\": [1, 3, 64]"), "profiles[0].min must be a list of 4 integers");
    CHECK_THROWS_WITH(with("\"min\": [1, 3, 64, 64]", "\"min\": [1, 3, 512, 64]"), "not ordered min <= opt <= max");
    CHECK_THROWS_WITH(with("\"min\": [1, 3, 64, 64]", "\"min\": [1, 3, 6.5, 64]"), "positive integers");
    CHECK_THROWS_WITH(with("\"compute_capability\": \"8.7\"", "\"compute_capability\": \"sm87\""), "must look like \"8.7\"");
    CHECK_THROWS_WITH(with("\"size_multiple\": 4", "\"size_multiple\": 0"), "field 'size_multiple' must be a positive integer");
    CHECK_THROWS_WITH(with("\"profiles\": [", "\"profiles\": 3, \"x\": ["), "field 'profiles' must be a list");
    CHECK_THROWS_WITH(with("\"strongly_typed\": true", "\"hardware_compatibility_level\": \"turing_plus\""), "known levels");
    CHECK_THROWS_WITH(parse_manifest_text("{\"backend\": tensorrt}", "c.json"), "c.json is not valid JSON: JSON parse error at line 1");
    CHECK_THROWS_WITH(load_manifest(mt::temp_dir() + "/absent.engine.json"), "--manifest");
}

TEST_CASE("manifest", other_gpu_is_named) {
    const Manifest m = parse_manifest_text(kManifest, "model.engine.json");
    const std::string err = check_manifest(m, RuntimeInfo{"10.3.0", "NVIDIA GeForce RTX 3090", "8.6"});
    CHECK(err.find("model.engine.json") != std::string::npos);
    CHECK(err.find("GPU") != std::string::npos);
    CHECK(err.find("'Orin' (compute capability 8.7)") != std::string::npos);
    CHECK(err.find("'NVIDIA GeForce RTX 3090' (compute capability 8.6)") != std::string::npos);
    CHECK(err.find("rebuild the engine on this device") != std::string::npos);
    // Same compute capability, other model: still refused (engines are tuned per GPU model).
    const std::string same_cc = check_manifest(m, RuntimeInfo{"10.3.0", "Jetson AGX Orin", "8.7"});
    CHECK(same_cc.find("'Jetson AGX Orin'") != std::string::npos);
    CHECK(same_cc.find("same_compute_capability") != std::string::npos);
}

TEST_CASE("manifest", other_tensorrt_version_is_named) {
    const Manifest m = parse_manifest_text(kManifest, "model.engine.json");
    const std::string err = check_manifest(m, RuntimeInfo{"11.4.1", "Orin", "8.7"});
    CHECK(err.find("TensorRT version") != std::string::npos);
    CHECK(err.find("TensorRT 10.3.0.26") != std::string::npos);
    CHECK(err.find("TensorRT 11.4.1") != std::string::npos);
    CHECK(err.find("GPU:") == std::string::npos);
    CHECK_EQ(check_manifest(m, RuntimeInfo{"10.3.0.26", "Orin", "8.7"}), std::string());
    CHECK(!check_manifest(m, RuntimeInfo{"10.3.0.30", "Orin", "8.7"}).empty());
    CHECK(!check_manifest(m, RuntimeInfo{"10.3.1", "Orin", "8.7"}).empty());
    CHECK(!check_manifest(with("\"10.3.0.26\"", "\"10.3\""), RuntimeInfo{"10.4.0", "Orin", "8.7"}).empty());
    CHECK(check_manifest(m, RuntimeInfo{"ten", "Orin", "8.7"}).find("cannot compare") != std::string::npos);
}

TEST_CASE("manifest", version_and_hardware_compatible_engines) {
    const Manifest vc = with("\"strongly_typed\": true", "\"version_compatible\": true");
    CHECK(vc.version_compatible);
    CHECK_EQ(check_manifest(vc, RuntimeInfo{"10.8.0", "Orin", "8.7"}), std::string());
    CHECK_EQ(check_manifest(vc, RuntimeInfo{"11.4.1", "Orin", "8.7"}), std::string());  // 10.x VC plans load on 11.x
    CHECK(check_manifest(vc, RuntimeInfo{"10.2.0", "Orin", "8.7"}).find("version-compatible") != std::string::npos);
    CHECK(check_manifest(vc, RuntimeInfo{"12.0.0", "Orin", "8.7"}).find("up to 11.x") != std::string::npos);

    const Manifest amp = with("\"strongly_typed\": true", "\"hardware_compatibility_level\": \"AMPERE_PLUS\"");
    CHECK_EQ(amp.hardware_compatibility_level, std::string("ampere_plus"));
    CHECK_EQ(check_manifest(amp, RuntimeInfo{"10.3.0", "NVIDIA A100", "8.0"}), std::string());
    CHECK(check_manifest(amp, RuntimeInfo{"10.3.0", "Tesla T4", "7.5"}).find("Ampere or newer") != std::string::npos);

    const Manifest same = with("\"strongly_typed\": true", "\"hardware_compatibility_level\": \"HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY\"");
    CHECK_EQ(check_manifest(same, RuntimeInfo{"10.3.0", "Jetson AGX Orin", "8.7"}), std::string());
    CHECK(!check_manifest(same, RuntimeInfo{"10.3.0", "Orin", "8.9"}).empty());
}

TEST_CASE("manifest", onnx_precision_backend_and_missing_gpu) {
    const Manifest m = parse_manifest_text(kManifest, "model.engine.json");
    CHECK_EQ(check_manifest(m, orin(), std::string("abcdef0123456789"), std::string("FP16")), std::string());
    const std::string onnx = check_manifest(m, orin(), std::string("ffff"));
    CHECK(onnx.find("ONNX") != std::string::npos);
    CHECK(onnx.find("abcdef0123456789") != std::string::npos);
    CHECK(onnx.find("ffff") != std::string::npos);
    const std::string prec = check_manifest(m, orin(), std::nullopt, std::string("int8"));
    CHECK(prec.find("precision: the engine is fp16, expected int8") != std::string::npos);
    const std::string ort = check_manifest(with("\"backend\": \"tensorrt\"", "\"backend\": \"onnxruntime\""), orin());
    CHECK(ort.find("not a TensorRT engine") != std::string::npos);
    const Manifest nogpu = with("\"gpu_name\": \"Orin\",\n  \"compute_capability\": \"8.7\"",
                                "\"gpu_name\": null, \"compute_capability\": null");
    CHECK(check_manifest(nogpu, orin()).find("records no GPU") != std::string::npos);
    // Several mismatches are all listed.
    const std::string many = check_manifest(m, RuntimeInfo{"11.4.1", "NVIDIA H100", "9.0"}, std::string("00"),
                                            std::string("int8"));
    CHECK(many.find("TensorRT version") != std::string::npos);
    CHECK(many.find("GPU:") != std::string::npos);
    CHECK(many.find("ONNX") != std::string::npos);
    CHECK(many.find("precision") != std::string::npos);
}

TEST_CASE("manifest", profile_selection) {
    const Manifest m = parse_manifest_text(kManifest, "model.engine.json");
    CHECK(profile_for_shape(m, 1, 3, 100, 100) == std::optional<std::size_t>(0));
    CHECK(profile_for_shape(m, 1, 3, 720, 1280) == std::optional<std::size_t>(1));
    CHECK(profile_for_shape(m, 1, 3, 256, 256) == std::optional<std::size_t>(0));  // both contain it; opt 128^2 closer
    CHECK(profile_for_shape(m, 1, 3, 200, 400) == std::optional<std::size_t>(1));
    CHECK(!profile_for_shape(m, 1, 3, 1080, 1920));
    CHECK(!profile_for_shape(m, 2, 3, 128, 128));
    CHECK(!profile_for_shape(m, 1, 1, 128, 128));
    CHECK(!profile_for_shape(m, 1, 3, 32, 32));
    CHECK(profile_for_tiling(m, 1, 3) == std::optional<std::size_t>(1));
    CHECK(!profile_for_tiling(m, 4, 3));
}

TEST_CASE("manifest", version_helpers) {
    CHECK(parse_version("10.3.0.26") == std::vector<int>({10, 3, 0, 26}));
    CHECK(parse_version(" 11.4.1 ") == std::vector<int>({11, 4, 1}));
    CHECK(parse_version("10.3.0+cuda12.6") == std::vector<int>({10, 3, 0}));
    CHECK_THROWS_WITH(parse_version("v10"), "not a version number");
    CHECK_EQ(trt_version_from_int(100300), std::string("10.3.0"));
    CHECK_EQ(trt_version_from_int(110401), std::string("11.4.1"));
    CHECK_EQ(manifest_path_for_engine("/x/model.engine"), std::string("/x/model.engine.json"));
}

TEST_CASE("manifest", reads_what_engines_manifest_py_writes) {
    // tests/data/python_manifest.json was written by EngineManifest.to_json() (engines/manifest.py).
    const Manifest m = load_manifest(mt::data_dir() + "/python_manifest.json");
    CHECK_EQ(m.engine_file, std::string("model.fp16.engine"));
    CHECK_EQ(m.backend_version, std::string("10.3.0.30"));
    CHECK_EQ(m.build_time_s, 281.4);  // from build_seconds
    CHECK_EQ(m.format, 1);
    CHECK_EQ(m.profiles.size(), std::size_t{2});
    CHECK_EQ(m.profiles[1].max[3], 512);
    CHECK_EQ(m.hardware_compatibility_level, std::string("none"));  // "hardware_compatibility": null
    CHECK(!m.version_compatible);
    CHECK_EQ(m.size_multiple, 4);  // absent -> defaults
    CHECK_EQ(m.scale, 1);
    // On TensorRT 10 the C++ runner reports major.minor.patch only (no build number API in 10.3).
    CHECK_EQ(check_manifest(m, RuntimeInfo{"10.3.0", "Orin", "8.7"}, std::string("9F2C" + std::string(60, '0')),
                            std::string("fp16")),
             std::string());
    CHECK(!check_manifest(m, RuntimeInfo{"10.3.0.26", "Orin", "8.7"}).empty());
    CHECK(profile_for_shape(m, 1, 3, 720, 1280) == std::optional<std::size_t>(0));
    CHECK(profile_for_shape(m, 1, 3, 100, 100) == std::optional<std::size_t>(1));
}

TEST_CASE("manifest", python_spellings_and_format) {
    const Manifest same = with("\"strongly_typed\": true", "\"hardware_compatibility\": \"same_compute_capability\"");
    CHECK_EQ(same.hardware_compatibility_level, std::string("same_compute_capability"));
    CHECK_EQ(check_manifest(same, RuntimeInfo{"10.3.0", "Jetson AGX Orin", "8.7"}), std::string());
    const Manifest q = with("\"precision\": \"fp16\"", "\"precision\": \"int8-tensorrt\"");
    CHECK_EQ(check_manifest(q, orin(), std::nullopt, std::string("int8")), std::string());
    CHECK_EQ(check_manifest(q, orin(), std::nullopt, std::string("int8-tensorrt")), std::string());
    CHECK(!check_manifest(q, orin(), std::nullopt, std::string("int")).empty());
    CHECK_THROWS_WITH(with("\"scale\": 1", "\"scale\": 1, \"format\": 2"), "newer than this build");
}
