// movable_fuzz: the libFuzzer harness (issue 6). The input bytes drive a sequence of operations
// over one frame_arena shared by a test owner (numbered pages with known contents), unmovable
// allocations, two balloons lending to recording hosts, the compressed stores (zspage_pool,
// zbud_pool, z3fold_pool: tests/support/compressed_stores.hpp's list, driven through the
// compressed_store concept and their own check_invariants), two object_pools (of a type its pool
// moves by its move constructor, keyed_record, and of a trivially copyable one it moves by memcpy,
// plain_record), the background service (background_compactor in manual mode: step() on this
// thread, serving the arena and the pools the input names, on the harness's own clocks), and
// three compactors: one-shot compactions (full, order-targeted, proactive; async, sync_light,
// sync), an incremental one whose budgeted passes interleave with every other operation, and one
// nested inside owner callbacks; each compaction takes its strategy (least_moves or scanners)
// from the input. The one-shot and incremental compactors read fake_clock, which moves
// one tick per page the owner migrates for them, so a time budget (max_duration_per_pass) is a
// budget of migrated pages. migrate_frames and putback are also driven directly, with targets that
// run out. Fault knobs, toggled by the op stream, make the owner refuse isolation (and pinned
// pages), answer migrate with retry/busy/failed, act from inside its callbacks (release or add
// pages, inflate, deflate or destroy a balloon, compact, hold another frame's lock as a second
// thread would, destroy objects of an object pool, compact it or destroy it while the compaction
// holds its frames isolated), and make the hosts refuse lending or refuse or half-accept
// replacements.
//
// The service's options (watermarks, source thresholds, intervals, CPU budget, cycle, pass
// budgets, mode, strategy, back-off, release) come from the input; its wall clock advances by the
// sleeps step() asks for (or ticks the input names) and one tick a page its step migrates, its
// CPU clock one tick a read, so the run stays deterministic. Each step is checked: its statistics
// count it and say what it answered, episodes add up by cause, a wake() starts one, the frames it
// moved are the migrations the owners saw (less a nested compaction's), the objects moved and
// frames freed it counts are its pools' (exactly, when no callback action compacts a pool), a step
// below the watermarks compacted nothing and the arena and sources were below them, an episode
// begun and ended undisturbed left the arena at the low watermark; then pages, objects and
// mappings as after any compaction. It has no deregistration: a pool it serves is re-created by
// destroying the service first and making a new one (callback actions inside its steps never
// destroy a pool it serves).
//
// A shadow model says what every page and unmovable block must contain, where every page lives
// and how many frames every user holds. After each operation the harness checks: frame
// accounting (free + pages + unmovable + balloon + released-while-isolated == frame_count); every
// frame unlocked, free frames clean, movable frames owned by someone known with the right
// reference count, isolated frames only where an async pass could leave them; the pools' own
// check_invariants and their statistics against the shadow (only for the pools the operation
// could change, and every 64th operation all of them: see touch_of); the owner's and
// hosts' views against the shadow; every isolation ended exactly once (migrated, put back or
// released); the compactors' statistics against what the owners saw; pages unmoved outside
// compaction and pinned pages never moved; contents after every compaction; outcomes (order
// available, score reached, deferral) true of the arena; per-pass budgets, frames and time (a
// pass stops right after the page that used up its time, never later); after a full scanners
// compaction with nothing in the way, at most one max-order block partly free. For least_moves
// the harness works out the plan itself from the arena and the shadow (the evacuable regions,
// cheapest first, as many as the free frames allow): minimum_moves must match it, nothing may
// move when nothing can be gained (an already-compact arena), and with nothing in the plan's way
// (no fault knob, nothing pinned, the holes it needs where the compactor takes targets: see
// plan_expectation) it must move exactly those frames and free exactly those blocks. At the end
// every frame must be back in a free max-order block.
//
// The object pools: every live object's handle, key and version in a shadow (contents are a
// function of those, with a self-check: keyed_record's pointer into its own string, checksums);
// emplace and try_emplace up to exhaustion (bad_alloc or the empty handle exactly when no slab
// has room and the arena no frame), constructors that throw, destroy, pins kept across
// operations (a pinned object never moves: pool compaction, its frame's migration and arena
// compaction leave it), visit, for_each against the shadow, compact() (with nothing pinned the
// pool then holds exactly ceil(objects / per frame) frames), single-frame migration, the pools'
// own check_invariants, their statistics in the frame accounting and the compactors' sums, and
// keyed_record's constructions, moves and destructions (each object destroyed exactly once, by
// destroy or by its pool's destructor). Any divergence aborts with a message; contract
// checks are on (MOVABLE_HARDENED), so a contract violation is a finding too. The run is
// deterministic per input: no threads, no real clock read that matters (the nested compactor
// reads steady_clock but has no time budget), no randomness but the input.
//
// Input format (tests/fuzz/make_corpus.py writes seeds in it): byte 0 sizes the arena; then each
// operation is one opcode byte (taken modulo op::count) followed by its argument bytes. Reading
// past the end yields zeros, so every input is a valid program. To read a crash input:
//     MOVABLE_FUZZ_TRACE=1 build/fuzz/tests/fuzz/movable_fuzz crash-<hash>
//
// At exit the harness prints "movable_fuzz: N ops executed in M inputs (F faults injected, ...
// frames migrated, ... objects moved, ... service steps ...)" to stderr (run_long.sh sums it).
#include <movable/compaction.hpp>
#include <movable/models/balloon.hpp>
#include <movable/models/compressed_store.hpp>
#include <movable/models/object_pool.hpp>
#include <movable/models/zbud_pool.hpp>
#include <movable/models/zspage_pool.hpp>
#include <movable/service/background_compactor.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "support/arena_frames.hpp"
#include "support/balloon_hosts.hpp"
#include "support/compressed_stores.hpp"

#if !defined(MOVABLE_HARDENED)
#error "movable_fuzz must be built with MOVABLE_HARDENED: contract violations are findings"
#endif

using namespace movable;

namespace {

using arena_type = frame_arena<4096, 3>; // 8 frames per max-order block: small inputs reach it
using owner_type = test::arena_owner<arena_type>;
using host_type = test::replacing_host;
using balloon_type = balloon<arena_type, host_type>;
// The one-shot and incremental compactors' clock: it stands still but for the pages the owner
// migrates for the compaction being timed (harness::timing_), one tick (1 ns) each; so a pass
// with a time budget of n ns stops right after the n-th page it migrated.
struct fake_clock {
    using duration = std::chrono::nanoseconds;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::time_point<fake_clock>;
    static inline rep ticks = 0;
    static time_point now() noexcept { return time_point(duration(ticks)); }
};

using compactor_type = compactor<arena_type, fake_clock>;
using nested_compactor_type = compactor<arena_type>; // steady_clock, never a time budget
using pool_type = zspage_pool<arena_type>;
constexpr std::size_t frame_size = arena_type::frame_size;
constexpr std::size_t block_frames = arena_type::block_frames;
constexpr std::size_t max_blocks = 12;
constexpr std::size_t balloon_count = 2;
constexpr std::size_t max_ops_per_input = 20000;

// ---- failure and totals -------------------------------------------------------------------------

void print_totals();

// Aborts (libFuzzer then saves the input); the totals so far are printed first, as a crash
// skips the exit handler.
[[noreturn]] void divergence(const char* what) {
    std::fprintf(stderr, "movable_fuzz: divergence: %s\n", what);
    print_totals();
    std::fflush(stderr);
    std::abort();
}

void expect(bool condition, const char* what) {
    if (!condition) {
        divergence(what);
    }
}

// Over every input this process ran; printed at exit.
struct run_totals {
    unsigned long long inputs = 0;
    unsigned long long ops = 0;
    unsigned long long faults = 0; // refusals, retry/busy/failed answers, callback actions
    unsigned long long compactions = 0;
    unsigned long long passes = 0;
    unsigned long long migrated = 0;
    unsigned long long least_moves = 0;      // compactions (any kind) with that strategy
    unsigned long long plans_met = 0;        // least_moves compactions held to the exact plan
    unsigned long long passes_timed_out = 0; // by the fake clock
    unsigned long long stray_frames = 0;     // frames a done compaction held, op after op (known)
    unsigned long long objects_moved = 0;    // by the pools' compaction (counted as a pool goes)
    unsigned long long service_steps = 0;    // background_compactor::step() calls
    unsigned long long service_episodes = 0;
};
run_totals totals;

void print_totals() {
    std::fprintf(stderr,
                 "movable_fuzz: %llu ops executed in %llu inputs (%llu faults injected, %llu "
                 "compactions, %llu incremental passes, %llu frames migrated, %llu objects moved, "
                 "%llu service steps in %llu episodes; %llu least_moves compactions, %llu held to "
                 "their exact plan, %llu passes timed out; %llu frame-ops held by a done "
                 "compaction)\n",
                 totals.ops, totals.inputs, totals.faults, totals.compactions, totals.passes,
                 totals.migrated, totals.objects_moved, totals.service_steps,
                 totals.service_episodes, totals.least_moves, totals.plans_met,
                 totals.passes_timed_out, totals.stray_frames);
}

// ---- input --------------------------------------------------------------------------------------

class input_reader {
public:
    input_reader(const std::uint8_t* data, std::size_t size) noexcept : data_(data), size_(size) {}
    [[nodiscard]] bool exhausted() const noexcept { return position_ >= size_; }
    std::uint8_t byte() noexcept { return position_ < size_ ? data_[position_++] : 0; }
    std::uint16_t word() noexcept {
        const std::uint16_t low = byte();
        const std::uint16_t high = byte();
        return static_cast<std::uint16_t>(low | high << 8);
    }

private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t position_ = 0;
};

// The operations. make_corpus.py mirrors these numbers; append new ones before `count`.
enum class op : std::uint8_t {
    add_pages,           // n: add 1 + n % 8 pages
    release_page,        // choice
    write_page,          // choice, offset (word), length, then `length` data bytes
    read_page,           // choice
    pin_page,            // choice: the owner refuses to isolate it
    unpin_page,          // choice
    allocate_unmovable,  // order, fill byte
    free_unmovable,      // choice
    inflate,             // balloon, count
    deflate,             // balloon, count
    compact_full,        // options (mode, strategy, time budget: request_of)
    compact_order,       // order, options
    compact_proactive,   // proactiveness, options
    incremental_begin,   // kind (full/order/score), options, frame budget, byte budget in
                         // frames, order or score
    incremental_pass,    // passes
    incremental_end,     //
    set_owner_faults,    // refuse-isolate period, retry period, busy period, failed period
    set_callback_action, // action, where (isolate/migrate), period, choice
    set_host_faults,     // balloon, lend limit, refuse-replace, shrink, compact periods
    discard_free_memory, // min order
    clear_faults,        //
    recreate_balloon,    // balloon: destroy it with its frames lent, make a new one
    migrate_direct,      // count, first index, mode, target limit: migrate_frames itself
    isolate_putback,     // count, first index, one-by-one: isolate, then put back
    pool_allocate,       // size selector (0: size 0, 255: oversize), size word, fill byte
    pool_deallocate,     // choice (never the mapped object)
    pool_write,          // choice, length word, then fill byte
    pool_read,           // choice
    pool_map,            // choice, access: a pinned mapping kept across the next operation
    pool_compact,        //
    object_emplace,      // side, count, how: emplace (how & 1) or try_emplace 1 + count % 32
                         // objects; the (how >> 1) % 8-th one's constructor throws (0: none)
    object_fill,         // side: try_emplace until the arena is exhausted; emplace then throws
    object_destroy,      // side, choice, count: destroy 1 + count % 16 objects (not the pinned one)
    object_pin,          // side, choice word, hold, version: pin (and rewrite unless version is
                         // 0), kept in pin hold / 4 % 2 of the side across the next hold % 4 ops;
                         // choice 0xffff: the empty handle, refused by pin, visit and destroy
    object_visit,        // side, choice word, version: visit (rewriting unless version is 0)
    object_for_each,     // side: for_each with handles against the shadow, const for_each digest
    object_compact,      // side
    object_migrate,      // side, choice word, mode: the object's frame alone, migrate_frames
    object_recreate,     // side: destroy the pool with its objects, make a new one
    // The compressed stores through the concept; the store byte picks one (% store_count, in
    // the order of tests/support/compressed_stores.hpp: zspage_pool, zbud_pool, z3fold_pool), the
    // rest as the pool_* op of the same name.
    store_allocate,   // store, size selector, size word, fill byte
    store_deallocate, // store, choice
    store_write,      // store, choice, length word, fill byte
    store_read,       // store, choice
    store_map,        // store, choice, access
    store_compact,    // store
    // The background service (manual mode: step() on this thread, on the harness's clocks).
    service_create,  // sources, watermarks, thresholds, intervals, cpu, cycle, pass, mode, release:
                     // destroys the running one, makes one serving the pools and arena named
    service_step,    // steps, sleep: 1 + steps % 4 step() calls, the clock advanced between them
                     // by the sleep each asked for (sleep & 1) or by sleep >> 1 ticks
    service_wake,    //
    service_destroy, //
    count
};

constexpr std::array<const char*, static_cast<unsigned>(op::count)> op_names = {
    "add_pages",
    "release_page",
    "write_page",
    "read_page",
    "pin_page",
    "unpin_page",
    "allocate_unmovable",
    "free_unmovable",
    "inflate",
    "deflate",
    "compact_full",
    "compact_order",
    "compact_proactive",
    "incremental_begin",
    "incremental_pass",
    "incremental_end",
    "set_owner_faults",
    "set_callback_action",
    "set_host_faults",
    "discard_free_memory",
    "clear_faults",
    "recreate_balloon",
    "migrate_direct",
    "isolate_putback",
    "pool_allocate",
    "pool_deallocate",
    "pool_write",
    "pool_read",
    "pool_map",
    "pool_compact",
    "object_emplace",
    "object_fill",
    "object_destroy",
    "object_pin",
    "object_visit",
    "object_for_each",
    "object_compact",
    "object_migrate",
    "object_recreate",
    "store_allocate",
    "store_deallocate",
    "store_write",
    "store_read",
    "store_map",
    "store_compact",
    "service_create",
    "service_step",
    "service_wake",
    "service_destroy"};

// MOVABLE_FUZZ_TRACE=1 in the environment: print each operation (to read a crashing input).
const bool tracing = std::getenv("MOVABLE_FUZZ_TRACE") != nullptr;

// What the owner does from inside isolate or migrate, every `period`-th call.
// recreate_balloon destroys a balloon while the compaction may hold some of its frames isolated;
// compact runs a full compaction on a third compactor, nested in the running one (mode and
// strategy from the choice byte, as request_of reads an options byte); hold_lock
// locks another page's frame until the operation ends, as another thread would, but only in an
// async incremental pass or async migrate_direct (which never wait for a frame lock), so frames
// can be left isolated between operations. object_destroy, object_compact and object_recreate
// act on an object pool while the compaction may hold some of its frames isolated.
enum class callback_action : std::uint8_t {
    none,
    release_page,
    add_page,
    inflate,
    deflate,
    recreate_balloon,
    compact,
    hold_lock,
    object_destroy,
    object_compact,
    object_recreate,
    count
};

// Fires on every period-th call of a counter (period 0: never).
struct periodic {
    unsigned period = 0;
    unsigned calls = 0;
    bool fires() noexcept { return period != 0 && ++calls % period == 0; }
};

// ---- the shadow model ---------------------------------------------------------------------------

// Byte i of page p's pattern is (p * 131 + i * 7) & 0xff (test_owner's fill): one row per value
// of p * 131 & 0xff, so a page is checked with one memcmp.
const std::array<std::array<std::byte, frame_size>, 256>& pattern_rows() {
    static const auto rows = [] {
        auto table = std::make_unique<std::array<std::array<std::byte, frame_size>, 256>>();
        for (std::size_t base = 0; base < 256; ++base) {
            for (std::size_t i = 0; i < frame_size; ++i) {
                (*table)[base][i] = static_cast<std::byte>((base + i * 7) & 0xff);
            }
        }
        return table;
    }();
    return *rows;
}

struct page_shadow {
    bool live = false;
    bool pinned = false;
    frame* where = nullptr;               // the frame it lived in after the last operation
    std::unique_ptr<std::byte[]> written; // what the fuzzer wrote; null: the owner's pattern
};

struct unmovable_block {
    frame* first;
    unsigned order;
    std::byte fill;
};

struct host_faults {
    periodic refuse;  // replace answers refused
    periodic shrink;  // replace answers old_returned_new_refused
    periodic compact; // lend and reclaim run a (nested) compaction, with the host lock held
};

// Counts of what the owner's callbacks answered, over the whole input.
struct owner_answers {
    std::size_t isolations_accepted = 0;
    std::size_t migrations_succeeded = 0;
    std::size_t released_while_isolated = 0; // release_page that found the core holding it
};

// Compactor statistics summed over every compaction of the input (running one included).
struct compaction_sums {
    std::size_t isolated = 0;
    std::size_t migrated = 0;
    std::size_t released = 0;
    void add(const compact_stats& stats) noexcept {
        isolated += stats.isolated;
        migrated += stats.migrated;
        released += stats.released;
    }
};

// ---- object_pool elements -----------------------------------------------------------------------

// splitmix64's finalizer: the contents of an object are a function of its key and version.
constexpr std::uint64_t mix(std::uint64_t x) noexcept {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9U;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebU;
    return x ^ (x >> 31);
}

template <std::size_t N>
std::array<std::uint64_t, N> words_for(std::uint64_t key, std::uint64_t version) noexcept {
    std::array<std::uint64_t, N> words{};
    for (std::size_t i = 0; i < N; ++i) {
        words[i] = mix(key * 0x9e3779b97f4a7c15U + version * 31 + i);
    }
    return words;
}

// What an element's constructor throws when asked to (object_pool passes it on, keeping nothing).
struct construction_refused : std::runtime_error {
    construction_refused() : std::runtime_error("movable_fuzz: constructor refused") {}
};

// Lifetime events of every keyed_record (over the whole run: alive() is what lives now).
struct record_counts {
    long long constructed = 0;
    long long moved = 0; // move-constructed (by relocation)
    long long destroyed = 0;
    [[nodiscard]] long long alive() const noexcept { return constructed + moved - destroyed; }
};

// An element that is not trivially relocatable: a std::string made from the key (short ones in
// the string's own buffer inside the object, long ones on the heap) and a pointer to its
// characters, which a byte copy would leave pointing into the old object; a checksum over the
// rest. Its move constructor checks the object it moves from, its destructor that it runs once
// on a live object (a mark it clears), and both count themselves.
struct keyed_record {
    static inline record_counts counts;
    static constexpr std::uint64_t live_mark = 0x6c6976655f726563U;
    static constexpr std::uint64_t dead_mark = 0x646561645f726563U;

