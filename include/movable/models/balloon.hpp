// balloon<Arena, Host>: frames lent to a host (a hypervisor, another process, a quota), kept
// movable so that compaction can still free large blocks around them. The kernel's
// mm/balloon_compaction.c (virtio-balloon, VMware balloon, powerpc CMM) as a reference model of
// the owner protocol.
//
// A balloon takes frames from an arena and lends them to its host (inflate), gives them back
// (deflate), and, when the compactor moves one of its frames, tells the host that the new frame
// replaces the old one: the new frame is lent first, the old one returned second. Lent frames
// hold no data the program reads, so migration copies nothing. Several balloons can share one
// arena, each with its own host.
//
// Lock ordering (the only place it is written down):
//     host lock  ->  frame lock  ->  list lock
//   host lock   serializes every call to the host and the inflate, deflate and destroy paths; it
//               is held across the arena allocation in inflate. The core calls migrate with
//               the frames locked, so migrate only try-locks it and answers `retry` when it is
//               held, even by the calling thread: an arena or a host that compacts from inside
//               inflate recurses into migrate, which is why the kernel's balloon drivers
//               try-lock there too. So the migrate_mode makes no difference to a balloon: in
//               every mode, `sync` included, isolate and migrate wait for nothing but the list
//               lock; the host lock is held across host code, maybe by the migrating thread.
//   frame lock  the core's (frame.hpp). The balloon waits for one only while holding nothing
//               but the host lock; the owner callbacks are entered with it held.
//   list lock   the list of lent frames and the counters. Innermost, held for a few
//               instructions, never across a call to the host or the arena. isolate and
//               putback take only this one, so a compaction started from inside inflate can
//               still isolate and put back balloon frames.
//
// Where a lent frame is: on the balloon's list (the balloon owns its hook), isolated by a
// compaction (the core owns the hook; counted by isolated_count()), or, for the moment of an
// inflate, deflate or migration, locked by the balloon and on no list. isolate accepts only
// frames on the list, so a frame being inflated or deflated is refused.
//
// Thread safety: inflate, deflate, the queries and compaction may run on different threads at
// once. The host is never called concurrently by one balloon.
#pragma once

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <thread>
#include <type_traits>

#include <movable/detail/contract.hpp>
#include <movable/detail/small_locks.hpp>
#include <movable/frame.hpp>
#include <movable/frame_arena.hpp>
#include <movable/operations.hpp>

namespace movable {

// The host's answer when, during migration, one lent frame is to be replaced by another.
enum class balloon_replace_result : std::uint8_t {
    replaced,                 // the new frame is lent and the old one returned
    refused,                  // nothing changed: the old frame stays lent, the new one is not
    old_returned_new_refused, // the old frame came back but the new one could not be lent:
                              // the balloon shrinks by one
};

// What a balloon tells its host. The host is called with the frame (both frames, for replace)
// locked and the balloon's host lock held: calls from one balloon never overlap, so a host
// serving one balloon needs no lock of its own. A host may read the balloon's size(),
// isolated_count() and stats() and run compactions from a callback, but must not call that
// balloon's inflate or deflate (they wait for the host lock: deadlock).
//
//   bool lend(frame& f) noexcept
//       inflate: take f. Answer false to refuse it: inflate stops and f goes back to the arena.
//   void reclaim(frame& f) noexcept
//       deflate: f comes back to the program (the host cannot refuse).
//   balloon_replace_result replace(frame& new_frame, frame& old_frame) noexcept  (optional)
//       migration: lend new_frame first, then return old_frame, and say what happened.
//       Without it the balloon calls lend(new_frame) and, when that answers true,
//       reclaim(old_frame): `replaced`, or `refused` when lend answered false.
namespace detail {
template <class Host>
consteval bool models_balloon_host() noexcept; // below, from the atomic requirements
} // namespace detail

template <class Host>
concept balloon_host = detail::models_balloon_host<Host>();

// What a balloon needs from its arena: frame_allocating_arena (arena.hpp).
template <class Arena>
concept balloon_arena = frame_allocating_arena<Arena>;

// Why inflate stopped.
enum class balloon_inflate_stop : std::uint8_t {
    requested_count, // it lent as many frames as asked
    arena_exhausted, // the arena had no free frame left
    host_refused,    // the host's lend answered false
};

struct balloon_inflate_result {
    std::size_t inflated = 0; // frames lent to the host by this call
    balloon_inflate_stop stopped_by = balloon_inflate_stop::requested_count;
};

// Counters since the balloon was made. Each is exact; a snapshot taken while other threads
// work may mix moments.
struct balloon_stats {
    std::size_t inflated = 0;          // frames lent by inflate
    std::size_t deflated = 0;          // frames given back by deflate and by the destructor
    std::size_t lend_refused = 0;      // inflate calls the host stopped by refusing a frame
    std::size_t migrated = 0;          // frames replaced by another during migration
    std::size_t migrate_contended = 0; // migrate answered retry: the host lock was held
    std::size_t replace_refused = 0;   // the host refused a replacement; the frame was put back
    std::size_t shrunk_on_replace = 0; // the host returned the old frame, refused the new one
    std::size_t released_isolated = 0; // frames the destructor released to a compaction
};

namespace detail {
// Compile-time checks with a message per missing piece (defined below).
template <class Host>
consteval bool check_balloon_host();
template <class Arena>
consteval bool check_balloon_arena();
} // namespace detail

template <class Arena, class Host>
class balloon {
    static_assert(detail::check_balloon_arena<Arena>());
    static_assert(detail::check_balloon_host<Host>());

public:
    using arena_type = Arena;
    using host_type = Host;

