// zspage_pool<Arena>: the kernel's zsmalloc as a library. A pool for objects of any size from
// 1 byte to a frame (a compressed-memory store's compressed pages), packed densely into
// "zspages" of 1..N frames, addressed by opaque handles so that they can move: the pool
// compacts itself (compact()), and every frame of every zspage is movable through the core
// protocol, so arena compaction can move the pool's frames too.
//
// Lock order (each path takes locks only in this order; "->" reads "may be taken while
// holding"):
//
//     frame lock  ->  class lock  ->  zspage pin count (checked; waited for only by `sync`
//                                     migration, bounded, with the class lock dropped)
//     compaction lock  ->  class lock
//     handle-table growth lock, the arena's lock: leaves, taken with no lock of the pool held
//     (free handle slots are a lock-free stack)
//
//   * The core calls isolate/migrate/putback with the frame(s) locked; migrate takes the class
//     lock inside (try_lock in async mode: `retry` when it is held). So the pool never waits
//     for a frame lock while it holds a class lock: it locks frames only with no lock of its
//     own held (making a new zspage movable, giving an empty zspage's frames back, the
//     destructor).
//   * The kernel has a pool lock between the page lock and the class lock (readers take it to
//     resolve a handle). Here the handle's slot word names the object's size class, and every
//     change of an object's location (compaction, migration, free) happens under that class
//     lock, so resolving a handle needs only the class lock.
//   * A zspage's pin count is its reader lock (the kernel's zspage lock, read side): readers
//     (map, read, write, size) pin it under the class lock and unpin without any lock. Movers
//     (compaction, migration) hold the class lock, under which no new pin can start, and go
//     ahead only when the count is 0. Compaction skips a pinned zspage and never waits.
//     Migration in `async` and `sync_light` mode answers `busy` at once. In `sync` mode it
//     waits for the pins to drop, bounded (zspage_pool_options::sync_pin_wait_attempts looks,
//     a yield before each), then answers `busy`: it drops the class lock while it waits, since
//     a pin holder may need it (a thread holding a mapping may call anything on the pool,
//     compaction included, except freeing that object or destroying the pool), and keeps the
//     frame locks of src and dst, which no pin holder needs to unpin: the pool locks frames
//     only of fresh zspages and of zspages being freed (never pinned), and src is isolated by
//     the waiting migrator. The bound keeps even a misuse (a thread migrating in sync mode a
//     frame of a zspage it has mapped itself) from deadlocking: it ends in `busy`. So a reader
//     never sees a half-moved object, and a frame lock is held at most that bound longer.
//   * Fields changed under different locks never share a word: per-class state lives in its
//     own cache line; in a zspage descriptor the class-locked fields, the pin count and the
//     freeing flag are separate words; pool counters are separate atomics.
//
// Errors: size 0 or above max_object_size() throws std::invalid_argument (try_allocate: empty
// handle); arena exhaustion throws std::bad_alloc (try_allocate: empty handle); an empty
// handle throws std::invalid_argument; a span larger than the object throws
// std::out_of_range. A stale handle (freed, double free) is a contract violation: abort with
// a message naming the call in Debug and MOVABLE_HARDENED builds, undefined in Release. Every
// handle a slot gives out has its own 32-bit generation (a slot whose generation runs out is
// retired), so a stale handle is caught however often its slot was reused.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <movable/arena.hpp>
#include <movable/detail/contract.hpp>
#include <movable/frame.hpp>
#include <movable/migrate.hpp>
#include <movable/operations.hpp>
#include <movable/tagged_ptr.hpp>

namespace movable {

// ---- configuration and the size-class table ---------------------------------------------------

struct zspage_pool_options {
    // Longest zspage chain, 1..zspage_max_chain_frames (the kernel's CONFIG_ZSMALLOC_CHAIN_SIZE).
    std::size_t max_frames_per_zspage = 8;
    // How long migration in `sync` mode waits for the pins of a frame's zspage to drop (reads,
    // writes and mappings in progress, taken after the frame was isolated) before it answers
    // `busy`: this many looks, a yield before each. Enough for a read or a write to finish;
    // far too few for a mapping a caller keeps. 0: `sync` answers `busy` at once, as
    // `sync_light` and `async` always do.
    std::size_t sync_pin_wait_attempts = 64;
};

inline constexpr std::size_t zspage_max_chain_frames = 16;
inline constexpr std::size_t zspage_min_object_size = 32;
// Every object of a non-huge class starts with one word naming its handle and size.
inline constexpr std::size_t zspage_object_header_bytes = 8;
// Fullness groups a zspage can be in by in-use ratio: [0]: under 10% ... [9]: under 100%,
// [10]: full (the kernel's ZS_INUSE_RATIO_10 .. ZS_INUSE_RATIO_100; empty zspages are freed).
inline constexpr std::size_t zspage_fullness_groups = 11;

// One distinct size class.
struct zspage_size_class {
    std::size_t object_size = 0;        // bytes per object (header included)
    std::size_t max_payload = 0;        // largest allocate() size this class serves
    std::size_t frames_per_zspage = 0;  // zspage length chosen for least tail waste
    std::size_t objects_per_zspage = 0; // frames_per_zspage * frame_size / object_size
    std::size_t tail_bytes = 0;         // unused bytes at the end of each zspage
    bool huge = false;                  // one object per single frame; no header
};

// The size classes for `frame_size` and chains of up to `max_frames_per_zspage` frames,
// smallest first: candidate sizes from 32 bytes up to a frame in steps of frame_size/256; each
// takes the zspage length (1..N frames) whose unused tail is the smallest fraction of the
// zspage (ties: fewer frames); walking from the largest size down, a size with the same frames
// and objects per zspage as the class above it merges into that class. Throws
// std::invalid_argument for a frame size that is not a power of two of at least 4096 bytes or
// a chain length outside 1..zspage_max_chain_frames.
[[nodiscard]] std::vector<zspage_size_class> zspage_class_table(std::size_t frame_size,
                                                                std::size_t max_frames_per_zspage);

// ---- handles ----------------------------------------------------------------------------------

// An opaque reference to an object of a zspage_pool. Stays valid while the object is
// allocated, across compaction and frame migration. The empty handle (default) is false.
class zspage_handle {
public:
    constexpr zspage_handle() noexcept = default;
    [[nodiscard]] constexpr explicit operator bool() const noexcept { return value_ != 0; }
    friend constexpr bool operator==(zspage_handle, zspage_handle) noexcept = default;

    // The handle as one integer (0 for the empty handle), e.g. to keep it in a table.
    [[nodiscard]] constexpr std::uint64_t value() const noexcept { return value_; }
    [[nodiscard]] static constexpr zspage_handle from_value(std::uint64_t value) noexcept {
        zspage_handle handle;
        handle.value_ = value;
        return handle;
    }

private:
    std::uint64_t value_ = 0; // detail::handle_value: (generation << 32) | (slot index + 1)
};

// How a mapping is used: `read` (the object must not be written through it) or `write` (read
// and write; an object served through a copy is written back when the mapping ends).
enum class zspage_access : std::uint8_t { read, write };

// ---- statistics -------------------------------------------------------------------------------

struct zspage_class_stats {
    zspage_size_class size_class;
    std::size_t objects_allocated = 0; // object slots in this class's zspages
    std::size_t objects_in_use = 0;
    std::size_t bytes_in_use = 0; // sum of the allocated objects' requested sizes
    std::size_t zspages = 0;
    std::size_t frames = 0;
    std::array<std::size_t, zspage_fullness_groups> fullness{}; // zspages per in-use group
    std::size_t frames_freeable = 0; // what compaction could free (the kernel's zs_can_compact)
};

struct zspage_pool_stats {
    std::vector<zspage_class_stats> classes; // one per distinct class, smallest first
    std::size_t frame_size = 0;
    std::size_t frames_in_use = 0;
    std::size_t zspages = 0;
    std::size_t objects_in_use = 0;
    std::size_t bytes_stored = 0;    // sum of the live objects' requested sizes
    std::size_t frames_freeable = 0; // compactable_frames()
    std::size_t compactions = 0;     // compact() calls that ran
    std::size_t frames_freed_by_compaction = 0;
    std::size_t objects_moved = 0;                  // by compaction
    std::size_t frames_migrated = 0;                // frames moved through the core protocol
    std::size_t frames_released_while_isolated = 0; // freed zspages' frames the core freed
    std::size_t isolated_frames = 0;                // frames isolated by the core right now
    std::size_t handle_slots_retired = 0; // slots whose 32-bit generation ran out: never reused
    std::size_t migrate_pin_waits = 0;    // sync migrations that found their zspage pinned and
                                          // waited for the pins to drop (whatever came of it)

