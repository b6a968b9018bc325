// mirnet_run: restore images with any engine libmirnet runs (OpenVINO, TensorRT).
//
//   mirnet_run --engine E.json -i IN -o OUT [--tile N --overlap N] [--bench N]
//   ffmpeg -i in.mp4 -f rawvideo -pix_fmt rgb24 - | mirnet_run --engine E.json --raw 1280x720 |
//       ffmpeg -f rawvideo -pix_fmt rgb24 -s 1280x720 -i - out.mp4
//
// A file or a folder of images in, a file or a folder out (`<stem>.png`, or the input's suffix
// when it is .ppm/.pfm); a bad file is reported and skipped, the exit status is 1 if any failed.
// The input channels are the model's: image files feed 3-channel models; a model of other input
// channels (MIRNet-v2's 6-channel dual-pixel defocus) takes .npy arrays H x W x C (mirnet/npy.hpp),
// and an image file given to it is refused by name.
// Outputs are written atomically (no half-written file). --raw reads raw RGB24 frames from
// standard input and writes restored frames to standard output. --bench N times N passes per
// input after one warm-up and prints the median per stage (read, pre, infer, post, write; infer
// includes tiling/blending, "engine" is the Engine::infer calls alone).
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <variant>
#include <vector>

#include "mirnet/error.hpp"
#include "mirnet/image.hpp"
#include "mirnet/npy.hpp"
#include "mirnet/restore.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

enum ExitCode : int { kOk = 0, kSomeFailed = 1, kUsage = 2, kEngine = 3 };

struct UsageError : mirnet::Error {
    using mirnet::Error::Error;
};

const char* kUsageText =
    "usage: mirnet_run --engine E.json (-i IN -o OUT | --raw WxH) [options]\n"
    "\n"
    "Restore images with an engine built by `mirnet build` (OpenVINO or TensorRT, from its manifest).\n"
    "\n"
    "  --engine PATH        the engine's manifest E.json (or the engine file, with E.json next to it)\n"
    "  -i, --input PATH     an image (.png 8/16-bit, .ppm/.pgm, .pfm), an H x W x C .npy array (models of\n"
    "                       other than 3 input channels, e.g. 6 for dual-pixel defocus) or a folder of them\n"
    "  -o, --output PATH    the output file, or a folder for a folder input (created)\n"
    "  --raw WxH            read raw RGB24 frames of W x H from stdin, write restored frames to stdout\n"
    "  --tile N             largest tile edge in pixels (default: as large as the engine takes)\n"
    "  --overlap N          tile overlap in pixels (default 32)\n"
    "  --bit-depth D        output depth: keep (the input's), 8, 16 or 32 (float, .pfm)\n"
    "  --bench N            time N passes per input (after 1 warm-up); median ms per stage\n"
    "  --onnx-sha256 HEX    refuse an engine built from another ONNX file\n"
    "  --precision P        refuse an engine of another precision (fp32|fp16|int8)\n"
    "  --device N           TensorRT: CUDA device index (default 0)\n"
    "  --allow-engine-host-code  TensorRT: allow version-compatible engines (trusted sources only)\n"
    "  --check              open the engine (all manifest checks) and exit\n"
    "  --verbose            backend info messages\n"
    "\n"
    "Exit codes: 0 ok, 1 some inputs failed (each is named), 2 usage, 3 engine refused or not loadable.\n";

struct Options {
    std::string engine, input, output, bit_depth = "keep";
    int raw_width = 0, raw_height = 0;
    int bench = 0;
    bool check_only = false;
    mirnet::RestoreOptions restore;
    mirnet::EngineOptions engine_options;
};

int parse_int(const std::string& flag, const std::string& text, int lo, int hi) {
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(text.c_str(), &end, 10);
    if (errno != 0 || end == text.c_str() || *end != '\0' || v < lo || v > hi) {
        throw UsageError(flag + " needs an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got '" +
                         text + "'.");
    }
    return static_cast<int>(v);
}

