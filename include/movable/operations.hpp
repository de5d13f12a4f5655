// The owner protocol: how a type that owns frames lets the core isolate, migrate and put them
// back.
//
// An owner models movable_owner: three noexcept member functions (or, for a type you cannot
// change, a specialization of owner_traits<Owner> providing them as statics):
//
//   bool isolate(frame& f, migrate_mode mode) noexcept
//       Called with f locked. Return true to let the core take f away from you for now: you
//       must stop using f's list hook (take it off your own lists) and not free it through
//       your allocator; you keep reading its contents. Return false to refuse (f is in use).
//   migrate_status migrate(frame& dst, frame& src, migrate_mode mode) noexcept
//       Called with src (isolated) and dst (freshly allocated) both locked. On `success` you
//       copied the contents, pointed your own references at dst and called
//       set_movable(dst, *this); the core then frees src (you must not touch it again). On
//       `retry` the core tries again later in the same call (a bounded number of passes); on
//       `busy` or `failed` it gives up and calls putback(src) once. On anything but success,
//       leave dst untouched and not movable.
//   void putback(frame& f) noexcept
//       Called with f locked when the core gives an isolated frame back unmigrated: put it
//       back on your lists. Called exactly once per isolation that did not end in migration.
//
// The migrate_mode passed to isolate and migrate says what the call may wait for (the
// kernel's MIGRATE_ASYNC, MIGRATE_SYNC_LIGHT and MIGRATE_SYNC). The core passes the caller's
// mode unchanged, in every pass of migrate_frames.
//   async       Waits for nothing. The core only try-locks frames; the owner only try-locks
//               its own locks and answers `retry` (contended) or `busy` (in use) instead.
//   sync_light  May wait for short locks: the core waits for frame locks (after its
//               non-blocking passes, and to put frames back); the owner may wait for its own
//               locks that are held for a bounded time and never across user code. Never
//               waits for a pin on an object (a reader's or a mapping's: a user may keep one
//               as long as it likes) nor for a lock held across user code (a balloon's host
//               lock); it answers `busy` (or `retry`) instead.
//   sync        May also wait, for a bound the owner documents, for a pin on an object of
//               the frame to drop: a read or write in progress drops it within the bound; a
//               mapping a user keeps does not, and the owner then answers `busy` (zspage_pool
//               waits up to zspage_pool_options::sync_pin_wait_attempts looks). Never waits
//               without a bound, and never for a lock the calling thread may itself hold (a
//               compaction can run inside an owner's call: a balloon's host lock).
// The frame locks are held across every callback, so an owner's waits in sync mode lengthen
// how long a sync_light or sync migrator may wait for a frame lock: by the owner's bound.
//
// The mapping word of a movable frame is the address of operations_for<Owner> (one static
// table per owner type) with the low MOVABLE bit set. An owner that frees a frame calls
// clear_movable(f) with f locked: the word keeps the MOVABLE bit but loses the pointer, so a
// core that isolated f meanwhile sees "movable type, no owner" and frees f itself.
#pragma once

#include <concepts>
#include <cstdint>
#include <memory>
#include <type_traits>

#include <movable/detail/contract.hpp>
#include <movable/frame.hpp>
#include <movable/tagged_ptr.hpp>