    // A table like the kernel's /sys/kernel/debug/zsmalloc/<pool>/classes: one row per class
    // that has zspages, the fullness histogram, then totals.
    [[nodiscard]] std::string table() const;
};

// ---- the pool ---------------------------------------------------------------------------------

// What zspage_pool needs from an arena: frame_arena models it.
template <class Arena>
concept zspage_arena = compactable_arena<Arena> && requires(Arena& arena, frame& f) {
    { arena.try_allocate(0u, frame_kind::movable) } -> std::same_as<frame*>;
    arena.deallocate(f, 0u);
    { arena.address_of(f) } -> std::same_as<std::byte*>;
};

namespace detail {
struct zspage;
class contended_mutex;
template <class Pool>
struct zspage_pool_test_access; // tests only: reach inside a pool
} // namespace detail

template <zspage_arena Arena>
class zspage_pool {
public:
    using handle = zspage_handle;
    static constexpr std::size_t frame_size = Arena::frame_size;
    class mapping;

    // A pool over `arena` (which must outlive it). Throws std::invalid_argument for a chain
    // length outside 1..zspage_max_chain_frames or an arena too large for the handle encoding.
    explicit zspage_pool(Arena& arena, zspage_pool_options options = {});
    // Frees every object and zspage. Waits for in-flight migrations of the pool's frames (it
    // locks each frame); frames the core holds isolated are handed to it (it frees them). No
    // other call may run concurrently; no object may still be mapped (contract).
    ~zspage_pool();
    zspage_pool(const zspage_pool&) = delete;
    zspage_pool& operator=(const zspage_pool&) = delete;

    // ---- objects --------------------------------------------------------------------------------
    // A new object of `size` bytes (contents unspecified). Throws std::invalid_argument for
    // size 0 or above max_object_size(), std::bad_alloc when the arena (or the handle table)
    // is exhausted.
    [[nodiscard]] handle allocate(std::size_t size);
    // As allocate, but the empty handle instead of throwing.
    [[nodiscard]] handle try_allocate(std::size_t size) noexcept;
    // Frees the object. Throws std::invalid_argument for the empty handle; a stale handle
    // (double free) is a contract violation. Freeing an object while it is mapped is misuse.
    void deallocate(handle h);

    // The object's size as requested from allocate.
    [[nodiscard]] std::size_t size(handle h) const;
    // Copies the object's first out.size() bytes into `out` / `data` into the object's first
    // data.size() bytes. Throws std::invalid_argument for the empty handle, std::out_of_range
    // when the span is larger than the object.
    void read(handle h, std::span<std::byte> out) const;
    void write(handle h, std::span<const std::byte> data);
    // Pins the object and exposes it as one contiguous span until the mapping ends. An object
    // that spans two frames is served through a copy (written back at the end for `write`).
    // While any object of a zspage is mapped, that zspage is neither compacted nor migrated.
    // Throws std::invalid_argument for the empty handle, std::bad_alloc if a copy buffer
    // cannot be had.
    [[nodiscard]] mapping map(handle h, zspage_access access);

    // ---- compaction -----------------------------------------------------------------------------
    // Per class, moves objects from the sparsest zspages into the densest, rewriting their
    // handles, and frees emptied zspages. Pinned zspages are skipped. Drops the class lock and
    // yields whenever another thread waits for it. One compaction runs per pool at a time: a
    // call made while another runs returns 0 at once. Returns the frames freed.
    std::size_t compact();
    // Frames compaction could free now (the kernel's zs_can_compact, summed over classes).
    [[nodiscard]] std::size_t compactable_frames() const;

    // ---- introspection --------------------------------------------------------------------------
    [[nodiscard]] std::span<const zspage_size_class> size_classes() const noexcept {
        return class_table_;
    }
    // The class that allocate(size) uses. Throws std::invalid_argument as allocate does.
    [[nodiscard]] const zspage_size_class& size_class_for(std::size_t size) const;
    [[nodiscard]] std::size_t max_object_size() const noexcept { return frame_size; }
    [[nodiscard]] std::size_t max_frames_per_zspage() const noexcept { return max_chain_; }
    [[nodiscard]] const zspage_pool_options& options() const noexcept { return options_; }
    [[nodiscard]] zspage_pool_stats stats() const;
    [[nodiscard]] Arena& arena() const noexcept { return arena_; }

    // ---- owner protocol (called by the core with the frame locked; not for users) -------------
    // Refuses a frame whose zspage is pinned or being freed.
    bool isolate(frame& f, migrate_mode mode) noexcept;
    // Copies src to dst, rewrites the location of every object that starts in src and puts dst
    // in src's place in the zspage's chain. `retry` in async mode when the class lock is held
    // (sync modes wait for it: it is short). `busy` when the zspage is being freed, or pinned:
    // at once in async and sync_light mode; in sync mode after waiting, bounded, for the pins
    // to drop (options().sync_pin_wait_attempts; see the lock order at the top of the file).
    migrate_status migrate(frame& dst, frame& src, migrate_mode mode) noexcept;
    void putback(frame& f) noexcept;

private:
    template <class>
    friend struct detail::zspage_pool_test_access;
    struct class_state;
    class handle_table;
    struct resolved;

    static constexpr unsigned fullness_lists = zspage_fullness_groups + 1; // [0] empty: unused
    static constexpr std::uint8_t unlisted = 0xff;

    class_state& class_of_payload(std::size_t size) const noexcept;
    resolved resolve_and_pin(handle h, const char* stale_message) const;
    void unpin(detail::zspage& zs) const noexcept;
    std::byte* byte_at(detail::zspage& zs, std::size_t offset) const noexcept;
    void copy_out(detail::zspage& zs, std::size_t offset, std::byte* out,
                  std::size_t n) const noexcept;
    void copy_in(detail::zspage& zs, std::size_t offset, const std::byte* in,
                 std::size_t n) const noexcept;
    std::uint64_t read_header(const class_state& cls, detail::zspage& zs,
                              std::uint32_t object) const noexcept;
    void write_header(const class_state& cls, detail::zspage& zs, std::uint32_t object,
                      std::uint64_t header) const noexcept;
    std::uint64_t location_of(detail::zspage& zs, const class_state& cls,
                              std::uint32_t object) const noexcept;
    void prefetch_object(const class_state& cls, std::uint64_t location) const noexcept;
    detail::zspage* create_zspage(class_state& cls) noexcept;
    void release_zspage(detail::zspage* zs) noexcept;
    void release_chain(detail::zspage* first) noexcept;
    std::uint32_t pop_free_object(class_state& cls, detail::zspage& zs) const noexcept;
    void push_free_object(class_state& cls, detail::zspage& zs,
                          std::uint32_t object) const noexcept;
    void move_objects(class_state& cls, detail::zspage& src, detail::zspage& dst) noexcept;
    std::size_t compact_class(class_state& cls);
    static std::size_t frames_freeable(const class_state& cls) noexcept;

    bool wait_for_unpinned(detail::zspage& zs,
                           std::unique_lock<detail::contended_mutex>& guard) noexcept;

    Arena& arena_;
    zspage_pool_options options_;
    std::size_t max_chain_;
    std::vector<zspage_size_class> class_table_;
    std::vector<std::uint16_t> class_of_index_; // candidate size index -> distinct class
    std::unique_ptr<class_state[]> classes_;
    unsigned object_bits_ = 0; // bits of an object index in a location
    std::unique_ptr<handle_table> handles_;
    std::mutex compaction_lock_;
    // Pool counters: atomics in words of their own (changed by different paths).
    std::atomic<std::size_t> compactions_{0};
    std::atomic<std::size_t> frames_freed_by_compaction_{0};
    std::atomic<std::size_t> objects_moved_{0};
    std::atomic<std::size_t> frames_migrated_{0};
    std::atomic<std::size_t> frames_released_while_isolated_{0};
    std::atomic<std::size_t> isolated_frames_{0};
    std::atomic<std::size_t> migrate_pin_waits_{0};
};

// ---- implementation ---------------------------------------------------------------------------

namespace detail {

// A std::mutex that knows whether someone is waiting for it, so a long holder (compaction)
// can step aside (the kernel's spin_is_contended).
class contended_mutex {
public:
    void lock() {
        if (mutex_.try_lock()) {
            return;
        }
        waiting_.fetch_add(1, std::memory_order_relaxed);
        mutex_.lock();
        waiting_.fetch_sub(1, std::memory_order_relaxed);
    }
    [[nodiscard]] bool try_lock() { return mutex_.try_lock(); }
    void unlock() { mutex_.unlock(); }
    [[nodiscard]] bool contended() const noexcept { return waiters() != 0; }
    [[nodiscard]] std::uint32_t waiters() const noexcept {
        return waiting_.load(std::memory_order_relaxed);
    }

private:
    std::mutex mutex_;
    std::atomic<std::uint32_t> waiting_{0};
};

// The descriptor of one zspage. Cache-line aligned, with what allocation, free and pinning
// touch in the first line; the alignment also leaves the low bits of its address free, so a
// frame's private word can hold a pointer to it tagged with the frame's position in the chain.
struct alignas(64) zspage {
    // Under the class lock.
    std::uint32_t in_use = 0;    // allocated objects
    std::uint32_t free_head = 0; // first free object; objects_per_zspage when none
    std::uint32_t class_id = 0;  // set at creation, then read-only
    std::uint8_t group = 0xff;   // fullness list it is on (0xff: none)
    // Lock-free words.
    std::atomic<std::uint64_t> pins{0};    // mappings and reads in progress (reader lock)
    std::atomic<std::uint64_t> freeing{0}; // 1 once empty and on its way back to the arena
    // Under the class lock.
    std::array<frame*, zspage_max_chain_frames> frames{}; // the chain; changed by migration
    zspage* previous = nullptr; // fullness list links, or the release chain
    zspage* next = nullptr;
    std::uint64_t huge_header = 0; // huge classes: the object's header word lives here
};

using zspage_link = tagged_ptr<zspage, 4>; // a frame's private word: zspage | position
static_assert(low_bits_available<zspage> >= 4 && zspage_max_chain_frames <= 16,
              "zspage descriptors must leave 4 low bits for the frame's position in the chain");

// An intrusive list of zspages (one fullness group of one class).
struct zspage_list {
    zspage* head = nullptr;
    std::size_t size = 0;