Options parse_args(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw UsageError(a + " needs a value.");
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            std::fputs(kUsageText, stdout);
            std::exit(kOk);
        } else if (a == "--engine") o.engine = value();
        else if (a == "-i" || a == "--input") o.input = value();
        else if (a == "-o" || a == "--output") o.output = value();
        else if (a == "--raw") {
            const std::string v = value();
            const std::size_t x = v.find('x');
            if (x == std::string::npos) throw UsageError("--raw needs WxH, e.g. 1280x720, got '" + v + "'.");
            o.raw_width = parse_int("--raw width", v.substr(0, x), 1, 1 << 15);
            o.raw_height = parse_int("--raw height", v.substr(x + 1), 1, 1 << 15);
        } else if (a == "--tile") o.restore.tile = parse_int(a, value(), 4, 1 << 16);
        else if (a == "--overlap") o.restore.overlap = parse_int(a, value(), 0, 1 << 15);
        else if (a == "--bit-depth") o.bit_depth = value();
        else if (a == "--bench") o.bench = parse_int(a, value(), 1, 100000);
        else if (a == "--onnx-sha256") o.engine_options.onnx_sha256 = value();
        else if (a == "--precision") o.engine_options.precision = value();
        else if (a == "--device") o.engine_options.cuda_device = parse_int(a, value(), 0, 1023);
        else if (a == "--allow-engine-host-code") o.engine_options.allow_engine_host_code = true;
        else if (a == "--check") o.check_only = true;
        else if (a == "--verbose") o.engine_options.verbose = true;
        else throw UsageError("unknown option '" + a + "'.");
    }
    if (o.engine.empty()) throw UsageError("--engine is required.");
    const bool raw = o.raw_width > 0;
    if (!o.check_only && !raw && (o.input.empty() || o.output.empty())) {
        throw UsageError("pass -i IN -o OUT, or --raw WxH (frames on stdin/stdout), or --check.");
    }
    if (raw && (!o.input.empty() || !o.output.empty())) {
        throw UsageError("--raw reads standard input and writes standard output: drop -i/-o.");
    }
    if (o.bit_depth != "keep" && o.bit_depth != "8" && o.bit_depth != "16" && o.bit_depth != "32") {
        throw UsageError("--bit-depth must be keep, 8, 16 or 32, got '" + o.bit_depth + "'.");
    }
    return o;
}

double ms_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Per-stage times of the passes over one input.
struct StageSamples {
    std::vector<double> read, pre, infer, engine, post, write, total;
};

int output_depth(const Options& o, int input_depth, const std::string& output) {
    if (o.bit_depth != "keep") return std::stoi(o.bit_depth);
    // A float (PFM, float .npy) input written to PNG/PPM becomes 16-bit.
    if (input_depth == 32 && mirnet::format_for_path(output) != mirnet::ImageFormat::PFM) return 16;
    return input_depth;
}

// An input file: an image, or a .npy array of the model's input channels (told apart by content).
using Input = std::variant<mirnet::Image, mirnet::PlanarInput>;

Input read_input(const std::string& path) {
    const std::vector<uint8_t> bytes = mirnet::read_file(path);
    if (mirnet::is_npy(bytes)) return mirnet::decode_npy(bytes, "Array " + path);
    return mirnet::decode_image(bytes, "Image " + path);
}

mirnet::Image restore_input(mirnet::Restorer& restorer, const Options& o, const Input& input,
                            const std::string& output) {
    if (const auto* array = std::get_if<mirnet::PlanarInput>(&input)) {
        return restorer.restore(array->planes, output_depth(o, array->bit_depth, output));
    }
    const mirnet::Image& image = std::get<mirnet::Image>(input);
    return restorer.restore(image, output_depth(o, image.bit_depth, output));
}

void restore_file(mirnet::Restorer& restorer, const Options& o, const std::string& input, const std::string& output) {
    const int passes = o.bench ? o.bench + 1 : 1;  // one warm-up pass when timing
    StageSamples s;
    for (int pass = 0; pass < passes; ++pass) {
        const auto started = Clock::now();
        const Input read = read_input(input);
        const double read_ms = ms_since(started);
        const mirnet::Image restored = restore_input(restorer, o, read, output);
        auto written = Clock::now();
        mirnet::write_image(output, restored);
        const double write_ms = ms_since(written);
        if (pass == 0 && o.bench) continue;
        const mirnet::StageTimes& t = restorer.last_times();
        s.read.push_back(read_ms);
        s.pre.push_back(t.pre_ms);
        s.infer.push_back(t.infer_ms);
        s.engine.push_back(t.engine_ms);
        s.post.push_back(t.post_ms);
        s.write.push_back(write_ms);
        s.total.push_back(ms_since(started));
    }
    if (o.bench) {
        std::printf("bench %s: median of %d ms  read %.2f  pre %.2f  infer %.2f  (engine %.2f)  post %.2f  "
                    "write %.2f  total %.2f\n",
                    input.c_str(), o.bench, median(s.read), median(s.pre), median(s.infer), median(s.engine),
                    median(s.post), median(s.write), median(s.total));
    } else {
        std::printf("%s -> %s\n", input.c_str(), output.c_str());
    }
}

bool is_image_file(const fs::path& p) {
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return ext == ".png" || ext == ".ppm" || ext == ".pgm" || ext == ".pnm" || ext == ".pfm" || ext == ".npy";
}

