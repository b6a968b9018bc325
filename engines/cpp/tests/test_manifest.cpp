// Engine manifests: parsing (tolerant of extra fields), checks against the running system,
// profile selection, version helpers.
#include <optional>
#include <stdexcept>
#include <string>

#include "test_support.hpp"
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
    if (at == std::string::npos) throw std::logic_error("fixture lacks " + from);
    text.replace(at, from.size(), to);
    return parse_manifest_text(text, "test.engine.json");
}

}  // namespace

TEST(manifest, parses_every_field_and_tolerates_extra_ones) {
    const Manifest m = parse_manifest_text(kManifest, "model.engine.json");
    EXPECT_EQ(m.backend, std::string("tensorrt"));
    EXPECT_EQ(m.backend_version, std::string("10.3.0.26"));
    EXPECT_TRUE(m.gpu_name && *m.gpu_name == "Orin");
    EXPECT_TRUE(m.compute_capability && *m.compute_capability == "8.7");
    EXPECT_TRUE(m.cuda_driver && *m.cuda_driver == "12.6");
    EXPECT_EQ(m.precision, std::string("fp16"));
    EXPECT_EQ(m.profiles.size(), std::size_t{2});
    EXPECT_EQ(m.profiles[1].opt[2], 720);
    EXPECT_EQ(m.profiles[1].max[3], 1280);
    EXPECT_EQ(m.size_multiple, 4);
    EXPECT_EQ(m.scale, 1);
    EXPECT_EQ(m.build_time_s, 312.5);
    EXPECT_EQ(m.task, std::string("denoise"));
    EXPECT_TRUE(!m.version_compatible);
    EXPECT_EQ(m.hardware_compatibility_level, std::string("none"));
    EXPECT_EQ(m.parity_passed, std::optional<bool>(true));  // read although the summary holds Infinity
    EXPECT_EQ(check_manifest(m, orin()), std::string());
}

TEST(manifest, nulls_and_alternative_profile_spelling) {
    const Manifest m = parse_manifest_text(
        R"({"backend": "onnxruntime", "backend_version": "1.31.1", "precision": "int8", "gpu_name": null,
            "compute_capability": null, "cuda_driver": null, "parity": null, "build_options": null,
            "profiles": [{"input": {"min": [1,3,8,8], "opt": [1,3,8,8], "max": [2,3,16,16]}}]})",
        "ort.json");
    EXPECT_TRUE(!m.gpu_name);
    EXPECT_TRUE(!m.compute_capability);
    EXPECT_EQ(m.profiles.size(), std::size_t{1});
    EXPECT_EQ(m.profiles[0].max[0], 2);
}

TEST(manifest, malformed_manifests_name_the_field) {
    EXPECT_THROW_WITH(parse_manifest_text("[1]", "a.json"), "top level must be a JSON object");
    EXPECT_THROW_WITH(parse_manifest_text("{\"backend\": \"tensorrt\"}", "b.json"), "field 'backend_version' is missing");
    EXPECT_THROW_WITH(with("\"backend\": \"tensorrt\"", "\"backend\": 7"), "field 'backend' must be a string, got number");
    EXPECT_THROW_WITH(with("\"min\": [1, 3, 64, 64]", "\"min\": [1, 3, 64]"), "profiles[0].min must be a list of 4 integers");
    EXPECT_THROW_WITH(with("\"min\": [1, 3, 64, 64]", "\"min\": [1, 3, 512, 64]"), "not ordered min <= opt <= max");
    EXPECT_THROW_WITH(with("\"min\": [1, 3, 64, 64]", "\"min\": [1, 3, 6.5, 64]"), "positive integers");
    EXPECT_THROW_WITH(with("\"compute_capability\": \"8.7\"", "\"compute_capability\": \"sm87\""), "must look like \"8.7\"");
    EXPECT_THROW_WITH(with("\"size_multiple\": 4", "\"size_multiple\": 0"), "field 'size_multiple' must be a positive integer");
    EXPECT_THROW_WITH(with("\"profiles\": [", "\"profiles\": 3, \"x\": ["), "field 'profiles' must be a list");
    EXPECT_THROW_WITH(with("\"strongly_typed\": true", "\"hardware_compatibility_level\": \"turing_plus\""), "known levels");
    EXPECT_THROW_WITH(parse_manifest_text("{\"backend\": tensorrt}", "c.json"), "c.json is not valid JSON: [json.exception.parse_error.101] parse error at line 1, column 14");
    EXPECT_THROW_WITH(load_manifest(mirnet::testing::temp_dir() + "/absent.engine.json"), "Every engine needs its manifest");
}