    void push_front(zspage& zs) noexcept {
        zs.previous = nullptr;
        zs.next = head;
        if (head != nullptr) {
            head->previous = &zs;
        }
        head = &zs;
        ++size;
    }
    void remove(zspage& zs) noexcept {
        (zs.previous != nullptr ? zs.previous->next : head) = zs.next;
        if (zs.next != nullptr) {
            zs.next->previous = zs.previous;
        }
        zs.previous = zs.next = nullptr;
        --size;
    }
};

// Handle values (zspage_handle::value()): the generation in the high half, the slot index + 1
// in the low half (so that 0 is the empty handle).
struct handle_value {
    static constexpr unsigned generation_shift = 32;
    static constexpr std::uint64_t slot_mask = 0xffffffff;
    // A slot freed at this generation is retired (never reused): a next generation would wrap
    // to 0 and let a stale handle equal a live one.
    static constexpr std::uint32_t last_generation = 0xffffffff;

    static constexpr std::uint64_t make(std::uint32_t slot, std::uint32_t generation) noexcept {
        return (std::uint64_t{generation} << generation_shift) | (std::uint64_t{slot} + 1);
    }
    // The empty handle gives 0xffffffff, which no table contains.
    static constexpr std::uint32_t slot(std::uint64_t value) noexcept {
        return static_cast<std::uint32_t>((value & slot_mask) - 1);
    }
    static constexpr std::uint32_t generation(std::uint64_t value) noexcept {
        return static_cast<std::uint32_t>(value >> generation_shift);
    }
};
static_assert(handle_value::slot(handle_value::make(0xfffffffe, 0xffffffff)) == 0xfffffffe &&
                  handle_value::generation(handle_value::make(0xfffffffe, 0xffffffff)) ==
                      0xffffffff &&
                  handle_value::make(0, 0) != 0,
              "handle_value: slot and generation must round-trip without overlapping");

// A handle's slot, 16 bytes: its slot word, its generation and the object's requested size.
// The generation has a word of its own, as wide as the handle's 32 generation bits, so the slot
// word keeps its bits for the location. A slot whose generation runs out is retired, so a stale
// handle can never equal a live one, however often its slot was reused.
struct alignas(16) handle_slot {
    std::atomic<std::uint64_t> word{0}; // slot_word
    // The live handle's generation (allocated) or the next handle's (free). Bumped on free and
    // read by allocate and the stale checks, all under a class lock; atomic because a stale
    // check may read it under another class's lock than a concurrent free writes it under.
    std::atomic<std::uint32_t> generation{0};
    std::atomic<std::uint32_t> size{0}; // allocated objects only; under the class lock
};
static_assert(sizeof(handle_slot) == 16,
              "handle_slot: four slots per cache line, none straddles two");

// Slot words of the handle table (one atomic 64-bit word per handle):
//   bit 0          allocated tag
//   bits 1..9      distinct size class of the object
//   bits 10..63    allocated: location = frame index << object_bits | object index in zspage
//                  free: next free slot + 1 (0: none)
struct slot_word {
    static constexpr std::uint64_t allocated_tag = 1;
    static constexpr unsigned class_shift = 1;
    static constexpr unsigned class_bits = 9;
    static constexpr std::uint64_t class_mask = (std::uint64_t{1} << class_bits) - 1;
    static constexpr unsigned location_shift = class_shift + class_bits;
    static constexpr unsigned location_bits = 64 - location_shift;

    static constexpr std::uint64_t make(std::uint64_t location, std::uint64_t class_id,
                                        bool allocated) noexcept {
        return (location << location_shift) | ((class_id & class_mask) << class_shift) |
               (allocated ? allocated_tag : 0);
    }
    static constexpr bool allocated(std::uint64_t word) noexcept {
        return (word & allocated_tag) != 0;
    }
    static constexpr std::uint32_t class_id(std::uint64_t word) noexcept {
        return static_cast<std::uint32_t>((word >> class_shift) & class_mask);
    }
    static constexpr std::uint64_t location(std::uint64_t word) noexcept {
        return word >> location_shift;
    }
};
static_assert(slot_word::allocated_tag < (std::uint64_t{1} << slot_word::class_shift) &&
                  slot_word::class_shift + slot_word::class_bits <= slot_word::location_shift,
              "slot_word: the allocated tag, the class and the location must not overlap");
static_assert(slot_word::location_bits >= 32,
              "slot_word: a free slot's location holds the next free slot + 1 (32 bits)");

// Object headers (the first word of every object of a non-huge class; the zspage's
// huge_header for a huge class), so that migration and compaction find an object's handle:
//   allocated: bit 0 set, bits 32..63 the slot index
//   free:      bit 0 clear, bits 1..32 the next free object (objects_per_zspage: none)
struct object_header {
    static constexpr std::uint64_t allocated(std::uint64_t slot) noexcept {
        return (slot << 32) | 1;
    }
    static constexpr std::uint64_t free_link(std::uint64_t next) noexcept { return next << 1; }
    static constexpr bool is_allocated(std::uint64_t header) noexcept { return (header & 1) != 0; }
    static constexpr std::uint32_t slot(std::uint64_t header) noexcept {
        return static_cast<std::uint32_t>(header >> 32);
    }
    static constexpr std::uint32_t next(std::uint64_t header) noexcept {
        return static_cast<std::uint32_t>(header >> 1);
    }
};

inline unsigned fullness_group(std::size_t in_use, std::size_t objects) noexcept {
    if (in_use == 0) {
        return 0;
    }
    if (in_use >= objects) {
        return zspage_fullness_groups; // full
    }
    return static_cast<unsigned>(100 * in_use / objects / 10 + 1);
}

// The zspage length with the smallest unused tail, as a fraction of the zspage.
inline std::size_t frames_for_least_waste(std::size_t object_size, std::size_t frame_size,
                                          std::size_t max_frames) noexcept {
    std::size_t best = 1;
    std::size_t best_waste = frame_size % object_size;
    for (std::size_t frames = 2; frames <= max_frames; ++frames) {
        const std::size_t waste = frames * frame_size % object_size;
        // waste / frames < best_waste / best, without division
        if (waste * best < best_waste * frames) {
            best = frames;
            best_waste = waste;
        }
    }
    return best;
}

constexpr std::size_t size_class_count(std::size_t frame_size) noexcept {
    const std::size_t spacing = frame_size / 256;
    return (frame_size - zspage_min_object_size + spacing - 1) / spacing + 1;
}

// The candidate size index serving objects of `needed` bytes (header included).
inline std::size_t size_class_index(std::size_t needed, std::size_t frame_size) noexcept {
    if (needed <= zspage_min_object_size) {
        return 0;
    }
    const std::size_t spacing = frame_size / 256;
    return std::min((needed - zspage_min_object_size + spacing - 1) / spacing,
                    size_class_count(frame_size) - 1);
}

// The distinct classes (smallest first) and, per candidate index, its distinct class.
inline void build_class_table(std::size_t frame_size, std::size_t max_frames,
                              std::vector<zspage_size_class>& classes,
                              std::vector<std::uint16_t>& class_of_index) {
    if (!std::has_single_bit(frame_size) || frame_size < 4096) {
        throw std::invalid_argument("zspage_pool: frame size must be a power of two of at least "
                                    "4096 bytes");
    }
    if (max_frames == 0 || max_frames > zspage_max_chain_frames) {
        throw std::invalid_argument("zspage_pool: max_frames_per_zspage must be 1.." +
                                    std::to_string(zspage_max_chain_frames) + ", not " +
                                    std::to_string(max_frames));
    }
    const std::size_t count = size_class_count(frame_size);
    const std::size_t spacing = frame_size / 256;
    std::vector<zspage_size_class> largest_first;
    std::vector<std::size_t> index_to_largest_first(count);
    for (std::size_t i = count; i-- > 0;) {
        const std::size_t object_size = std::min(zspage_min_object_size + i * spacing, frame_size);
        const std::size_t frames = frames_for_least_waste(object_size, frame_size, max_frames);
        const std::size_t objects = frames * frame_size / object_size;
        if (!largest_first.empty() && largest_first.back().frames_per_zspage == frames &&
            largest_first.back().objects_per_zspage == objects) {
            index_to_largest_first[i] = largest_first.size() - 1; // merges into the class above
            continue;
        }
        zspage_size_class cls;
        cls.object_size = object_size;
        cls.frames_per_zspage = frames;
        cls.objects_per_zspage = objects;
        cls.tail_bytes = frames * frame_size - objects * object_size;
        cls.huge = frames == 1 && objects == 1;
        cls.max_payload =
            object_size == frame_size ? frame_size : object_size - zspage_object_header_bytes;
        largest_first.push_back(cls);
        index_to_largest_first[i] = largest_first.size() - 1;
    }
    classes.assign(largest_first.rbegin(), largest_first.rend());
    class_of_index.resize(count);
    for (std::size_t i = 0; i < count; ++i) {
        class_of_index[i] =
            static_cast<std::uint16_t>(largest_first.size() - 1 - index_to_largest_first[i]);
    }
}

} // namespace detail

inline std::vector<zspage_size_class> zspage_class_table(std::size_t frame_size,
                                                         std::size_t max_frames_per_zspage) {
    std::vector<zspage_size_class> classes;
    std::vector<std::uint16_t> class_of_index;
    detail::build_class_table(frame_size, max_frames_per_zspage, classes, class_of_index);
    return classes;
}

inline std::string zspage_pool_stats::table() const {
    std::string out;
    char line[512];
    const auto append = [&](int written) {
        if (written > 0) {
            out.append(line, std::min(static_cast<std::size_t>(written), sizeof line - 1));
        }
    };
    append(std::snprintf(line, sizeof line, "%5s %5s", "class", "size"));
    static constexpr const char* group_names[zspage_fullness_groups] = {
        "10%", "20%", "30%", "40%", "50%", "60%", "70%", "80%", "90%", "99%", "100%"};
    for (const char* name : group_names) {
        append(std::snprintf(line, sizeof line, " %6s", name));
    }
    append(std::snprintf(line, sizeof line, " %13s %10s %11s %17s %8s\n", "obj_allocated",
                         "obj_used", "frames_used", "frames_per_zspage", "freeable"));
    std::array<std::size_t, zspage_fullness_groups> total_groups{};
    std::size_t total_allocated = 0;
    std::size_t total_used = 0;
    std::size_t total_frames = 0;
    std::size_t total_freeable = 0;
    for (std::size_t i = 0; i < classes.size(); ++i) {
        const zspage_class_stats& c = classes[i];
        if (c.zspages == 0) {
            continue;
        }
        append(std::snprintf(line, sizeof line, "%5zu %5zu", i, c.size_class.object_size));
        for (std::size_t g = 0; g < zspage_fullness_groups; ++g) {
            append(std::snprintf(line, sizeof line, " %6zu", c.fullness[g]));
            total_groups[g] += c.fullness[g];
        }
        append(std::snprintf(line, sizeof line, " %13zu %10zu %11zu %17zu %8zu\n",
                             c.objects_allocated, c.objects_in_use, c.frames,
                             c.size_class.frames_per_zspage, c.frames_freeable));
        total_allocated += c.objects_allocated;
        total_used += c.objects_in_use;
        total_frames += c.frames;
        total_freeable += c.frames_freeable;
    }
    append(std::snprintf(line, sizeof line, "\n%5s %5s", "Total", ""));
    for (std::size_t g = 0; g < zspage_fullness_groups; ++g) {
        append(std::snprintf(line, sizeof line, " %6zu", total_groups[g]));
    }
    append(std::snprintf(line, sizeof line, " %13zu %10zu %11zu %17s %8zu\n", total_allocated,
                         total_used, total_frames, "", total_freeable));
    append(std::snprintf(line, sizeof line,
                         "bytes stored %zu in %zu frames of %zu bytes; compacted %zu times: %zu "
                         "frames freed, %zu objects moved; %zu frames migrated\n",
                         bytes_stored, frames_in_use, frame_size, compactions,
                         frames_freed_by_compaction, objects_moved, frames_migrated));
    return out;
}

// ---- zspage_pool internals ------------------------------------------------------------------

template <zspage_arena Arena>
struct alignas(64) zspage_pool<Arena>::class_state {
    detail::contended_mutex lock;
    // Read-only after construction.
    zspage_size_class info;
    std::uint32_t id = 0;
    std::uint32_t header_bytes = 0; // 0 for huge classes
    // Under the lock.
    std::array<detail::zspage_list, fullness_lists> lists{};
    std::size_t zspages = 0;
    std::size_t objects_in_use = 0;
    std::size_t bytes_in_use = 0;