// (input, output) pairs for a file or a folder.
std::vector<std::pair<std::string, std::string>> plan_files(const Options& o) {
    std::error_code ec;
    if (!fs::is_directory(o.input, ec)) return {{o.input, o.output}};
    if (fs::exists(o.output) && !fs::is_directory(o.output)) {
        throw UsageError("-i " + o.input + " is a folder, so -o must be a folder too, not the file " + o.output + ".");
    }
    fs::create_directories(o.output);
    if (fs::equivalent(o.input, o.output)) {
        throw UsageError("-o must differ from the input folder " + o.input + ": inputs are never overwritten.");
    }
    std::vector<fs::path> inputs;
    for (const auto& entry : fs::directory_iterator(o.input)) {
        if (entry.is_regular_file() && is_image_file(entry.path())) inputs.push_back(entry.path());
    }
    std::sort(inputs.begin(), inputs.end());
    if (inputs.empty()) throw UsageError("no images (.png, .ppm, .pgm, .pfm) or .npy arrays in " + o.input + ".");
    std::vector<std::pair<std::string, std::string>> pairs;
    for (const fs::path& in : inputs) {
        std::string ext = in.extension().string();
        if (ext != ".ppm" && ext != ".pfm") ext = ".png";
        pairs.emplace_back(in.string(), (fs::path(o.output) / (in.stem().string() + ext)).string());
    }
    return pairs;
}

int run_files(mirnet::Restorer& restorer, const Options& o) {
    int failed = 0;
    for (const auto& [input, output] : plan_files(o)) {
        try {
            restore_file(restorer, o, input, output);
        } catch (const mirnet::Error& e) {
            std::fprintf(stderr, "mirnet_run: skipped %s: %s\n", input.c_str(), e.what());
            ++failed;
        }
    }
    return failed ? kSomeFailed : kOk;
}

// Reads exactly `size` bytes; false at a clean end of input, throws on a partial frame.
bool read_frame(std::vector<uint8_t>& frame, std::size_t index) {
    const std::size_t got = std::fread(frame.data(), 1, frame.size(), stdin);
    if (got == 0 && std::feof(stdin)) return false;
    if (got != frame.size()) {
        throw mirnet::Error("raw frame " + std::to_string(index) + " is truncated: " + std::to_string(got) + " of " +
                            std::to_string(frame.size()) + " bytes (is --raw the stream's size, rgb24?).");
    }
    return true;
}

int run_raw(mirnet::Restorer& restorer, const Options& o) {
    const int scale = restorer.engine().scale();
    const std::size_t in_stride = 3 * static_cast<std::size_t>(o.raw_width);
    const std::size_t out_stride = in_stride * scale;
    std::vector<uint8_t> frame(in_stride * o.raw_height);
    std::vector<uint8_t> restored(out_stride * o.raw_height * scale);
    StageSamples s;
    std::size_t count = 0;
    for (;;) {
        auto started = Clock::now();
        if (!read_frame(frame, count)) break;
        const double read_ms = ms_since(started);
        restorer.restore_rgb8(frame.data(), o.raw_width, o.raw_height, in_stride, restored.data(), out_stride);
        auto written = Clock::now();
        if (std::fwrite(restored.data(), 1, restored.size(), stdout) != restored.size() || std::fflush(stdout) != 0) {
            throw mirnet::Error("writing frame " + std::to_string(count) + " to standard output failed.");
        }
        const mirnet::StageTimes& t = restorer.last_times();
        s.read.push_back(read_ms);
        s.pre.push_back(t.pre_ms);
        s.infer.push_back(t.infer_ms);
        s.post.push_back(t.post_ms);
        s.write.push_back(ms_since(written));
        ++count;
    }
    if (o.bench || count > 0) {
        std::fprintf(stderr, "mirnet_run: %zu frame(s) of %dx%d; median ms read %.2f pre %.2f infer %.2f post %.2f "
                     "write %.2f\n", count, o.raw_width, o.raw_height, median(s.read), median(s.pre),
                     median(s.infer), median(s.post), median(s.write));
    }
    return kOk;
}

int run(const Options& o) {
    std::unique_ptr<mirnet::Engine> engine;
    try {
        engine = mirnet::open_engine(o.engine, o.engine_options);
    } catch (const mirnet::Error& e) {
        std::fprintf(stderr, "mirnet_run: %s\n", e.what());
        return kEngine;
    }
    std::fprintf(stderr, "mirnet_run: %s %s engine (%s) on %s: %s\n", engine->backend().c_str(),
                 engine->runtime_version().c_str(), engine->precision().c_str(), engine->device().c_str(),
                 engine->manifest().source.c_str());
    if (o.check_only) return kOk;
    if (o.raw_width > 0 && engine->channels().input != 3) {
        throw UsageError("--raw feeds RGB24 frames, but the engine's model takes " +
                         std::to_string(engine->channels().input) + " input channels: pass .npy arrays with -i.");
    }
    mirnet::Restorer restorer(std::move(engine), o.restore);
    return o.raw_width > 0 ? run_raw(restorer, o) : run_files(restorer, o);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(parse_args(argc, argv));
    } catch (const UsageError& e) {
        std::fprintf(stderr, "mirnet_run: %s\nRun mirnet_run --help for usage.\n", e.what());
        return kUsage;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mirnet_run: %s\n", e.what());
        return kSomeFailed;
    }
}