TEST(manifest, other_gpu_is_named) {
    const Manifest m = parse_manifest_text(kManifest, "model.engine.json");
    const std::string err = check_manifest(m, RuntimeInfo{"10.3.0", "NVIDIA GeForce RTX 3090", "8.6"});
    EXPECT_TRUE(err.find("model.engine.json") != std::string::npos);
    EXPECT_TRUE(err.find("GPU") != std::string::npos);
    EXPECT_TRUE(err.find("'Orin' (compute capability 8.7)") != std::string::npos);
    EXPECT_TRUE(err.find("'NVIDIA GeForce RTX 3090' (compute capability 8.6)") != std::string::npos);
    EXPECT_TRUE(err.find("rebuild the engine on this device") != std::string::npos);
    // Same compute capability, other model: still refused (engines are tuned per GPU model).
    const std::string same_cc = check_manifest(m, RuntimeInfo{"10.3.0", "Jetson AGX Orin", "8.7"});
    EXPECT_TRUE(same_cc.find("'Jetson AGX Orin'") != std::string::npos);
    EXPECT_TRUE(same_cc.find("same_compute_capability") != std::string::npos);
}

TEST(manifest, other_tensorrt_version_is_named) {
    const Manifest m = parse_manifest_text(kManifest, "model.engine.json");
    const std::string err = check_manifest(m, RuntimeInfo{"11.4.1", "Orin", "8.7"});
    EXPECT_TRUE(err.find("TensorRT version") != std::string::npos);
    EXPECT_TRUE(err.find("TensorRT 10.3.0.26") != std::string::npos);
    EXPECT_TRUE(err.find("TensorRT 11.4.1") != std::string::npos);
    EXPECT_TRUE(err.find("GPU:") == std::string::npos);
    EXPECT_EQ(check_manifest(m, RuntimeInfo{"10.3.0.26", "Orin", "8.7"}), std::string());
    EXPECT_TRUE(!check_manifest(m, RuntimeInfo{"10.3.0.30", "Orin", "8.7"}).empty());
    EXPECT_TRUE(!check_manifest(m, RuntimeInfo{"10.3.1", "Orin", "8.7"}).empty());
    EXPECT_TRUE(!check_manifest(with("\"10.3.0.26\"", "\"10.3\""), RuntimeInfo{"10.4.0", "Orin", "8.7"}).empty());
    EXPECT_TRUE(check_manifest(m, RuntimeInfo{"ten", "Orin", "8.7"}).find("cannot compare") != std::string::npos);
}

