// Pins, two kinds. Per-object pins without a lock: one 32-bit word per object (object_pool keeps it
// in the object's handle slot) that readers count themselves into and that a mover (compaction,
// migration) or the object's destroyer takes for itself only when no reader is in. The
// encoding lives here and only here.
//
//   bit 0       exclusive: a mover or the destroyer owns the object
//   bits 1..31  readers pinning the object
//
// A reader adds itself with one fetch_add; if the exclusive bit was set it takes itself out
// again and waits (the mover holds the bit for one object's move). A mover claims the word
// with a compare-exchange from 0 (no reader, no other mover) and never waits: a pinned object
// is skipped (compaction) or refuses the move (migration answers busy). Both sides use one
// atomic word, so exactly one of them wins a race: a reader never sees a half-moved object,
// and a mover never moves a pinned one.
//
// Container pins (container_pin, at the end): a count of readers on a whole container of
// objects (zspage_pool's zspage, zbud_pool's frame), taken under the pool's lock for the
// container, under which no mover runs, and dropped without any lock. Movers look at the count
// under that lock and leave a pinned container alone.
//
// Optimistic container pins (container_claim): the same count, taken without any lock. The top
// bit of the word says a mover (compaction, migration, the container's release) owns the
// container: a mover sets it with a compare-exchange from 0 (no reader), a reader adds itself
// with one fetch_add and backs off when the bit was set. Both sides change one atomic word, so
// exactly one wins a race; after winning, a reader re-checks that what it followed to the
// container (a handle's location) still leads there. A pool that pins this way claims every
// container before it moves objects out of it, changes its frames or frees it.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <utility>

#include <movable/detail/contract.hpp>

namespace movable::detail {

struct pin_word {
    static constexpr std::uint32_t exclusive = 1;
    static constexpr std::uint32_t one_pin = 2;
    // The most pins a word counts: a reader that would overflow it is a leak of pins.
    static constexpr std::uint32_t max_pins = 0x7fffffff;

    static constexpr bool is_exclusive(std::uint32_t word) noexcept {
        return (word & exclusive) != 0;
    }
    static constexpr std::uint32_t pins(std::uint32_t word) noexcept { return word >> 1; }

    // Adds a pin, waiting (yield) while a mover or destroyer holds the word. Acquire: the
    // location a mover published before it let go is visible to the reader.
    static void pin(std::atomic<std::uint32_t>& word) noexcept {
        for (;;) {
            const std::uint32_t old = word.fetch_add(one_pin, std::memory_order_acquire);
            MOVABLE_CONTRACT(pins(old) < max_pins, "object_pool: too many pins on one object");
            if (!is_exclusive(old)) {
                return;
            }
            word.fetch_sub(one_pin, std::memory_order_relaxed);
            while (is_exclusive(word.load(std::memory_order_relaxed))) {
                std::this_thread::yield();
            }
        }
    }
    static void unpin(std::atomic<std::uint32_t>& word) noexcept {
        const std::uint32_t old = word.fetch_sub(one_pin, std::memory_order_release);
        MOVABLE_CONTRACT(pins(old) != 0, "object_pool: unpinned an object that was not pinned");
    }
    // Claims the word for a mover: true when no one pins or holds it. Never waits.
    [[nodiscard]] static bool try_claim(std::atomic<std::uint32_t>& word) noexcept {
        std::uint32_t expected = 0;
        return word.compare_exchange_strong(expected, exclusive, std::memory_order_acquire,
                                            std::memory_order_relaxed);
    }
    // Claims the word, waiting (yield) until no one pins or holds it: the destroyer's claim.
    static void claim(std::atomic<std::uint32_t>& word) noexcept {
        while (!try_claim(word)) {
            std::this_thread::yield();
        }
    }
    // Lets go of a claimed word. Release: what the mover wrote (the object, its new location)
    // is visible to the next reader.
    static void end_claim(std::atomic<std::uint32_t>& word) noexcept {
        const std::uint32_t old = word.fetch_sub(exclusive, std::memory_order_release);
        MOVABLE_CONTRACT(is_exclusive(old), "object_pool: ended a claim that was not held");
    }
};
static_assert(pin_word::pins(pin_word::one_pin) == 1 &&
                  !pin_word::is_exclusive(pin_word::one_pin) &&
                  pin_word::is_exclusive(pin_word::exclusive) &&
                  pin_word::pins(pin_word::exclusive) == 0,
              "pin_word: the exclusive bit and the pin count must not overlap");

// A pin held on a pin word, released when the guard ends. Move-only.
class pin_guard {
public:
    pin_guard() noexcept = default;
    // Pins `word` (waits while a mover holds it).
    explicit pin_guard(std::atomic<std::uint32_t>& word) noexcept : word_(&word) {
        pin_word::pin(word);
    }
    // Adopts a pin the caller already holds on `word`.
    static pin_guard adopt(std::atomic<std::uint32_t>& word) noexcept {
        pin_guard guard;
        guard.word_ = &word;
        return guard;
    }
    pin_guard(pin_guard&& other) noexcept : word_(std::exchange(other.word_, nullptr)) {}
    pin_guard& operator=(pin_guard&& other) noexcept {
        if (this != &other) {
            release();
            word_ = std::exchange(other.word_, nullptr);
        }
        return *this;
    }
    pin_guard(const pin_guard&) = delete;
    pin_guard& operator=(const pin_guard&) = delete;
    ~pin_guard() { release(); }

