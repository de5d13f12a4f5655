// End-to-end memory efficiency, after Valkey's memefficiency test and the kernel's
// compaction_test (tools/testing/selftests/mm/compaction_test.c).
//
// Memefficiency, for every byte pool (zspage_pool, zbud_pool, z3fold_pool) and for object_pool:
// fill at least 40 MiB of live objects, free objects at random until the memory the pool holds
// is at least 1.4 times what is live, then compact (the pool's compact(), a full arena
// compaction, discard_free_memory(0)) while a worker thread keeps reading and rewriting live
// objects, and require the ratio below 1.1 with every object's bytes unchanged.
//
// What "memory" means here: the resident bytes of the arena's data mapping, counted with
// mincore() (support/resident_pages.hpp), i.e. the frames the pool occupies. Not the process's
// RSS: the tests run under AddressSanitizer and ThreadSanitizer, whose shadow memory swamps it.
// Not the pools' metadata either (handle tables, zspage and frame descriptors, each in its own
// mapping or on the heap): that is a per-object cost compaction does not change, and this test is
// about the fragmentation of the frames. The arena is fresh, so its resident bytes start at 0 and
// the figure is the growth. Each fragmentation round discards the arena's free frames before it
// measures, so the 1.4 is fragmentation inside the pool's frames, which only compaction undoes.
//
// The compaction_test analogue: an arena with 1% unmovable frames sprinkled at random among
// movable ones, most movable ones then freed; allocating max-order blocks with direct
// compaction (an order-targeted compaction when an allocation fails) must get every block the
// unmovable frames leave possible.
#include <movable/compaction.hpp>
#include <movable/models/object_pool.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <latch>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "support/arena_frames.hpp"
#include "support/compressed_stores.hpp"
#include "support/resident_pages.hpp"

using namespace movable;
using movable::test::arena_resident_bytes;

namespace {

using efficiency_arena = frame_arena<4096, 10>;
constexpr std::size_t mebibyte = std::size_t{1} << 20;
constexpr std::size_t fill_bytes = 40 * mebibyte;
constexpr std::size_t arena_bytes = 96 * mebibyte; // reserved; only what the pool touches counts
constexpr double fragmented_ratio = 1.4;
constexpr double compacted_ratio = 1.1;

// The objects' contents: a xorshift stream of `seed`, eight bytes a step (the suites'
// fill_pattern goes a byte a step, which 40 MiB under the sanitizers makes slow).
template <class Step>
void for_each_word(std::size_t bytes, std::uint32_t seed, Step step) {
    std::uint64_t x = (std::uint64_t{seed} + 1) * 0x9e3779b97f4a7c15ull;
    for (std::size_t at = 0; at < bytes; at += sizeof x) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        step(at, x, std::min(sizeof x, bytes - at));
    }
}
void fill_pattern(std::span<std::byte> bytes, std::uint32_t seed) {
    for_each_word(bytes.size(), seed, [&](std::size_t at, std::uint64_t word, std::size_t n) {
        std::memcpy(bytes.data() + at, &word, n);
    });
}
std::vector<std::byte> pattern(std::size_t size, std::uint32_t seed) {
    std::vector<std::byte> bytes(size);
    fill_pattern(bytes, seed);
    return bytes;
}
bool holds_pattern(std::span<const std::byte> bytes, std::uint32_t seed) {
    bool same = true;
    for_each_word(bytes.size(), seed, [&](std::size_t at, std::uint64_t word, std::size_t n) {
        same = same && std::memcmp(bytes.data() + at, &word, n) == 0;
    });
    return same;
}

// FNV-1a, eight bytes a step (a byte a step for the tail).
struct fnv1a {
    std::uint64_t value = 14695981039346656037ull;
    void add(std::span<const std::byte> bytes) noexcept {
        constexpr std::uint64_t prime = 1099511628211ull;
        std::size_t at = 0;
        for (; at + sizeof(std::uint64_t) <= bytes.size(); at += sizeof(std::uint64_t)) {
            std::uint64_t word = 0;
            std::memcpy(&word, bytes.data() + at, sizeof word);
            value = (value ^ word) * prime;
        }
        for (; at < bytes.size(); ++at) {
            value = (value ^ static_cast<std::uint64_t>(bytes[at])) * prime;
        }
    }
};

