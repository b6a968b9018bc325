#include "mirnet/json.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>

namespace mirnet::json {

const char* type_name(Type type) {
    switch (type) {
        case Type::Null: return "null";
        case Type::Bool: return "boolean";
        case Type::Number: return "number";
        case Type::String: return "string";
        case Type::Array: return "array";
        case Type::Object: return "object";
    }
    return "?";
}

Value Value::boolean(bool b) {
    Value v;
    v.type_ = Type::Bool;
    v.bool_ = b;
    return v;
}
Value Value::number(double d) {
    Value v;
    v.type_ = Type::Number;
    v.number_ = d;
    return v;
}
Value Value::string(std::string s) {
    Value v;
    v.type_ = Type::String;
    v.string_ = std::move(s);
    return v;
}
Value Value::array(std::vector<Value> items) {
    Value v;
    v.type_ = Type::Array;
    v.array_ = std::move(items);
    return v;
}
Value Value::object(std::vector<Member> members) {
    Value v;
    v.type_ = Type::Object;
    v.object_ = std::move(members);
    return v;
}

namespace {
[[noreturn]] void wrong_type(Type want, Type got) {
    throw Error(std::string("JSON value is ") + type_name(got) + ", expected " + type_name(want) + ".");
}
}  // namespace

bool Value::as_bool() const {
    if (type_ != Type::Bool) wrong_type(Type::Bool, type_);
    return bool_;
}
double Value::as_number() const {
    if (type_ != Type::Number) wrong_type(Type::Number, type_);
    return number_;
}
const std::string& Value::as_string() const {
    if (type_ != Type::String) wrong_type(Type::String, type_);
    return string_;
}
const std::vector<Value>& Value::as_array() const {
    if (type_ != Type::Array) wrong_type(Type::Array, type_);
    return array_;
}
const std::vector<Member>& Value::as_object() const {
    if (type_ != Type::Object) wrong_type(Type::Object, type_);
    return object_;
}

const Value* Value::find(std::string_view key) const {
    if (type_ != Type::Object) return nullptr;
    for (auto it = object_.rbegin(); it != object_.rend(); ++it) {
        if (it->key == key) return &it->value;
    }
    return nullptr;
}

ParseError::ParseError(const std::string& message, std::size_t line, std::size_t column)
    : Error("JSON parse error at line " + std::to_string(line) + ", column " + std::to_string(column) + ": " +
            message),
      line_(line),
      column_(column) {}

namespace {

constexpr int kMaxDepth = 256;

class Parser {
public:
    explicit Parser(std::string_view text) : text_(text) {}

    Value document() {
        if (text_.size() >= 3 && static_cast<unsigned char>(text_[0]) == 0xEF &&
            static_cast<unsigned char>(text_[1]) == 0xBB && static_cast<unsigned char>(text_[2]) == 0xBF) {
            pos_ = 3;
        }
        skip_ws();
        if (pos_ >= text_.size()) fail("the document is empty");
        Value v = value(0);
        skip_ws();
        if (pos_ < text_.size()) fail("unexpected " + describe_here() + " after the end of the document");
        return v;
    }

private:
    std::string_view text_;
    std::size_t pos_ = 0;

    [[noreturn]] void fail_at(std::size_t at, const std::string& message) const {
        std::size_t line = 1, col = 1;
        for (std::size_t i = 0; i < at && i < text_.size(); ++i) {
            if (text_[i] == '\n') {
                ++line;
                col = 1;
            } else {
                ++col;
            }
        }
        throw ParseError(message, line, col);
    }
    [[noreturn]] void fail(const std::string& message) const { fail_at(pos_, message); }

    std::string describe_here() const {
        if (pos_ >= text_.size()) return "end of input";
        const unsigned char ch = static_cast<unsigned char>(text_[pos_]);
        if (ch >= 0x20 && ch < 0x7F) return std::string("'") + static_cast<char>(ch) + "'";
        char buf[16];
        std::snprintf(buf, sizeof(buf), "byte 0x%02X", ch);
        return buf;
    }