    // Puts zs on the list of its fullness group (it must be on none).
    void link(detail::zspage& zs) noexcept {
        const unsigned group = detail::fullness_group(zs.in_use, info.objects_per_zspage);
        zs.group = static_cast<std::uint8_t>(group);
        lists[group].push_front(zs);
    }
    void unlink(detail::zspage& zs) noexcept {
        lists[zs.group].remove(zs);
        zs.group = unlisted;
    }
    // Moves a listed zspage to the list of its current fullness group, if that changed.
    void refile(detail::zspage& zs) noexcept {
        const unsigned group = detail::fullness_group(zs.in_use, info.objects_per_zspage);
        if (group != zs.group) {
            lists[zs.group].remove(zs);
            zs.group = static_cast<std::uint8_t>(group);
            lists[group].push_front(zs);
        }
    }
    // The fullest zspage that is not full, or null.
    detail::zspage* fullest_not_full() noexcept {
        for (unsigned group = zspage_fullness_groups - 1; group >= 1; --group) {
            if (lists[group].head != nullptr) {
                return lists[group].head;
            }
        }
        return nullptr;
    }
    // Compaction's picks: the densest / sparsest not-full zspage that nobody has pinned.
    detail::zspage* unpinned_in(unsigned group) noexcept {
        for (detail::zspage* zs = lists[group].head; zs != nullptr; zs = zs->next) {
            if (zs->pins.load(std::memory_order_acquire) == 0) {
                return zs;
            }
        }
        return nullptr;
    }
    detail::zspage* take_densest_unpinned() noexcept {
        for (unsigned group = zspage_fullness_groups - 1; group >= 1; --group) {
            if (detail::zspage* zs = unpinned_in(group)) {
                unlink(*zs);
                return zs;
            }
        }
        return nullptr;
    }
    detail::zspage* take_sparsest_unpinned() noexcept {
        for (unsigned group = 1; group < zspage_fullness_groups; ++group) {
            if (detail::zspage* zs = unpinned_in(group)) {
                unlink(*zs);
                return zs;
            }
        }
        return nullptr;
    }
};

// Handle slots: a directory of fixed chunks allocated on demand, so a slot never moves and
// lookups take no lock. Free slots form a lock-free stack through their words; its head
// carries a change count against ABA. The table lock only guards growth.
template <zspage_arena Arena>
class zspage_pool<Arena>::handle_table {
public:
    static constexpr std::size_t chunk_slots = 1024;
    static constexpr std::uint32_t none = 0xffffffff;

    explicit handle_table(std::size_t max_slots)
        : chunks_((max_slots + chunk_slots - 1) / chunk_slots),
          directory_(std::make_unique<std::atomic<detail::handle_slot*>[]>(chunks_)) {}
    ~handle_table() {
        for (std::size_t i = 0; i < chunks_; ++i) {
            delete[] directory_[i].load(std::memory_order_relaxed);
        }
    }
    handle_table(const handle_table&) = delete;
    handle_table& operator=(const handle_table&) = delete;

    // A free slot (its generation is the next handle's), or `none` when the table is full or a
    // new chunk cannot be allocated.
    std::uint32_t acquire() noexcept {
        std::uint64_t head = free_head_.load(std::memory_order_acquire);
        while ((head & 0xffffffff) != 0) {
            const auto slot = static_cast<std::uint32_t>((head & 0xffffffff) - 1);
            // May read a word another thread just took and rewrote: then the count changed
            // and the exchange fails.
            const std::uint64_t next =
                detail::slot_word::location(word(slot).load(std::memory_order_acquire));
            const std::uint64_t replacement = (((head >> 32) + 1) << 32) | next;
            if (free_head_.compare_exchange_weak(head, replacement, std::memory_order_acquire,
                                                 std::memory_order_acquire)) {
                return slot;
            }
        }
        return grow();
    }
    // Returns a slot whose word the caller already marked free (tag clear, generation bumped).
    // A slot whose generation ran out goes to retire instead.
    void release(std::uint32_t slot) noexcept {
        std::atomic<std::uint64_t>& w = word(slot);
        const std::uint64_t old = w.load(std::memory_order_relaxed);
        std::uint64_t head = free_head_.load(std::memory_order_relaxed);
        for (;;) {
            w.store(
                detail::slot_word::make(head & 0xffffffff, detail::slot_word::class_id(old), false),
                std::memory_order_relaxed);
            const std::uint64_t replacement =
                (((head >> 32) + 1) << 32) | (std::uint64_t{slot} + 1);
            if (free_head_.compare_exchange_weak(head, replacement, std::memory_order_release,
                                                 std::memory_order_relaxed)) {
                return;
            }
        }
    }
    // Keeps a freed slot out of use for good (its generation ran out); it stays marked free.
    void retire(std::uint32_t /*slot*/) noexcept {
        retired_.fetch_add(1, std::memory_order_relaxed);
    }
    [[nodiscard]] std::size_t retired() const noexcept {
        return retired_.load(std::memory_order_relaxed);
    }
    [[nodiscard]] bool contains(std::uint32_t slot) const noexcept {
        return slot < published_.load(std::memory_order_acquire);
    }
    detail::handle_slot& slot(std::uint32_t index) const noexcept {
        return directory_[index / chunk_slots].load(std::memory_order_acquire)[index % chunk_slots];
    }
    std::atomic<std::uint64_t>& word(std::uint32_t index) const noexcept {
        return slot(index).word;
    }

private:
    std::uint32_t grow() noexcept {
        std::lock_guard guard(growth_lock_);
        const std::size_t slot = published_.load(std::memory_order_relaxed);
        if (slot >= chunks_ * chunk_slots || slot >= none) {
            return none;
        }
        if (slot % chunk_slots == 0) {
            auto* chunk = new (std::nothrow) detail::handle_slot[chunk_slots];
            if (chunk == nullptr) {
                return none;
            }
            directory_[slot / chunk_slots].store(chunk, std::memory_order_release);
        }
        published_.store(slot + 1, std::memory_order_release);
        return static_cast<std::uint32_t>(slot);
    }