    std::uint64_t mark = live_mark;
    std::uint64_t key;
    std::uint64_t version;
    std::string text;
    const char* characters; // text.data()
    std::array<std::uint64_t, 14> words;
    std::uint64_t checksum;

    // Throws construction_refused when `refuse` (its string already made: unwinding ends it).
    keyed_record(std::uint64_t k, std::uint64_t v, bool refuse = false)
        : key(k), version(v), text(text_for(k, v)), characters(text.data()),
          words(words_for<14>(k, v)), checksum(sum()) {
        if (refuse) {
            throw construction_refused();
        }
        ++counts.constructed;
    }
    keyed_record(keyed_record&& other) noexcept
        : key(intact(other).key), version(other.version), text(std::move(other.text)),
          characters(text.data()), words(other.words), checksum(other.checksum) {
        ++counts.moved;
    }
    keyed_record(const keyed_record&) = delete;
    keyed_record& operator=(const keyed_record&) = delete;
    keyed_record& operator=(keyed_record&&) = delete;
    ~keyed_record() {
        if (mark != live_mark) {
            divergence("a keyed_record was destroyed twice (or was never constructed)");
        }
        mark = dead_mark;
        ++counts.destroyed;
    }

    void rewrite(std::uint64_t v) {
        version = v;
        text = text_for(key, v);
        characters = text.data();
        words = words_for<14>(key, v);
        checksum = sum();
    }
    [[nodiscard]] bool holds(std::uint64_t k, std::uint64_t v) const {
        return mark == live_mark && key == k && version == v && characters == text.data() &&
               text == text_for(k, v) && words == words_for<14>(k, v) && checksum == sum();
    }

private:
    // The object a move constructor moves from: live, and as its own fields say it must be.
    static keyed_record& intact(keyed_record& other) {
        if (!other.holds(other.key, other.version)) {
            divergence("object_pool relocated a keyed_record that was not intact");
        }
        return other;
    }
    // Under 16 characters (libstdc++'s buffer holds 15) two times in three.
    static std::string text_for(std::uint64_t k, std::uint64_t v) {
        const std::size_t length = (k + v) % 3 == 0 ? 16 + (k * 5 + v) % 48 : (k + v) % 15;
        std::string text(length, ' ');
        for (std::size_t i = 0; i < length; ++i) {
            text[i] = static_cast<char>('a' + (k * 7 + v * 3 + i) % 26);
        }
        return text;
    }
    [[nodiscard]] std::uint64_t sum() const noexcept {
        std::uint64_t total = mix(key ^ (version << 32));
        for (const char c : text) {
            total = mix(total + static_cast<unsigned char>(c));
        }
        for (const std::uint64_t word : words) {
            total = mix(total ^ word);
        }
        return total;
    }
};

// A trivially copyable element (moved by memcpy, a whole frame at once by migration); 120
// bytes, so 34 to a frame and a tail left over.
struct plain_record {
    std::uint64_t key;
    std::uint64_t version;
    std::array<std::uint64_t, 12> words;
    std::uint64_t checksum;

    plain_record(std::uint64_t k, std::uint64_t v, bool refuse = false)
        : key(k), version(v), words(words_for<12>(k, v)), checksum(sum()) {
        if (refuse) {
            throw construction_refused();
        }
    }
    void rewrite(std::uint64_t v) { *this = plain_record(key, v); }
    [[nodiscard]] bool holds(std::uint64_t k, std::uint64_t v) const noexcept {
        return key == k && version == v && words == words_for<12>(k, v) && checksum == sum();
    }

private:
    [[nodiscard]] std::uint64_t sum() const noexcept {
        std::uint64_t total = mix(key ^ (version << 32));
        for (const std::uint64_t word : words) {
            total = mix(total ^ word);
        }
        return total;
    }
};

static_assert(!relocation_traits<keyed_record>::by_memcpy &&
                  relocation_traits<keyed_record>::relocatable,
              "keyed_record must be moved by its move constructor");
static_assert(std::is_trivially_copyable_v<plain_record> &&
                  relocation_traits<plain_record>::by_memcpy,
              "plain_record must be moved by memcpy");

// One object pool over the shared arena and its shadow: every live object's handle, key and
// version, and up to two objects kept pinned across operations.
template <class Record>
struct object_side {
    using pool_type = object_pool<Record, arena_type>;
    using handle = object_handle<Record>;
    struct entry {
        handle h;
        std::uint64_t key;
        std::uint64_t version;
    };

    std::optional<pool_type> pool;
    std::uint32_t touch = 0;              // its bit in harness::touched_ (set by the harness)
    std::uint64_t frames_fingerprint = 0; // as store_side's
    std::uint64_t scanned = 0;
    bool cached = true;      // the pool's thread_cache option (each re-creation flips it)
    std::vector<entry> live; // in no order (destroy swaps the last in)
    std::unordered_map<std::uint64_t, std::size_t> at; // handle value -> index in live
    std::uint64_t next_key = 0;
    struct held_pin {
        pinned<Record> p; // empty: not in use
        handle h;
        const Record* address = nullptr;
        unsigned ops = 0; // operations it stays pinned across, after the current one
    };
    std::array<held_pin, 2> held;
    std::size_t rotating_check = 0;
    // Counters of the pools this side destroyed (their frames_migrated and the frames released
    // to the core while isolated, those their destructor released included).
    std::size_t retired_migrated = 0;
    std::size_t retired_released = 0;
    // The pool's statistics at the last check_object_side that touched it (what they are now
    // when no operation touched the pool since).
    object_pool_stats seen{};

    void add(handle h, std::uint64_t key, std::uint64_t version) {
        expect(h && at.count(h.value()) == 0, "object_pool gave out an empty or a live handle");
        at.emplace(h.value(), live.size());
        live.push_back({h, key, version});
    }
    void remove(std::size_t index) {
        at.erase(live[index].h.value());
        if (index + 1 != live.size()) {
            live[index] = live.back();
            at[live[index].h.value()] = index;
        }
        live.pop_back();
    }
    [[nodiscard]] bool is_held(handle h) const noexcept {
        return std::any_of(held.begin(), held.end(),
                           [h](const held_pin& pin) { return pin.p && pin.h == h; });
    }
    [[nodiscard]] std::size_t pins_held() const noexcept {
        return static_cast<std::size_t>(std::count_if(
            held.begin(), held.end(), [](const held_pin& pin) { return bool(pin.p); }));
    }
    void unpin(held_pin& pin) noexcept { pin = held_pin{}; }
    void unpin_all() noexcept {
        for (held_pin& pin : held) {
            unpin(pin);
        }
    }
    [[nodiscard]] std::size_t migrated() const {
        return retired_migrated + pool->stats().frames_migrated;
    }
    [[nodiscard]] std::size_t released() const {
        return retired_released + pool->stats().frames_released_while_isolated;
    }
};

// ---- compressed stores --------------------------------------------------------------------------
// One compressed_store over the shared arena, driven through the concept only, and its shadow:
// every live object's bytes, and at most one object mapped across one operation. Every store
// the harness drives is one entry of `store_sides` in the harness.
template <class Store>
struct store_side {
    static_assert(compressed_store<Store>);
    using handle = typename Store::handle;

    std::optional<Store> pool;                               // made in the harness's constructor
    std::map<std::uint64_t, std::vector<std::byte>> objects; // handle -> bytes last written
    std::optional<typename Store::mapping> mapping; // at most one pinned object, across one op
    bool mapped_this_op = false;
    handle mapped_handle;
    const std::byte* mapped_address = nullptr;
    std::vector<std::byte> mapped_bytes; // what the mapping must show
    std::vector<std::byte> read_buffer;
    std::uint32_t touch = 0; // its bit in harness::touched_ (set by the harness)
    // check_invariants' fingerprint of the frames it owns: at the last check, in this scan.
    std::uint64_t frames_fingerprint = 0;
    std::uint64_t scanned = 0;

    [[nodiscard]] std::optional<handle> choice(std::uint8_t c, bool skip_mapped) const {
        if (objects.empty()) {
            return std::nullopt;
        }
        auto it = objects.begin();
        std::advance(it, c % objects.size());
        if (skip_mapped && mapping && it->first == mapped_handle.value()) {
            return std::nullopt; // freeing a mapped object is misuse: the harness never does it
        }
        return handle::from_value(it->first);
    }

    void allocate(input_reader& in) {
        const std::uint8_t selector = in.byte();
        const std::size_t max = pool->max_object_size();
        const std::size_t size = selector == 0     ? 0
                                 : selector == 255 ? max + 1
                                                   : 1 + in.word() % max;
        const auto fill = static_cast<std::uint8_t>(in.byte());
        const handle h = pool->try_allocate(size);
        if (size == 0 || size > max) {
            expect(!h, "try_allocate accepted a size of 0 or above the maximum");
            return;
        }
        if (!h) {
            return; // the arena is full (or too fragmented for a zspage of that class)
        }
        expect(objects.count(h.value()) == 0, "try_allocate returned a live handle");
        std::vector<std::byte> bytes(size);
        for (std::size_t i = 0; i < size; ++i) {
            bytes[i] = static_cast<std::byte>(fill + i * 13);
        }
        pool->write(h, bytes);
        expect(pool->size(h) == size, "an object's size differs from the size allocated");
        objects.emplace(h.value(), std::move(bytes));
    }

    void deallocate(std::uint8_t c) {
        if (const auto h = choice(c, /*skip_mapped=*/true)) {
            pool->deallocate(*h);
            objects.erase(h->value());
        }
    }

    void write(input_reader& in) {
        // Not the mapped object: a mapping served through a copy writes its copy back at the
        // end, over whatever write() stored meanwhile.
        const auto h = choice(in.byte(), /*skip_mapped=*/true);
        const std::size_t length_word = in.word();
        const auto fill = static_cast<std::uint8_t>(in.byte());
        if (!h) {
            return;
        }
        std::vector<std::byte>& bytes = objects[h->value()];
        const std::size_t length = length_word % (bytes.size() + 1);
        for (std::size_t i = 0; i < length; ++i) {
            bytes[i] = static_cast<std::byte>(fill ^ i);
        }
        pool->write(*h, std::span(bytes).first(length));
    }

    void read(std::uint8_t c) {
        if (const auto h = choice(c, /*skip_mapped=*/true)) {
            check_object(*h);
        }
    }

    void map(input_reader& in) {
        const auto h = choice(in.byte(), /*skip_mapped=*/false);
        const bool for_writing = (in.byte() & 1) != 0;
        unmap();
        if (!h) {
            return;
        }
        mapping.emplace(pool->map(*h, for_writing ? store_access::write : store_access::read));
        mapped_handle = *h;
        mapped_this_op = true;
        // What the mapping shows; for a write mapping it becomes the object's bytes only when
        // the mapping ends (an object served through a copy is written back then).
        mapped_bytes = objects[h->value()];
        std::vector<std::byte>& bytes = mapped_bytes;
        expect(mapping->bytes().size() == bytes.size() &&
                   std::memcmp(mapping->bytes().data(), bytes.data(), bytes.size()) == 0,
               "a mapped object's bytes differ from what was last written");
        if (for_writing) {
            std::span<std::byte> out = mapping->writable_bytes();
            for (std::size_t i = 0; i < out.size(); i += 7) {
                out[i] = bytes[i] = static_cast<std::byte>(~static_cast<unsigned>(bytes[i]));
            }
        }
        mapped_address = mapping->bytes().data();
    }

    // Ends the mapping, after checking that the object neither moved nor changed while pinned.
    void unmap() {
        if (!mapping) {
            return;
        }
        expect(mapping->bytes().data() == mapped_address, "a mapped object moved");
        expect(std::memcmp(mapping->bytes().data(), mapped_bytes.data(), mapped_bytes.size()) == 0,
               "a mapped object changed while it was mapped");
        mapping.reset();
        objects[mapped_handle.value()] = mapped_bytes;
        check_object(mapped_handle); // written back, when served through a copy
    }

    // After an operation: a mapping lives across exactly one more operation. True when it
    // ended one (the pool changed after the operation's checks).
    bool end_of_op() {
        const bool ended = mapping && !mapped_this_op;
        if (ended) {
            unmap();
        }
        mapped_this_op = false;
        return ended;
    }

    void check_object(handle h) {
        const std::vector<std::byte>& bytes = objects[h.value()];
        read_buffer.resize(bytes.size());
        pool->read(h, read_buffer);
        expect(read_buffer == bytes, "a pool object's bytes differ from what was written");
    }

    // The mapped object is checked through its mapping, and once more when it ends: while a
    // write mapping served through a copy lives, read() still shows the bytes from before it.
    void check_all_objects() {
        for (const auto& entry : objects) {
            if (!mapping || entry.first != mapped_handle.value()) {
                check_object(handle::from_value(entry.first));
            }
        }
        if (mapping) {
            expect(std::memcmp(mapping->bytes().data(), mapped_bytes.data(), mapped_bytes.size()) ==
                       0,
                   "a mapped object's bytes changed while it was mapped");
        }
    }