    void skip_ws() {
        while (pos_ < text_.size() &&
               (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r')) {
            ++pos_;
        }
    }

    bool consume_literal(std::string_view word) {
        if (text_.substr(pos_, word.size()) == word) {
            pos_ += word.size();
            return true;
        }
        return false;
    }

    Value value(int depth) {
        if (depth >= kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
        if (pos_ >= text_.size()) fail("unexpected end of input, expected a value");
        const char ch = text_[pos_];
        if (ch == '{') return object(depth);
        if (ch == '[') return array(depth);
        if (ch == '"') return Value::string(string());
        if (ch == '-' || (ch >= '0' && ch <= '9')) return number();
        if (consume_literal("true")) return Value::boolean(true);
        if (consume_literal("false")) return Value::boolean(false);
        if (consume_literal("null")) return Value();
        if (consume_literal("NaN")) return Value::number(std::numeric_limits<double>::quiet_NaN());
        if (consume_literal("Infinity")) return Value::number(std::numeric_limits<double>::infinity());
        fail("unexpected " + describe_here() + ", expected a value (object, array, string, number, true, false or null)");
    }

    Value object(int depth) {
        ++pos_;  // '{'
        std::vector<Member> members;
        skip_ws();
        if (pos_ < text_.size() && text_[pos_] == '}') {
            ++pos_;
            return Value::object(std::move(members));
        }
        while (true) {
            skip_ws();
            if (pos_ >= text_.size() || text_[pos_] != '"') {
                fail("expected a string key in object, got " + describe_here());
            }
            std::string key = string();
            skip_ws();
            if (pos_ >= text_.size() || text_[pos_] != ':') {
                fail("expected ':' after object key \"" + key + "\", got " + describe_here());
            }
            ++pos_;
            skip_ws();
            Value v = value(depth + 1);
            members.push_back(Member{std::move(key), std::move(v)});
            skip_ws();
            if (pos_ < text_.size() && text_[pos_] == ',') {
                ++pos_;
                continue;
            }
            if (pos_ < text_.size() && text_[pos_] == '}') {
                ++pos_;
                return Value::object(std::move(members));
            }
            fail("expected ',' or '}' in object, got " + describe_here());
        }
    }

    Value array(int depth) {
        ++pos_;  // '['
        std::vector<Value> items;
        skip_ws();
        if (pos_ < text_.size() && text_[pos_] == ']') {
            ++pos_;
            return Value::array(std::move(items));
        }
        while (true) {
            skip_ws();
            items.push_back(value(depth + 1));
            skip_ws();
            if (pos_ < text_.size() && text_[pos_] == ',') {
                ++pos_;
                continue;
            }
            if (pos_ < text_.size() && text_[pos_] == ']') {
                ++pos_;
                return Value::array(std::move(items));
            }
            fail("expected ',' or ']' in array, got " + describe_here());
        }
    }

    unsigned hex4() {
        if (text_.size() - pos_ < 4) fail("truncated \\u escape");
        unsigned v = 0;
        for (int i = 0; i < 4; ++i) {
            const char c = text_[pos_ + static_cast<std::size_t>(i)];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
            else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
            else fail_at(pos_ + static_cast<std::size_t>(i), "invalid hex digit in \\u escape");
        }
        pos_ += 4;
        return v;
    }

    static void append_utf8(std::string& out, unsigned cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    std::string string() {
        const std::size_t start = pos_;
        ++pos_;  // opening quote
        std::string out;
        while (true) {
            if (pos_ >= text_.size()) fail_at(start, "unterminated string");
            const unsigned char ch = static_cast<unsigned char>(text_[pos_]);
            if (ch == '"') {
                ++pos_;
                return out;
            }
            if (ch < 0x20) fail("unescaped control character (" + describe_here() + ") in string");
            if (ch != '\\') {
                out += static_cast<char>(ch);
                ++pos_;
                continue;
            }
            ++pos_;
            if (pos_ >= text_.size()) fail_at(start, "unterminated string");
            const char esc = text_[pos_++];
            switch (esc) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    const std::size_t at = pos_ - 2;
                    unsigned cp = hex4();
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        if (text_.substr(pos_, 2) != "\\u") fail_at(at, "high surrogate \\u escape without its low half");
                        pos_ += 2;
                        const unsigned low = hex4();
                        if (low < 0xDC00 || low > 0xDFFF) fail_at(at, "invalid surrogate pair in \\u escapes");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                        fail_at(at, "lone low surrogate in \\u escape");
                    }
                    append_utf8(out, cp);
                    break;
                }
                default:
                    fail_at(pos_ - 1, std::string("invalid escape '\\") + esc + "' in string");
            }
        }
    }