// Object sizes that suit each pool: zbud keeps at most 2 objects a frame and z3fold 3, in 64-byte
// chunks, so their objects are a little under half and a third of a frame (32 and 21 chunks);
// zspage_pool takes any size.
template <class Store>
std::size_t object_size(std::mt19937& rng);
template <>
std::size_t object_size<zspage_pool<efficiency_arena>>(std::mt19937& rng) {
    return std::uniform_int_distribution<std::size_t>(200, 3000)(rng);
}
template <>
std::size_t object_size<zbud_pool<efficiency_arena>>(std::mt19937& rng) {
    return std::uniform_int_distribution<std::size_t>(1985, 2048)(rng);
}
template <>
std::size_t object_size<z3fold_pool<efficiency_arena>>(std::mt19937& rng) {
    return std::uniform_int_distribution<std::size_t>(1281, 1344)(rng);
}

// A byte store and the shadow of its live objects (size and pattern seed): what the
// memefficiency run needs of a pool, also written for object_pool below.
template <class Store>
class byte_store_subject {
public:
    static std::string name() { return test::store_name<Store>; }

    byte_store_subject() : store_(std::make_unique<Store>(arena)) {}

    void add(std::mt19937& rng) {
        const std::size_t size = object_size<Store>(rng);
        const auto h = store_->allocate(size);
        const std::uint32_t seed = next_seed_++;
        store_->write(h, pattern(size, seed));
        objects_.push_back({h, size, seed});
        live_bytes_ += size;
    }
    void remove(std::size_t i) {
        store_->deallocate(objects_[i].h);
        live_bytes_ -= objects_[i].size;
        objects_[i] = objects_.back();
        objects_.pop_back();
    }
    [[nodiscard]] std::size_t count() const noexcept { return objects_.size(); }
    [[nodiscard]] std::size_t live_bytes() const noexcept { return live_bytes_; }

    // The worker's step: reads object i, checks it against its shadow, writes the same bytes
    // back. Returns whether it held its pattern. Thread-safe (the object list does not change
    // while the worker runs).
    bool read_check_rewrite(std::size_t i, std::vector<std::byte>& buffer) {
        const object& o = objects_[i];
        buffer.resize(o.size);
        store_->read(o.h, buffer);
        const bool intact = holds_pattern(buffer, o.seed);
        store_->write(o.h, buffer);
        return intact;
    }
    [[nodiscard]] bool all_intact() const {
        std::vector<std::byte> buffer;
        return std::all_of(objects_.begin(), objects_.end(), [&](const object& o) {
            buffer.resize(o.size);
            store_->read(o.h, buffer);
            return store_->size(o.h) == o.size && holds_pattern(buffer, o.seed);
        });
    }
    // FNV-1a over every object's bytes, in the order of the shadow list.
    [[nodiscard]] std::uint64_t digest() const {
        fnv1a hash;
        std::vector<std::byte> buffer;
        for (const object& o : objects_) {
            buffer.resize(o.size);
            store_->read(o.h, buffer);
            hash.add(buffer);
        }
        return hash.value;
    }
    std::size_t compact_pool() { return store_->compact(); }
    void check_invariants() const { store_->check_invariants(); }

    efficiency_arena arena{arena_bytes}; // declared first: outlives the store

private:
    struct object {
        typename Store::handle h;
        std::size_t size;
        std::uint32_t seed;
    };
    std::unique_ptr<Store> store_;
    std::vector<object> objects_;
    std::size_t live_bytes_ = 0;
    std::uint32_t next_seed_ = 1;
};

// object_pool's T: 248 bytes, not trivially relocatable (its move constructor sets `self`, so
// the pool must move it by move-construct and destroy, never by a byte copy); `self` says
// whether every move went through it.
struct record {
    static constexpr std::size_t payload_bytes = 236;
    const record* self;
    std::uint32_t seed;
    std::array<std::byte, payload_bytes> payload;

