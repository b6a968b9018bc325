// Runs the registered test cases: mirnet_core_tests [--group NAME]... [--data-dir DIR] [--list] [-v]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>

#include "harness.hpp"

namespace mt {

namespace {
std::string g_data_dir = "tests/data";
std::string g_temp_dir;
}  // namespace

std::vector<TestCase>& registry() {
    static std::vector<TestCase> cases;
    return cases;
}

const std::string& data_dir() { return g_data_dir; }

std::string temp_dir() {
    if (g_temp_dir.empty()) {
        const auto ticks = std::chrono::steady_clock::now().time_since_epoch().count();
        const std::filesystem::path dir =
            std::filesystem::temp_directory_path() / ("mirnet_core_tests-" + std::to_string(ticks));
        std::filesystem::create_directories(dir);
        g_temp_dir = dir.string();
    }
    return g_temp_dir;
}

void fail(const char* file, int line, const std::string& message) {
    throw Failure(std::string(file) + ":" + std::to_string(line) + ": " + message);
}

}  // namespace mt

int main(int argc, char** argv) {
    std::set<std::string> groups;
    bool list = false, verbose = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--group" && i + 1 < argc) {
            groups.insert(argv[++i]);
        } else if (arg == "--data-dir" && i + 1 < argc) {
            mt::g_data_dir = argv[++i];
        } else if (arg == "--list") {
            list = true;
        } else if (arg == "-v" || arg == "--verbose") {
            verbose = true;
        } else {
            std::fprintf(stderr, "usage: %s [--group NAME]... [--data-dir DIR] [--list] [-v]\n", argv[0]);
            return 2;
        }
    }
    int passed = 0, failed = 0;
    const auto start = std::chrono::steady_clock::now();
    for (const mt::TestCase& t : mt::registry()) {
        if (!groups.empty() && !groups.count(t.group)) continue;
        if (list) {
            std::printf("%s.%s\n", t.group, t.name);
            continue;
        }
        try {
            t.fn();
            ++passed;
            if (verbose) std::printf("[ OK ] %s.%s\n", t.group, t.name);
        } catch (const std::exception& e) {
            ++failed;
            std::printf("[FAIL] %s.%s: %s\n", t.group, t.name, e.what());
        }
    }
    if (list) return 0;
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::printf("%d passed, %d failed (%.0f ms)\n", passed, failed, ms);
    if (!mt::g_temp_dir.empty()) {
        std::error_code ec;
        std::filesystem::remove_all(mt::g_temp_dir, ec);
    }
    if (passed + failed == 0) {
        std::printf("no test matched the --group filter\n");
        return 1;
    }
    return failed ? 1 : 0;
}