TEST(manifest, version_and_hardware_compatible_engines) {
    const Manifest vc = with("\"strongly_typed\": true", "\"version_compatible\": true");
    EXPECT_TRUE(vc.version_compatible);
    EXPECT_EQ(check_manifest(vc, RuntimeInfo{"10.8.0", "Orin", "8.7"}), std::string());
    EXPECT_EQ(check_manifest(vc, RuntimeInfo{"11.4.1", "Orin", "8.7"}), std::string());  // 10.x VC plans load on 11.x
    EXPECT_TRUE(check_manifest(vc, RuntimeInfo{"10.2.0", "Orin", "8.7"}).find("version-compatible") != std::string::npos);
    EXPECT_TRUE(check_manifest(vc, RuntimeInfo{"12.0.0", "Orin", "8.7"}).find("up to 11.x") != std::string::npos);

    const Manifest amp = with("\"strongly_typed\": true", "\"hardware_compatibility_level\": \"AMPERE_PLUS\"");
    EXPECT_EQ(amp.hardware_compatibility_level, std::string("ampere_plus"));
    EXPECT_EQ(check_manifest(amp, RuntimeInfo{"10.3.0", "NVIDIA A100", "8.0"}), std::string());
    EXPECT_TRUE(check_manifest(amp, RuntimeInfo{"10.3.0", "Tesla T4", "7.5"}).find("Ampere or newer") != std::string::npos);

    const Manifest same = with("\"strongly_typed\": true", "\"hardware_compatibility_level\": \"HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY\"");
    EXPECT_EQ(check_manifest(same, RuntimeInfo{"10.3.0", "Jetson AGX Orin", "8.7"}), std::string());
    EXPECT_TRUE(!check_manifest(same, RuntimeInfo{"10.3.0", "Orin", "8.9"}).empty());
}

TEST(manifest, onnx_precision_backend_and_missing_gpu) {
    const Manifest m = parse_manifest_text(kManifest, "model.engine.json");
    EXPECT_EQ(check_manifest(m, orin(), std::string("abcdef0123456789"), std::string("FP16")), std::string());
    const std::string onnx = check_manifest(m, orin(), std::string("ffff"));
    EXPECT_TRUE(onnx.find("ONNX") != std::string::npos);
    EXPECT_TRUE(onnx.find("abcdef0123456789") != std::string::npos);
    EXPECT_TRUE(onnx.find("ffff") != std::string::npos);
    const std::string prec = check_manifest(m, orin(), std::nullopt, std::string("int8"));
    EXPECT_TRUE(prec.find("precision: the engine is fp16, expected int8") != std::string::npos);
    const std::string ort = check_manifest(with("\"backend\": \"tensorrt\"", "\"backend\": \"onnxruntime\""), orin());
    EXPECT_TRUE(ort.find("not a TensorRT engine") != std::string::npos);
    const Manifest nogpu = with("\"gpu_name\": \"Orin\",\n  \"compute_capability\": \"8.7\"",
                                "\"gpu_name\": null, \"compute_capability\": null");
    EXPECT_TRUE(check_manifest(nogpu, orin()).find("records no GPU") != std::string::npos);
    // Several mismatches are all listed.
    const std::string many = check_manifest(m, RuntimeInfo{"11.4.1", "NVIDIA H100", "9.0"}, std::string("00"),
                                            std::string("int8"));
    EXPECT_TRUE(many.find("TensorRT version") != std::string::npos);
    EXPECT_TRUE(many.find("GPU:") != std::string::npos);
    EXPECT_TRUE(many.find("ONNX") != std::string::npos);
    EXPECT_TRUE(many.find("precision") != std::string::npos);
}

TEST(manifest, profile_selection) {
    const Manifest m = parse_manifest_text(kManifest, "model.engine.json");
    EXPECT_TRUE(profile_for_shape(m, 1, 3, 100, 100) == std::optional<std::size_t>(0));
    EXPECT_TRUE(profile_for_shape(m, 1, 3, 720, 1280) == std::optional<std::size_t>(1));
    EXPECT_TRUE(profile_for_shape(m, 1, 3, 256, 256) == std::optional<std::size_t>(0));  // both contain it; opt 128^2 closer
    EXPECT_TRUE(profile_for_shape(m, 1, 3, 200, 400) == std::optional<std::size_t>(1));
    EXPECT_TRUE(!profile_for_shape(m, 1, 3, 1080, 1920));
    EXPECT_TRUE(!profile_for_shape(m, 2, 3, 128, 128));
    EXPECT_TRUE(!profile_for_shape(m, 1, 1, 128, 128));
    EXPECT_TRUE(!profile_for_shape(m, 1, 3, 32, 32));
    EXPECT_TRUE(profile_for_tiling(m, 1, 3) == std::optional<std::size_t>(1));
    EXPECT_TRUE(!profile_for_tiling(m, 4, 3));
}

