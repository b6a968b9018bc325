#include "test_support.hpp"

#include <filesystem>
#include <unistd.h>

namespace mirnet::testing {

std::string temp_dir() {
    static const std::string dir = [] {
        const auto path = std::filesystem::temp_directory_path() / ("mirnet_tests_" + std::to_string(getpid()));
        std::filesystem::create_directories(path);
        return path.string();
    }();
    return dir;
}

}  // namespace mirnet::testing
