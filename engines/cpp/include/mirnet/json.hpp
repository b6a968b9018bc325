// mirnet_core: a small JSON reader (RFC 8259) for engine manifests.
//
// Accepts objects, arrays, strings (all escapes, \u surrogate pairs -> UTF-8), numbers
// (strict JSON grammar, parsed locale-independently), true/false/null. Extension: NaN,
// Infinity and -Infinity are accepted because Python's json.dump writes them by default
// (e.g. an infinite PSNR in a parity summary). A UTF-8 byte-order mark is skipped. Duplicate
// keys are kept; find() returns the last one, as Python's json module does. Nesting is
// limited to 256 levels. Errors throw json::ParseError with line and column (1-based).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "mirnet/error.hpp"

namespace mirnet::json {

enum class Type { Null, Bool, Number, String, Array, Object };

const char* type_name(Type type);  // "null", "boolean", "number", "string", "array", "object"

struct Member;

class Value {
public:
    Value() = default;  // null
    static Value boolean(bool b);
    static Value number(double d);
    static Value string(std::string s);
    static Value array(std::vector<Value> items);
    static Value object(std::vector<Member> members);

    Type type() const { return type_; }
    bool is_null() const { return type_ == Type::Null; }
    bool is_bool() const { return type_ == Type::Bool; }
    bool is_number() const { return type_ == Type::Number; }
    bool is_string() const { return type_ == Type::String; }
    bool is_array() const { return type_ == Type::Array; }
    bool is_object() const { return type_ == Type::Object; }

    // Typed access; throws mirnet::Error naming the expected and the actual type.
    bool as_bool() const;
    double as_number() const;
    const std::string& as_string() const;
    const std::vector<Value>& as_array() const;
    const std::vector<Member>& as_object() const;

    // Object member by key (last duplicate wins); nullptr if absent or not an object.
    const Value* find(std::string_view key) const;

private:
    Type type_ = Type::Null;
    bool bool_ = false;
    double number_ = 0.0;
    std::string string_;
    std::vector<Value> array_;
    std::vector<Member> object_;
};

struct Member {
    std::string key;
    Value value;
};

class ParseError : public Error {
public:
    ParseError(const std::string& message, std::size_t line, std::size_t column);
    std::size_t line() const { return line_; }
    std::size_t column() const { return column_; }

private:
    std::size_t line_, column_;
};

// Parse a whole document (trailing non-whitespace is an error).
Value parse(std::string_view text);

// Serialise compactly (used for --json output and tests); non-finite numbers as NaN/Infinity.
std::string dump(const Value& value);

}  // namespace mirnet::json
