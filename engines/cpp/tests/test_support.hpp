// GoogleTest plus what our tests share: the fixture folder, a scratch folder, and an expectation
// that a call throws an exception whose message contains a given text.
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace mirnet::testing {

// engines/cpp/tests/data (MIRNET_TEST_DATA_DIR, set by tests/CMakeLists.txt).
inline std::string data_dir() { return MIRNET_TEST_DATA_DIR; }

// A scratch folder for this test process.
std::string temp_dir();

}  // namespace mirnet::testing

// `expr` must throw a std::exception whose what() contains `substring`.
#define EXPECT_THROW_WITH(expr, substring)                                                            \
    do {                                                                                              \
        try {                                                                                         \
            (void)(expr);                                                                             \
            ADD_FAILURE() << "expected " #expr " to throw";                                           \
        } catch (const std::exception& mt_e) {                                                        \
            EXPECT_NE(std::string(mt_e.what()).find(substring), std::string::npos)                    \
                << #expr " threw without \"" << (substring) << "\": " << mt_e.what();                 \
        }                                                                                             \
    } while (0)
