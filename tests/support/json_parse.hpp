// A small, strict JSON parser (RFC 8259) for tests that read the library's JSON back: it rejects
// anything malformed (trailing commas, leading zeros, raw control characters in strings, bad
// escapes, duplicate keys, text after the value), and keeps each number's text so integers are
// compared exactly.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace test_json {

struct value {
    enum class kind { null, boolean, number, string, array, object };
    kind type = kind::null;
    bool boolean = false;
    std::string text;              // a string's contents, a number's text
    std::vector<std::string> keys; // object: keys, in order
    std::vector<value> items;      // array: the items; object: the values, as keys

    [[nodiscard]] bool has(std::string_view key) const {
        for (const std::string& k : keys) {
            if (k == key) {
                return true;
            }
        }
        return false;
    }
    // The member `key` of an object; std::out_of_range when it has none.
    [[nodiscard]] const value& operator[](std::string_view key) const {
        for (std::size_t i = 0; i < keys.size(); ++i) {
            if (keys[i] == key) {
                return items[i];
            }
        }
        throw std::out_of_range("test_json: no member " + std::string(key));
    }
    [[nodiscard]] const value& operator[](std::size_t index) const { return items.at(index); }
    [[nodiscard]] std::size_t size() const noexcept { return items.size(); }

    // A number as an integer, exactly; std::invalid_argument when it is not one.
    [[nodiscard]] std::uint64_t as_unsigned() const { return integer<std::uint64_t>(); }
    [[nodiscard]] std::int64_t as_signed() const { return integer<std::int64_t>(); }
    [[nodiscard]] double as_double() const {
        require(kind::number);
        double result = 0;
        const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), result);
        if (error != std::errc() || end != text.data() + text.size()) {
            throw std::invalid_argument("test_json: not a double: " + text);
        }
        return result;
    }
    [[nodiscard]] const std::string& as_string() const {
        require(kind::string);
        return text;
    }
    [[nodiscard]] bool as_bool() const {
        require(kind::boolean);
        return boolean;
    }

private:
    void require(kind wanted) const {
        if (type != wanted) {
            throw std::invalid_argument("test_json: value of another type");
        }
    }
    template <class Integer>
    Integer integer() const {
        require(kind::number);
        Integer result = 0;
        const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), result);
        if (error != std::errc() || end != text.data() + text.size()) {
            throw std::invalid_argument("test_json: not an integer of that type: " + text);
        }
        return result;
    }
};

namespace detail {

class parser {
public:
    explicit parser(std::string_view text) : text_(text) {}

    std::optional<value> document() {
        value result;
        if (!parse_value(result, 0)) {
            return std::nullopt;
        }
        skip_space();
        return at_ == text_.size() ? std::optional<value>(std::move(result)) : std::nullopt;
    }

private:
    static constexpr unsigned max_depth = 256;