    void compact() {
        std::size_t freeable = 0;
        if constexpr (requires(const Store& s) { s.compactable_frames(); }) {
            freeable = pool->compactable_frames();
        }
        const std::size_t in_use = pool->stats().frames_in_use;
        const std::size_t freed = pool->compact();
        if constexpr (requires(const Store& s) { s.compactable_frames(); }) {
            expect(freed <= freeable || mapping.has_value(),
                   "pool compact() freed more than compactable_frames() estimated");
        }
        expect(pool->stats().frames_in_use == in_use - freed,
               "pool compact() answered a count its frames do not show");
        check_all_objects();
    }

    // The pool's own invariants (zspage lists and free lists, handle slots, its frames' marks
    // and owner, its counters), then its counts against the shadow; keeps the counters the
    // harness sums. (zspage_pool's stats() walks every size class: taken once.)
    void check_pool() {
        pool->check_invariants();
        const auto stats = pool->stats();
        expect(stats.objects_in_use == objects.size(),
               "the pool's object count differs from the shadow");
        std::size_t shadow_bytes = 0;
        for (const auto& entry : objects) {
            shadow_bytes += entry.second.size();
        }
        expect(stats.bytes_stored == shadow_bytes,
               "the pool's stored bytes differ from the shadow");
        frames_migrated = stats.frames_migrated;
        frames_released_while_isolated = stats.frames_released_while_isolated;
    }
    // Its statistics at the last check_pool(): what they are now when no operation touched the
    // pool since.
    std::size_t frames_migrated = 0;
    std::size_t frames_released_while_isolated = 0;

    [[nodiscard]] bool owns(const frame& f) const noexcept {
        return f.owner() == static_cast<const void*>(&*pool);
    }

    void free_all() {
        check_all_objects();
        totals.objects_moved += pool->stats().objects_moved;
        for (const auto& entry : objects) {
            pool->deallocate(handle::from_value(entry.first));
        }
        objects.clear();
        movable::test::release_thread_cache(*pool); // zspage_pool's reserved places, if any
        expect(pool->stats().frames_in_use == 0, "the pool kept frames after its objects went");
    }
};

// ---- the harness --------------------------------------------------------------------------------

class harness {
public:
    explicit harness(std::size_t blocks)
        : arena_(blocks * arena_type::block_bytes), one_shot_(arena_), incremental_(arena_),
          nested_(arena_) {
        owner_.isolate_policy = [this](frame& f) { return on_isolate(f); };
        owner_.migrate_policy = [this](frame& src) { return on_migrate(src); };
        for (std::size_t b = 0; b < balloon_count; ++b) {
            hosts_[b].policy = [this, b](frame&, frame&) { return on_replace(b); };
            hosts_[b].on_lend = [this, b](frame&) { on_host_call(b); };
            hosts_[b].on_reclaim = [this, b](frame&) { on_host_call(b); };
            balloons_[b].emplace(arena_, hosts_[b]);
        }
        touch_mask bit = 1;
        for_each_store([&](auto& side) {
            side.pool.emplace(arena_);
            side.touch = std::exchange(bit, bit << 1);
        });
        records_.touch = bit;
        plains_.touch = bit << 1;
        plains_.cached = false; // one pool of each kind to start with
        records_.pool.emplace(arena_, object_pool_options{.thread_cache = records_.cached});
        plains_.pool.emplace(arena_, object_pool_options{.thread_cache = plains_.cached});
    }
    harness(const harness&) = delete;
    harness& operator=(const harness&) = delete;

    void run(input_reader& in) {
        for (std::size_t n = 0; n < max_ops_per_input && !in.exhausted(); ++n) {
            const auto code = static_cast<op>(in.byte() % static_cast<unsigned>(op::count));
            if (tracing) {
                std::fprintf(stderr,
                             "op %s: pages %zu, free %zu, balloons %zu+%zu, isolated %zu, objects "
                             "%zu+%zu in %zu+%zu frames (migrated %zu+%zu, released %zu+%zu)\n",
                             op_names[static_cast<unsigned>(code)], live_.size(),
                             arena_.free_frames(), balloon_sizes_[0], balloon_sizes_[1],
                             isolated_between_ops_, records_.live.size(), plains_.live.size(),
                             records_.pool->stats().frames, plains_.pool->stats().frames,
                             records_.migrated(), plains_.migrated(), records_.released(),
                             plains_.released());
            }
            touched_ = std::exchange(carried_touch_, 0) | touch_of(code);
            if (n % check_everything_every == 0) {
                touched_ = touch_everything;
            }
            execute(code, in);
            release_held_locks();
            ++totals.ops;
            check_invariants();
            for_each_store([this](auto& side) { // a mapping lives one more op
                if (side.end_of_op()) {
                    carried_touch_ |= side.touch;
                }
            });
            expire_object_pins();
        }
        tear_down();
    }

private:
    // ---- what an operation touched --------------------------------------------------------------
    // The heavy checks after an operation (a pool's own check_invariants, its statistics against
    // the shadow: zspage_pool's stats() walks every size class) run only for the pools the
    // operation could change: one bit a store and an object pool in touched_. A pool changes
    // only when the harness calls it (pool_*, store_* and object_* operations and the owner's
    // callback actions, through on_store, on_side or zspage(); the service's steps, for the pools
    // they serve) or when the core moves or releases one of its frames (compactions, balloons'
    // hosts compacting), which changes the set of frames it owns: check_invariants' frame scan
    // keeps a fingerprint of each pool's frames and touches a pool whose fingerprint changed, and
    // every pool when the compactors migrated a frame that was neither a page nor a balloon's.
    // migrate_direct and isolate_putback touch everything (they put back frames of any owner,
    // which leaves the fingerprint as it was). A mapping or a pin that ends after the checks
    // touches its pool for the next operation's (carried_touch_). Every
    // check_everything_every-th operation of an input, and at teardown, checks everything.
    using touch_mask = std::uint32_t;
    static constexpr touch_mask touch_everything = ~touch_mask{0};
    static constexpr std::size_t check_everything_every = 64;

    static touch_mask touch_of(op code) noexcept {
        switch (code) {
        case op::migrate_direct:
        case op::isolate_putback:
            return touch_everything; // isolates and puts back frames of any owner
        default:
            return 0; // the pool it names marks itself; the core's moves show in the scan
        }
    }

    // ---- dispatch -------------------------------------------------------------------------------
    void execute(op code, input_reader& in) {
        switch (code) {
        case op::add_pages: {
            const unsigned n = 1 + in.byte() % 8;
            for (unsigned i = 0; i < n; ++i) {
                add_page();
            }
            break;
        }
        case op::release_page:
            if (!live_.empty()) {
                release_page(live_[in.byte() % live_.size()]);
            }
            break;
        case op::write_page:
            write_page(in);
            break;
        case op::read_page:
            if (!live_.empty()) {
                check_page(live_[in.byte() % live_.size()]);
            }
            break;
        case op::pin_page:
        case op::unpin_page:
            if (!live_.empty()) {
                pages_[live_[in.byte() % live_.size()]].pinned = code == op::pin_page;
            }
            break;
        case op::allocate_unmovable:
            allocate_unmovable(in.byte() % (arena_type::max_order + 1),
                               static_cast<std::byte>(in.byte()));
            break;
        case op::free_unmovable:
            if (!unmovable_.empty()) {
                free_unmovable(in.byte() % unmovable_.size());
            }
            break;
        case op::inflate: {
            const std::size_t b = in.byte() % balloon_count;
            inflate(b, in.byte() % 16);
            break;
        }
        case op::deflate: {
            const std::size_t b = in.byte() % balloon_count;
            deflate(b, in.byte() % 16, /*in_callback=*/false);
            break;
        }
        case op::compact_full:
            compact_once(request_of(in.byte()));
            break;
        case op::compact_order: {
            const int order = static_cast<int>(in.byte() % (arena_type::max_order + 1));
            compact_request request = request_of(in.byte());
            request.order = order;
            compact_once(request);
            break;
        }
        case op::compact_proactive: {
            const unsigned proactiveness = 1 + in.byte() % 100;
            const compact_request options = request_of(in.byte());
            compact_request request =
                compactor_type::proactive_request(proactiveness, options.mode);
            request.strategy = options.strategy;
            request.max_duration_per_pass = options.max_duration_per_pass;
            compact_once(request);
            break;
        }
        case op::incremental_begin:
            incremental_begin(in);
            break;
        case op::incremental_pass: {
            const unsigned passes = 1 + in.byte() % 4;
            for (unsigned i = 0; i < passes && incremental_running_; ++i) {
                incremental_pass();
            }
            break;
        }
        case op::incremental_end:
            incremental_end();
            break;
        case op::set_owner_faults:
            refuse_isolate_ = {in.byte() % 8u, 0};
            answer_retry_ = {in.byte() % 8u, 0};
            answer_busy_ = {in.byte() % 8u, 0};
            answer_failed_ = {in.byte() % 8u, 0};
            break;
        case op::set_callback_action:
            action_ = static_cast<callback_action>(in.byte() %
                                                   static_cast<unsigned>(callback_action::count));
            action_on_migrate_ = (in.byte() & 1) != 0;
            action_period_ = {1 + in.byte() % 8u, 0};
            action_choice_ = in.byte();
            break;
        case op::set_host_faults: {
            const std::size_t b = in.byte() % balloon_count;
            const std::size_t extra = in.byte() % 32;
            hosts_[b].lend_limit = extra == 0 ? std::numeric_limits<std::size_t>::max()
                                              : hosts_[b].held.size() + extra;
            host_faults_[b].refuse = {in.byte() % 6u, 0};
            host_faults_[b].shrink = {in.byte() % 6u, 0};
            host_faults_[b].compact = {in.byte() % 6u, 0};
            break;
        }
        case op::discard_free_memory: {
            const unsigned min_order = in.byte() % (arena_type::max_order + 1);
            const std::size_t free_before = arena_.free_frames();
            const std::size_t released = arena_.discard_free_memory(min_order);
            expect(released % frame_size == 0 && released <= free_before * frame_size,
                   "discard_free_memory released more than the free frames");
            check_all_contents(); // live memory must not have been discarded
            break;
        }
        case op::clear_faults:
            clear_faults();
            break;
        case op::recreate_balloon:
            recreate_balloon(in.byte() % balloon_count, /*in_callback=*/false);
            break;
        case op::migrate_direct:
            migrate_direct(in);
            break;
        case op::isolate_putback:
            isolate_putback(in);
            break;
        case op::pool_allocate: // the pool_* ops: zspage_pool; the store_* ops: any store
            zspage().allocate(in);
            break;
        case op::pool_deallocate:
            zspage().deallocate(in.byte());
            break;
        case op::pool_write:
            zspage().write(in);
            break;
        case op::pool_read:
            zspage().read(in.byte());
            break;
        case op::pool_map:
            zspage().map(in);
            break;
        case op::pool_compact:
            zspage().compact();
            break;
        case op::object_emplace: {
            const std::uint8_t selector = in.byte();
            const std::size_t count = 1 + in.byte() % 32;
            const std::uint8_t how = in.byte();
            on_side(selector, [&](auto& side) {
                object_emplace(side, count, (how & 1) != 0, (how >> 1) % 8);
            });
            break;
        }
        case op::object_fill:
            on_side(in.byte(), [&](auto& side) { object_fill(side); });
            break;
        case op::object_destroy: {
            const std::uint8_t selector = in.byte();
            const std::size_t choice = in.byte();
            const std::size_t count = 1 + in.byte() % 16;
            on_side(selector, [&](auto& side) { object_destroy(side, choice, count); });
            break;
        }
        case op::object_pin: {
            const std::uint8_t selector = in.byte();
            const std::size_t choice = in.word();
            const std::uint8_t hold = in.byte();
            const std::uint64_t version = in.byte();
            on_side(selector,
                    [&](auto& side) { object_pin(side, choice, hold / 4, hold % 4, version); });
            break;
        }
        case op::object_visit: {
            const std::uint8_t selector = in.byte();
            const std::size_t choice = in.word();
            const std::uint64_t version = in.byte();
            on_side(selector, [&](auto& side) { object_visit(side, choice, version); });
            break;
        }
        case op::object_for_each:
            on_side(in.byte(), [&](auto& side) { object_for_each(side); });
            break;
        case op::object_compact:
            on_side(in.byte(), [&](auto& side) { object_compact(side); });
            break;
        case op::object_migrate: {
            const std::uint8_t selector = in.byte();
            const std::size_t choice = in.word();
            const migrate_mode mode = mode_of(in.byte());
            on_side(selector, [&](auto& side) { object_migrate(side, choice, mode); });
            break;
        }
        case op::object_recreate:
            on_side(in.byte(), [&](auto& side) { object_recreate(side); });
            break;
        case op::store_allocate:
            on_store(in.byte(), [&](auto& side) { side.allocate(in); });
            break;
        case op::store_deallocate: {
            const std::uint8_t selector = in.byte();
            const std::uint8_t choice = in.byte();
            on_store(selector, [&](auto& side) { side.deallocate(choice); });
            break;
        }
        case op::store_write:
            on_store(in.byte(), [&](auto& side) { side.write(in); });
            break;
        case op::store_read: {
            const std::uint8_t selector = in.byte();
            const std::uint8_t choice = in.byte();
            on_store(selector, [&](auto& side) { side.read(choice); });
            break;
        }
        case op::store_map:
            on_store(in.byte(), [&](auto& side) { side.map(in); });
            break;
        case op::store_compact:
            on_store(in.byte(), [](auto& side) { side.compact(); });
            break;
        case op::service_create:
            service_create(in);
            break;
        case op::service_step: {
            const unsigned steps = 1 + in.byte() % 4;
            const std::uint8_t sleep = in.byte();
            for (unsigned i = 0; i < steps && service_; ++i) {
                const background_step result = service_step();
                service_wall_ += (sleep & 1) != 0 ? result.sleep.count() : sleep >> 1;
            }
            break;
        }
        case op::service_wake:
            if (service_) {
                service_->wake();
                service_woken_ = true;
            }
            break;
        case op::service_destroy:
            retire_service();
            service_sources_ = 0;
            service_arena_ = false;
            break;
        case op::count:
            break;
        }
    }

    static migrate_mode mode_of(std::uint8_t byte) noexcept {
        return static_cast<migrate_mode>(byte % 3);
    }

    static compact_strategy strategy_of(std::uint8_t byte) noexcept {
        return (byte & 0x80) != 0 ? compact_strategy::scanners : compact_strategy::least_moves;
    }

    // A compaction's options byte: the mode (byte % 3), the strategy (bit 7: scanners, else
    // least_moves) and a time budget of (byte >> 4) % 8 fake_clock ticks, that is migrated
    // pages (0: none). Seeds written before there were strategies (0..2) run least_moves, the
    // default, without a time budget.
    static compact_request request_of(std::uint8_t byte) noexcept {
        compact_request request;
        request.mode = mode_of(byte);
        request.strategy = strategy_of(byte);
        request.max_duration_per_pass = fake_clock::duration((byte >> 4) % 8);
        return request;
    }

    // ---- compressed stores ----------------------------------------------------------------------
    [[nodiscard]] store_side<pool_type>& zspage() noexcept {
        auto& side = std::get<store_side<pool_type>>(stores_);
        touched_ |= side.touch;
        return side;
    }

    template <class Fn>
    void for_each_store(Fn&& fn) {
        std::apply([&](auto&... side) { (fn(side), ...); }, stores_);
    }

    // Calls fn with the store the selector byte names (selector % store_count).
    template <std::size_t I = 0, class Fn>
    void on_store(std::size_t selector, Fn&& fn) {
        if constexpr (I < store_count) {
            if (selector % store_count == I) {
                touched_ |= std::get<I>(stores_).touch;
                fn(std::get<I>(stores_));
            } else {
                on_store<I + 1>(selector, fn);
            }
        }
    }

