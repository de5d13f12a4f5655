// A minimal streaming JSON writer for the statistics writers (stats_json.hpp): objects, arrays,
// keys, and unsigned, signed, floating, boolean and string values, written straight to an
// std::ostream with no allocation of its own. Compact output (no whitespace).
#pragma once

#include <charconv>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string_view>

#include <movable/detail/contract.hpp>

namespace movable::detail {

class json_writer {
public:
    // Nesting deeper than this is a contract violation (the statistics nest four levels deep).
    static constexpr unsigned max_depth = 64;

    explicit json_writer(std::ostream& out) noexcept : out_(out) {}
    json_writer(const json_writer&) = delete;
    json_writer& operator=(const json_writer&) = delete;

    json_writer& begin_object() { return open('{'); }
    json_writer& end_object() { return close('}'); }
    json_writer& begin_array() { return open('['); }
    json_writer& end_array() { return close(']'); }

    // The key of the next value; inside an object only.
    json_writer& key(std::string_view name) {
        MOVABLE_CONTRACT(depth_ > 0 && in_object(), "json_writer::key: not inside an object");
        MOVABLE_CONTRACT(!after_key_, "json_writer::key: two keys in a row");
        separate();
        write_string(name);
        out_.put(':');
        after_key_ = true;
        return *this;
    }

    json_writer& value(bool b) {
        begin_value();
        out_ << (b ? "true" : "false");
        return *this;
    }
    template <std::integral Integer>
    requires(!std::same_as<Integer, bool>) json_writer& value(Integer number) {
        begin_value();
        char digits[24];
        const auto result = std::to_chars(digits, digits + sizeof digits, number);
        out_.write(digits, result.ptr - digits);
        return *this;
    }
    // The shortest text that reads back as the same double; null for NaN and infinities, which
    // JSON cannot write.
    json_writer& value(double number) {
        begin_value();
        if (!std::isfinite(number)) {
            out_ << "null";
            return *this;
        }
        char digits[32];
        const auto result = std::to_chars(digits, digits + sizeof digits, number);
        out_.write(digits, result.ptr - digits);
        return *this;
    }
    json_writer& value(std::string_view text) {
        begin_value();
        write_string(text);
        return *this;
    }
    // Without this, a string literal would convert to bool rather than to std::string_view.
    json_writer& value(const char* text) { return value(std::string_view(text)); }
    json_writer& null() {
        begin_value();
        out_ << "null";
        return *this;
    }

    // key(name).value(v)
    template <class Value>
    json_writer& field(std::string_view name, const Value& v) {
        key(name);
        return value(v);
    }
    // An array of the values of a range (numbers, strings).
    template <class Range>
    json_writer& array(const Range& values) {
        begin_array();
        for (const auto& v : values) {
            value(v);
        }
        return end_array();
    }
    template <class Range>
    json_writer& array_field(std::string_view name, const Range& values) {
        key(name);
        return array(values);
    }

    // True when every object and array opened has been closed.
    [[nodiscard]] bool complete() const noexcept { return depth_ == 0 && !after_key_; }

private:
    bool in_object() const noexcept { return (objects_ >> (depth_ - 1)) & 1U; }
    bool has_items() const noexcept { return (items_ >> depth_) & 1U; }

    // Writes the comma before an item that is not the first of its object or array.
    void separate() {
        if (has_items()) {
            out_.put(',');
        }
        items_ |= std::uint64_t{1} << depth_;
    }
    void begin_value() {
        if (after_key_) {
            after_key_ = false;
            return;
        }
        MOVABLE_CONTRACT(depth_ == 0 || !in_object(),
                         "json_writer::value: a value inside an object needs a key");
        separate();
    }
    json_writer& open(char bracket) {
        MOVABLE_CONTRACT(depth_ + 1 < max_depth, "json_writer: nested too deeply");
        begin_value();
        out_.put(bracket);
        ++depth_;
        const std::uint64_t bit = std::uint64_t{1} << depth_;
        items_ &= ~bit;
        objects_ = bracket == '{' ? objects_ | (bit >> 1) : objects_ & ~(bit >> 1);
        return *this;
    }
    json_writer& close(char bracket) {
        MOVABLE_CONTRACT(depth_ > 0 && in_object() == (bracket == '}') && !after_key_,
                         "json_writer: closes what it did not open, or a key has no value");
        --depth_;
        out_.put(bracket);
        return *this;
    }

    // RFC 8259 string: quote, backslash and control characters escaped; other bytes (UTF-8)
    // written as they are.
    void write_string(std::string_view text) {
        out_.put('"');
        std::size_t run = 0; // start of the bytes not written yet
        for (std::size_t i = 0; i < text.size(); ++i) {
            const auto c = static_cast<unsigned char>(text[i]);
            if (c >= 0x20 && c != '"' && c != '\\') {
                continue;
            }
            out_.write(text.data() + run, static_cast<std::streamsize>(i - run));
            run = i + 1;
            switch (c) {
            case '"':
                out_ << "\\\"";
                break;
            case '\\':
                out_ << "\\\\";
                break;
            case '\b':
                out_ << "\\b";
                break;
            case '\f':
                out_ << "\\f";
                break;
            case '\n':
                out_ << "\\n";
                break;
            case '\r':
                out_ << "\\r";
                break;
            case '\t':
                out_ << "\\t";
                break;
            default: {
                static constexpr char hex[] = "0123456789abcdef";
                const char escaped[] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xF]};
                out_.write(escaped, sizeof escaped);
            }
            }
        }
        out_.write(text.data() + run, static_cast<std::streamsize>(text.size() - run));
        out_.put('"');
    }

    std::ostream& out_;
    unsigned depth_ = 0;
    std::uint64_t items_ = 0;   // bit d: the object or array at depth d has an item already
    std::uint64_t objects_ = 0; // bit d - 1: the container at depth d is an object
    bool after_key_ = false;    // a key was written; its value comes next
};

} // namespace movable::detail
