#include <movable/tagged_ptr.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>

#include "support/death_test.hpp"

namespace {

struct alignas(8) eight {
    int value = 0;
};
struct alignas(64) sixty_four {
    int value = 0;
};

} // namespace

using movable::atomic_tagged_ptr;
using movable::low_bits_available;
using movable::tagged_ptr;

static_assert(low_bits_available<char> == 0);
static_assert(low_bits_available<std::uint16_t> == 1);
static_assert(low_bits_available<eight> == 3);
static_assert(low_bits_available<sixty_four> == 6);
static_assert(sizeof(tagged_ptr<eight, 3>) == sizeof(void*));
static_assert(tagged_ptr<eight, 3>::max_tag == 7);

// The parts that do not touch a real pointer are constant expressions.
static_assert(tagged_ptr<eight, 2>(nullptr, 3).tag() == 3);
static_assert(!tagged_ptr<eight, 2>(nullptr, 3).has_pointer());
static_assert(tagged_ptr<eight, 2>::from_raw(0x40 | 2).tag() == 2);
static_assert(tagged_ptr<eight, 2>() == tagged_ptr<eight, 2>::from_raw(0));

TEST_CASE("every tag value round-trips with the pointer for every tag width the alignment allows") {
    static sixty_four object;
    auto check_width = [&]<unsigned Bits>() {
        for (std::uintptr_t tag = 0; tag <= tagged_ptr<sixty_four, Bits>::max_tag; ++tag) {
            const tagged_ptr<sixty_four, Bits> packed(&object, tag);
            CHECK(packed.pointer() == &object);
            CHECK(packed.tag() == tag);
            const auto copy = tagged_ptr<sixty_four, Bits>::from_raw(packed.raw());
            CHECK(copy == packed);
            CHECK(copy.pointer() == &object);
            CHECK(copy.tag() == tag);
        }
    };
    check_width.operator()<1>();
    check_width.operator()<2>();
    check_width.operator()<3>();
    check_width.operator()<6>();
}

TEST_CASE("setting the tag keeps the pointer and setting the pointer keeps the tag") {
    eight a;
    eight b;
    tagged_ptr<eight, 3> packed(&a, 5);
    packed.set_tag(2);
    CHECK(packed.pointer() == &a);
    CHECK(packed.tag() == 2);
    packed.set_pointer(&b);
    CHECK(packed.pointer() == &b);
    CHECK(packed.tag() == 2);
    packed->value = 42;
    CHECK(b.value == 42);
    CHECK((*packed).value == 42);
}

TEST_CASE("a null pointer can carry a tag and reads back as null") {
    const tagged_ptr<eight, 1> packed(nullptr, 1);
    CHECK(packed.pointer() == nullptr);
    CHECK(packed.tag() == 1);
    CHECK_FALSE(packed.has_pointer());
}

TEST_CASE("atomic compare-exchange succeeds on the expected word and reports the current one") {
    eight a;
    eight b;
    atomic_tagged_ptr<eight, 3> word(tagged_ptr<eight, 3>(&a, 1));
    auto expected = tagged_ptr<eight, 3>(&a, 1);
    CHECK(word.compare_exchange_strong(expected, tagged_ptr<eight, 3>(&b, 6),
                                       std::memory_order_acq_rel, std::memory_order_acquire));
    CHECK(word.load(std::memory_order_acquire) == tagged_ptr<eight, 3>(&b, 6));

    // A stale expectation (same pointer, other tag) fails and receives the current value.
    auto stale = tagged_ptr<eight, 3>(&b, 5);
    CHECK_FALSE(word.compare_exchange_strong(stale, tagged_ptr<eight, 3>(&a, 0),
                                             std::memory_order_acq_rel, std::memory_order_acquire));
    CHECK(stale == tagged_ptr<eight, 3>(&b, 6));

    auto current = word.load(std::memory_order_relaxed);
    while (!word.compare_exchange_weak(current, tagged_ptr<eight, 3>(&a, 7),
                                       std::memory_order_acq_rel, std::memory_order_relaxed)) {
    }
    CHECK(word.exchange(tagged_ptr<eight, 3>(), std::memory_order_acq_rel) ==
          tagged_ptr<eight, 3>(&a, 7));
    word.store(tagged_ptr<eight, 3>(&b, 3), std::memory_order_release);
    CHECK(word.load(std::memory_order_acquire).tag() == 3);
    CHECK(atomic_tagged_ptr<eight, 3>::is_always_lock_free);
}

TEST_CASE("a misaligned pointer is a contract violation") {
    MOVABLE_REQUIRE_CONTRACTS();
    alignas(8) static unsigned char storage[16];
    CHECK(movable::test::dies_with("tagged_ptr: pointer is not sufficiently aligned", [] {
        // An address one byte past an aligned one; never dereferenced.
        // NOLINTNEXTLINE(performance-no-int-to-ptr): a misaligned address is the point
        auto* misaligned = reinterpret_cast<eight*>(reinterpret_cast<std::uintptr_t>(storage) + 1);
        const tagged_ptr<eight, 3> packed(misaligned, 0);
        (void)packed;
    }));
}

TEST_CASE("a tag that does not fit is a contract violation") {
    MOVABLE_REQUIRE_CONTRACTS();
    static eight object;
    CHECK(movable::test::dies_with("tagged_ptr: tag does not fit in Bits", [] {
        const tagged_ptr<eight, 2> packed(&object, 4);
        (void)packed;
    }));
    CHECK(movable::test::dies_with("tagged_ptr::set_tag: tag does not fit in Bits", [] {
        tagged_ptr<eight, 2> packed(&object, 0);
        packed.set_tag(8);
    }));
}