    [[nodiscard]] bool any_store_mapped() const {
        return std::apply([](const auto&... side) { return (side.mapping.has_value() || ...); },
                          stores_);
    }

    void check_all_pool_objects() {
        for_each_store([](auto& side) { side.check_all_objects(); });
    }

    // ---- object pools -------------------------------------------------------------------------
    // Calls fn with the side the selector byte names: keyed_record (moved by its move
    // constructor) or plain_record (moved by memcpy). Not once tear_down destroyed its pool (a
    // balloon's destructor may still run a compaction whose callbacks act).
    template <class Fn>
    void on_side(std::size_t selector, Fn&& fn) {
        if (selector % 2 == 0) {
            if (records_.pool) {
                touched_ |= records_.touch;
                fn(records_);
            }
        } else if (plains_.pool) {
            touched_ |= plains_.touch;
            fn(plains_);
        }
    }

    template <class Fn>
    void on_each_side(Fn&& fn) {
        on_side(0, fn);
        on_side(1, fn);
    }

    // The arena frame whose memory holds `address`.
    frame& frame_holding(const void* address) {
        const std::byte* base = arena_.address_of(arena_.frame_at(0));
        const auto offset = static_cast<std::size_t>(static_cast<const std::byte*>(address) - base);
        return arena_.frame_at(offset / frame_size);
    }

    template <class Record>
    void object_emplace(object_side<Record>& side, std::size_t count, bool throwing,
                        std::size_t refused) {
        for (std::size_t n = 0; n < count; ++n) {
            const std::uint64_t key = side.next_key++;
            const std::uint64_t version = key % 7;
            if (n + 1 == refused) {
                object_emplace_refused(side, key, throwing);
                continue;
            }
            object_handle<Record> h;
            if (throwing) {
                try {
                    h = side.pool->emplace(key, version);
                } catch (const std::bad_alloc&) {
                    expect_objects_exhausted(side);
                    return;
                }
            } else {
                h = side.pool->try_emplace(key, version);
                if (!h) {
                    expect_objects_exhausted(side);
                    return;
                }
            }
            side.add(h, key, version);
        }
    }

    // T's constructor throws: the exception passes, and nothing stays allocated (a slab made for
    // the object goes back).
    template <class Record>
    void object_emplace_refused(object_side<Record>& side, std::uint64_t key, bool throwing) {
        const object_pool_stats before = side.pool->stats();
        const std::size_t free_before = arena_.free_frames();
        const record_counts counts_before = keyed_record::counts;
        bool passed = false;
        bool exhausted = false; // no room: emplace fails before it constructs
        try {
            if (throwing) {
                (void)side.pool->emplace(key, 0, true);
            } else {
                exhausted = !side.pool->try_emplace(key, 0, true);
            }
        } catch (const construction_refused&) {
            passed = true;
        } catch (const std::bad_alloc&) {
            exhausted = true;
        }
        if (exhausted) {
            expect_objects_exhausted(side);
            return;
        }
        const object_pool_stats after = side.pool->stats();
        expect(passed, "object_pool emplace swallowed the exception T's constructor threw");
        expect(after.objects == before.objects &&
                   keyed_record::counts.alive() == counts_before.alive(),
               "a constructor that threw left an object alive");
        if (side.cached) {
            // Its place is reserved again; the reservation may have taken one slab more.
            expect(after.frames <= before.frames + 1 && arena_.free_frames() + 1 >= free_before,
                   "a constructor that threw left more than one reserved slab allocated");
        } else {
            expect(after.frames == before.frames && arena_.free_frames() == free_before,
                   "a constructor that threw left a slab or a frame allocated");
        }
    }

    // emplace failed: the arena has no free frame and every slab is full.
    template <class Record>
    void expect_objects_exhausted(object_side<Record>& side) {
        const object_pool_stats stats = side.pool->stats();
        expect(arena_.free_frames() == 0 &&
                   stats.frames * stats.objects_per_frame == side.live.size(),
               "object_pool emplace failed while the arena had a free frame or a slab had room");
    }

    template <class Record>
    void object_fill(object_side<Record>& side) {
        const std::size_t most =
            arena_.frame_count() * object_side<Record>::pool_type::objects_per_frame;
        for (std::size_t n = 0; n <= most; ++n) {
            const std::uint64_t key = side.next_key++;
            const object_handle<Record> h = side.pool->try_emplace(key, 0);
            if (!h) {
                break;
            }
            side.add(h, key, 0);
        }
        expect_objects_exhausted(side);
        bool threw = false;
        const std::uint64_t key = side.next_key++;
        try {
            side.add(side.pool->emplace(key, 0), key, 0);
        } catch (const std::bad_alloc&) {
            threw = true;
        }
        expect(threw, "object_pool emplace did not throw bad_alloc with the arena exhausted");
    }

    // Destroys `count` objects from `choice` on (never the pinned one), each checked first.
    template <class Record>
    void object_destroy(object_side<Record>& side, std::size_t choice, std::size_t count) {
        for (std::size_t n = 0; n < count && !side.live.empty(); ++n) {
            const std::size_t index = (choice + n * 7) % side.live.size();
            const auto entry = side.live[index];
            if (side.is_held(entry.h)) {
                continue; // destroy waits for the pin to end: it would wait forever here
            }
            check_object(side, entry);
            const record_counts before = keyed_record::counts;
            side.pool->destroy(entry.h);
            side.remove(index);
            if constexpr (std::is_same_v<Record, keyed_record>) {
                expect(keyed_record::counts.destroyed == before.destroyed + 1 &&
                           keyed_record::counts.moved == before.moved,
                       "object_pool destroy did not run exactly one destructor");
            }
        }
    }

    // Pins an object (checking it through the pin and a second, const pin at the same address),
    // rewrites it through the pin unless version is 0, and keeps it pinned in the side's pin
    // `which` (ending what that one held) across `hold` more operations.
    template <class Record>
    void object_pin(object_side<Record>& side, std::size_t choice, std::size_t which, unsigned hold,
                    std::uint64_t version) {
        auto& pin = side.held[which % side.held.size()];
        side.unpin(pin);
        if (choice == 0xffff) {
            expect_empty_handle_refused(side);
            return;
        }
        if (side.live.empty()) {
            return;
        }
        auto& entry = side.live[choice % side.live.size()];
        pinned<Record> p = side.pool->pin(entry.h);
        expect(p && p->holds(entry.key, entry.version),
               "a pinned object differs from what was last stored in it");
        {
            const pinned<const Record> again = std::as_const(*side.pool).pin(entry.h);
            expect(again.get() == p.get(), "two pins of one object show different addresses");
        }
        if (version != 0) {
            p->rewrite(version);
            entry.version = version;
            expect(p->holds(entry.key, version), "an object rewritten through its pin differs");
        }
        if (hold != 0) {
            pin.address = p.get();
            pin.h = entry.h;
            pin.ops = hold;
            pin.p = std::move(p);
        }
    }

    // The empty handle: invalid_argument from every call that takes a handle.
    template <class Record>
    void expect_empty_handle_refused(object_side<Record>& side) {
        const auto refused = [](auto&& call) {
            try {
                call();
            } catch (const std::invalid_argument&) {
                return true;
            }
            return false;
        };
        auto& pool = *side.pool;
        expect(refused([&] { (void)pool.pin({}); }) &&
                   refused([&] { (void)std::as_const(pool).pin({}); }) &&
                   refused([&] { pool.visit({}, [](Record&) {}); }) &&
                   refused([&] { pool.destroy({}); }),
               "object_pool took the empty handle without throwing invalid_argument");
    }

    template <class Record>
    void object_visit(object_side<Record>& side, std::size_t choice, std::uint64_t version) {
        if (side.live.empty()) {
            return;
        }
        auto& entry = side.live[choice % side.live.size()];
        const bool held_before = side.pool->visit(entry.h, [&](Record& record) {
            const bool holds = record.holds(entry.key, entry.version);
            if (version != 0) {
                record.rewrite(version);
            }
            return holds;
        });
        expect(held_before, "a visited object differs from what was last stored in it");
        if (version != 0) {
            entry.version = version;
        }
        const bool holds = std::as_const(*side.pool).visit(entry.h, [&](const Record& record) {
            return record.holds(entry.key, entry.version);
        });
        expect(holds, "an object rewritten in visit differs");
    }

    // for_each with handles: every live object exactly once, each as the shadow says; the const
    // for_each: the same count and digest.
    template <class Record>
    void object_for_each(object_side<Record>& side) {
        std::vector<bool> seen(side.live.size(), false);
        std::size_t visits = 0;
        bool all_hold = true;
        side.pool->for_each([&](object_handle<Record> h, Record& record) {
            ++visits;
            const auto it = side.at.find(h.value());
            if (it == side.at.end() || seen[it->second]) {
                all_hold = false;
                return;
            }
            seen[it->second] = true;
            const auto& entry = side.live[it->second];
            all_hold = all_hold && record.holds(entry.key, entry.version);
        });
        expect(all_hold && visits == side.live.size(),
               "for_each visited an object the shadow does not have, one twice, or one whose "
               "contents differ");
        std::uint64_t expected_digest = 0;
        for (const auto& entry : side.live) {
            expected_digest += mix(entry.key ^ (entry.version << 40));
        }
        std::uint64_t digest = 0;
        std::size_t count = 0;
        std::as_const(*side.pool).for_each([&](const Record& record) {
            ++count;
            digest += mix(record.key ^ (record.version << 40));
        });
        expect(count == side.live.size() && digest == expected_digest,
               "const for_each's count or digest differs from the shadow");
    }

    // compact(): what it answers agrees with its statistics; with nothing pinned the pool holds
    // exactly the frames its objects need (ceil(objects / per frame)), with one object pinned
    // at most one more.
    template <class Record>
    void object_compact(object_side<Record>& side) {
        auto& pool = *side.pool;
        const object_pool_stats before = pool.stats();
        const std::size_t freeable = pool.compactable_frames();
        expect(freeable == before.frames_freeable && freeable == before.frames - before.min_frames,
               "compactable_frames() differs from frames - ceil(objects / per frame)");
        const long long moves_before = keyed_record::counts.moved;
        const std::size_t freed = pool.compact();
        const object_pool_stats after = pool.stats();
        expect(freed <= freeable, "object_pool compact() freed more than compactable_frames()");
        expect(after.frames == before.frames - freed && after.objects == before.objects &&
                   after.frames_freed_by_compaction == before.frames_freed_by_compaction + freed &&
                   after.compactions == before.compactions + 1,
               "object_pool compact()'s answer differs from its statistics");
        if constexpr (std::is_same_v<Record, keyed_record>) {
            expect(keyed_record::counts.moved - moves_before ==
                       static_cast<long long>(after.objects_moved - before.objects_moved),
                   "object_pool compact() moved a different count of objects than it says");
        }
        // A pinned object keeps its slab (which compact() then neither fills nor empties
        // further); every other slab but one ends full.
        const std::size_t pins = side.pins_held();
        if (pins == 0) {
            expect(after.frames == after.min_frames && pool.compactable_frames() == 0 &&
                       after.objects_skipped_pinned == before.objects_skipped_pinned,
                   "object_pool compact() with nothing pinned left frames it could free");
        } else {
            expect(after.frames <= after.min_frames + pins,
                   "object_pool compact() left more frames it could free than objects pinned");
        }
        check_all_objects(side);
    }

    // The chosen object's frame, isolated and migrated alone: it moves (to the same place of a
    // new frame) unless it holds the pinned object (busy: put back) or the arena has no frame.
    template <class Record>
    void object_migrate(object_side<Record>& side, std::size_t choice, migrate_mode mode) {
        if (side.live.empty()) {
            return;
        }
        const auto entry = side.live[choice % side.live.size()];
        const Record* before = side.pool->pin(entry.h).get();
        frame& f = frame_holding(before);
        const bool pinned_there =
            std::any_of(side.held.begin(), side.held.end(), [&](const auto& pin) {
                return pin.p && &frame_holding(pin.address) == &f;
            });
        const bool no_target = arena_.free_frames() == 0;
        const object_pool_stats stats_before = side.pool->stats();
        expect(isolate_movable_frame(f, mode), "an object pool frame could not be isolated");
        frame_list list;
        list.push_back(f);
        limited_targets targets{arena_, 0};
        const migrate_stats stats = migrate_frames(list, targets, mode);
        const std::size_t returned = putback_movable_frames(list, targets);
        finished_.isolated += 1;
        finished_.migrated += stats.succeeded;
        finished_.released += stats.released;
        totals.migrated += stats.succeeded;
        const Record* after = side.pool->pin(entry.h).get();
        const object_pool_stats stats_after = side.pool->stats();
        if (no_target || pinned_there) {
            expect(stats.succeeded == 0 && returned + stats.put_back == 1 && after == before,
                   "an object pool frame moved with no target frame or with a pinned object");
            expect(no_target ||
                       stats_after.migrations_refused == stats_before.migrations_refused + 1,
                   "object_pool migrate did not refuse a frame holding a pinned object");
        } else {
            const auto offset = [&](const Record* object) {
                return reinterpret_cast<std::uintptr_t>(object) % frame_size;
            };
            expect(stats.succeeded == 1 && after != before && offset(after) == offset(before) &&
                       stats_after.frames_migrated == stats_before.frames_migrated + 1,
                   "an object pool frame with nothing pinned was not migrated to the same place "
                   "of a new frame");
        }
        check_object(side, entry);
        after_compaction();
    }

    // Destroys the pool with its objects: each destructor runs once, nothing is relocated,
    // every frame goes back (or to the core, when it holds it isolated); then a new pool.
    template <class Record>
    void object_recreate(object_side<Record>& side) {
        // The service must not outlive a pool it serves: it goes first (there is no
        // deregistration), and a new one serves the new pool.
        const bool served = service_ && (service_sources_ & side.touch) != 0;
        if (served) {
            expect(!service_stepping_, "the harness destroys a pool the service is compacting");
            retire_service();
        }
        side.unpin_all();
        const object_pool_stats stats = side.pool->stats();
        totals.objects_moved += stats.objects_moved;
        const record_counts before = keyed_record::counts;
        const std::size_t free_before = arena_.free_frames();
        side.retired_migrated += stats.frames_migrated;
        side.retired_released += stats.frames_released_while_isolated + stats.isolated_frames;
        side.pool.reset();
        if constexpr (std::is_same_v<Record, keyed_record>) {
            expect(keyed_record::counts.destroyed - before.destroyed ==
                           static_cast<long long>(side.live.size()) &&
                       keyed_record::counts.moved == before.moved &&
                       keyed_record::counts.constructed == before.constructed,
                   "destroying an object_pool did not destroy each of its objects exactly once");
            expect(keyed_record::counts.alive() == 0,
                   "keyed_records outlive the pool that held them");
        }
        expect(arena_.free_frames() == free_before + stats.frames - stats.isolated_frames,
               "a destroyed object_pool did not give its frames back");
        side.live.clear();
        side.at.clear();
        side.cached = !side.cached;
        side.pool.emplace(arena_, object_pool_options{.thread_cache = side.cached});
        if (served) {
            make_service();
        }
    }

    template <class Record>
    void check_object(object_side<Record>& side, const typename object_side<Record>::entry& entry) {
        const pinned<const Record> p = std::as_const(*side.pool).pin(entry.h);
        expect(p->holds(entry.key, entry.version),
               "an object's contents differ from what was last stored in it");
    }

    // Every object as the shadow says; the pinned one where it was pinned.
    template <class Record>
    void check_all_objects(object_side<Record>& side) {
        for (const auto& entry : side.live) {
            check_object(side, entry);
        }
        check_object_pin(side);
    }

