// The manifest JSON reader: valid documents, every escape, numbers, and errors with positions.
#include <cmath>
#include <string>

#include "harness.hpp"
#include "mirnet/json.hpp"

using namespace mirnet;

TEST_CASE("json", parses_nested_documents) {
    const json::Value v = json::parse(R"( {"a": [1, 2.5, -3e2, {"b": null}], "t": true, "f": false, "s": "x", "e": {}, "z": []} )");
    CHECK(v.is_object());
    const auto& a = v.find("a")->as_array();
    CHECK_EQ(a.size(), std::size_t{4});
    CHECK_EQ(a[0].as_number(), 1.0);
    CHECK_EQ(a[1].as_number(), 2.5);
    CHECK_EQ(a[2].as_number(), -300.0);
    CHECK(a[3].find("b")->is_null());
    CHECK(v.find("t")->as_bool());
    CHECK(!v.find("f")->as_bool());
    CHECK_EQ(v.find("s")->as_string(), std::string("x"));
    CHECK(v.find("e")->as_object().empty());
    CHECK(v.find("z")->as_array().empty());
    CHECK(v.find("missing") == nullptr);
    CHECK(json::parse("42").as_number() == 42.0);
    CHECK(json::parse("\"top\"").as_string() == "top");
}

TEST_CASE("json", string_escapes_and_unicode) {
    const json::Value v = json::parse(R"(["q\"b\\s\/n\nr\rt\tb\bf\f", "\u00e9", "\ud83d\ude00", "\u0000x", "caf\u00C9"])");
    const auto& a = v.as_array();
    CHECK(a[0].as_string() == "q\"b\\s/n\nr\rt\tb\bf\f");
    CHECK(a[1].as_string() == "\xC3\xA9");
    CHECK(a[2].as_string() == "\xF0\x9F\x98\x80");
    CHECK_EQ(a[3].as_string().size(), std::size_t{2});
    CHECK(a[4].as_string() == "caf\xC3\x89");
    CHECK(json::parse("\"h\xC3\xA9llo\"").as_string() == "h\xC3\xA9llo");  // raw UTF-8 passes through
}

TEST_CASE("json", numbers_follow_the_json_grammar) {
    CHECK_EQ(json::parse("0").as_number(), 0.0);
    CHECK(std::signbit(json::parse("-0").as_number()));
    CHECK_EQ(json::parse("1.5e3").as_number(), 1500.0);
    CHECK_EQ(json::parse("-2E-2").as_number(), -0.02);
    CHECK_EQ(json::parse("1e+2").as_number(), 100.0);
    CHECK_EQ(json::parse("12345678901234567890").as_number(), 12345678901234567890.0);
    CHECK(std::isinf(json::parse("1e400").as_number()));
    CHECK(json::parse("-1e400").as_number() < 0);
    CHECK_EQ(json::parse("1e-400").as_number(), 0.0);
    CHECK_EQ(json::parse("0.0000001e-400").as_number(), 0.0);
    CHECK(std::isinf(json::parse("123456789e400").as_number()));
    // Python's json.dump writes these for non-finite floats (e.g. an infinite PSNR).
    const json::Value special = json::parse("[NaN, Infinity, -Infinity]");
    CHECK(std::isnan(special.as_array()[0].as_number()));
    CHECK(std::isinf(special.as_array()[1].as_number()));
    CHECK(special.as_array()[2].as_number() < 0);
}

TEST_CASE("json", bom_whitespace_and_duplicate_keys) {
    const json::Value v = json::parse("\xEF\xBB\xBF\r\n\t {\"k\": 1, \"k\": 2}\n");
    CHECK_EQ(v.find("k")->as_number(), 2.0);  // last wins, like Python
    CHECK_EQ(v.as_object().size(), std::size_t{2});
}

TEST_CASE("json", invalid_documents_have_clear_errors) {
    CHECK_THROWS_WITH(json::parse(""), "the document is empty");
    CHECK_THROWS_WITH(json::parse("   "), "the document is empty");
    CHECK_THROWS_WITH(json::parse("{"), "expected a string key in object, got end of input");
    CHECK_THROWS_WITH(json::parse("[1,]"), "expected a value");
    CHECK_THROWS_WITH(json::parse("[1 2]"), "expected ',' or ']' in array, got '2'");
    CHECK_THROWS_WITH(json::parse("{\"a\" 1}"), "expected ':' after object key \"a\"");
    CHECK_THROWS_WITH(json::parse("{'a': 1}"), "expected a string key in object, got '''");
    CHECK_THROWS_WITH(json::parse("{\"a\": 1,}"), "expected a string key");
    CHECK_THROWS_WITH(json::parse("01"), "leading zeros");
    CHECK_THROWS_WITH(json::parse("1."), "digit after '.'");
    CHECK_THROWS_WITH(json::parse("-"), "digit after '-'");
    CHECK_THROWS_WITH(json::parse("1e"), "exponent");
    CHECK_THROWS_WITH(json::parse("\"abc"), "unterminated string");
    CHECK_THROWS_WITH(json::parse("\"\\x\""), "invalid escape '\\x'");
    CHECK_THROWS_WITH(json::parse("\"a\tb\""), "unescaped control character");
    CHECK_THROWS_WITH(json::parse("\"\\u12G4\""), "invalid hex digit");
    CHECK_THROWS_WITH(json::parse("\"\\udc00\""), "lone low surrogate");
    CHECK_THROWS_WITH(json::parse("\"\\ud83d\""), "without its low half");
    CHECK_THROWS_WITH(json::parse("[1] x"), "after the end of the document");
    CHECK_THROWS_WITH(json::parse("tru"), "expected a value");
    CHECK_THROWS_WITH(json::parse("nul"), "expected a value");
    CHECK_THROWS_WITH(json::parse(std::string(300, '[')), "nesting deeper than 256 levels");
}

TEST_CASE("json", errors_report_line_and_column) {
    try {
        json::parse("{\n  \"a\": tru\n}");
        mt::fail(__FILE__, __LINE__, "expected a parse error");
    } catch (const json::ParseError& e) {
        CHECK_EQ(e.line(), std::size_t{2});
        CHECK_EQ(e.column(), std::size_t{8});
        CHECK(std::string(e.what()).find("line 2, column 8") != std::string::npos);
    }
}

TEST_CASE("json", typed_access_names_both_types) {
    const json::Value v = json::parse("{\"n\": 3}");
    CHECK_THROWS_WITH(v.find("n")->as_string(), "JSON value is number, expected string");
    CHECK_THROWS_WITH(v.as_array(), "JSON value is object, expected array");
    CHECK(json::Value().find("x") == nullptr);
}

TEST_CASE("json", dump_round_trips) {
    const std::string text = R"({"a":[1,2.5,-300,{"b":null}],"s":"q\"\\\n\u0001","t":true,"x":Infinity})";
    const json::Value v = json::parse(text);
    const std::string dumped = json::dump(v);
    CHECK_EQ(dumped, text);
    CHECK_EQ(json::dump(json::parse(dumped)), dumped);
}
