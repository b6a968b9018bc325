// A tiny test harness (no third-party code): TEST_CASE registers a function under a group;
// CHECK* macros throw on the first failed expectation of a test case.
#pragma once

#include <cmath>
#include <exception>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace mt {

using TestFn = void (*)();
struct TestCase {
    const char* group;
    const char* name;
    TestFn fn;
};

std::vector<TestCase>& registry();
const std::string& data_dir();  // --data-dir
std::string temp_dir();         // a fresh per-process scratch folder

struct Registrar {
    Registrar(const char* group, const char* name, TestFn fn) { registry().push_back({group, name, fn}); }
};

struct Failure : std::exception {
    std::string message;
    explicit Failure(std::string m) : message(std::move(m)) {}
    const char* what() const noexcept override { return message.c_str(); }
};

[[noreturn]] void fail(const char* file, int line, const std::string& message);

template <typename T, typename = void>
struct printable : std::false_type {};
template <typename T>
struct printable<T, std::void_t<decltype(std::declval<std::ostream&>() << std::declval<const T&>())>>
    : std::true_type {};

template <typename T>
std::string show(const T& v) {
    if constexpr (std::is_same_v<T, unsigned char> || std::is_same_v<T, signed char>) {
        return std::to_string(static_cast<int>(v));
    } else if constexpr (printable<T>::value) {
        std::ostringstream os;
        os.precision(9);
        os << v;
        return os.str();
    } else {
        return "<value>";
    }
}

}  // namespace mt

#define MT_CAT2(a, b) a##b
#define MT_CAT(a, b) MT_CAT2(a, b)
#define TEST_CASE(group, name)                                                   \
    static void name();                                                          \
    static const mt::Registrar MT_CAT(name, _registrar)(group, #name, &name);    \
    static void name()

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) mt::fail(__FILE__, __LINE__, "CHECK(" #cond ") failed");          \
    } while (0)

#define CHECK_EQ(a, b)                                                                                      \
    do {                                                                                                    \
        const auto mt_a = (a);                                                                              \
        const auto mt_b = (b);                                                                              \
        if (!(mt_a == mt_b))                                                                                \
            mt::fail(__FILE__, __LINE__,                                                                    \
                     "CHECK_EQ(" #a ", " #b ") failed: " + mt::show(mt_a) + " != " + mt::show(mt_b));     \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                               \
    do {                                                                                                    \
        const double mt_a = static_cast<double>(a);                                                         \
        const double mt_b = static_cast<double>(b);                                                         \
        if (!(std::fabs(mt_a - mt_b) <= (tol)))                                                             \
            mt::fail(__FILE__, __LINE__,                                                                    \
                     "CHECK_NEAR(" #a ", " #b ", " #tol ") failed: " + mt::show(mt_a) + " vs " +            \
                         mt::show(mt_b));                                                                   \
    } while (0)

// expr must throw a std::exception whose what() contains `substring`.
#define CHECK_THROWS_WITH(expr, substring)                                                                  \
    do {                                                                                                    \
        bool mt_thrown = false;                                                                             \
        try {                                                                                               \
            (void)(expr);                                                                                   \
        } catch (const mt::Failure&) {                                                                      \
            throw;                                                                                          \
        } catch (const std::exception& mt_e) {                                                              \
            mt_thrown = true;                                                                               \
            const std::string mt_msg = mt_e.what();                                                         \
            if (mt_msg.find(substring) == std::string::npos)                                                \
                mt::fail(__FILE__, __LINE__,                                                                \
                         std::string("exception from " #expr " lacks \"") + (substring) + "\": " + mt_msg); \
        }                                                                                                   \
        if (!mt_thrown) mt::fail(__FILE__, __LINE__, "expected " #expr " to throw");                        \
    } while (0)