    template <class Record>
    void check_object_pin(object_side<Record>& side) {
        for (const auto& pin : side.held) {
            if (pin.p) {
                expect(pin.p.get() == pin.address && side.pool->pin(pin.h).get() == pin.address,
                       "a pinned object moved");
            }
        }
    }

    // The pool's own invariants, then the pool against the shadow (between operations); those
    // two only when an operation touched the pool (`touched`), the rest every time.
    template <class Record>
    void check_object_side(object_side<Record>& side, bool touched) {
        auto& pool = *side.pool;
        if constexpr (std::is_same_v<Record, keyed_record>) {
            expect(keyed_record::counts.alive() == static_cast<long long>(side.live.size()),
                   "keyed_records alive differ from the objects in the pool (a relocation "
                   "without its destructor, or a destructor run twice)");
        }
        check_object_pin(side);
        if (!side.live.empty()) {
            check_object(side, side.live[side.rotating_check++ % side.live.size()]);
        }
        if (!touched) {
            return;
        }
        pool.check_invariants();
        const object_pool_stats stats = pool.stats();
        side.seen = stats;
        const std::size_t per_frame = stats.objects_per_frame;
        expect(pool.size() == side.live.size() && stats.objects == side.live.size(),
               "an object pool's size differs from the shadow");
        expect(stats.min_frames == (side.live.size() + per_frame - 1) / per_frame &&
                   stats.frames >= stats.min_frames &&
                   stats.frames_freeable == stats.frames - stats.min_frames,
               "an object pool's frame statistics do not add up");
        expect(stats.isolated_frames == 0, "an object pool frame is isolated between operations");
        std::size_t fullness = 0;
        for (const std::size_t slabs : stats.fullness) {
            fullness += slabs;
        }
        expect(stats.reserve_frames <= 1 && fullness + stats.reserve_frames == stats.frames,
               "an object pool's fullness histogram and reserve miss frames");
    }

    // Ends pins held across their operations (the pools touched for the next checks).
    void expire_object_pins() {
        on_each_side([this](auto& side) {
            for (auto& pin : side.held) {
                if (pin.p && pin.ops-- == 0) {
                    side.unpin(pin);
                    carried_touch_ |= side.touch;
                }
            }
        });
    }

    // ---- pages ----------------------------------------------------------------------------------
    void add_page() {
        const std::size_t page = pages_.size();
        frame* f = owner_.add_page(page);
        if (f == nullptr) {
            expect(arena_.free_frames() == 0, "add_page failed while the arena had free frames");
            return;
        }
        pages_.emplace_back();
        pages_[page].live = true;
        pages_[page].where = f;
        live_.push_back(page);
    }

    // Releases `page`. When its frame is isolated the core now owns it and will free it.
    void release_page(std::size_t page) {
        check_page(page);
        const bool was_isolated = owner_.frame_of(page)->is_isolated();
        const bool core_owns_it = owner_.release_page(page);
        expect(core_owns_it == was_isolated,
               "release_page's answer differs from whether the frame was isolated");
        answers_.released_while_isolated += core_owns_it ? 1 : 0;
        page_shadow& shadow = pages_[page];
        shadow.live = false;
        shadow.pinned = false;
        shadow.where = nullptr;
        shadow.written.reset();
        live_.erase(std::find(live_.begin(), live_.end(), page));
    }

    void write_page(input_reader& in) {
        if (live_.empty()) {
            return;
        }
        const std::size_t page = live_[in.byte() % live_.size()];
        const std::size_t offset = in.word() % frame_size;
        const std::size_t length = std::min<std::size_t>(1 + in.byte(), frame_size - offset);
        page_shadow& shadow = pages_[page];
        if (!shadow.written) {
            auto copy = std::make_unique<std::byte[]>(frame_size);
            std::memcpy(copy.get(), expected_contents(page), frame_size);
            shadow.written = std::move(copy);
        }
        std::byte* memory = arena_.address_of(*owner_.frame_of(page));
        for (std::size_t i = 0; i < length; ++i) {
            const auto value = static_cast<std::byte>(in.byte());
            memory[offset + i] = value;
            shadow.written[offset + i] = value;
        }
    }

    const std::byte* expected_contents(std::size_t page) const {
        const page_shadow& shadow = pages_[page];
        return shadow.written ? shadow.written.get() : pattern_rows()[(page * 131) & 0xff].data();
    }

    void check_page(std::size_t page) {
        frame* f = owner_.frame_of(page);
        expect(f != nullptr, "a live page has no frame in the owner's table");
        expect(std::memcmp(arena_.address_of(*f), expected_contents(page), frame_size) == 0,
               "a page's bytes differ from what was last stored in it");
    }

    void check_all_contents() {
        for (std::size_t page : live_) {
            check_page(page);
        }
        for (const unmovable_block& block : unmovable_) {
            check_unmovable(block);
        }
        check_all_pool_objects();
        on_each_side([this](auto& side) { check_all_objects(side); });
    }

    // ---- unmovable allocations ------------------------------------------------------------------
    void allocate_unmovable(unsigned order, std::byte fill) {
        frame* f = arena_.try_allocate(order, frame_kind::unmovable);
        if (f == nullptr) {
            expect(arena_.largest_free_order() < static_cast<int>(order),
                   "an unmovable allocation failed while a free block of its order existed");
            return;
        }
        std::memset(arena_.address_of(*f), static_cast<int>(fill), frame_size << order);
        unmovable_.push_back({f, order, fill});
    }

    void check_unmovable(const unmovable_block& block) const {
        std::array<std::byte, frame_size> expected;
        expected.fill(block.fill);
        const std::byte* memory = arena_.address_of(*block.first);
        for (std::size_t i = 0; i < std::size_t{1} << block.order; ++i) {
            expect(std::memcmp(memory + i * frame_size, expected.data(), frame_size) == 0,
                   "an unmovable block's bytes changed");
        }
        expect(block.first->reference_count() == 1 && !is_movable(*block.first),
               "an unmovable block's head frame lost its allocation reference or became movable");
    }

    void free_unmovable(std::size_t index) {
        const unmovable_block block = unmovable_[index];
        check_unmovable(block);
        arena_.deallocate(*block.first, block.order);
        unmovable_.erase(unmovable_.begin() + static_cast<std::ptrdiff_t>(index));
    }

    [[nodiscard]] std::size_t unmovable_frames() const noexcept {
        std::size_t frames = 0;
        for (const unmovable_block& block : unmovable_) {
            frames += std::size_t{1} << block.order;
        }
        return frames;
    }

    // ---- balloons -------------------------------------------------------------------------------
    void inflate(std::size_t b, std::size_t count) {
        balloon_type& balloon = *balloons_[b];
        const balloon_inflate_result result = balloon.inflate(count);
        expect(result.inflated <= count, "inflate lent more frames than asked");
        balloon_sizes_[b] += result.inflated;
        switch (result.stopped_by) {
        case balloon_inflate_stop::requested_count:
            expect(result.inflated == count, "inflate stopped early without saying why");
            break;
        case balloon_inflate_stop::arena_exhausted:
            expect(arena_.free_frames() == 0, "inflate said the arena was exhausted, it was not");
            break;
        case balloon_inflate_stop::host_refused:
            expect(hosts_[b].held.size() >= hosts_[b].lend_limit,
                   "inflate said the host refused below its lend limit");
            break;
        }
    }

    // From inside a callback some of the balloon's frames may be isolated (deflate skips them);
    // between operations none is.
    void deflate(std::size_t b, std::size_t count, bool in_callback) {
        const std::size_t deflated = balloons_[b]->deflate(count);
        const std::size_t could = std::min(count, balloon_sizes_[b]);
        expect(in_callback ? deflated <= could : deflated == could,
               "deflate gave back a different number of frames than it could");
        balloon_sizes_[b] -= deflated;
    }

    // Destroys balloon b with its frames lent (the destructor gives them back; from inside a
    // callback, frames a compaction holds isolated are released to it) and makes a new one.
    void recreate_balloon(std::size_t b, bool in_callback) {
        destroy_balloon(b, in_callback);
        balloons_[b].emplace(arena_, hosts_[b]);
    }

    void destroy_balloon(std::size_t b, bool in_callback) {
        balloon_type& balloon = *balloons_[b];
        const balloon_stats stats = balloon.stats();
        const std::size_t isolated = balloon.isolated_count();
        expect(in_callback || isolated == 0, "a balloon frame is isolated between operations");
        retired_.migrated += stats.migrated;
        retired_.shrunk_on_replace += stats.shrunk_on_replace;
        retired_.replace_refused += stats.replace_refused;
        retired_.released_isolated += isolated; // what the destructor will release
        const std::size_t free_before = arena_.free_frames();
        const unsigned long long compactions_before = totals.compactions;
        balloons_[b].reset();
        expect(hosts_[b].held.empty() && hosts_[b].unknown_returns == 0,
               "a destroyed balloon left frames with its host");
        // Isolated frames are freed by the compaction that holds them, later. (A compaction
        // run by the host from reclaim may free or take frames of its own.)
        expect(totals.compactions != compactions_before ||
                   arena_.free_frames() == free_before + balloon_sizes_[b] - isolated,
               "a destroyed balloon did not give its frames back to the arena");
        balloon_sizes_[b] = 0;
    }

    balloon_replace_result on_replace(std::size_t b) {
        if (host_faults_[b].shrink.fires()) {
            ++totals.faults;
            --balloon_sizes_[b];
            return balloon_replace_result::old_returned_new_refused;
        }
        if (host_faults_[b].refuse.fires()) {
            ++totals.faults;
            return balloon_replace_result::refused;
        }
        return balloon_replace_result::replaced;
    }

    // ---- owner callbacks (the fault knobs) ------------------------------------------------------
    bool on_isolate(frame& f) {
        const std::size_t page = f.private_word();
        if (!action_on_migrate_) {
            run_callback_action(page);
        }
        if (pages_[page].pinned) {
            return false;
        }
        if (refuse_isolate_.fires()) {
            ++totals.faults;
            return false;
        }
        ++answers_.isolations_accepted;
        return true;
    }

    migrate_status on_migrate(frame& src) {
        const std::size_t page = src.private_word();
        if (action_on_migrate_) {
            run_callback_action(page);
        }
        migrate_status answer = migrate_status::success;
        if (answer_failed_.fires()) {
            answer = migrate_status::failed;
        } else if (answer_busy_.fires()) {
            answer = migrate_status::busy;
        } else if (answer_retry_.fires()) {
            answer = migrate_status::retry;
        }
        if (answer == migrate_status::success) {
            ++answers_.migrations_succeeded;
            if (timing_ && !in_nested_compaction_) {
                ++fake_clock::ticks; // a page migrated for the timed compaction "takes" 1 ns
            }
            if (service_stepping_ && !in_nested_compaction_) {
                ++service_wall_; // and one the service's step migrates, on its wall clock
            }
        } else {
            ++totals.faults;
        }
        return answer;
    }

    // From inside a callback, with the frame of `current_page` locked by the core: act on
    // anything but that page (the owner's policies may; see test_owner.hpp).
    void run_callback_action(std::size_t current_page) {
        if (action_ == callback_action::none || !action_period_.fires()) {
            return;
        }
        ++totals.faults;
        switch (action_) {
        case callback_action::release_page: {
            if (live_.size() < 2) {
                break;
            }
            std::size_t page = live_[action_choice_++ % live_.size()];
            if (page == current_page) {
                page = live_[action_choice_++ % live_.size()];
            }
            if (page != current_page && !lock_held(page)) { // release_page waits for its lock
                release_page(page);
            }
            break;
        }
        case callback_action::add_page:
            add_page();
            break;
        // Not from inside a host callback: the balloon's inflate, deflate and destructor wait
        // for the host lock that its caller holds.
        case callback_action::inflate:
            if (!in_host_callback_) {
                inflate(action_choice_ % balloon_count, 1);
            }
            break;
        case callback_action::deflate:
            if (!in_host_callback_) {
                deflate(action_choice_ % balloon_count, 1, /*in_callback=*/true);
            }
            break;
        case callback_action::recreate_balloon:
            if (!in_host_callback_) {
                recreate_balloon(action_choice_ % balloon_count, /*in_callback=*/true);
            }
            break;
        case callback_action::compact:
            run_nested_compaction(static_cast<std::uint8_t>(action_choice_));
            break;
        case callback_action::hold_lock: {
            if (!may_hold_locks_ || in_nested_compaction_ || live_.empty()) {
                break;
            }
            const std::size_t page = live_[action_choice_++ % live_.size()];
            frame* f = owner_.frame_of(page);
            if (page != current_page && f->try_lock()) {
                held_.push_back(f);
            }
            break;
        }
        // The compaction may hold some of the pool's frames isolated: an emptied slab's frame,
        // or all of them when the pool goes, is released to it.
        case callback_action::object_destroy:
            on_side(action_choice_, [&](auto& side) {
                object_destroy(side, action_choice_ / 2, 1 + action_choice_ % 8);
            });
            ++action_choice_;
            break;
        case callback_action::object_compact:
            on_side(action_choice_++, [&](auto& side) { object_compact(side); });
            break;
        case callback_action::object_recreate:
            if (service_stepping_) {
                break; // the service's step holds the pools it serves
            }
            on_side(action_choice_++, [&](auto& side) { object_recreate(side); });
            break;
        case callback_action::none:
        case callback_action::count:
            break;
        }
    }

    // A full compaction on the third compactor, from inside an owner or host callback (never
    // nested twice), its mode and strategy from an options byte (no time budget: this one
    // reads steady_clock).
    void run_nested_compaction(std::uint8_t options) {
        if (in_nested_compaction_) {
            return;
        }
        in_nested_compaction_ = true;
        compact_request request;
        request.mode = mode_of(options);
        request.strategy = strategy_of(options);
        const compact_stats stats = nested_.compact(request);
        expect(stats.outcome == (request.strategy == compact_strategy::least_moves
                                     ? compact_outcome::planned
                                     : compact_outcome::scanners_met),
               "a full compaction ended for a reason other than its strategy's");
        count_compaction(request);
        totals.migrated += stats.migrated;
        finished_.add(stats);
        in_nested_compaction_ = false;
    }

    // lend or reclaim: the balloon holds its host lock and the frame's lock. A host may run a
    // compaction from here (balloon.hpp); the balloon's migrate then finds its host lock held
    // and answers retry.
    void on_host_call(std::size_t b) {
        if (!host_faults_[b].compact.fires() || in_nested_compaction_) {
            return;
        }
        ++totals.faults;
        const bool was_in_host_callback = in_host_callback_;
        in_host_callback_ = true;
        run_nested_compaction(static_cast<std::uint8_t>(host_faults_[b].compact.calls * 37));
        in_host_callback_ = was_in_host_callback;
        after_compaction(); // pages may have moved during inflate or deflate
    }

    [[nodiscard]] bool lock_held(std::size_t page) {
        return std::find(held_.begin(), held_.end(), owner_.frame_of(page)) != held_.end();
    }

    void release_held_locks() {
        for (frame* f : held_) {
            f->unlock();
        }
        held_.clear();
    }

    void clear_faults() {
        refuse_isolate_ = {};
        answer_retry_ = {};
        answer_busy_ = {};
        answer_failed_ = {};
        action_ = callback_action::none;
        for (std::size_t b = 0; b < balloon_count; ++b) {
            host_faults_[b] = {};
            hosts_[b].lend_limit = std::numeric_limits<std::size_t>::max();
        }
    }