    explicit record(std::uint32_t s) noexcept : self(this), seed(s), payload{} {
        fill_pattern(payload, s);
    }
    record(record&& other) noexcept : self(this), seed(other.seed), payload(other.payload) {}
    record(const record&) = delete;
    record& operator=(const record&) = delete;
    record& operator=(record&&) = delete;
    ~record() = default;

    [[nodiscard]] bool intact(std::uint32_t expected_seed) const {
        return self == this && seed == expected_seed && holds_pattern(payload, seed);
    }
};
static_assert(sizeof(record) == 248);

class object_pool_subject {
public:
    using pool_type = object_pool<record, efficiency_arena>;
    static std::string name() { return "object_pool"; }
    static_assert(!pool_type::moves_by_memcpy);

    object_pool_subject() : pool_(std::make_unique<pool_type>(arena)) {}

    void add(std::mt19937&) {
        const std::uint32_t seed = next_seed_++;
        objects_.push_back({pool_->emplace(seed), seed});
    }
    void remove(std::size_t i) {
        pool_->destroy(objects_[i].h);
        objects_[i] = objects_.back();
        objects_.pop_back();
    }
    [[nodiscard]] std::size_t count() const noexcept { return objects_.size(); }
    [[nodiscard]] std::size_t live_bytes() const noexcept { return count() * sizeof(record); }

    bool read_check_rewrite(std::size_t i, std::vector<std::byte>& buffer) {
        const object& o = objects_[i];
        return pool_->visit(o.h, [&](record& r) {
            const bool intact = r.intact(o.seed);
            buffer.assign(r.payload.begin(), r.payload.end());
            std::copy(buffer.begin(), buffer.end(), r.payload.begin());
            return intact;
        });
    }
    [[nodiscard]] bool all_intact() const {
        const pool_type& pool = *pool_;
        return std::all_of(objects_.begin(), objects_.end(), [&](const object& o) {
            return pool.visit(o.h, [&](const record& r) { return r.intact(o.seed); });
        });
    }
    [[nodiscard]] std::uint64_t digest() const {
        const pool_type& pool = *pool_;
        fnv1a hash;
        for (const object& o : objects_) {
            pool.visit(o.h, [&](const record& r) { hash.add(r.payload); });
        }
        return hash.value;
    }
    std::size_t compact_pool() { return pool_->compact(); }
    void check_invariants() const { pool_->check_invariants(); }

    efficiency_arena arena{arena_bytes}; // declared first: outlives the pool

private:
    struct object {
        pool_type::handle h;
        std::uint32_t seed;
    };
    std::unique_ptr<pool_type> pool_;
    std::vector<object> objects_;
    std::uint32_t next_seed_ = 1;
};

template <class Subject>
double resident_ratio(const Subject& s) {
    return static_cast<double>(arena_resident_bytes(s.arena)) / static_cast<double>(s.live_bytes());
}

// Reads, checks and rewrites random live objects until told to stop; counts what it did.
template <class Subject>
struct churning_reader {
    Subject& subject;
    std::atomic<bool> stop{false};
    std::atomic<std::size_t> operations{0}; // reads each followed by its write
    std::atomic<std::size_t> damaged{0};    // reads that found an object not holding its bytes
    std::atomic<bool> finished{false};
    std::latch first_write{1};

    void run() {
        std::mt19937 rng(99);
        std::uniform_int_distribution<std::size_t> pick(0, subject.count() - 1);
        std::vector<std::byte> buffer;
        while (!stop.load(std::memory_order_acquire)) {
            if (!subject.read_check_rewrite(pick(rng), buffer)) {
                damaged.fetch_add(1, std::memory_order_relaxed);
            }
            if (operations.fetch_add(1, std::memory_order_acq_rel) == 0) {
                first_write.count_down();
            }
        }
        finished.store(true, std::memory_order_release);
    }
    // Returns once the worker has finished a read and write that began after this call (or
    // has stopped): forces one of its operations between the step before and the one after.
    void wait_for_fresh_operation() const {
        const std::size_t seen = operations.load(std::memory_order_acquire);
        while (operations.load(std::memory_order_acquire) < seen + 2 &&
               !finished.load(std::memory_order_acquire)) {
            std::this_thread::yield();
        }
    }
};