    // An empty balloon over `arena`, lending to `host`. Both must outlive the balloon.
    balloon(Arena& arena, Host& host) noexcept : arena_(arena), host_(host) {}

    // The frames store a pointer to the balloon (set_movable), so it never moves.
    balloon(const balloon&) = delete;
    balloon& operator=(const balloon&) = delete;

    // Gives every frame back: each frame on the list is deflated (the host is told, the frame
    // goes back to the arena), and each frame a compaction holds isolated at that moment is
    // reclaimed from the host and released to that compaction (clear_movable: the compaction
    // frees it instead of migrating or putting it back). While it runs, isolation is refused.
    // It waits only for frame locks, which are held briefly. Must not run from a host callback
    // or while another thread still calls this balloon (as for any object).
    ~balloon();

    // Takes up to `count` frames from the arena and lends them to the host, one at a time;
    // stops early when the arena runs out or the host refuses a frame (that frame goes back
    // to the arena). Never throws unless Arena::try_allocate does; frames lent before an
    // exception stay lent.
    balloon_inflate_result inflate(std::size_t count);

    // Gives back up to `count` frames: the host reclaims each and it goes back to the arena.
    // Frames that a compaction holds isolated right now are skipped (they are not waited for);
    // they come back to the list when put back, or are gone if migration shrank the balloon.
    // Returns the number given back.
    std::size_t deflate(std::size_t count);

    // Frames lent to the host now (on the list, isolated, or mid-migration).
    [[nodiscard]] std::size_t size() const noexcept;
    // Lent frames that a compaction holds isolated now.
    [[nodiscard]] std::size_t isolated_count() const noexcept;
    [[nodiscard]] balloon_stats stats() const noexcept;
    [[nodiscard]] Arena& arena() const noexcept { return arena_; }
    [[nodiscard]] Host& host() const noexcept { return host_; }

    // ---- the owner protocol (called by the core, with the frame locked) -----------------------
    // Refuses a frame that is not on the list: being inflated or deflated, or the balloon is
    // being destroyed.
    bool isolate(frame& f, migrate_mode mode) noexcept;
    // Try-locks the host lock in every mode (answers `retry` when it is held) and asks the host to
    // replace src by dst. replaced: dst is lent in src's place -> success. refused -> busy: the
    // core puts src back. old_returned_new_refused: the balloon shrinks by one. It releases src
    // (clear_movable while src is isolated) and answers `retry`; the core's next look at src
    // finds it released and frees it without a putback, and frees the untouched dst. So both
    // frames go back to the arena, size() and the host's count drop by one, nothing leaks and
    // nothing is counted twice. (Answering success is impossible without lending dst, and
    // busy would put back a frame the host no longer holds.)
    migrate_status migrate(frame& dst, frame& src, migrate_mode mode) noexcept;
    // Returns an isolated frame to the list.
    void putback(frame& f) noexcept;

private:
    struct counters {
        std::atomic<std::size_t> inflated{0};
        std::atomic<std::size_t> deflated{0};
        std::atomic<std::size_t> lend_refused{0};
        std::atomic<std::size_t> migrated{0};
        std::atomic<std::size_t> migrate_contended{0};
        std::atomic<std::size_t> replace_refused{0};
        std::atomic<std::size_t> shrunk_on_replace{0};
        std::atomic<std::size_t> released_isolated{0};
    };
    static void increment(std::atomic<std::size_t>& counter) noexcept {
        counter.fetch_add(1, std::memory_order_relaxed);
    }