    // No knob can make a compaction refuse, fail or release a frame, or act from its callbacks;
    // no page, zspage or object is pinned, and the incremental compaction left no frame
    // isolated: every frame that is movable moves when asked. A least_moves compaction must then
    // carry out its plan exactly (unmovable allocations may stay: the plan leaves their blocks).
    [[nodiscard]] bool plan_unobstructed() const {
        if (refuse_isolate_.period != 0 || answer_retry_.period != 0 || answer_busy_.period != 0 ||
            answer_failed_.period != 0 || action_ != callback_action::none) {
            return false;
        }
        for (const host_faults& faults : host_faults_) {
            if (faults.refuse.period != 0 || faults.shrink.period != 0 ||
                faults.compact.period != 0) {
                return false;
            }
        }
        for (std::size_t page : live_) {
            if (pages_[page].pinned) {
                return false;
            }
        }
        if (any_store_mapped() || records_.pins_held() != 0 || plains_.pins_held() != 0) {
            return false; // a pinned zspage or object cannot move
        }
        // A frame left isolated cannot move either, nor one a compaction holds (stray_frames).
        return isolated_between_ops_ == 0 && stray_between_ops_ == 0;
    }

    // As plan_unobstructed, and no unmovable frame is allocated and no pageblock is unmovable: a
    // full scanners compaction must then leave every max-order block wholly free or wholly used,
    // but for the one where the scanners met (used frames need not fill whole blocks).
    // (Unmovable frames can sit in movable pageblocks: a movable allocation claims back a
    // pageblock with free space; so both are ruled out.)
    [[nodiscard]] bool nothing_in_the_way() const {
        return plan_unobstructed() && unmovable_.empty() &&
               arena_.stats().max_order_blocks_by_kind[1] == 0;
    }

    // ---- compaction -----------------------------------------------------------------------------
    static void count_compaction(const compact_request& request) noexcept {
        ++totals.compactions;
        totals.least_moves += request.strategy == compact_strategy::least_moves ? 1 : 0;
    }

    // MOVABLE_FUZZ_TRACE: the arena, one character a frame, a space between max-order blocks:
    // '.' free, 'm' movable, 'i' isolated, 'u' anything else (unmovable, a target held).
    void trace_arena_map(const char* when) {
        if (!tracing) {
            return;
        }
        std::string map;
        for (std::size_t index = 0; index < arena_.frame_count(); ++index) {
            if (index != 0 && index % block_frames == 0) {
                map += ' ';
            }
            const frame& f = arena_.frame_at(index);
            map += arena_.is_free(index) ? '.' : f.is_isolated() ? 'i' : is_movable(f) ? 'm' : 'u';
        }
        std::fprintf(stderr, "  arena %s: %s\n", when, map.c_str());
    }

    void compact_once(const compact_request& request) {
        trace_arena_map("before");
        const bool clean = nothing_in_the_way();
        const bool unobstructed = plan_unobstructed();
        const int largest_before = arena_.largest_free_order();
        const bool deferred_before = request.order >= 0 && one_shot_.is_deferred(request.order);
        const bool least_moves = request.strategy == compact_strategy::least_moves;
        // Both strategies report what the ideal plan moves; least_moves also carries it out.
        const plan_expectation expected = expected_plan(request);
        const fake_clock::rep ticks_before = fake_clock::ticks;
        timing_ = true;
        const compact_stats stats = one_shot_.compact(request);
        timing_ = false;
        count_compaction(request);
        totals.migrated += stats.migrated;
        finished_.add(stats);
        trace_arena_map("after");
        check_outcome(request, stats);
        check_one_shot_time(request, stats, fake_clock::ticks - ticks_before);
        if (request.order >= 0 && stats.outcome != compact_outcome::deferred &&
            largest_before >= request.order) {
            expect(stats.outcome == compact_outcome::order_available && stats.isolated == 0,
                   "order-targeted compaction worked although the order was already free");
        }
        if (deferred_before) {
            expect(stats.outcome == compact_outcome::deferred,
                   "a compaction is_deferred said would be deferred ran");
        }
        if (least_moves && stats.outcome != compact_outcome::deferred) {
            check_least_moves(request, expected, stats, unobstructed);
        }
        if (!least_moves && stats.outcome != compact_outcome::deferred) {
            expect(stats.minimum_moves == expected.moves,
                   "the scanners' minimum_moves differs from the plan worked out from the arena");
        }
        if (clean && !least_moves && request.order < 0 && request.stop_at_score < 0) {
            expect(partly_free_blocks() <= 1,
                   "full compaction with nothing in the way left free frames outside free "
                   "max-order blocks in more than the one block where the scanners met");
            expect(stats.failed == 0, "full compaction with nothing in the way failed a frame");
        }
        after_compaction();
    }

    // What least_moves must plan, worked out here from the arena's free frames and the shadow's
    // unmovable allocations (not from the compactor's census): regions of 2^order frames (order:
    // the request's, max_order for a full or proactive compaction) that hold a used frame and no
    // unmovable one, cheapest (fewest used frames; then lowest address) first; a full compaction
    // empties as many as the free frames allow beside the regions already free, a proactive one
    // the fewest that bring the score to its target, an order-targeted one the cheapest whose
    // used frames fit in the free frames outside it, none when a free region exists.
    //
    // Free frames of a partly used unmovable pageblock are not counted: frame_arena hands none
    // of them out as a target.
    //
    // `exact`: the holes the moved frames need are in partly used movable blocks that are not
    // being emptied (for an order below max_order, also around the region in its own block).
    // Otherwise the plan needs free max-order blocks as targets too, which the compactor takes
    // last: only minimum_moves and the loss-free invariants are checked there.
    struct plan_expectation {
        std::size_t regions = 0;     // regions to empty
        std::size_t moves = 0;       // their used frames: minimum_moves
        std::size_t most = 0;        // regions a full compaction would empty (the most possible)
        std::size_t free_blocks = 0; // free max-order blocks before
        bool exact = false;
    };

    [[nodiscard]] plan_expectation expected_plan(const compact_request& request) {
        const unsigned order =
            request.order >= 0 ? static_cast<unsigned>(request.order) : arena_type::max_order;
        const std::size_t region = std::size_t{1} << order;
        const std::vector<bool> unmovable = unmovable_map();
        std::size_t free_frames = 0; // that can take a frame
        std::size_t all_free_frames = 0;
        std::size_t free_regions = 0;
        struct cost {
            std::size_t first;
            std::size_t used;
        };
        std::vector<cost> costs; // the evacuable regions
        std::vector<std::size_t> free_of_block(arena_.block_count(), 0);
        for (std::size_t first = 0; first < arena_.frame_count(); first += region) {
            std::size_t used = 0;
            std::size_t free_here = 0;
            bool evacuable = true;
            for (std::size_t index = first; index < first + region; ++index) {
                if (arena_.is_free(index)) {
                    ++free_here;
                    ++free_of_block[index / block_frames];
                    continue;
                }
                ++used;
                // The shadow and the frames' MOVABLE bits must agree (an isolated frame, or one
                // released while isolated, keeps its bit), but for a frame allocated to nobody
                // that a done incremental compaction still holds (see check_invariants), which
                // cannot move either.
                const bool movable = is_movable(arena_.frame_at(index));
                expect(movable != unmovable[index],
                       "a used frame's MOVABLE bit differs from whether it is an unmovable "
                       "allocation");
                evacuable = evacuable && movable;
            }
            // Holes of a partly used unmovable pageblock take no target (frame_arena hands out
            // none of its frames): they are not counted.
            if (used == 0 || arena_.block_kind(first / block_frames) == frame_kind::movable) {
                free_frames += free_here;
            }
            all_free_frames += free_here; // the score counts every free frame
            if (used == 0) {
                ++free_regions;
            } else if (evacuable) {
                costs.push_back({first, used});
            }
        }
        std::stable_sort(costs.begin(), costs.end(),
                         [](const cost& a, const cost& b) { return a.used < b.used; });
        plan_expectation expected;
        expected.free_blocks = order == arena_type::max_order ? free_regions : free_max_blocks();
        const std::size_t possible = free_frames / region;
        expected.most =
            std::min(possible > free_regions ? possible - free_regions : 0, costs.size());
        std::vector<bool> emptied(arena_.block_count(), false); // blocks of the chosen regions
        std::size_t free_in_region = 0; // order-targeted: the chosen region's own holes
        if (request.order >= 0) {
            if (free_regions == 0) {
                for (const cost& c : costs) { // cheapest first
                    if (free_frames - (region - c.used) >= c.used) {
                        expected.regions = 1;
                        expected.moves = c.used;
                        free_in_region = region - c.used;
                        // A region smaller than a block leaves the rest of its block to targets.
                        emptied[c.first / block_frames] = region == block_frames;
                        break;
                    }
                }
            }
        } else {
            expected.regions = expected.most;
            for (std::size_t k = 0; request.stop_at_score >= 0 && k < expected.most; ++k) {
                if (fragmentation_score(all_free_frames, (free_regions + k) * region) <=
                    static_cast<unsigned>(request.stop_at_score)) {
                    expected.regions = k;
                    break;
                }
            }
            for (std::size_t i = 0; i < expected.regions; ++i) {
                expected.moves += costs[i].used;
                emptied[costs[i].first / block_frames] = true;
            }
        }
        // The holes targets can come from: partly used max-order blocks tagged movable that are
        // not being emptied (the compactor reserves the chosen blocks from the start), less the
        // chosen region's own holes (order-targeted).
        std::size_t holes = 0;
        for (std::size_t b = 0; b < arena_.block_count(); ++b) {
            const std::size_t used = block_frames - free_of_block[b];
            if (!emptied[b] && used != 0 && arena_.block_kind(b) == frame_kind::movable) {
                holes += free_of_block[b];
            }
        }
        holes -= std::min(holes, free_in_region);
        expected.exact = holes >= expected.moves;
        return expected;
    }

    // The frames of the unmovable allocations, by index.
    [[nodiscard]] std::vector<bool> unmovable_map() const {
        std::vector<bool> unmovable(arena_.frame_count(), false);
        for (const unmovable_block& block : unmovable_) {
            const std::size_t first = arena_.index_of(*block.first);
            std::fill_n(unmovable.begin() + static_cast<std::ptrdiff_t>(first),
                        std::size_t{1} << block.order, true);
        }
        return unmovable;
    }

    // Free max-order blocks, counted from is_free.
    [[nodiscard]] std::size_t free_max_blocks() const {
        std::size_t blocks = 0;
        for (std::size_t first = 0; first < arena_.frame_count(); first += block_frames) {
            bool free = true;
            for (std::size_t index = first; index < first + block_frames && free; ++index) {
                free = arena_.is_free(index);
            }
            blocks += free ? 1 : 0;
        }
        return blocks;
    }

    // A finished one-shot least_moves compaction against the plan worked out before it: the same
    // minimum_moves; nothing isolated when nothing could be gained; and with nothing in the
    // plan's way, exactly the plan: its frames moved, nothing else isolated, failed or given
    // up, and (full) exactly its regions freed.
    void check_least_moves(const compact_request& request, const plan_expectation& expected,
                           const compact_stats& stats, bool unobstructed) {
        expect(stats.minimum_moves == expected.moves,
               "least_moves' minimum_moves differs from the plan worked out from the arena");
        if (expected.regions == 0) {
            expect(stats.isolated == 0 && stats.migrated == 0,
                   "least_moves isolated frames where nothing could be gained (an already "
                   "compact arena, or no region worth emptying)");
        }
        if (!unobstructed || !expected.exact) {
            return;
        }
        ++totals.plans_met;
        expect(stats.migrated == expected.moves && stats.isolated == stats.migrated &&
                   stats.failed == 0 && stats.released == 0 && stats.regions_given_up == 0,
               "least_moves with nothing in its way moved other than minimum_moves frames, or "
               "isolated, failed, released or gave up a region");
        if (request.order >= 0) {
            expect(stats.outcome == (arena_.largest_free_order() >= request.order
                                         ? compact_outcome::order_available
                                         : compact_outcome::planned),
                   "order-targeted least_moves ended for the wrong reason");
            expect(expected.regions == 0 || arena_.largest_free_order() >= request.order,
                   "order-targeted least_moves with nothing in its way did not free the region "
                   "it planned");
        } else if (request.stop_at_score >= 0) {
            expect(stats.outcome == compact_outcome::score_reached ||
                       (stats.outcome == compact_outcome::planned &&
                        expected.regions == expected.most &&
                        static_cast<int>(arena_.fragmentation_score()) > request.stop_at_score),
                   "proactive least_moves stopped above its score with blocks left to free");
        } else {
            expect(stats.outcome == compact_outcome::planned,
                   "full least_moves ended for a reason other than `planned`");
            expect(free_max_blocks() == expected.free_blocks + expected.regions &&
                       stats.max_order_blocks_freed == expected.regions,
                   "full least_moves with nothing in its way did not free exactly the most "
                   "max-order blocks the free frames allow");
        }
    }

    // A one-shot compaction reads the clock after every frame only under a time budget of D
    // ticks: every pass but the last then ends right after its D-th page (ticks == D), the last
    // one before (< D), so the passes that timed out are ticks / D. Without a budget, one pass.
    void check_one_shot_time(const compact_request& request, const compact_stats& stats,
                             fake_clock::rep ticks) {
        totals.passes_timed_out += stats.passes_timed_out;
        const fake_clock::rep budget = request.max_duration_per_pass.count();
        if (budget == 0) {
            expect(stats.passes_timed_out == 0 && stats.passes <= 1,
                   "a compaction without a time budget timed out or took several passes");
            return;
        }
        expect(stats.passes_timed_out == static_cast<std::size_t>(ticks / budget) &&
                   stats.passes >= stats.passes_timed_out &&
                   stats.passes <= stats.passes_timed_out + 1,
               "a time-budgeted compaction's passes did not stop right after the page that used "
               "up their time");
    }

    // Max-order blocks that are neither wholly free nor wholly used.
    [[nodiscard]] std::size_t partly_free_blocks() const {
        std::size_t partial = 0;
        for (std::size_t first = 0; first < arena_.frame_count(); first += block_frames) {
            std::size_t free = 0;
            for (std::size_t index = first; index < first + block_frames; ++index) {
                free += arena_.is_free(index) ? 1 : 0;
            }
            partial += free != 0 && free != block_frames ? 1 : 0;
        }
        return partial;
    }

    void check_outcome(const compact_request& request, const compact_stats& stats) {
        if (tracing) {
            std::fprintf(stderr,
                         "  compaction order %d score %d mode %d strategy %d budget %lld: "
                         "outcome %d, isolated %zu, migrated %zu (minimum %zu), failed %zu, "
                         "released %zu, regions given up %zu, rounds %zu, passes %zu (%zu timed "
                         "out); score now %u\n",
                         request.order, request.stop_at_score, static_cast<int>(request.mode),
                         static_cast<int>(request.strategy),
                         static_cast<long long>(request.max_duration_per_pass.count()),
                         static_cast<int>(stats.outcome), stats.isolated, stats.migrated,
                         stats.minimum_moves, stats.failed, stats.released, stats.regions_given_up,
                         stats.rounds, stats.passes, stats.passes_timed_out,
                         arena_.fragmentation_score());
        }
        const bool least_moves = request.strategy == compact_strategy::least_moves;
        expect(stats.outcome != compact_outcome::running, "a finished compaction is running");
        expect(stats.bytes_moved == stats.migrated * frame_size, "bytes_moved != migrated * size");
        // (A frame given up and then released by its owner counts as failed and released.)
        expect(stats.migrated + stats.released <= stats.isolated,
               "compaction moved or freed more frames than it isolated");
        expect(stats.passes_timed_out <= stats.passes, "more passes timed out than passes ran");
        expect(least_moves || stats.regions_given_up == 0, "a scanners compaction gave up regions");
        switch (stats.outcome) {
        case compact_outcome::order_available:
            expect(request.order >= 0 && arena_.largest_free_order() >= request.order,
                   "order_available without a free block of that order");
            break;
        case compact_outcome::score_reached:
            expect(request.stop_at_score >= 0 &&
                       static_cast<int>(arena_.fragmentation_score()) <= request.stop_at_score,
                   "score_reached above the requested score");
            break;
        case compact_outcome::deferred:
            expect(request.order >= 0 && stats.migrate_scanned == 0 && stats.isolated == 0,
                   "a deferred compaction scanned");
            break;
        case compact_outcome::scanners_met:
            expect(!least_moves, "a least_moves compaction ended with scanners_met");
            break;
        case compact_outcome::planned:
            expect(least_moves, "a scanners compaction ended with planned");
            break;
        case compact_outcome::running:
            break;
        }
    }