namespace movable {

// What a migration may wait for (the owner contract at the top of this file says exactly):
// `async` nothing, `sync_light` short locks (frame locks, an owner's briefly held locks),
// `sync` also, bounded, a short pin on an object of the frame.
enum class migrate_mode : std::uint8_t { async, sync_light, sync };

// An owner's answer to migrate (see the contract at the top of this file).
enum class migrate_status : std::uint8_t { success, retry, busy, failed };

// The static function table of one owner type.
struct movable_operations {
    bool (*isolate)(frame&, migrate_mode) noexcept;
    migrate_status (*migrate)(frame& dst, frame& src, migrate_mode) noexcept;
    void (*putback)(frame&) noexcept;
};

// The mapping word: pointer to the operations with the MOVABLE bit.
using mapping_ptr = tagged_ptr<const movable_operations, 1>;
inline constexpr std::uintptr_t movable_tag = 1;
static_assert(low_bits_available<movable_operations> >= 1,
              "movable_operations must leave the low bit of its address free for MOVABLE");

// Adapts a type to the owner protocol. The primary template forwards to members; specialize it
// for a type you cannot change, with static isolate/migrate/putback taking the owner first.
template <class Owner>
struct owner_traits {
    // Function templates, so that a missing member removes the forwarder (and
    // check_movable_owner reports it) instead of breaking the build inside this class.
    template <class O = Owner>
    static auto isolate(O& owner, frame& f,
                        migrate_mode mode) noexcept(noexcept(owner.isolate(f, mode)))
        -> decltype(owner.isolate(f, mode)) {
        return owner.isolate(f, mode);
    }
    template <class O = Owner>
    static auto migrate(O& owner, frame& dst, frame& src,
                        migrate_mode mode) noexcept(noexcept(owner.migrate(dst, src, mode)))
        -> decltype(owner.migrate(dst, src, mode)) {
        return owner.migrate(dst, src, mode);
    }
    template <class O = Owner>
    static auto putback(O& owner, frame& f) noexcept(noexcept(owner.putback(f)))
        -> decltype(owner.putback(f)) {
        return owner.putback(f);
    }
};

namespace detail {
template <class Owner>
consteval bool models_owner_protocol() noexcept; // below, from the atomic requirements
} // namespace detail

// A type whose instances can own movable frames: the three callbacks above, each noexcept with
// its return type, reached through owner_traits<Owner>. A type that falls short is told which
// piece it misses by set_movable / operations_for (check_movable_owner below).
template <class Owner>
concept movable_owner = detail::models_owner_protocol<Owner>();

namespace detail {
// clang-format off (clang-format 14 splits compound requirements badly)
template <class O>
concept owner_has_isolate = requires(O& o, frame& f, migrate_mode m) {
    owner_traits<O>::isolate(o, f, m);
};
template <class O>
concept owner_isolate_returns_bool = requires(O& o, frame& f, migrate_mode m) {
    { owner_traits<O>::isolate(o, f, m) } -> std::same_as<bool>;
};
template <class O>
concept owner_isolate_is_noexcept = requires(O& o, frame& f, migrate_mode m) {
    { owner_traits<O>::isolate(o, f, m) }
    noexcept;
};
template <class O>
concept owner_has_migrate = requires(O& o, frame& f, migrate_mode m) {
    owner_traits<O>::migrate(o, f, f, m);
};
template <class O>
concept owner_migrate_returns_status = requires(O& o, frame& f, migrate_mode m) {
    { owner_traits<O>::migrate(o, f, f, m) } -> std::same_as<migrate_status>;
};
template <class O>
concept owner_migrate_is_noexcept = requires(O& o, frame& f, migrate_mode m) {
    { owner_traits<O>::migrate(o, f, f, m) }
    noexcept;
};
template <class O>
concept owner_has_putback = requires(O& o, frame& f) {
    owner_traits<O>::putback(o, f);
};
template <class O>
concept owner_putback_returns_void = requires(O& o, frame& f) {
    { owner_traits<O>::putback(o, f) } -> std::same_as<void>;
};
template <class O>
concept owner_putback_is_noexcept = requires(O& o, frame& f) {
    { owner_traits<O>::putback(o, f) }
    noexcept;
};
// clang-format on
} // namespace detail

namespace detail {
// The protocol as one predicate over the atomic requirements above, which check_movable_owner
// asserts one by one: no requirement is spelled twice.
template <class Owner>
consteval bool models_owner_protocol() noexcept {
    return std::is_object_v<Owner> && !std::is_const_v<Owner> &&
           owner_isolate_returns_bool<Owner> && owner_isolate_is_noexcept<Owner> &&
           owner_migrate_returns_status<Owner> && owner_migrate_is_noexcept<Owner> &&
           owner_putback_returns_void<Owner> && owner_putback_is_noexcept<Owner>;
}
} // namespace detail

namespace detail {
// Says which piece of the protocol a type is missing, one static_assert per piece, and only
// the pieces that are missing: a check that cannot be asked (the members of a const type) is
// not.
//
// Every fact is settled before the first static_assert can fail. Once an instantiation has
// failed one, GCC (12) instantiates nothing more inside it, not even the deferred noexcept of
// an owner_traits forwarder, and a noexcept check asked afterwards reads false: an owner whose
// migrate threw was also told "Owner::putback must be noexcept".
template <class Owner>
consteval bool check_movable_owner() {
    constexpr bool object_type = std::is_object_v<Owner> && !std::is_const_v<Owner>;
    constexpr bool has_isolate = owner_has_isolate<Owner>;
    constexpr bool isolate_returns_bool = owner_isolate_returns_bool<Owner>;
    constexpr bool isolate_is_noexcept = owner_isolate_is_noexcept<Owner>;
    constexpr bool has_migrate = owner_has_migrate<Owner>;
    constexpr bool migrate_returns_status = owner_migrate_returns_status<Owner>;
    constexpr bool migrate_is_noexcept = owner_migrate_is_noexcept<Owner>;
    constexpr bool has_putback = owner_has_putback<Owner>;
    constexpr bool putback_returns_void = owner_putback_returns_void<Owner>;
    constexpr bool putback_is_noexcept = owner_putback_is_noexcept<Owner>;

    static_assert(object_type, "movable_owner: Owner must be a non-const object type");
    static_assert(!object_type || has_isolate,
                  "movable_owner: Owner has no member `bool isolate(movable::frame&, "
                  "movable::migrate_mode) noexcept` (nor owner_traits<Owner>::isolate)");
    static_assert(!has_isolate || isolate_returns_bool,
                  "movable_owner: Owner::isolate must return bool");
    static_assert(!has_isolate || isolate_is_noexcept,
                  "movable_owner: Owner::isolate must be noexcept");
    static_assert(!object_type || has_migrate,
                  "movable_owner: Owner has no member `movable::migrate_status "
                  "migrate(movable::frame& dst, movable::frame& src, movable::migrate_mode) "
                  "noexcept` (nor owner_traits<Owner>::migrate)");
    static_assert(!has_migrate || migrate_returns_status,
                  "movable_owner: Owner::migrate must return movable::migrate_status");
    static_assert(!has_migrate || migrate_is_noexcept,
                  "movable_owner: Owner::migrate must be noexcept");
    static_assert(!object_type || has_putback,
                  "movable_owner: Owner has no member `void putback(movable::frame&) noexcept` "
                  "(nor owner_traits<Owner>::putback)");
    static_assert(!has_putback || putback_returns_void,
                  "movable_owner: Owner::putback must return void");
    static_assert(!has_putback || putback_is_noexcept,
                  "movable_owner: Owner::putback must be noexcept");
    return movable_owner<Owner>;
}

template <class Owner>
struct operations_trampolines {
    static Owner& owner_of(frame& f) noexcept { return *static_cast<Owner*>(f.owner()); }
    static bool isolate(frame& f, migrate_mode mode) noexcept {
        return owner_traits<Owner>::isolate(owner_of(f), f, mode);
    }
    static migrate_status migrate(frame& dst, frame& src, migrate_mode mode) noexcept {
        return owner_traits<Owner>::migrate(owner_of(src), dst, src, mode);
    }
    static void putback(frame& f) noexcept { owner_traits<Owner>::putback(owner_of(f), f); }
};

template <class Owner>
consteval movable_operations make_operations() {
    if constexpr (check_movable_owner<Owner>()) {
        using trampolines = operations_trampolines<Owner>;
        return {&trampolines::isolate, &trampolines::migrate, &trampolines::putback};
    } else {
        return {nullptr, nullptr, nullptr};
    }
}
} // namespace detail

// The one operations table of an owner type; a movable frame's mapping word points here.
template <class Owner>
inline constexpr movable_operations operations_for = detail::make_operations<Owner>();

// Lockless, cheap test of the MOVABLE bit. May be a false positive (the owner may be releasing
// the frame); always re-checked under the frame lock with movable_ops.
[[nodiscard]] inline bool is_movable(const frame& f) noexcept {
    return (f.mapping_word(std::memory_order_acquire) & movable_tag) != 0;
}

// The operations of a movable frame, or null when the frame is not movable or its owner
// released it (clear_movable). Stable only while the frame is locked.
[[nodiscard]] inline const movable_operations* movable_ops(const frame& f) noexcept {
    return mapping_ptr::from_raw(f.mapping_word(std::memory_order_acquire)).pointer();
}

// Makes `f` movable and owned by `owner`. Frame locked by the caller. `f` must be a single
// frame: a frame of a multi-frame allocation (frame::is_multi_frame) aborts with a message, in
// Release too, because migrating it would move one frame of the allocation and orphan the rest.
// (That check costs one load of the flags word, which the frame lock just brought to cache.)
template <class Owner>
void set_movable(frame& f, Owner& owner) noexcept {
    static_assert(detail::check_movable_owner<Owner>());
    MOVABLE_CONTRACT(f.is_locked(), "set_movable: frame is not locked");
    detail::release_check(!f.is_multi_frame(),
                          "set_movable: frame belongs to a multi-frame allocation (order > 0); "
                          "only single frames can be movable");
    detail::frame_access::store_mapping(f, mapping_ptr(&operations_for<Owner>, movable_tag).raw(),
                                        static_cast<void*>(std::addressof(owner)));
}

// The owner releases `f`. Frame locked by the caller. Returns true when f is isolated: the core
// now owns it and will free it, so the owner must forget it (not free it, not put it back on a
// list). Returns false when f is not isolated: the owner frees it through its allocator.
[[nodiscard]] inline bool clear_movable(frame& f) noexcept {
    MOVABLE_CONTRACT(f.is_locked(), "clear_movable: frame is not locked");
    MOVABLE_CONTRACT(movable_ops(f) != nullptr,
                     "clear_movable: frame is not owned (not movable or already cleared)");
    detail::frame_access::store_mapping(f, mapping_ptr(nullptr, movable_tag).raw(), nullptr);
    return f.is_isolated();
}

} // namespace movable