    [[nodiscard]] explicit operator bool() const noexcept { return word_ != nullptr; }
    // Drops the pin now. Idempotent.
    void release() noexcept {
        if (word_ != nullptr) {
            pin_word::unpin(*std::exchange(word_, nullptr));
        }
    }

private:
    std::atomic<std::uint32_t>* word_ = nullptr;
};

// The mover bit of a container's pin word (see the top of the file).
struct container_claim {
    static constexpr std::uint64_t mover = std::uint64_t{1} << 63;

    // Adds a reader's pin, without a lock: false (and no pin) when a mover owns the word.
    // Acquire: what the last mover did before letting go is visible.
    [[nodiscard]] static bool try_pin(std::atomic<std::uint64_t>& pins) noexcept {
        const std::uint64_t old = pins.fetch_add(1, std::memory_order_acquire);
        if ((old & mover) != 0) {
            pins.fetch_sub(1, std::memory_order_relaxed);
            return false;
        }
        return true;
    }
    // Claims the word for a mover: true when no reader pins it and no other mover holds it.
    [[nodiscard]] static bool try_claim(std::atomic<std::uint64_t>& pins) noexcept {
        std::uint64_t expected = 0;
        return pins.compare_exchange_strong(expected, mover, std::memory_order_acquire,
                                            std::memory_order_relaxed);
    }
    // Lets go of a claim. Release: the mover's changes are visible to the next reader.
    static void end_claim(std::atomic<std::uint64_t>& pins) noexcept {
        const std::uint64_t old = pins.fetch_sub(mover, std::memory_order_release);
        MOVABLE_CONTRACT((old & mover) != 0, "pool: ended a container claim that was not held");
    }
    // Readers counted in a pin word.
    static constexpr std::uint64_t readers(std::uint64_t word) noexcept { return word & ~mover; }
};

// A pin on a container of objects (a type with `std::atomic<std::uint64_t> pins`), its reader
// lock: taken under the pool's lock for the container, under which no mover runs, and released
// without any lock when the guard ends. While a container is pinned, movers (compaction,
// migration, eviction) leave it alone. Move-only.
template <class Container>
class container_pin {
public:
    container_pin() noexcept = default;
    // Pins c. The pool's lock for c must be held.
    explicit container_pin(Container& c) noexcept : container_(&c) {
        c.pins.fetch_add(1, std::memory_order_relaxed);
    }
    // Adopts a pin the caller already holds on c (container_claim::try_pin).
    static container_pin adopt(Container& c) noexcept {
        container_pin pin;
        pin.container_ = &c;
        return pin;
    }
    container_pin(container_pin&& other) noexcept
        : container_(std::exchange(other.container_, nullptr)) {}
    container_pin& operator=(container_pin&& other) noexcept {
        if (this != &other) {
            release();
            container_ = std::exchange(other.container_, nullptr);
        }
        return *this;
    }
    container_pin(const container_pin&) = delete;
    container_pin& operator=(const container_pin&) = delete;
    ~container_pin() { release(); }

    [[nodiscard]] Container* get() const noexcept { return container_; }
    // Drops the pin now. Idempotent. Release: what the reader wrote is visible to the next mover.
    void release() noexcept {
        if (container_ == nullptr) {
            return;
        }
        const std::uint64_t previous = container_->pins.fetch_sub(1, std::memory_order_release);
        MOVABLE_CONTRACT(container_claim::readers(previous) != 0,
                         "pool: unpinned a container that was not pinned");
        container_ = nullptr;
    }

private:
    Container* container_ = nullptr;
};

} // namespace movable::detail