    void incremental_begin(input_reader& in) {
        const std::uint8_t kind = in.byte() % 3;
        compact_request request = request_of(in.byte());
        request.max_frames_per_pass = in.byte() % 17;
        request.max_bytes_per_pass = (in.byte() % 9) * frame_size;
        const std::uint8_t parameter = in.byte();
        if (kind == 1) {
            request.order = parameter % (arena_type::max_order + 1);
        } else if (kind == 2) {
            request.stop_at_score = parameter % 101;
        }
        if (incremental_running_) {
            incremental_end();
        }
        const bool least_moves = request.strategy == compact_strategy::least_moves;
        // Both strategies report what the ideal plan moves; least_moves also carries it out.
        const plan_expectation expected = expected_plan(request);
        incremental_.begin(request);
        incremental_request_ = request;
        incremental_running_ = true;
        incremental_done_ = false;
        incremental_gains_nothing_ = false;
        count_compaction(request);
        if (incremental_.stats().outcome != compact_outcome::deferred) {
            expect(incremental_.stats().minimum_moves == expected.moves,
                   "minimum_moves differs from the plan worked out from the arena");
            incremental_gains_nothing_ = least_moves && expected.regions == 0;
        }
    }

    void incremental_pass() {
        const compact_stats before = incremental_.stats();
        const fake_clock::rep ticks_before = fake_clock::ticks;
        may_hold_locks_ = incremental_request_.mode == migrate_mode::async;
        timing_ = true;
        const compact_progress progress = incremental_.pass();
        timing_ = false;
        may_hold_locks_ = false;
        ++totals.passes;
        const compact_stats& after = incremental_.stats();
        check_pass_time(after.passes_timed_out - before.passes_timed_out,
                        fake_clock::ticks - ticks_before);
        expect(!incremental_gains_nothing_ || after.isolated == 0,
               "an incremental least_moves compaction isolated frames where nothing could be "
               "gained (an already compact arena)");
        std::size_t budget = std::numeric_limits<std::size_t>::max();
        if (incremental_request_.max_frames_per_pass != 0) {
            budget = incremental_request_.max_frames_per_pass;
        }
        if (incremental_request_.max_bytes_per_pass != 0) {
            budget = std::min(budget, incremental_request_.max_bytes_per_pass / frame_size);
        }
        expect(after.isolated - before.isolated <= budget,
               "an incremental pass isolated more frames than its budget");
        if (budget != std::numeric_limits<std::size_t>::max()) {
            const std::size_t scanned = after.migrate_scanned + after.free_scanned -
                                        before.migrate_scanned - before.free_scanned;
            expect(scanned <= std::max<std::size_t>(
                                  budget * compactor_type::scan_frames_per_budget_frame, 1024),
                   "an incremental pass scanned more frames than its budget allows");
        }
        totals.migrated += after.migrated - before.migrated;
        // The outcome describes the arena as the pass that finished left it; later operations
        // may change that, so it is checked only then.
        if (progress == compact_progress::done && !incremental_done_) {
            incremental_done_ = true;
            check_outcome(incremental_request_, after);
        }
        after_compaction();
    }

    // Under a time budget of D ticks a pass stops right after the page that makes its ticks D
    // (so it moved at least one page), and only then: one tick per page, read after each.
    void check_pass_time(std::size_t timed_out, fake_clock::rep ticks) {
        totals.passes_timed_out += timed_out;
        const fake_clock::rep budget = incremental_request_.max_duration_per_pass.count();
        expect(timed_out <= 1, "one pass timed out more than once");
        if (budget == 0) {
            expect(timed_out == 0, "a pass without a time budget timed out");
            return;
        }
        expect(ticks <= budget && (timed_out == 1) == (ticks == budget),
               "a time-budgeted pass did not stop right after the page that used up its time");
    }

    void incremental_end() {
        if (!incremental_running_) {
            return;
        }
        const compact_stats stats = incremental_.end();
        incremental_running_ = false;
        finished_.add(stats);
        after_compaction();
    }

    // Pages may have moved: every page's contents are checked at its new place, pinned pages
    // must not have moved.
    void after_compaction() {
        for (std::size_t page : live_) {
            page_shadow& shadow = pages_[page];
            frame* now = owner_.frame_of(page);
            expect(!shadow.pinned || now == shadow.where, "compaction moved a pinned page");
            shadow.where = now;
        }
        check_all_contents();
    }

    // ---- the background service -----------------------------------------------------------------
    // Options from the input, within what the service accepts (its constructor throws otherwise:
    // a finding); durations are ticks of the harness's clocks.
    void service_create(input_reader& in) {
        const std::uint8_t serves = in.byte();
        background_compactor_options options;
        options.high_watermark = in.byte() % 101;
        options.low_watermark = in.byte() % (options.high_watermark + 1);
        const std::uint8_t thresholds = in.byte();
        options.source_high_frames = 1 + thresholds % 16;
        options.source_low_frames = (thresholds >> 4) % options.source_high_frames;
        options.check_interval = std::chrono::nanoseconds(1 + in.byte() % 32);
        const std::uint8_t forced = in.byte();
        options.forced_interval = std::chrono::nanoseconds(forced % 4 == 0 ? 0 : forced % 64);
        options.cpu_percent_min = 1 + in.byte() % 100;
        options.cpu_percent_max =
            options.cpu_percent_min + in.byte() % (101 - options.cpu_percent_min);
        options.cycle = std::chrono::nanoseconds(1 + in.byte() % 64);
        const std::uint8_t pass = in.byte();
        options.pass_duration = std::chrono::nanoseconds(1 + pass % 8);
        options.pass_frames = (pass >> 3) % 9;
        const std::uint8_t how = in.byte();
        options.mode = mode_of(how);
        options.strategy = strategy_of(how);
        options.max_backoff_shift = (how >> 2) % 7;
        options.release_free_memory = (how & 0x20) != 0;
        options.release_min_order = static_cast<int>(in.byte() % (arena_type::max_order + 2)) - 1;
        retire_service();
        service_options_ = options;
        service_sources_ = serves & 0x1f;
        service_arena_ = (serves & 0x20) == 0;
        make_service();
    }

    void make_service() {
        background_clocks clocks;
        clocks.wall = [this] { return std::chrono::nanoseconds(service_wall_); };
        clocks.thread_cpu = [this] { return std::chrono::nanoseconds(++service_cpu_); };
        service_.emplace(service_options_, std::move(clocks));
        if (service_arena_) {
            service_->add_arena(arena_);
        }
        const auto serve = [this](auto& side) {
            if ((service_sources_ & side.touch) != 0) {
                service_->add_source(*side.pool);
            }
        };
        for_each_store(serve);
        on_each_side(serve);
        service_woken_ = false;
    }

    // Destroys the service (between steps it holds nothing: a running arena compaction ends).
    void retire_service() {
        if (!service_) {
            return;
        }
        service_retired_moved_ += service_->stats().frames_moved;
        service_.reset();
        after_compaction();
    }

    // What the owners saw, fresh (check_invariants reads the pools' statistics as of their last
    // check).
    [[nodiscard]] compaction_sums owners_now() {
        compaction_sums seen;
        balloon_stats balloons = retired_;
        for (const auto& balloon : balloons_) {
            const balloon_stats stats = balloon->stats();
            balloons.migrated += stats.migrated;
            balloons.shrunk_on_replace += stats.shrunk_on_replace;
            balloons.replace_refused += stats.replace_refused;
        }
        seen.migrated = answers_.migrations_succeeded + balloons.migrated + records_.migrated() +
                        plains_.migrated();
        seen.released = answers_.released_while_isolated + balloons.shrunk_on_replace +
                        retired_.released_isolated + records_.released() + plains_.released();
        seen.isolated = answers_.isolations_accepted + balloons.migrated +
                        balloons.shrunk_on_replace + balloons.replace_refused;
        for_each_store([&](auto& side) {
            const auto stats = side.pool->stats();
            seen.migrated += stats.frames_migrated;
            seen.released += stats.frames_released_while_isolated;
        });
        return seen;
    }

    // Frames a compaction holds isolated whose owner released them meanwhile (check_invariants'
    // isolated_released).
    [[nodiscard]] std::size_t held_released_now() {
        std::size_t held = 0;
        for (std::size_t index = 0; index < arena_.frame_count(); ++index) {
            const frame& f = arena_.frame_at(index);
            held += !arena_.is_free(index) && f.is_isolated() && movable_ops(f) == nullptr ? 1 : 0;
        }
        return held;
    }

    // The objects moved and frames freed by the compaction of the pools the service serves.
    struct source_counts {
        std::size_t objects_moved = 0;
        std::size_t frames_freed = 0;
    };
    [[nodiscard]] source_counts served_sources_now() {
        source_counts counts;
        const auto add = [&](auto& side) {
            if ((service_sources_ & side.touch) != 0) {
                const auto stats = side.pool->stats();
                counts.objects_moved += stats.objects_moved;
                counts.frames_freed += stats.frames_freed_by_compaction;
            }
        };
        for_each_store(add);
        on_each_side(add);
        return counts;
    }

    // One step(), checked against what the owners and pools saw in it.
    background_step service_step() {
        const background_compactor_stats before = service_->stats();
        const compaction_sums owners_before = owners_now();
        const compaction_sums finished_before = finished_;
        const source_counts sources_before = served_sources_now();
        const std::size_t held_released_before = held_released_now();
        const bool episode_before = before.last_reason == background_compactor_reason::cpu_budget;
        const bool woken = service_woken_ && !episode_before;
        touched_ |= service_sources_; // compacted as sources
        service_stepping_ = true;
        const background_step result = service_->step();
        service_stepping_ = false;
        ++totals.service_steps;
        const background_compactor_stats after = service_->stats();
        totals.service_episodes += after.episodes - before.episodes;
        if (!episode_before) {
            service_woken_ = false;
        }
        expect(after.steps == before.steps + 1 && after.last_reason == result.reason &&
                   result.sleep.count() >= 0 &&
                   static_cast<std::uint64_t>(result.sleep.count()) == after.last_sleep_ns,
               "the service's stats do not count the step or say what it answered");
        expect(after.episodes ==
                   after.episodes_by_watermark + after.episodes_by_wake + after.episodes_by_period,
               "the service's episodes differ from the sum of their causes");
        expect(!woken || after.episodes_by_wake == before.episodes_by_wake + 1,
               "a step after wake() did not start an episode");
        // Frames: its arena compactions moved what the owners saw move (less nested compactions);
        // isolations and releases it does not count stand for it in check_invariants' sums.
        const compaction_sums owners_after = owners_now();
        const std::size_t moved = after.frames_moved - before.frames_moved;
        expect(moved == (owners_after.migrated - owners_before.migrated) -
                            (finished_.migrated - finished_before.migrated),
               "the service's frames_moved differs from the migrations its owners saw");
        totals.migrated += moved;
        // Released: what the owners saw, less what nested compactions counted and what the
        // incremental compaction holds released (it counts those when it puts them back); exact,
        // so the sums' equation stays exact (unsigned: it wraps as the equation does).
        // Isolated: every isolation the owners saw (nested compactions also isolate pool frames,
        // which the owners' count leaves out, so no difference is exact; the sums' inequality
        // then stays sound).
        service_unseen_.released += (owners_after.released - owners_before.released) -
                                    (finished_.released - finished_before.released) -
                                    (held_released_now() - held_released_before);
        service_unseen_.isolated += owners_after.isolated - owners_before.isolated;
        // Sources: the objects and frames it counts are its pools' (an owner's callback action may
        // compact a pool too).
        const source_counts sources_after = served_sources_now();
        const std::size_t objects = sources_after.objects_moved - sources_before.objects_moved;
        const std::size_t freed = sources_after.frames_freed - sources_before.frames_freed;
        const std::size_t counted_objects = after.objects_moved - before.objects_moved;
        const std::size_t counted_freed = after.frames_freed - before.frames_freed;
        expect(counted_objects <= objects && counted_freed <= freed &&
                   (action_ != callback_action::none ||
                    (counted_objects == objects && counted_freed == freed)),
               "the service's objects_moved or frames_freed differ from its pools' counts");
        if (result.reason == background_compactor_reason::below_watermarks) {
            expect(after.episodes == before.episodes && moved == 0 && counted_freed == 0,
                   "a step below the watermarks compacted");
            expect(!service_arena_ ||
                       arena_.fragmentation_score() <= service_options_.high_watermark,
                   "the service slept below the watermarks with the arena's score above high");
            const auto quiet = [this](auto& side) {
                if ((service_sources_ & side.touch) != 0) {
                    if constexpr (requires { side.pool->compactable_frames(); }) {
                        expect(side.pool->compactable_frames() <
                                   service_options_.source_high_frames,
                               "the service slept below the watermarks with a source at its "
                               "threshold");
                    }
                }
            };
            for_each_store(quiet);
            on_each_side(quiet);
        }
        // An episode begun and ended in this step, undisturbed: the arena at its low watermark.
        if (result.reason == background_compactor_reason::low_watermark_reached &&
            !episode_before && service_arena_ && plan_unobstructed()) {
            expect(arena_.fragmentation_score() <= service_options_.low_watermark,
                   "the service ended an episode at the low watermark above it");
        }
        after_compaction(); // pages moved; contents; pinned pages, objects and mappings unmoved
        return result;
    }

    // ---- the engine itself ----------------------------------------------------------------------
    // Isolates up to `count` movable frames (owner pages and balloon frames), scanning the arena
    // from `first`, onto `list`.
    std::size_t isolate_some(frame_list& list, std::size_t count, std::size_t first,
                             migrate_mode mode) {
        std::size_t isolated = 0;
        for (std::size_t n = 0; n < arena_.frame_count() && isolated < count; ++n) {
            frame& f = arena_.frame_at((first + n) % arena_.frame_count());
            if (isolate_movable_frame(f, mode)) {
                list.push_back(f);
                ++isolated;
            }
        }
        return isolated;
    }

    // Targets from the arena that run out after `limit` allocations (0: never).
    struct limited_targets {
        arena_type& arena;
        std::size_t limit;
        std::size_t allocated = 0;
        bool answered_null = false;
        frame* allocate(const frame& /*source*/) noexcept {
            frame* f = nullptr;
            if (limit == 0 || allocated < limit) {
                f = arena.try_allocate(0, frame_kind::movable);
            }
            allocated += f != nullptr ? 1 : 0;
            answered_null = answered_null || f == nullptr;
            return f;
        }
        void free(frame& f) noexcept { arena.free_frame(f); }
    };

    void migrate_direct(input_reader& in) {
        const std::size_t count = 1 + in.byte() % 16;
        const std::size_t first = in.byte();
        const migrate_mode mode = mode_of(in.byte());
        limited_targets targets{arena_, in.byte() % 8u};
        frame_list list;
        const std::size_t isolated = isolate_some(list, count, first, mode);
        may_hold_locks_ = mode == migrate_mode::async;
        const migrate_stats stats = migrate_frames(list, targets, mode);
        may_hold_locks_ = false;
        expect(stats.left_isolated == list.size() && (mode == migrate_mode::async || list.empty()),
               "migrate_frames left frames isolated (only async may, and must say so)");
        expect(stats.succeeded + stats.released + stats.put_back + stats.left_isolated == isolated,
               "migrate_frames lost track of a frame");
        expect(stats.target_exhausted == targets.answered_null,
               "migrate_frames' target_exhausted differs from whether allocate answered null");
        // Frames left isolated (their lock was held) go back now that nothing holds it.
        release_held_locks();
        const std::size_t left = list.size();
        const std::size_t returned = putback_movable_frames(list, targets);
        finished_.isolated += isolated;
        finished_.migrated += stats.succeeded;
        finished_.released += stats.released + (left - returned);
        totals.migrated += stats.succeeded;
        after_compaction();
    }