    std::size_t chunks_;
    std::unique_ptr<std::atomic<detail::handle_slot*>[]> directory_;
    alignas(64) std::atomic<std::uint64_t> free_head_{0}; // (change count << 32) | (slot + 1)
    alignas(64) std::mutex growth_lock_;
    std::atomic<std::size_t> published_{0}; // slots handed out at least once
    std::atomic<std::size_t> retired_{0};   // slots whose generation ran out: never reused
};

// A pinned object: its zspage (pinned), class, index and requested size.
template <zspage_arena Arena>
struct zspage_pool<Arena>::resolved {
    detail::zspage* zspage;
    class_state* cls;
    std::uint32_t object;
    std::size_t size;
    std::size_t payload_offset() const noexcept {
        return std::size_t{object} * cls->info.object_size + cls->header_bytes;
    }
};

// ---- mapping -------------------------------------------------------------------------------

// A pinned object exposed as one contiguous span (see zspage_pool::map). Move-only; ends at
// destruction or unmap().
template <zspage_arena Arena>
class zspage_pool<Arena>::mapping {
public:
    mapping() noexcept = default;
    mapping(mapping&& other) noexcept { *this = std::move(other); }
    mapping& operator=(mapping&& other) noexcept {
        if (this != &other) {
            unmap();
            pool_ = std::exchange(other.pool_, nullptr);
            zspage_ = std::exchange(other.zspage_, nullptr);
            payload_offset_ = other.payload_offset_;
            bytes_ = std::exchange(other.bytes_, {});
            copy_ = std::move(other.copy_);
            access_ = other.access_;
        }
        return *this;
    }
    mapping(const mapping&) = delete;
    mapping& operator=(const mapping&) = delete;
    ~mapping() { unmap(); }

    [[nodiscard]] explicit operator bool() const noexcept { return pool_ != nullptr; }
    [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return bytes_; }
    // The object for writing; the mapping must have been made with zspage_access::write.
    [[nodiscard]] std::span<std::byte> writable_bytes() noexcept {
        detail::contract(access_ == zspage_access::write,
                         "zspage_pool::mapping::writable_bytes: mapped for reading only");
        return bytes_;
    }
    [[nodiscard]] zspage_access access() const noexcept { return access_; }
    // True when the object spans two frames and is served through a copy.
    [[nodiscard]] bool copied() const noexcept { return copy_ != nullptr; }

    // Writes a copy back (write access), unpins the zspage. Idempotent.
    void unmap() noexcept {
        if (pool_ == nullptr) {
            return;
        }
        if (copy_ != nullptr) {
            if (access_ == zspage_access::write) {
                pool_->copy_in(*zspage_, payload_offset_, copy_.get(), bytes_.size());
            }
            give_back_buffer(std::move(copy_));
        }
        pool_->unpin(*zspage_);
        pool_ = nullptr;
        zspage_ = nullptr;
        bytes_ = {};
    }

private:
    friend class zspage_pool;

    // One spare copy buffer per thread, so mapping a spanning object rarely allocates.
    static std::unique_ptr<std::byte[]>& spare_buffer() noexcept {
        thread_local std::unique_ptr<std::byte[]> spare;
        return spare;
    }
    static std::unique_ptr<std::byte[]> take_buffer() {
        if (std::unique_ptr<std::byte[]> buffer = std::move(spare_buffer())) {
            return buffer;
        }
        return std::make_unique_for_overwrite<std::byte[]>(frame_size);
    }
    static void give_back_buffer(std::unique_ptr<std::byte[]> buffer) noexcept {
        if (spare_buffer() == nullptr) {
            spare_buffer() = std::move(buffer);
        }
    }