    Value number() {
        const std::size_t start = pos_;
        if (text_[pos_] == '-') {
            ++pos_;
            if (consume_literal("Infinity")) return Value::number(-std::numeric_limits<double>::infinity());
        }
        auto digits = [&]() {
            const std::size_t d0 = pos_;
            while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
            return pos_ - d0;
        };
        if (pos_ < text_.size() && text_[pos_] == '0') {
            ++pos_;
            if (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
                fail_at(start, "numbers must not have leading zeros");
            }
        } else if (digits() == 0) {
            fail_at(start, "invalid number: expected a digit after '-'");
        }
        if (pos_ < text_.size() && text_[pos_] == '.') {
            ++pos_;
            if (digits() == 0) fail_at(start, "invalid number: expected a digit after '.'");
        }
        if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
            ++pos_;
            if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
            if (digits() == 0) fail_at(start, "invalid number: expected a digit in the exponent");
        }
        double v = 0.0;
        const char* first = text_.data() + start;
        const char* last = text_.data() + pos_;
        const auto [end, ec] = std::from_chars(first, last, v);
        if (ec == std::errc::result_out_of_range) {
            // Overflow -> +-inf, underflow -> 0, as Python's float() does. The power of ten of the
            // leading non-zero digit plus the exponent tells which of the two happened.
            const bool negative = *first == '-';
            const char* p = negative ? first + 1 : first;
            long long int_digits = 0, frac_digits = 0, lead_power = 0;
            long long lead_int_index = -1;  // index of the leading non-zero digit in the integer part
            bool found = false, in_fraction = false;
            for (; p < last && *p != 'e' && *p != 'E'; ++p) {
                if (*p == '.') {
                    in_fraction = true;
                    continue;
                }
                if (in_fraction) {
                    ++frac_digits;
                    if (!found && *p != '0') {
                        found = true;
                        lead_power = -frac_digits;
                    }
                } else {
                    if (!found && *p != '0') {
                        found = true;
                        lead_int_index = int_digits;
                    }
                    ++int_digits;
                }
            }
            if (found && lead_int_index >= 0) lead_power = int_digits - 1 - lead_int_index;
            long long exponent = 0;
            if (p < last) {
                const char* q = p + 1;
                const bool neg_exp = *q == '-';
                if (*q == '+' || *q == '-') ++q;
                for (; q < last; ++q) exponent = std::min<long long>(exponent * 10 + (*q - '0'), 1000000000LL);
                if (neg_exp) exponent = -exponent;
            }
            const bool tiny = !found || lead_power + exponent < 0;
            v = tiny ? (negative ? -0.0 : 0.0)
                     : (negative ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity());
        } else if (ec != std::errc() || end != last) {
            fail_at(start, "invalid number");
        }
        return Value::number(v);
    }
};

void dump_string(std::string& out, const std::string& s) {
    out += '"';
    for (const char c : s) {
        const unsigned char ch = static_cast<unsigned char>(c);
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (ch < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof(buf), "\\u%04x", ch);
                    out += buf;
                } else {
                    out += c;
                }
        }
    }
    out += '"';
}

void dump_to(std::string& out, const Value& v) {
    switch (v.type()) {
        case Type::Null: out += "null"; return;
        case Type::Bool: out += v.as_bool() ? "true" : "false"; return;
        case Type::Number: {
            const double d = v.as_number();
            if (std::isnan(d)) {
                out += "NaN";
            } else if (std::isinf(d)) {
                out += d > 0 ? "Infinity" : "-Infinity";
            } else {
                char buf[32];
                const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), d);
                out.append(buf, ec == std::errc() ? end : buf);
            }
            return;
        }
        case Type::String: dump_string(out, v.as_string()); return;
        case Type::Array: {
            out += '[';
            bool first = true;
            for (const Value& item : v.as_array()) {
                if (!first) out += ',';
                first = false;
                dump_to(out, item);
            }
            out += ']';
            return;
        }
        case Type::Object: {
            out += '{';
            bool first = true;
            for (const Member& m : v.as_object()) {
                if (!first) out += ',';
                first = false;
                dump_string(out, m.key);
                out += ':';
                dump_to(out, m.value);
            }
            out += '}';
            return;
        }
    }
}

}  // namespace

Value parse(std::string_view text) { return Parser(text).document(); }

std::string dump(const Value& value) {
    std::string out;
    dump_to(out, value);
    return out;
}

}  // namespace mirnet::json