    void skip_space() {
        while (at_ < text_.size() && (text_[at_] == ' ' || text_[at_] == '\t' ||
                                      text_[at_] == '\n' || text_[at_] == '\r')) {
            ++at_;
        }
    }
    bool eat(char c) {
        skip_space();
        if (at_ < text_.size() && text_[at_] == c) {
            ++at_;
            return true;
        }
        return false;
    }
    bool literal(std::string_view word) {
        if (text_.substr(at_, word.size()) != word) {
            return false;
        }
        at_ += word.size();
        return true;
    }
    bool digit() const { return at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9'; }

    bool parse_value(value& out, unsigned depth) {
        if (depth > max_depth) {
            return false;
        }
        skip_space();
        if (at_ == text_.size()) {
            return false;
        }
        switch (text_[at_]) {
        case '{':
            return parse_object(out, depth);
        case '[':
            return parse_array(out, depth);
        case '"':
            out.type = value::kind::string;
            return parse_string(out.text);
        case 't':
            out.type = value::kind::boolean;
            out.boolean = true;
            return literal("true");
        case 'f':
            out.type = value::kind::boolean;
            return literal("false");
        case 'n':
            out.type = value::kind::null;
            return literal("null");
        default:
            out.type = value::kind::number;
            return parse_number(out.text);
        }
    }
    bool parse_object(value& out, unsigned depth) {
        out.type = value::kind::object;
        ++at_;
        if (eat('}')) {
            return true;
        }
        do {
            skip_space();
            std::string key;
            if (at_ == text_.size() || text_[at_] != '"' || !parse_string(key) || out.has(key) ||
                !eat(':')) {
                return false;
            }
            value item;
            if (!parse_value(item, depth + 1)) {
                return false;
            }
            out.keys.push_back(std::move(key));
            out.items.push_back(std::move(item));
        } while (eat(','));
        return eat('}');
    }
    bool parse_array(value& out, unsigned depth) {
        out.type = value::kind::array;
        ++at_;
        if (eat(']')) {
            return true;
        }
        do {
            value item;
            if (!parse_value(item, depth + 1)) {
                return false;
            }
            out.items.push_back(std::move(item));
        } while (eat(','));
        return eat(']');
    }
    // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    bool parse_number(std::string& out) {
        const std::size_t start = at_;
        if (at_ < text_.size() && text_[at_] == '-') {
            ++at_;
        }
        if (!digit()) {
            return false;
        }
        if (text_[at_] == '0') {
            ++at_;
        } else {
            while (digit()) {
                ++at_;
            }
        }
        if (at_ < text_.size() && text_[at_] == '.') {
            ++at_;
            if (!digit()) {
                return false;
            }
            while (digit()) {
                ++at_;
            }
        }
        if (at_ < text_.size() && (text_[at_] == 'e' || text_[at_] == 'E')) {
            ++at_;
            if (at_ < text_.size() && (text_[at_] == '+' || text_[at_] == '-')) {
                ++at_;
            }
            if (!digit()) {
                return false;
            }
            while (digit()) {
                ++at_;
            }
        }
        out.assign(text_.substr(start, at_ - start));
        return true;
    }
    bool hex4(unsigned& code) {
        if (at_ + 4 > text_.size()) {
            return false;
        }
        const auto [end, error] =
            std::from_chars(text_.data() + at_, text_.data() + at_ + 4, code, 16);
        if (error != std::errc() || end != text_.data() + at_ + 4) {
            return false;
        }
        at_ += 4;
        return true;
    }
    static void append_utf8(std::string& out, unsigned code) {
        if (code < 0x80) {
            out += static_cast<char>(code);
        } else if (code < 0x800) {
            out += static_cast<char>(0xC0 | (code >> 6));
            out += static_cast<char>(0x80 | (code & 0x3F));
        } else if (code < 0x10000) {
            out += static_cast<char>(0xE0 | (code >> 12));
            out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (code & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (code >> 18));
            out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (code & 0x3F));
        }
    }
    bool parse_string(std::string& out) {
        ++at_; // the opening quote
        while (at_ < text_.size()) {
            const char c = text_[at_++];
            if (c == '"') {
                return true;
            }
            if (static_cast<unsigned char>(c) < 0x20) {
                return false; // control characters must be escaped
            }
            if (c != '\\') {
                out += c;
                continue;
            }
            if (at_ == text_.size()) {
                return false;
            }
            switch (text_[at_++]) {
            case '"':
                out += '"';
                break;
            case '\\':
                out += '\\';
                break;
            case '/':
                out += '/';
                break;
            case 'b':
                out += '\b';
                break;
            case 'f':
                out += '\f';
                break;
            case 'n':
                out += '\n';
                break;
            case 'r':
                out += '\r';
                break;
            case 't':
                out += '\t';
                break;
            case 'u': {
                unsigned code = 0;
                if (!hex4(code)) {
                    return false;
                }
                if (code >= 0xD800 && code < 0xDC00) { // a high surrogate: its low one follows
                    unsigned low = 0;
                    if (!literal("\\u") || !hex4(low) || low < 0xDC00 || low >= 0xE000) {
                        return false;
                    }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                } else if (code >= 0xDC00 && code < 0xE000) {
                    return false; // a low surrogate alone
                }
                append_utf8(out, code);
                break;
            }
            default:
                return false;
            }
        }
        return false; // no closing quote
    }

    std::string_view text_;
    std::size_t at_ = 0;
};

} // namespace detail

// The value `text` holds, or nothing when it is not exactly one valid JSON value.
inline std::optional<value> parse(std::string_view text) {
    return detail::parser(text).document();
}

} // namespace test_json