    const zspage_pool* pool_ = nullptr;
    detail::zspage* zspage_ = nullptr;
    std::size_t payload_offset_ = 0;
    std::span<std::byte> bytes_;
    std::unique_ptr<std::byte[]> copy_;
    zspage_access access_ = zspage_access::read;
};

// ---- construction and destruction ------------------------------------------------------------

template <zspage_arena Arena>
zspage_pool<Arena>::zspage_pool(Arena& arena, zspage_pool_options options)
    : arena_(arena), options_(options), max_chain_(options.max_frames_per_zspage) {
    static_assert(detail::size_class_count(frame_size) <= detail::slot_word::class_mask + 1,
                  "zspage_pool: every size class id must fit the slot word's class bits");
    static_assert(frame_size <= 0xffffffff,
                  "zspage_pool: an object's size (at most a frame) must fit a handle slot's 32 "
                  "bits");
    detail::build_class_table(frame_size, max_chain_, class_table_, class_of_index_);
    std::size_t max_objects = 1;
    for (const zspage_size_class& cls : class_table_) {
        max_objects = std::max(max_objects, cls.objects_per_zspage);
    }
    // An object index must be able to say "none" (objects_per_zspage) too.
    object_bits_ = static_cast<unsigned>(std::bit_width(max_objects));
    const unsigned frame_bits = static_cast<unsigned>(std::bit_width(arena.frame_count()));
    if (frame_bits + object_bits_ > detail::slot_word::location_bits) {
        throw std::invalid_argument("zspage_pool: arena has too many frames for the handle "
                                    "location encoding");
    }
    classes_ = std::make_unique<class_state[]>(class_table_.size());
    for (std::size_t i = 0; i < class_table_.size(); ++i) {
        classes_[i].info = class_table_[i];
        classes_[i].id = static_cast<std::uint32_t>(i);
        classes_[i].header_bytes =
            class_table_[i].huge ? 0 : static_cast<std::uint32_t>(zspage_object_header_bytes);
    }
    // Every live object needs a slot: at most one per smallest object in the arena.
    const std::size_t max_slots = std::min<std::size_t>(
        arena.frame_count() * (frame_size / zspage_min_object_size), handle_table::none - 1);
    handles_ = std::make_unique<handle_table>(max_slots);
}

template <zspage_arena Arena>
zspage_pool<Arena>::~zspage_pool() {
    detail::zspage* chain = nullptr;
    for (std::size_t c = 0; c < class_table_.size(); ++c) {
        class_state& cls = classes_[c];
        std::lock_guard guard(cls.lock);
        for (detail::zspage_list& list : cls.lists) {
            while (detail::zspage* zs = list.head) {
                detail::contract(zs->pins.load(std::memory_order_acquire) == 0,
                                 "zspage_pool::~zspage_pool: an object is still mapped");
                cls.unlink(*zs);
                zs->freeing.store(1, std::memory_order_relaxed);
                zs->next = chain;
                chain = zs;
            }
        }
        cls.zspages = 0;
        cls.objects_in_use = 0;
        cls.bytes_in_use = 0;
    }
    release_chain(chain);
}

// ---- helpers -------------------------------------------------------------------------------

template <zspage_arena Arena>
auto zspage_pool<Arena>::class_of_payload(std::size_t size) const noexcept -> class_state& {
    const std::size_t index =
        detail::size_class_index(size + zspage_object_header_bytes, frame_size);
    return classes_[class_of_index_[index]];
}

template <zspage_arena Arena>
const zspage_size_class& zspage_pool<Arena>::size_class_for(std::size_t size) const {
    if (size == 0 || size > max_object_size()) {
        throw std::invalid_argument("zspage_pool::size_class_for: size " + std::to_string(size) +
                                    " is not in 1.." + std::to_string(max_object_size()));
    }
    return class_of_payload(size).info;
}

template <zspage_arena Arena>
std::byte* zspage_pool<Arena>::byte_at(detail::zspage& zs, std::size_t offset) const noexcept {
    return arena_.address_of(*zs.frames[offset / frame_size]) + offset % frame_size;
}

template <zspage_arena Arena>
void zspage_pool<Arena>::copy_out(detail::zspage& zs, std::size_t offset, std::byte* out,
                                  std::size_t n) const noexcept {
    while (n > 0) {
        const std::size_t chunk = std::min(n, frame_size - offset % frame_size);
        std::memcpy(out, byte_at(zs, offset), chunk);
        out += chunk;
        offset += chunk;
        n -= chunk;
    }
}

template <zspage_arena Arena>
void zspage_pool<Arena>::copy_in(detail::zspage& zs, std::size_t offset, const std::byte* in,
                                 std::size_t n) const noexcept {
    while (n > 0) {
        const std::size_t chunk = std::min(n, frame_size - offset % frame_size);
        std::memcpy(byte_at(zs, offset), in, chunk);
        in += chunk;
        offset += chunk;
        n -= chunk;
    }
}

template <zspage_arena Arena>
std::uint64_t zspage_pool<Arena>::read_header(const class_state& cls, detail::zspage& zs,
                                              std::uint32_t object) const noexcept {
    if (cls.info.huge) {
        return zs.huge_header;
    }
    std::uint64_t header = 0; // never spans frames: objects and frames are multiples of 16
    std::memcpy(&header, byte_at(zs, std::size_t{object} * cls.info.object_size), sizeof header);
    return header;
}

template <zspage_arena Arena>
void zspage_pool<Arena>::write_header(const class_state& cls, detail::zspage& zs,
                                      std::uint32_t object, std::uint64_t header) const noexcept {
    if (cls.info.huge) {
        zs.huge_header = header;
        return;
    }
    std::memcpy(byte_at(zs, std::size_t{object} * cls.info.object_size), &header, sizeof header);
}

template <zspage_arena Arena>
std::uint64_t zspage_pool<Arena>::location_of(detail::zspage& zs, const class_state& cls,
                                              std::uint32_t object) const noexcept {
    const std::size_t position = std::size_t{object} * cls.info.object_size / frame_size;
    return (std::uint64_t{arena_.index_of(*zs.frames[position])} << object_bits_) | object;
}

// Starts fetching what a free or a read of the object at `location` will touch (its frame
// descriptor and the line holding its header), before the class lock is taken: the free's
// header store would otherwise stall the next locked instruction. Harmless when the location
// is stale or garbage: a prefetch never faults.
template <zspage_arena Arena>
void zspage_pool<Arena>::prefetch_object(const class_state& cls,
                                         std::uint64_t location) const noexcept {
    const auto index = static_cast<std::size_t>(location >> object_bits_);
    if (index >= arena_.frame_count()) {
        return;
    }
    const std::uint64_t object = location & ((std::uint64_t{1} << object_bits_) - 1);
    frame& f = arena_.frame_at(index);
    __builtin_prefetch(&f, 0);
    if (!cls.info.huge) {
        __builtin_prefetch(arena_.address_of(f) + object * cls.info.object_size % frame_size, 1);
    }
}

template <zspage_arena Arena>
std::uint32_t zspage_pool<Arena>::pop_free_object(class_state& cls,
                                                  detail::zspage& zs) const noexcept {
    const std::uint32_t object = zs.free_head;
    detail::contract(object < cls.info.objects_per_zspage,
                     "zspage_pool: free list of a zspage is corrupted");
    zs.free_head = detail::object_header::next(read_header(cls, zs, object));
    ++zs.in_use;
    if (!cls.info.huge && zs.free_head < cls.info.objects_per_zspage) {
        // The next allocation from this zspage reads and writes that header.
        __builtin_prefetch(byte_at(zs, std::size_t{zs.free_head} * cls.info.object_size), 1);
    }
    return object;
}

template <zspage_arena Arena>
void zspage_pool<Arena>::push_free_object(class_state& cls, detail::zspage& zs,
                                          std::uint32_t object) const noexcept {
    write_header(cls, zs, object, detail::object_header::free_link(zs.free_head));
    zs.free_head = object;
    --zs.in_use;
}

template <zspage_arena Arena>
std::size_t zspage_pool<Arena>::frames_freeable(const class_state& cls) noexcept {
    const std::size_t allocated = cls.zspages * cls.info.objects_per_zspage;
    if (allocated <= cls.objects_in_use) {
        return 0;
    }
    return (allocated - cls.objects_in_use) / cls.info.objects_per_zspage *
           cls.info.frames_per_zspage;
}

// A new zspage for `cls`: frames from the arena, every object on the free list, every frame
// movable. Called with no lock held; null when the arena is exhausted.
template <zspage_arena Arena>
detail::zspage* zspage_pool<Arena>::create_zspage(class_state& cls) noexcept {
    auto* zs = new (std::nothrow) detail::zspage;
    if (zs == nullptr) {
        return nullptr;
    }
    zs->class_id = cls.id;
    const std::size_t frames = cls.info.frames_per_zspage;
    for (std::size_t position = 0; position < frames; ++position) {
        frame* f = arena_.try_allocate(0, frame_kind::movable);
        if (f == nullptr) {
            for (std::size_t i = 0; i < position; ++i) {
                arena_.deallocate(*zs->frames[i], 0);
            }
            delete zs;
            return nullptr;
        }
        zs->frames[position] = f;
    }
    const auto objects = static_cast<std::uint32_t>(cls.info.objects_per_zspage);
    for (std::uint32_t object = 0; object < objects; ++object) {
        write_header(cls, *zs, object, detail::object_header::free_link(object + 1));
    }
    zs->free_head = 0;
    // Everything the owner callbacks read is in place: let the core see the frames.
    for (std::size_t position = 0; position < frames; ++position) {
        frame& f = *zs->frames[position];
        f.set_private_word(detail::zspage_link(zs, position).raw());
        std::lock_guard guard(f);
        set_movable(f, *this);
    }
    return zs;
}

// Gives an emptied zspage (marked freeing, on no list; its chain is frozen because migration
// answers busy for it) back: each frame is locked (waiting is fine, no pool lock is held) and
// released; a frame the core holds isolated is left for the core to free. Then the descriptor
// goes: after clear_movable under each frame's lock, no callback can reach it.
template <zspage_arena Arena>
void zspage_pool<Arena>::release_zspage(detail::zspage* zs) noexcept {
    const std::size_t frames = class_table_[zs->class_id].frames_per_zspage;
    for (std::size_t position = 0; position < frames; ++position) {
        frame& f = *zs->frames[position];
        f.lock();
        const bool core_frees_it = clear_movable(f);
        f.unlock();
        if (core_frees_it) {
            isolated_frames_.fetch_sub(1, std::memory_order_relaxed);
            frames_released_while_isolated_.fetch_add(1, std::memory_order_relaxed);
        } else {
            arena_.deallocate(f, 0);
        }
    }
    delete zs;
}

template <zspage_arena Arena>
void zspage_pool<Arena>::release_chain(detail::zspage* first) noexcept {
    while (first != nullptr) {
        detail::zspage* next = first->next;
        release_zspage(first);
        first = next;
    }
}

// Resolves a handle and pins its zspage, so the object stays put until unpin.
template <zspage_arena Arena>
auto zspage_pool<Arena>::resolve_and_pin(handle h, const char* stale_message) const -> resolved {
    const std::uint32_t slot = detail::handle_value::slot(h.value());
    if constexpr (detail::contracts_enabled) {
        detail::contract(handles_->contains(slot), stale_message);
    }
    detail::handle_slot& entry = handles_->slot(slot);
    std::atomic<std::uint64_t>& word = entry.word;
    const std::uint64_t first_look = word.load(std::memory_order_acquire);
    const std::uint32_t class_id = detail::slot_word::class_id(first_look);
    detail::contract(class_id < class_table_.size(), stale_message);
    class_state& cls = classes_[class_id];
    prefetch_object(cls, detail::slot_word::location(first_look));
    std::lock_guard guard(cls.lock);
    const std::uint64_t w = word.load(std::memory_order_relaxed);
    if constexpr (detail::contracts_enabled) {
        detail::contract(detail::slot_word::allocated(w) &&
                             entry.generation.load(std::memory_order_relaxed) ==
                                 detail::handle_value::generation(h.value()) &&
                             detail::slot_word::class_id(w) == class_id,
                         stale_message);
    }
    const std::uint64_t location = detail::slot_word::location(w);
    const auto object =
        static_cast<std::uint32_t>(location & ((std::uint64_t{1} << object_bits_) - 1));
    frame& f = arena_.frame_at(static_cast<std::size_t>(location >> object_bits_));
    detail::zspage* zs = detail::zspage_link::from_raw(f.private_word()).pointer();
    zs->pins.fetch_add(1, std::memory_order_relaxed);
    return {zs, &cls, object, static_cast<std::size_t>(entry.size.load(std::memory_order_relaxed))};
}

template <zspage_arena Arena>
void zspage_pool<Arena>::unpin(detail::zspage& zs) const noexcept {
    const std::uint64_t previous = zs.pins.fetch_sub(1, std::memory_order_release);
    detail::contract(previous != 0, "zspage_pool: unpinned a zspage that was not pinned");
}

// ---- objects ---------------------------------------------------------------------------------

template <zspage_arena Arena>
zspage_handle zspage_pool<Arena>::try_allocate(std::size_t size) noexcept {
    if (size == 0 || size > max_object_size()) {
        return {};
    }
    class_state& cls = class_of_payload(size);
    const std::uint32_t slot = handles_->acquire();
    if (slot == handle_table::none) {
        return {};
    }
    std::unique_lock guard(cls.lock);
    detail::zspage* zs = cls.fullest_not_full();
    const bool fresh = zs == nullptr;
    if (fresh) {
        guard.unlock();
        zs = create_zspage(cls);
        if (zs == nullptr) {
            handles_->release(slot); // never marked allocated: its generation stays
            return {};
        }
        guard.lock();
        ++cls.zspages;
    }
    const std::uint32_t object = pop_free_object(cls, *zs);
    write_header(cls, *zs, object, detail::object_header::allocated(slot));
    ++cls.objects_in_use;
    cls.bytes_in_use += size;
    detail::handle_slot& entry = handles_->slot(slot);
    entry.size.store(static_cast<std::uint32_t>(size), std::memory_order_relaxed);
    const std::uint32_t generation = entry.generation.load(std::memory_order_relaxed);
    entry.word.store(detail::slot_word::make(location_of(*zs, cls, object), cls.id, true),
                     std::memory_order_release);
    if (fresh) {
        cls.link(*zs);
    } else {
        cls.refile(*zs);
    }
    return zspage_handle::from_value(detail::handle_value::make(slot, generation));
}

template <zspage_arena Arena>
zspage_handle zspage_pool<Arena>::allocate(std::size_t size) {
    if (size == 0 || size > max_object_size()) {
        throw std::invalid_argument("zspage_pool::allocate: size " + std::to_string(size) +
                                    " is not in 1.." + std::to_string(max_object_size()));
    }
    const handle h = try_allocate(size);
    if (!h) {
        throw std::bad_alloc();
    }
    return h;
}

template <zspage_arena Arena>
void zspage_pool<Arena>::deallocate(handle h) {
    if (!h) {
        throw std::invalid_argument("zspage_pool::deallocate: empty handle");
    }
    static constexpr const char* stale =
        "zspage_pool::deallocate: handle is stale (object already freed: double free?)";
    const std::uint32_t slot = detail::handle_value::slot(h.value());
    if constexpr (detail::contracts_enabled) {
        detail::contract(handles_->contains(slot), stale);
    }
    detail::handle_slot& entry = handles_->slot(slot);
    std::atomic<std::uint64_t>& word = entry.word;
    const std::uint64_t first_look = word.load(std::memory_order_acquire);
    const std::uint32_t class_id = detail::slot_word::class_id(first_look);
    detail::contract(class_id < class_table_.size(), stale);
    class_state& cls = classes_[class_id];
    prefetch_object(cls, detail::slot_word::location(first_look));
    detail::zspage* emptied = nullptr;
    bool retire = false;
    {
        std::lock_guard guard(cls.lock);
        const std::uint64_t w = word.load(std::memory_order_relaxed);
        const std::uint32_t generation = entry.generation.load(std::memory_order_relaxed);
        detail::contract(detail::slot_word::allocated(w) &&
                             generation == detail::handle_value::generation(h.value()) &&
                             detail::slot_word::class_id(w) == class_id,
                         stale);
        const std::uint64_t location = detail::slot_word::location(w);
        const auto object =
            static_cast<std::uint32_t>(location & ((std::uint64_t{1} << object_bits_) - 1));
        frame& f = arena_.frame_at(static_cast<std::size_t>(location >> object_bits_));
        detail::zspage* zs = detail::zspage_link::from_raw(f.private_word()).pointer();
        push_free_object(cls, *zs, object);
        --cls.objects_in_use;
        cls.bytes_in_use -= static_cast<std::size_t>(entry.size.load(std::memory_order_relaxed));
        // Every handle this slot gives out has a generation of its own: one that would wrap
        // retires the slot instead.
        retire = generation == detail::handle_value::last_generation;
        if (!retire) {
            entry.generation.store(generation + 1, std::memory_order_relaxed);
        }
        word.store(detail::slot_word::make(0, class_id, false), std::memory_order_release);
        if (zs->in_use == 0) {
            detail::contract(zs->pins.load(std::memory_order_acquire) == 0,
                             "zspage_pool::deallocate: freed an object that is still mapped");
            cls.unlink(*zs);
            zs->freeing.store(1, std::memory_order_release);
            --cls.zspages;
            emptied = zs;
        } else {
            cls.refile(*zs);
        }
    }
    if (retire) {
        handles_->retire(slot);
    } else {
        handles_->release(slot);
    }
    if (emptied != nullptr) {
        release_zspage(emptied);
    }
}

template <zspage_arena Arena>
std::size_t zspage_pool<Arena>::size(handle h) const {
    if (!h) {
        throw std::invalid_argument("zspage_pool::size: empty handle");
    }
    const resolved r = resolve_and_pin(h, "zspage_pool::size: handle is stale (object freed)");
    unpin(*r.zspage);
    return r.size;
}

template <zspage_arena Arena>
void zspage_pool<Arena>::read(handle h, std::span<std::byte> out) const {
    if (!h) {
        throw std::invalid_argument("zspage_pool::read: empty handle");
    }
    const resolved r = resolve_and_pin(h, "zspage_pool::read: handle is stale (object freed)");
    if (out.size() > r.size) {
        unpin(*r.zspage);
        throw std::out_of_range("zspage_pool::read: span of " + std::to_string(out.size()) +
                                " bytes is larger than the object (" + std::to_string(r.size) +
                                " bytes)");
    }
    copy_out(*r.zspage, r.payload_offset(), out.data(), out.size());
    unpin(*r.zspage);
}

template <zspage_arena Arena>
void zspage_pool<Arena>::write(handle h, std::span<const std::byte> data) {
    if (!h) {
        throw std::invalid_argument("zspage_pool::write: empty handle");
    }
    const resolved r = resolve_and_pin(h, "zspage_pool::write: handle is stale (object freed)");
    if (data.size() > r.size) {
        unpin(*r.zspage);
        throw std::out_of_range("zspage_pool::write: span of " + std::to_string(data.size()) +
                                " bytes is larger than the object (" + std::to_string(r.size) +
                                " bytes)");
    }
    copy_in(*r.zspage, r.payload_offset(), data.data(), data.size());
    unpin(*r.zspage);
}

template <zspage_arena Arena>
auto zspage_pool<Arena>::map(handle h, zspage_access access) -> mapping {
    if (!h) {
        throw std::invalid_argument("zspage_pool::map: empty handle");
    }
    const resolved r = resolve_and_pin(h, "zspage_pool::map: handle is stale (object freed)");
    mapping m;
    m.pool_ = this;
    m.zspage_ = r.zspage;
    m.payload_offset_ = r.payload_offset();
    m.access_ = access;
    const std::size_t in_frame = m.payload_offset_ % frame_size;
    if (in_frame + r.size <= frame_size) {
        m.bytes_ = {byte_at(*r.zspage, m.payload_offset_), r.size};
        return m;
    }
    try {
        m.copy_ = mapping::take_buffer();
    } catch (...) {
        m.pool_ = nullptr;
        unpin(*r.zspage);
        throw;
    }
    copy_out(*r.zspage, m.payload_offset_, m.copy_.get(), r.size);
    m.bytes_ = {m.copy_.get(), r.size};
    return m;
}

// ---- compaction ------------------------------------------------------------------------------

// Moves allocated objects from src into dst until src is empty or dst is full. Class locked,
// both zspages unpinned and off the lists.
template <zspage_arena Arena>
void zspage_pool<Arena>::move_objects(class_state& cls, detail::zspage& src,
                                      detail::zspage& dst) noexcept {
    const auto objects = static_cast<std::uint32_t>(cls.info.objects_per_zspage);
    std::size_t moved = 0;
    for (std::uint32_t from = 0; from < objects && src.in_use > 0 && dst.in_use < objects; ++from) {
        const std::uint64_t header = read_header(cls, src, from);
        if (!detail::object_header::is_allocated(header)) {
            continue;
        }
        const std::uint32_t to = pop_free_object(cls, dst);
        detail::handle_slot& entry = handles_->slot(detail::object_header::slot(header));
        // Copy the payload frame piece by frame piece (either side may span two frames).
        std::size_t from_offset = std::size_t{from} * cls.info.object_size + cls.header_bytes;
        std::size_t to_offset = std::size_t{to} * cls.info.object_size + cls.header_bytes;
        for (auto left = static_cast<std::size_t>(entry.size.load(std::memory_order_relaxed));
             left > 0;) {
            const std::size_t chunk = std::min(
                {left, frame_size - from_offset % frame_size, frame_size - to_offset % frame_size});
            std::memcpy(byte_at(dst, to_offset), byte_at(src, from_offset), chunk);
            from_offset += chunk;
            to_offset += chunk;
            left -= chunk;
        }
        write_header(cls, dst, to, header);
        entry.word.store(detail::slot_word::make(location_of(dst, cls, to), cls.id, true),
                         std::memory_order_release);
        push_free_object(cls, src, from);
        ++moved;
    }
    objects_moved_.fetch_add(moved, std::memory_order_relaxed);
}

template <zspage_arena Arena>
std::size_t zspage_pool<Arena>::compact_class(class_state& cls) {
    std::size_t freed = 0;
    detail::zspage* emptied = nullptr; // released once the class lock is dropped
    std::unique_lock guard(cls.lock);
    detail::zspage* dst = nullptr;
    while (frames_freeable(cls) > 0) {
        if (dst == nullptr && (dst = cls.take_densest_unpinned()) == nullptr) {
            break;
        }
        detail::zspage* src = cls.take_sparsest_unpinned();
        if (src == nullptr) {
            break;
        }
        // Always from the emptier to the fuller: every move raises the sum of squared in-use
        // counts, so the loop ends even when pins make the picks out of order.
        if (src->in_use > dst->in_use) {
            std::swap(src, dst);
        }
        move_objects(cls, *src, *dst);
        if (src->in_use == 0) {
            src->freeing.store(1, std::memory_order_release);
            --cls.zspages;
            src->next = emptied;
            emptied = src;
            freed += cls.info.frames_per_zspage;
        } else {
            cls.link(*src);
        }
        const bool others_wait = cls.lock.contended();
        if (dst->in_use == cls.info.objects_per_zspage || others_wait) {
            cls.link(*dst);
            dst = nullptr;
        }
        if (others_wait) {
            guard.unlock();
            release_chain(std::exchange(emptied, nullptr));
            std::this_thread::yield();
            guard.lock();
        }
    }
    if (dst != nullptr) {
        cls.link(*dst);
    }
    guard.unlock();
    release_chain(emptied);
    return freed;
}

template <zspage_arena Arena>
std::size_t zspage_pool<Arena>::compact() {
    std::unique_lock only_one(compaction_lock_, std::try_to_lock);
    if (!only_one.owns_lock()) {
        return 0;
    }
    std::size_t freed = 0;
    for (std::size_t c = class_table_.size(); c-- > 0;) {
        if (!class_table_[c].huge) {
            freed += compact_class(classes_[c]);
        }
    }
    compactions_.fetch_add(1, std::memory_order_relaxed);
    frames_freed_by_compaction_.fetch_add(freed, std::memory_order_relaxed);
    return freed;
}

template <zspage_arena Arena>
std::size_t zspage_pool<Arena>::compactable_frames() const {
    std::size_t frames = 0;
    for (std::size_t c = 0; c < class_table_.size(); ++c) {
        std::lock_guard guard(classes_[c].lock);
        frames += frames_freeable(classes_[c]);
    }
    return frames;
}

template <zspage_arena Arena>
zspage_pool_stats zspage_pool<Arena>::stats() const {
    zspage_pool_stats result;
    result.frame_size = frame_size;
    result.classes.resize(class_table_.size());
    for (std::size_t c = 0; c < class_table_.size(); ++c) {
        class_state& cls = classes_[c];
        zspage_class_stats& out = result.classes[c];
        out.size_class = cls.info;
        std::lock_guard guard(cls.lock);
        out.zspages = cls.zspages;
        out.frames = cls.zspages * cls.info.frames_per_zspage;
        out.objects_allocated = cls.zspages * cls.info.objects_per_zspage;
        out.objects_in_use = cls.objects_in_use;
        out.bytes_in_use = cls.bytes_in_use;
        for (std::size_t g = 0; g < zspage_fullness_groups; ++g) {
            out.fullness[g] = cls.lists[g + 1].size;
        }
        out.frames_freeable = frames_freeable(cls);
        result.frames_in_use += out.frames;
        result.zspages += out.zspages;
        result.objects_in_use += out.objects_in_use;
        result.bytes_stored += out.bytes_in_use;
        result.frames_freeable += out.frames_freeable;
    }
    result.compactions = compactions_.load(std::memory_order_relaxed);
    result.frames_freed_by_compaction = frames_freed_by_compaction_.load(std::memory_order_relaxed);
    result.objects_moved = objects_moved_.load(std::memory_order_relaxed);
    result.frames_migrated = frames_migrated_.load(std::memory_order_relaxed);
    result.frames_released_while_isolated =
        frames_released_while_isolated_.load(std::memory_order_relaxed);
    result.isolated_frames = isolated_frames_.load(std::memory_order_relaxed);
    result.handle_slots_retired = handles_->retired();
    result.migrate_pin_waits = migrate_pin_waits_.load(std::memory_order_relaxed);
    return result;
}

// ---- owner protocol ----------------------------------------------------------------------------

template <zspage_arena Arena>
bool zspage_pool<Arena>::isolate(frame& f, migrate_mode /*mode*/) noexcept {
    detail::zspage* zs = detail::zspage_link::from_raw(f.private_word()).pointer();
    // Hints only (migrate re-checks under the class lock): a pinned zspage would answer busy,
    // and a zspage being freed is about to hand the frame back.
    if (zs->freeing.load(std::memory_order_acquire) != 0 ||
        zs->pins.load(std::memory_order_acquire) != 0) {
        return false;
    }
    isolated_frames_.fetch_add(1, std::memory_order_relaxed);
    return true;
}

template <zspage_arena Arena>
migrate_status zspage_pool<Arena>::migrate(frame& dst, frame& src, migrate_mode mode) noexcept {
    const detail::zspage_link link = detail::zspage_link::from_raw(src.private_word());
    detail::zspage* zs = link.pointer();
    const std::size_t position = link.tag();
    class_state& cls = classes_[zs->class_id];
    std::unique_lock guard(cls.lock, std::defer_lock);
    if (mode == migrate_mode::async) {
        if (!guard.try_lock()) {
            return migrate_status::retry;
        }
    } else {
        guard.lock();
    }
    if (zs->freeing.load(std::memory_order_relaxed) != 0) {
        return migrate_status::busy;
    }
    if (zs->pins.load(std::memory_order_acquire) != 0 &&
        (mode != migrate_mode::sync || !wait_for_unpinned(*zs, guard))) {
        return migrate_status::busy;
    }
    detail::contract(zs->frames[position] == &src,
                     "zspage_pool::migrate: frame is not where its zspage's chain says");
    std::memcpy(arena_.address_of(dst), arena_.address_of(src), frame_size);
    zs->frames[position] = &dst;
    // Every allocated object that starts in this frame now starts in dst.
    const std::size_t size = cls.info.object_size;
    const std::size_t first = (position * frame_size + size - 1) / size;
    const std::size_t end =
        std::min(cls.info.objects_per_zspage, ((position + 1) * frame_size + size - 1) / size);
    for (std::size_t object = first; object < end; ++object) {
        const std::uint64_t header = read_header(cls, *zs, static_cast<std::uint32_t>(object));
        if (!detail::object_header::is_allocated(header)) {
            continue;
        }
        handles_->word(detail::object_header::slot(header))
            .store(detail::slot_word::make(
                       location_of(*zs, cls, static_cast<std::uint32_t>(object)), cls.id, true),
                   std::memory_order_release);
    }
    dst.set_private_word(link.raw());
    set_movable(dst, *this);
    guard.unlock();
    isolated_frames_.fetch_sub(1, std::memory_order_relaxed);
    frames_migrated_.fetch_add(1, std::memory_order_relaxed);
    return migrate_status::success;
}

// `sync` migration of a frame of the pinned zspage `zs`, its class lock held by `guard`: waits,
// bounded, for the pins to drop. Drops the class lock while it waits (a pin holder may need
// it) and takes it again to look; src's frame lock, held throughout, keeps zs alive (freeing a
// zspage locks each of its frames before the descriptor goes). True when, class lock held
// again, the zspage is unpinned and not being freed.
template <zspage_arena Arena>
bool zspage_pool<Arena>::wait_for_unpinned(
    detail::zspage& zs, std::unique_lock<detail::contended_mutex>& guard) noexcept {
    std::size_t looks_left = options_.sync_pin_wait_attempts;
    if (looks_left == 0) {
        return false;
    }
    migrate_pin_waits_.fetch_add(1, std::memory_order_relaxed);
    while (looks_left > 0) {
        guard.unlock();
        do {
            std::this_thread::yield();
            --looks_left;
        } while (looks_left > 0 && zs.pins.load(std::memory_order_acquire) != 0);
        guard.lock();
        if (zs.freeing.load(std::memory_order_relaxed) != 0) {
            return false;
        }
        if (zs.pins.load(std::memory_order_acquire) == 0) {
            return true; // no new pin can start while the class lock is held
        }
    }
    return false;
}

template <zspage_arena Arena>
void zspage_pool<Arena>::putback(frame& /*f*/) noexcept {
    isolated_frames_.fetch_sub(1, std::memory_order_relaxed);
}

} // namespace movable