    void isolate_putback(input_reader& in) {
        const std::size_t count = 1 + in.byte() % 16;
        const std::size_t first = in.byte();
        const bool one_by_one = (in.byte() & 1) != 0;
        frame_list list;
        const std::size_t isolated = isolate_some(list, count, first, migrate_mode::sync);
        std::size_t returned = 0;
        if (one_by_one) {
            while (frame* f = list.pop_front()) {
                if (putback_movable_frame(*f) == putback_result::released) {
                    arena_.free_frame(*f);
                } else {
                    ++returned;
                }
            }
        } else {
            arena_targets<arena_type> targets{arena_};
            returned = putback_movable_frames(list, targets);
        }
        finished_.isolated += isolated;
        finished_.released += isolated - returned;
        after_compaction();
    }

    // ---- invariants -----------------------------------------------------------------------------
    void check_invariants() {
        arena_.check_invariants(); // the arena's own: blocks, free lists, counts, marks
        // The compactors' counts (checked against what the owners saw at the end).
        compaction_sums sums = finished_;
        if (incremental_running_) {
            sums.add(incremental_.stats());
        }
        sums.migrated += service_retired_moved_ + (service_ ? service_->stats().frames_moved : 0);
        sums.isolated += service_unseen_.isolated;
        sums.released += service_unseen_.released;
        std::size_t balloon_migrated = retired_.migrated;
        std::size_t balloon_shrunk = retired_.shrunk_on_replace;
        std::size_t balloon_refused = retired_.replace_refused;
        for (const auto& balloon : balloons_) {
            const balloon_stats stats = balloon->stats();
            balloon_migrated += stats.migrated;
            balloon_shrunk += stats.shrunk_on_replace;
            balloon_refused += stats.replace_refused;
        }
        for_each_store([](auto& side) { side.scanned = 0; });
        on_each_side([](auto& side) { side.scanned = 0; });
        const std::size_t pages = live_.size();
        std::size_t lent = 0;
        for (std::size_t b = 0; b < balloon_count; ++b) {
            const balloon_type& balloon = *balloons_[b];
            const host_type& host = hosts_[b];
            const balloon_stats stats = balloon.stats();
            expect(balloon.size() == balloon_sizes_[b], "balloon size differs from the shadow");
            expect(balloon.isolated_count() == 0, "a balloon frame is isolated between ops");
            expect(host.held.size() == balloon_sizes_[b], "host holds a different count");
            expect(host.double_lends == 0 && host.unknown_returns == 0,
                   "a host was lent a frame twice or handed back one it did not hold");
            expect(stats.inflated - stats.deflated - stats.shrunk_on_replace == balloon_sizes_[b],
                   "balloon counters do not add up to its size");
            lent += balloon_sizes_[b];
        }
        // Every frame: not locked; free ones are clean; movable ones belong to the owner or a
        // balloon and hold their allocation reference. Only an async incremental compaction
        // whose frame locks were held may leave frames isolated between operations (owner pages,
        // or frames their owner released meanwhile, which it will free).
        std::size_t owned_by_owner = 0;
        std::size_t isolated_pages = 0;
        std::size_t isolated_released = 0;
        std::size_t owned_by_pool = 0;
        std::size_t owned_by_object_pools = 0;
        std::array<std::size_t, balloon_count> owned_by_balloon{};
        std::size_t stray = 0;
        const std::vector<bool> unmovable_at = unmovable_map();
        for (std::size_t index = 0; index < arena_.frame_count(); ++index) {
            frame& f = arena_.frame_at(index);
            expect(!f.is_locked(), "a frame is locked between operations");
            if (arena_.is_free(index)) {
                expect(f.reference_count() == 0 && f.mapping_word(std::memory_order_relaxed) == 0 &&
                           f.owner() == nullptr && !f.is_isolated(),
                       "a free frame has a reference, a mapping, an owner or is isolated");
                continue;
            }
            const bool isolated = f.is_isolated();
            if (isolated) {
                expect(incremental_running_ && incremental_request_.mode == migrate_mode::async,
                       "a frame is isolated between operations and no compaction holds it");
                expect(f.reference_count() == 2, "an isolated frame's reference count is not 2");
                if (movable_ops(f) == nullptr) {
                    expect(is_movable(f) && f.owner() == nullptr,
                           "an isolated frame has no operations but is not released");
                    ++isolated_released;
                    continue;
                }
                expect(f.owner() == static_cast<const void*>(&owner_),
                       "a frame other than an owner page is isolated between operations");
                ++isolated_pages;
            }
            if (movable_ops(f) == nullptr) {
                // An unmovable allocation (or a frame inside one), or a frame allocated to
                // nobody: a target a compactor still holds.
                stray += unmovable_at[index] ? 0 : 1;
                continue;
            }
            expect(isolated || f.reference_count() == 1,
                   "a movable frame's reference count is not 1");
            if (f.owner() == static_cast<const void*>(&owner_)) {
                expect(movable_ops(f) == &operations_for<owner_type>, "owner frame, wrong ops");
                ++owned_by_owner;
                continue;
            }
            bool store_frame = false;
            for_each_store([&](auto& side) {
                if (!store_frame && side.owns(f)) {
                    store_frame = true;
                    side.scanned += mix(index + 1);
                }
            });
            if (store_frame) {
                ++owned_by_pool; // ops, isolation and the count: the store's check_invariants()
                continue;
            }
            if (f.owner() == static_cast<const void*>(&*records_.pool)) {
                records_.scanned += mix(index + 1);
                ++owned_by_object_pools; // the same: check_object_side
                continue;
            }
            if (f.owner() == static_cast<const void*>(&*plains_.pool)) {
                plains_.scanned += mix(index + 1);
                ++owned_by_object_pools;
                continue;
            }
            bool known = false;
            for (std::size_t b = 0; b < balloon_count; ++b) {
                if (f.owner() == static_cast<const void*>(&*balloons_[b])) {
                    expect(movable_ops(f) == &operations_for<balloon_type> &&
                               hosts_[b].held.count(&f) == 1,
                           "a balloon frame the host does not hold");
                    ++owned_by_balloon[b];
                    known = true;
                }
            }
            expect(known, "a movable frame owned by nobody the harness knows");
        }
        expect(owned_by_owner == pages, "frames owned by the owner != live pages");
        // A pool whose frames changed is touched; the touched ones: their own invariants and
        // counts (check_pool; object pools: check_object_side, below). A frame migrated for a
        // pool touches every pool: moved away and back, a pool's frames can be the set they were.
        const std::size_t pool_migrations =
            sums.migrated - answers_.migrations_succeeded - balloon_migrated;
        if (pool_migrations != pool_migrations_seen_) {
            pool_migrations_seen_ = pool_migrations;
            touched_ = touch_everything;
        }
        const auto note_frames = [this](auto& side) {
            if (side.scanned != side.frames_fingerprint) {
                side.frames_fingerprint = side.scanned;
                touched_ |= side.touch;
            }
        };
        for_each_store(note_frames);
        on_each_side(note_frames);
        for_each_store([this](auto& side) {
            if ((touched_ & side.touch) != 0) {
                side.check_pool();
            }
        });
        isolated_between_ops_ = isolated_pages + isolated_released;

        // Frame accounting.
        const std::size_t unmovable = unmovable_frames();
        const std::size_t free = arena_.free_frames();
        std::size_t stores_migrated = 0;
        std::size_t stores_released_while_isolated = 0;
        for_each_store([&](const auto& side) {
            stores_migrated += side.frames_migrated;
            stores_released_while_isolated += side.frames_released_while_isolated;
        });
        const std::size_t pool_frames = owned_by_pool; // == stats().frames_in_use: checked
        on_each_side([this](auto& side) { check_object_side(side, (touched_ & side.touch) != 0); });
        const std::size_t object_frames = records_.seen.frames + plains_.seen.frames;
        expect(owned_by_object_pools == object_frames,
               "frames owned by the object pools differ from their frame counts");
        // (A frame an async pass left isolated and its owner released joins the targets when a
        // later pass puts it back; the pass gives it back before it answers, even `done`.)
        expect(stray == 0,
               "a frame is allocated to nobody between operations (a target a compaction "
               "kept after its pass)");
        totals.stray_frames += stray;
        stray_between_ops_ = stray;
        expect(free + pages + unmovable + lent + isolated_released + pool_frames + object_frames +
                       stray ==
                   arena_.frame_count(),
               "free + pages + unmovable + balloon + released isolated (+ pool, object pools) "
               "frames != the arena's frames (leak?)");
        expect(owner_.resident_count() == pages - isolated_pages,
               "owner's resident list differs from the shadow");
        for (std::size_t b = 0; b < balloon_count; ++b) {
            expect(owned_by_balloon[b] == balloon_sizes_[b], "frames owned by a balloon != size");
        }

        // Pages stay where they were unless a compaction ran (after_compaction updates them).
        for (std::size_t page : live_) {
            expect(owner_.frame_of(page) == pages_[page].where, "a page moved outside compaction");
        }
        // One page's bytes per op, round robin, besides the full checks after compactions.
        if (!live_.empty()) {
            check_page(live_[rotating_check_++ % live_.size()]);
        }

        // Every isolation the owner accepted ended exactly once: migrated, put back, or freed
        // because the owner released the page meanwhile.
        expect(answers_.isolations_accepted ==
                   answers_.migrations_succeeded + static_cast<std::size_t>(owner_.putback_calls) +
                       answers_.released_while_isolated + isolated_pages,
               "an owner isolation was not ended exactly once");
        // The compactors' counts agree with what the owners saw.
        expect(sums.migrated == answers_.migrations_succeeded + balloon_migrated + stores_migrated +
                                    records_.retired_migrated + records_.seen.frames_migrated +
                                    plains_.retired_migrated + plains_.seen.frames_migrated,
               "compactors' migrated != owner, balloon and pool migrations");
        expect(sums.released + isolated_released ==
                   answers_.released_while_isolated + balloon_shrunk + retired_.released_isolated +
                       stores_released_while_isolated + records_.retired_released +
                       records_.seen.frames_released_while_isolated + plains_.retired_released +
                       plains_.seen.frames_released_while_isolated,
               "compactors' released != frames released while isolated");
        expect(sums.isolated >= answers_.isolations_accepted + balloon_migrated + balloon_shrunk +
                                    balloon_refused,
               "compactors isolated fewer frames than the owners saw leave");
    }

    // ---- teardown -------------------------------------------------------------------------------
    void tear_down() {
        retire_service();
        service_sources_ = 0;
        service_arena_ = false;
        for_each_store([](auto& side) { side.unmap(); });
        incremental_end();
        touched_ = touch_everything;
        check_invariants();
        for_each_store([](auto& side) { side.free_all(); });
        // The object pools go with their objects in them: each destroyed once (object_recreate
        // checks), every frame back.
        on_each_side([this](auto& side) {
            check_all_objects(side);
            object_recreate(side);
            side.pool.reset();
        });
        expect(keyed_record::counts.alive() == 0, "keyed_records outlived their pool");
        // A balloon destroyed with frames lent gives them all back.
        for (std::size_t b = 0; b < balloon_count; ++b) {
            destroy_balloon(b, /*in_callback=*/false);
        }
        while (!live_.empty()) {
            release_page(live_.back());
        }
        while (!unmovable_.empty()) {
            free_unmovable(unmovable_.size() - 1);
        }
        const auto stats = arena_.stats();
        expect(stats.free_frames == arena_.frame_count(), "frames leaked at teardown");
        expect(stats.free_blocks_of_order(arena_type::max_order) == arena_.block_count(),
               "free frames did not merge back into max-order blocks");
    }

    arena_type arena_;
    test::arena_frames<arena_type> frames_{arena_};
    owner_type owner_{frames_};
    // Every compressed_store the harness drives, through the concept (pool_* ops: zspage_pool;
    // store_* ops: the one a selector byte names): tests/support/compressed_stores.hpp's list,
    // so a store added there is fuzzed too.
    template <class... Stores>
    using sides_of = std::tuple<store_side<Stores>...>;
    using store_sides = sides_of<MOVABLE_COMPRESSED_STORES_OVER(arena_type)>;
    static constexpr std::size_t store_count = std::tuple_size_v<store_sides>;
    store_sides stores_;                // their pools are made in the constructor
    object_side<keyed_record> records_; // made in the constructor; object_recreate remakes them
    object_side<plain_record> plains_;
    std::array<host_type, balloon_count> hosts_;
    std::array<std::optional<balloon_type>, balloon_count> balloons_;
    compactor_type one_shot_;
    compactor_type incremental_;
    nested_compactor_type nested_; // runs from inside owner callbacks

    // shadow
    std::vector<page_shadow> pages_; // by page number
    std::vector<std::size_t> live_;  // live page numbers
    std::vector<unmovable_block> unmovable_;
    std::array<std::size_t, balloon_count> balloon_sizes_{};
    owner_answers answers_;
    balloon_stats retired_; // summed over destroyed balloons (released_isolated: by their
                            // destructors to a running compaction)
    bool in_nested_compaction_ = false;
    bool in_host_callback_ = false;
    bool may_hold_locks_ = false; // an async pass or migrate_frames call is running
    std::vector<frame*> held_;    // frame locks hold_lock took, released after each op
    std::size_t isolated_between_ops_ = 0;
    std::size_t stray_between_ops_ = 0; // frames allocated to nobody (check_invariants)
    compaction_sums finished_;          // compactions that ended
    compact_request incremental_request_;
    bool incremental_running_ = false;
    bool incremental_done_ = false;          // a pass of the running compaction answered done
    bool incremental_gains_nothing_ = false; // least_moves planned no region: nothing may move
    bool timing_ = false; // a one-shot compaction or incremental pass on fake_clock is running
    std::size_t rotating_check_ = 0;
    // The background service, its clocks (wall: nanosecond ticks, advanced by the sleeps
    // service_step asks for and one a page its step migrates; thread CPU: one a read), what it
    // serves (touch bits of the pools; the arena) and what it did over the input.
    std::optional<background_compactor> service_;
    background_compactor_options service_options_;
    touch_mask service_sources_ = 0;
    bool service_arena_ = false;
    bool service_stepping_ = false;
    bool service_woken_ = false; // wake() since the last step that began outside an episode
    std::int64_t service_wall_ = 0;
    std::int64_t service_cpu_ = 0;
    std::size_t service_retired_moved_ = 0; // frames_moved of the services destroyed
    // Isolations and releases the owners saw in the service's steps, less a nested compaction's:
    // the service counts neither, so they stand for it in the compactors' sums.
    compaction_sums service_unseen_;
    touch_mask touched_ = touch_everything; // pools the running operation may change
    touch_mask carried_touch_ = 0;
    std::size_t pool_migrations_seen_ = 0; // frames the compactors migrated for pools (check) //
                                           // pools changed after the last operation's checks

    // knobs
    periodic refuse_isolate_;
    periodic answer_retry_;
    periodic answer_busy_;
    periodic answer_failed_;
    callback_action action_ = callback_action::none;
    bool action_on_migrate_ = false;
    periodic action_period_;
    std::size_t action_choice_ = 0;
    std::array<host_faults, balloon_count> host_faults_;
};

} // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
    (void)pattern_rows();
    std::atexit(print_totals);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    input_reader in(data, size);
    const std::size_t blocks = 1 + in.byte() % max_blocks;
    ++totals.inputs;
    harness h(blocks);
    h.run(in);
    return 0;
}