    balloon_replace_result ask_host_to_replace(frame& new_frame, frame& old_frame) noexcept;
    // Host lock held.
    std::size_t deflate_locked(std::size_t count);
    // Host lock held: reclaims and releases every lent frame that is isolated now.
    void release_isolated_locked() noexcept;

    Arena& arena_;
    Host& host_;
    detail::word_mutex host_lock_; // try_lock answers false to its holder (migrate)
    mutable std::mutex list_lock_;
    frame_list lent_;          // lent frames the balloon holds (not isolated, not in transit)
    std::size_t size_ = 0;     // list lock: frames the host holds
    std::size_t isolated_ = 0; // list lock: of those, isolated by a compaction
    bool destroying_ = false;  // list lock: the destructor runs; isolate refuses
    counters counters_;
};

template <class Arena, class Host>
balloon(Arena&, Host&) -> balloon<Arena, Host>;

// ---- implementation ----------------------------------------------------------------------------

namespace detail {

// The atomic requirements balloon_host is built from; check_balloon_host says which one a type
// misses. (formatted by hand: clang-format 14 mangles compound requirements)
// clang-format off
template <class Host>
concept host_has_lend = requires(Host& host, frame& f) { host.lend(f); };
template <class Host>
concept host_lend_returns_bool = requires(Host& host, frame& f) {
    { host.lend(f) } -> std::same_as<bool>;
};
template <class Host>
concept host_lend_is_noexcept = requires(Host& host, frame& f) { { host.lend(f) } noexcept; };
template <class Host>
concept host_has_reclaim = requires(Host& host, frame& f) { host.reclaim(f); };
template <class Host>
concept host_reclaim_returns_void = requires(Host& host, frame& f) {
    { host.reclaim(f) } -> std::same_as<void>;
};
template <class Host>
concept host_reclaim_is_noexcept = requires(Host& host, frame& f) {
    { host.reclaim(f) } noexcept;
};
template <class Host>
concept host_has_replace = requires(Host& host, frame& f) { host.replace(f, f); };
template <class Host>
concept host_replace_returns_result = requires(Host& host, frame& f) {
    { host.replace(f, f) } -> std::same_as<balloon_replace_result>;
};
template <class Host>
concept host_replace_is_noexcept = requires(Host& host, frame& f) {
    { host.replace(f, f) } noexcept;
};
// clang-format on

// balloon_host as one predicate over the atomic requirements above, which check_balloon_host
// asserts one by one: no requirement is spelled twice.
template <class Host>
consteval bool models_balloon_host() noexcept {
    return host_has_lend<Host> && host_lend_returns_bool<Host> && host_lend_is_noexcept<Host> &&
           host_has_reclaim<Host> && host_reclaim_returns_void<Host> &&
           host_reclaim_is_noexcept<Host> &&
           (!host_has_replace<Host> ||
            (host_replace_returns_result<Host> && host_replace_is_noexcept<Host>));
}

// Says which piece of balloon_host a type is missing, one static_assert per piece. Every fact
// is settled before the first static_assert can fail, as in check_movable_owner (GCC reads a
// deferred noexcept, e.g. of a class template's member, as false once one has failed).
template <class Host>
consteval bool check_balloon_host() {
    constexpr bool object_type = std::is_object_v<Host> && !std::is_const_v<Host>;
    constexpr bool has_lend = host_has_lend<Host>;
    constexpr bool lend_returns_bool = host_lend_returns_bool<Host>;
    constexpr bool lend_is_noexcept = host_lend_is_noexcept<Host>;
    constexpr bool has_reclaim = host_has_reclaim<Host>;
    constexpr bool reclaim_returns_void = host_reclaim_returns_void<Host>;
    constexpr bool reclaim_is_noexcept = host_reclaim_is_noexcept<Host>;
    constexpr bool has_replace = host_has_replace<Host>;
    constexpr bool replace_returns_result = host_replace_returns_result<Host>;
    constexpr bool replace_is_noexcept = host_replace_is_noexcept<Host>;

    static_assert(object_type, "balloon_host: Host must be a non-const object type");
    static_assert(!object_type || has_lend,
                  "balloon_host: Host has no member `bool lend(movable::frame&) noexcept`");
    static_assert(!has_lend || lend_returns_bool, "balloon_host: Host::lend must return bool");
    static_assert(!has_lend || lend_is_noexcept, "balloon_host: Host::lend must be noexcept");
    static_assert(!object_type || has_reclaim,
                  "balloon_host: Host has no member `void reclaim(movable::frame&) noexcept`");
    static_assert(!has_reclaim || reclaim_returns_void,
                  "balloon_host: Host::reclaim must return void");
    static_assert(!has_reclaim || reclaim_is_noexcept,
                  "balloon_host: Host::reclaim must be noexcept");
    static_assert(!has_replace || replace_returns_result,
                  "balloon_host: Host::replace must return movable::balloon_replace_result");
    static_assert(!has_replace || replace_is_noexcept,
                  "balloon_host: Host::replace must be noexcept");
    return balloon_host<Host>;
}

// balloon_arena is frame_allocating_arena: its check says which piece is missing.
template <class Arena>
consteval bool check_balloon_arena() {
    return check_frame_allocating_arena<Arena>();
}

} // namespace detail

template <class Arena, class Host>
balloon<Arena, Host>::~balloon() {
    {
        std::lock_guard list_guard(list_lock_);
        destroying_ = true;
    }
    std::lock_guard host_guard(host_lock_);
    for (;;) {
        deflate_locked(std::numeric_limits<std::size_t>::max());
        std::size_t isolated = 0;
        {
            std::lock_guard list_guard(list_lock_);
            if (size_ == 0) {
                break;
            }
            isolated = isolated_;
        }
        if (isolated != 0) {
            release_isolated_locked();
        } else {
            // A frame is being put back right now: it reaches the list in a moment.
            std::this_thread::yield();
        }
    }
    std::lock_guard list_guard(list_lock_);
    MOVABLE_CONTRACT(lent_.empty() && isolated_ == 0,
                     "balloon::~balloon: frames are still lent after giving everything back");
}

template <class Arena, class Host>
balloon_inflate_result balloon<Arena, Host>::inflate(std::size_t count) {
    balloon_inflate_result result;
    std::lock_guard host_guard(host_lock_);
    while (result.inflated < count) {
        frame* f = arena_.try_allocate(0u, frame_kind::movable);
        if (f == nullptr) {
            result.stopped_by = balloon_inflate_stop::arena_exhausted;
            break;
        }
        // Not movable yet, so no compaction locks it: this does not wait.
        f->lock();
        if (!host_.lend(*f)) {
            f->unlock();
            arena_.deallocate(*f, 0u);
            increment(counters_.lend_refused);
            result.stopped_by = balloon_inflate_stop::host_refused;
            break;
        }
        set_movable(*f, *this);
        {
            std::lock_guard list_guard(list_lock_);
            lent_.push_back(*f);
            ++size_;
        }
        f->unlock();
        increment(counters_.inflated);
        ++result.inflated;
    }
    return result;
}

template <class Arena, class Host>
std::size_t balloon<Arena, Host>::deflate(std::size_t count) {
    std::lock_guard host_guard(host_lock_);
    return deflate_locked(count);
}

template <class Arena, class Host>
std::size_t balloon<Arena, Host>::deflate_locked(std::size_t count) {
    std::size_t deflated = 0;
    while (deflated < count) {
        frame* f = nullptr;
        {
            std::lock_guard list_guard(list_lock_);
            f = lent_.pop_front();
        }
        if (f == nullptr) {
            break; // the rest, if any, are isolated: skipped, not waited for
        }
        // Off the list, so isolate refuses it; whoever holds its lock lets go shortly.
        f->lock();
        host_.reclaim(*f);
        const bool core_owns_it = clear_movable(*f);
        MOVABLE_CONTRACT(!core_owns_it, "balloon::deflate: a frame off the list was isolated");
        {
            std::lock_guard list_guard(list_lock_);
            --size_;
        }
        f->unlock();
        arena_.deallocate(*f, 0u);
        increment(counters_.deflated);
        ++deflated;
    }
    return deflated;
}

template <class Arena, class Host>
void balloon<Arena, Host>::release_isolated_locked() noexcept {
    // Isolated frames are on a compaction's list, not ours: find them by their owner word.
    for (std::size_t index = 0; index < arena_.frame_count(); ++index) {
        frame& f = arena_.frame_at(index);
        if (f.owner() != static_cast<void*>(this)) {
            continue;
        }
        std::lock_guard frame_guard(f);
        if (f.owner() != static_cast<void*>(this) || !f.is_isolated()) {
            continue; // migrated away, or put back onto the list meanwhile
        }
        host_.reclaim(f);
        const bool core_owns_it = clear_movable(f);
        MOVABLE_CONTRACT(core_owns_it, "balloon::~balloon: an isolated frame was not isolated");
        {
            std::lock_guard list_guard(list_lock_);
            --isolated_;
            --size_;
        }
        increment(counters_.released_isolated);
        increment(counters_.deflated);
    }
}

template <class Arena, class Host>
std::size_t balloon<Arena, Host>::size() const noexcept {
    std::lock_guard list_guard(list_lock_);
    return size_;
}

template <class Arena, class Host>
std::size_t balloon<Arena, Host>::isolated_count() const noexcept {
    std::lock_guard list_guard(list_lock_);
    return isolated_;
}

template <class Arena, class Host>
balloon_stats balloon<Arena, Host>::stats() const noexcept {
    constexpr auto relaxed = std::memory_order_relaxed;
    balloon_stats result;
    result.inflated = counters_.inflated.load(relaxed);
    result.deflated = counters_.deflated.load(relaxed);
    result.lend_refused = counters_.lend_refused.load(relaxed);
    result.migrated = counters_.migrated.load(relaxed);
    result.migrate_contended = counters_.migrate_contended.load(relaxed);
    result.replace_refused = counters_.replace_refused.load(relaxed);
    result.shrunk_on_replace = counters_.shrunk_on_replace.load(relaxed);
    result.released_isolated = counters_.released_isolated.load(relaxed);
    return result;
}

template <class Arena, class Host>
bool balloon<Arena, Host>::isolate(frame& f, migrate_mode /*mode*/) noexcept {
    std::lock_guard list_guard(list_lock_);
    if (destroying_ || !lent_.contains(f)) {
        return false; // being inflated, deflated or migrated, or the balloon is going away
    }
    lent_.remove(f);
    ++isolated_;
    return true;
}

template <class Arena, class Host>
void balloon<Arena, Host>::putback(frame& f) noexcept {
    std::lock_guard list_guard(list_lock_);
    MOVABLE_CONTRACT(isolated_ > 0 && !lent_.contains(f),
                     "balloon::putback: frame was not isolated from this balloon");
    lent_.push_back(f);
    --isolated_;
}

template <class Arena, class Host>
balloon_replace_result balloon<Arena, Host>::ask_host_to_replace(frame& new_frame,
                                                                 frame& old_frame) noexcept {
    if constexpr (detail::host_has_replace<Host>) {
        return host_.replace(new_frame, old_frame);
    } else {
        if (!host_.lend(new_frame)) {
            return balloon_replace_result::refused;
        }
        host_.reclaim(old_frame);
        return balloon_replace_result::replaced;
    }
}

template <class Arena, class Host>
migrate_status balloon<Arena, Host>::migrate(frame& dst, frame& src,
                                             migrate_mode /*mode*/) noexcept {
    if (!host_lock_.try_lock()) {
        increment(counters_.migrate_contended);
        return migrate_status::retry;
    }
    std::lock_guard host_guard(host_lock_, std::adopt_lock);
    const balloon_replace_result answer = ask_host_to_replace(dst, src);
    switch (answer) {
    case balloon_replace_result::replaced: {
        set_movable(dst, *this);
        std::lock_guard list_guard(list_lock_);
        lent_.push_back(dst);
        --isolated_; // src leaves: the core frees it
        increment(counters_.migrated);
        return migrate_status::success;
    }
    case balloon_replace_result::refused:
        increment(counters_.replace_refused);
        return migrate_status::busy;
    case balloon_replace_result::old_returned_new_refused: {
        const bool core_owns_it = clear_movable(src);
        MOVABLE_CONTRACT(core_owns_it, "balloon::migrate: source frame is not isolated");
        std::lock_guard list_guard(list_lock_);
        --isolated_;
        --size_;
        increment(counters_.shrunk_on_replace);
        return migrate_status::retry;
    }
    }
    MOVABLE_CONTRACT(false, "balloon::migrate: host answered an unknown balloon_replace_result");
    return migrate_status::busy;
}

} // namespace movable