TEST(manifest, version_helpers) {
    EXPECT_TRUE(parse_version("10.3.0.26") == std::vector<int>({10, 3, 0, 26}));
    EXPECT_TRUE(parse_version(" 11.4.1 ") == std::vector<int>({11, 4, 1}));
    EXPECT_TRUE(parse_version("10.3.0+cuda12.6") == std::vector<int>({10, 3, 0}));
    EXPECT_THROW_WITH(parse_version("v10"), "not a version number");
    EXPECT_EQ(trt_version_from_int(100300), std::string("10.3.0"));
    EXPECT_EQ(trt_version_from_int(110401), std::string("11.4.1"));
    EXPECT_EQ(manifest_path_for_engine("/x/model.engine"), std::string("/x/model.engine.json"));
}

TEST(manifest, reads_what_engines_manifest_py_writes) {
    // tests/data/python_manifest.json was written by EngineManifest.to_json() (engines/manifest.py).
    const Manifest m = load_manifest(mirnet::testing::data_dir() + "/python_manifest.json");
    EXPECT_EQ(m.engine_file, std::string("model.fp16.engine"));
    EXPECT_EQ(m.backend_version, std::string("10.3.0.30"));
    EXPECT_EQ(m.build_time_s, 281.4);  // from build_seconds
    EXPECT_EQ(m.format, 1);
    EXPECT_EQ(m.profiles.size(), std::size_t{2});
    EXPECT_EQ(m.profiles[1].max[3], 512);
    EXPECT_EQ(m.hardware_compatibility_level, std::string("none"));  // "hardware_compatibility": null
    EXPECT_TRUE(!m.version_compatible);
    EXPECT_EQ(m.size_multiple, 4);  // absent -> defaults
    EXPECT_EQ(m.scale, 1);
    // On TensorRT 10 the C++ runner reports major.minor.patch only (no build number API in 10.3).
    EXPECT_EQ(check_manifest(m, RuntimeInfo{"10.3.0", "Orin", "8.7"}, std::string("9F2C" + std::string(60, '0')),
                            std::string("fp16")),
             std::string());
    EXPECT_TRUE(!check_manifest(m, RuntimeInfo{"10.3.0.26", "Orin", "8.7"}).empty());
    EXPECT_TRUE(profile_for_shape(m, 1, 3, 720, 1280) == std::optional<std::size_t>(0));
    EXPECT_TRUE(profile_for_shape(m, 1, 3, 100, 100) == std::optional<std::size_t>(1));
}

TEST(manifest, python_spellings_and_format) {
    const Manifest same = with("\"strongly_typed\": true", "\"hardware_compatibility\": \"same_compute_capability\"");
    EXPECT_EQ(same.hardware_compatibility_level, std::string("same_compute_capability"));
    EXPECT_EQ(check_manifest(same, RuntimeInfo{"10.3.0", "Jetson AGX Orin", "8.7"}), std::string());
    const Manifest q = with("\"precision\": \"fp16\"", "\"precision\": \"int8-tensorrt\"");
    EXPECT_EQ(check_manifest(q, orin(), std::nullopt, std::string("int8")), std::string());
    EXPECT_EQ(check_manifest(q, orin(), std::nullopt, std::string("int8-tensorrt")), std::string());
    EXPECT_TRUE(!check_manifest(q, orin(), std::nullopt, std::string("int")).empty());
    EXPECT_THROW_WITH(with("\"scale\": 1", "\"scale\": 1, \"format\": 2"), "newer than this build");
}