// Fills, fragments and compacts `s` as the file's opening says, checks everything but the ratio
// it ends at, and returns that ratio.
template <class Subject>
double compacted_resident_ratio(Subject& s) {
    REQUIRE(arena_resident_bytes(s.arena) == 0);
    std::mt19937 rng(2024);
    while (s.live_bytes() < fill_bytes) {
        s.add(rng);
    }
    const std::size_t filled = s.count();
    const double filled_ratio = resident_ratio(s);

    // Fragment: free 5% of the filled objects at random a round, discard the arena's free frames
    // (so what stays resident is what the pool holds) and measure.
    double before = 0;
    int rounds = 0;
    while (before < fragmented_ratio && s.count() > filled / 10) {
        for (std::size_t i = 0; i < filled / 20; ++i) {
            s.remove(std::uniform_int_distribution<std::size_t>(0, s.count() - 1)(rng));
        }
        s.arena.discard_free_memory(0);
        before = resident_ratio(s);
        ++rounds;
    }
    REQUIRE(before >= fragmented_ratio);
    const std::uint64_t digest = s.digest();
    const std::size_t live = s.live_bytes();

    // The worker runs through all three phases of compaction. What is forced: the first phase
    // starts after its first read and write (the latch), and each phase after the one before has
    // seen it finish a fresh read and write, so it reads objects where each phase left them.
    // Whether an operation also overlaps a phase is up to the scheduler; the result must not
    // depend on it.
    churning_reader<Subject> worker{s};
    std::thread reader([&worker] { worker.run(); });
    worker.first_write.wait();
    const std::size_t pool_freed = s.compact_pool();
    worker.wait_for_fresh_operation();
    const compact_stats arena_stats = compactor<efficiency_arena>(s.arena).compact();
    worker.wait_for_fresh_operation();
    const std::size_t discarded = s.arena.discard_free_memory(0);
    worker.wait_for_fresh_operation();
    worker.stop.store(true, std::memory_order_release);
    reader.join();

    const double after = resident_ratio(s);
    MESSAGE(Subject::name() << ": filled " << filled << " objects, " << filled_ratio
                            << " resident/live; " << rounds << " rounds freed "
                            << filled - s.count() << ", leaving " << s.count() << " objects, "
                            << static_cast<double>(live) / static_cast<double>(mebibyte)
                            << " MiB live, ratio " << before << "; compaction: pool freed "
                            << pool_freed << " frames, arena migrated " << arena_stats.migrated
                            << ", discarded " << discarded / mebibyte << " MiB; ratio " << after
                            << " (" << arena_resident_bytes(s.arena) / mebibyte
                            << " MiB resident); worker did " << worker.operations.load()
                            << " reads and writes");
    CHECK(worker.operations.load() >= 4);
    CHECK(worker.damaged.load() == 0);
    CHECK(s.digest() == digest);
    CHECK(s.all_intact());
    s.check_invariants();
    s.arena.check_invariants();
    return after;
}

} // namespace

TEST_CASE_TEMPLATE("a byte pool fragmented to 1.4x its live bytes compacts under 1.1x, every "
                   "object intact, while a thread reads and writes them",
                   Store, MOVABLE_COMPRESSED_STORES_OVER(efficiency_arena)) {
    byte_store_subject<Store> subject;
    CHECK(compacted_resident_ratio(subject) < compacted_ratio);
}

TEST_CASE("an object pool fragmented to 1.4x its live bytes compacts under 1.1x, every object "
          "intact, while a thread reads and writes them") {
    object_pool_subject subject;
    CHECK(compacted_resident_ratio(subject) < compacted_ratio);
}

namespace {

// 64 frames per max-order block: with 1% of frames unmovable, about half the blocks hold none.
using hugepage_arena = frame_arena<4096, 6>;
constexpr std::size_t block_frames = hugepage_arena::block_frames;
constexpr std::size_t hugepage_blocks = 256;

} // namespace

