// The pieces movable_stress builds its world from: tracked_record (an object_pool type that is
// not trivially relocatable: its move constructor fixes a pointer into the object itself, and
// every construction, move and destruction is counted), the balloons' hosts (they check that no
// frame is lent twice, none handed back that was not lent, and that a balloon never calls its host
// from two threads at once), and the byte patterns the byte pools' objects hold (a function of a
// seed, so a shadow copy is four bytes).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <unordered_set>

#include <movable/frame.hpp>
#include <movable/models/balloon.hpp>

namespace movable::stress {

// Lifetime events of every tracked_record, over the whole run.
struct record_lives {
    std::atomic<long long> constructed{0};
    std::atomic<long long> moved{0}; // move-constructed (by relocation)
    std::atomic<long long> destroyed{0};
    [[nodiscard]] long long alive() const noexcept {
        return constructed.load() + moved.load() - destroyed.load();
    }
};
inline record_lives& lives() noexcept {
    static record_lives counts;
    return counts;
}

// An object whose contents are a function of (key, version), with a pointer into itself that a
// raw copy would leave pointing at the old place: object_pool must move it by its move
// constructor, which fixes the pointer.
class tracked_record {
public:
    tracked_record(std::uint64_t key, std::uint32_t version) noexcept
        : key_(key), version_(version), self_(text_) {
        fill();
        lives().constructed.fetch_add(1, std::memory_order_relaxed);
    }
    tracked_record(tracked_record&& other) noexcept
        : key_(other.key_), version_(other.version_), self_(text_) {
        std::memcpy(text_, other.text_, sizeof text_);
        lives().moved.fetch_add(1, std::memory_order_relaxed);
    }
    tracked_record(const tracked_record&) = delete;
    tracked_record& operator=(const tracked_record&) = delete;
    tracked_record& operator=(tracked_record&&) = delete;
    ~tracked_record() {
        lives().destroyed.fetch_add(1, std::memory_order_relaxed);
        self_ = nullptr; // a use after destruction fails intact()
    }

    // True when the record is (key, version) and whole: its pointer leads into itself and its
    // text is what (key, version) writes.
    [[nodiscard]] bool intact(std::uint64_t key, std::uint32_t version) const noexcept {
        if (self_ != text_ || key_ != key || version_ != version) {
            return false;
        }
        char expected[text_bytes];
        write_text(expected, key, version);
        return std::memcmp(self_, expected, text_bytes) == 0;
    }
    void set_version(std::uint32_t version) noexcept {
        version_ = version;
        fill();
    }

private:
    static constexpr std::size_t text_bytes = 40;
    static void write_text(char* out, std::uint64_t key, std::uint32_t version) noexcept {
        std::uint64_t x = key * 0x9E3779B97F4A7C15ull + version;
        for (std::size_t i = 0; i < text_bytes; ++i) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out[i] = static_cast<char>('a' + x % 26);
        }
    }
    void fill() noexcept { write_text(self_, key_, version_); }

    std::uint64_t key_;
    std::uint32_t version_;
    char text_[text_bytes];
    char* self_; // == text_ wherever the record lives
};

// A balloon's host: the set of frames it holds, and what the balloon must never do to it.
// The balloon serialises its calls (host lock), so the set needs no lock.
struct counting_host {
    bool lend(frame& f) noexcept {
        enter();
        double_lends += held.insert(&f).second ? 0 : 1;
        leave();
        return true;
    }
    void reclaim(frame& f) noexcept {
        enter();
        unknown_returns += held.erase(&f) == 1 ? 0 : 1;
        leave();
    }
    void enter() noexcept {
        if (inside.fetch_add(1) != 0) {
            overlapping_calls.fetch_add(1);
        }
    }
    void leave() noexcept { inside.fetch_sub(1); }
    [[nodiscard]] std::size_t faults() const noexcept {
        return double_lends + unknown_returns + overlapping_calls.load();
    }

    std::unordered_set<frame*> held;
    std::size_t double_lends = 0;    // lent a frame it held already
    std::size_t unknown_returns = 0; // handed back a frame it did not hold
    std::atomic<int> inside{0};
    std::atomic<std::size_t> overlapping_calls{0};
};
static_assert(balloon_host<counting_host>);

// The same, answering replace() itself (the balloon's other migration path).
struct replacing_host : counting_host {
    balloon_replace_result replace(frame& new_frame, frame& old_frame) noexcept {
        enter();
        double_lends += held.insert(&new_frame).second ? 0 : 1;
        unknown_returns += held.erase(&old_frame) == 1 ? 0 : 1;
        leave();
        return balloon_replace_result::replaced;
    }
};
static_assert(balloon_host<replacing_host>);

// The bytes of a byte pool's object: a xorshift stream from `seed`.
class byte_pattern {
public:
    explicit byte_pattern(std::uint32_t seed) noexcept : x_(seed * 2654435761u + 1) {}
    std::byte next() noexcept {
        x_ ^= x_ << 13;
        x_ ^= x_ >> 17;
        x_ ^= x_ << 5;
        return static_cast<std::byte>(x_);
    }

private:
    std::uint32_t x_;
};
inline void fill_pattern(std::span<std::byte> bytes, std::uint32_t seed) noexcept {
    byte_pattern pattern(seed);
    for (std::byte& b : bytes) {
        b = pattern.next();
    }
}
inline bool holds_pattern(std::span<const std::byte> bytes, std::uint32_t seed) noexcept {
    byte_pattern pattern(seed);
    for (const std::byte b : bytes) {
        if (b != pattern.next()) {
            return false;
        }
    }
    return true;
}

} // namespace movable::stress