TEST_CASE("direct compaction gets every max-order block that 1% sprinkled unmovable frames "
          "leave possible") {
    hugepage_arena arena(hugepage_blocks * hugepage_arena::block_bytes);
    test::arena_frames<hugepage_arena> frames{arena};
    test::arena_owner<hugepage_arena> owner(frames);
    const std::size_t frame_count = arena.frame_count();
    for (std::size_t page = 0; page < frame_count; ++page) {
        REQUIRE(owner.add_page(page) != nullptr);
    }
    std::vector<std::size_t> pages(frame_count);
    std::iota(pages.begin(), pages.end(), 0);
    std::shuffle(pages.begin(), pages.end(), std::mt19937(11));

    // 1% of the frames, at random places, become unmovable: free them, then allocate as many
    // unmovable frames, which can only land in those holes (the arena has no other free frame).
    const std::size_t unmovable_count = frame_count / 100;
    std::set<std::size_t> holes;
    for (std::size_t i = 0; i < unmovable_count; ++i) {
        holes.insert(arena.index_of(*owner.frame_of(pages[i])));
        owner.release_page(pages[i]);
    }
    std::vector<frame*> unmovable;
    std::set<std::size_t> unmovable_at;
    std::set<std::size_t> pinned_blocks;
    for (std::size_t i = 0; i < unmovable_count; ++i) {
        frame& f = arena.allocate(0, frame_kind::unmovable);
        unmovable.push_back(&f);
        unmovable_at.insert(arena.index_of(f));
        pinned_blocks.insert(arena.index_of(f) / block_frames);
    }
    REQUIRE(unmovable_at == holes);

    // Free 90% of the movable frames at random.
    const std::size_t movable_count = frame_count - unmovable_count;
    const std::size_t freed = movable_count * 9 / 10;
    for (std::size_t i = unmovable_count; i < unmovable_count + freed; ++i) {
        owner.release_page(pages[i]);
    }
    const std::size_t live_movable = movable_count - freed;

    // The most max-order blocks that can be free: the blocks holding no unmovable frame, less
    // those needed for the movable frames that do not fit in the holes of the others.
    const std::size_t clean_blocks = arena.block_count() - pinned_blocks.size();
    const std::size_t room_beside_unmovable = pinned_blocks.size() * block_frames - unmovable_count;
    const std::size_t overflow =
        live_movable > room_beside_unmovable ? live_movable - room_beside_unmovable : 0;
    const std::size_t theoretical_max = clean_blocks - (overflow + block_frames - 1) / block_frames;
    const std::size_t free_before = arena.free_block_count(hugepage_arena::max_order);

    // As the kernel's compaction_test raising nr_hugepages: allocate max-order blocks, each
    // failure answered by an order-targeted compaction, until one fails after it.
    std::vector<frame*> huge;
    {
        compactor<hugepage_arena> compaction(arena);
        compact_request request;
        request.order = static_cast<int>(hugepage_arena::max_order);
        for (;;) {
            frame* block = arena.try_allocate(hugepage_arena::max_order);
            if (block == nullptr) {
                compaction.compact(request);
                block = arena.try_allocate(hugepage_arena::max_order);
            }
            if (block == nullptr) {
                break;
            }
            huge.push_back(block);
        }
    }
    MESSAGE(unmovable_count << " unmovable frames in " << pinned_blocks.size() << " of "
                            << arena.block_count() << " blocks, " << live_movable
                            << " movable frames live; max-order blocks free before compaction "
                            << free_before << ", allocated " << huge.size()
                            << ", theoretical maximum " << theoretical_max);
    CHECK(huge.size() >= theoretical_max);

    for (std::size_t i = unmovable_count + freed; i < frame_count; ++i) {
        CHECK(owner.page_intact(pages[i]));
    }
    for (frame* f : unmovable) {
        CHECK_FALSE(arena.is_free(arena.index_of(*f)));
        arena.deallocate(*f);
    }
    for (frame* block : huge) {
        arena.deallocate(*block, hugepage_arena::max_order);
    }
    owner.release_all();
    arena.check_invariants();
}
