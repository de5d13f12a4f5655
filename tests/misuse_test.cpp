// Randomised misuse, one forked child per case (support/death_test.hpp). For every model a seeded
// generator plays valid usage first (random allocations and frees, contents checked), then one
// misuse drawn at random: a stale handle used (read, size, map or free), a double free, a forged
// handle (garbage, a live slot with another generation, a slot never handed out), the pool
// destroyed while an object is mapped or pinned, the arena destroyed before the pool or balloon
// that uses it. Each case must abort with the contract message naming the call: never return,
// never die of another signal.
//
// Built with MOVABLE_HARDENED (tests/CMakeLists.txt), so the contract checks are on whatever the
// build type.
#include <movable/frame_arena.hpp>
#include <movable/models/balloon.hpp>
#include <movable/models/object_pool.hpp>

#include <doctest/doctest.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "support/compressed_stores.hpp"
#include "support/death_test.hpp"

using namespace movable;

static_assert(detail::contracts_enabled, "misuse_test must be built with MOVABLE_HARDENED");

namespace {

using arena_type = test::store_arena;
constexpr std::size_t arena_bytes = 4 * arena_type::block_bytes;
// Cases per model; MOVABLE_MISUSE_CASES=n in the environment runs n instead (longer sweeps).
int cases_per_model() {
    const char* wanted = std::getenv("MOVABLE_MISUSE_CASES");
    return wanted != nullptr && std::atoi(wanted) > 0 ? std::atoi(wanted) : 160;
}

enum class misuse : std::uint8_t {
    stale_handle,      // freed, then used
    double_free,       // freed twice
    forged_garbage,    // from_value of random bits
    forged_generation, // a live handle's slot with another generation
    forged_slot,       // a slot the pool never handed out
    destroy_pinned,    // the pool destroyed while an object is mapped or pinned
    destroy_arena,     // the arena destroyed before the pool that uses it
    count,
};
constexpr std::array<const char*, static_cast<std::size_t>(misuse::count)> misuse_names = {
    "stale handle", "double free",          "forged garbage",       "forged generation",
    "forged slot",  "destroy while pinned", "arena destroyed first"};

// The calls a misused handle goes to.
enum class handle_call : std::uint8_t { read, size, map, free };

// One case: drawn in the parent from its seed, replayed in the child from the same seed.
struct misuse_case {
    std::uint64_t seed = 0;
    misuse kind = misuse::stale_handle;
    handle_call call = handle_call::read;
};

misuse_case draw_case(std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    misuse_case c;
    c.seed = seed;
    c.kind = static_cast<misuse>(rng() % static_cast<std::uint64_t>(misuse::count));
    c.call =
        c.kind == misuse::double_free ? handle_call::free : static_cast<handle_call>(rng() % 4);
    return c;
}

// A random handle value that is none of `live` (and not the empty handle).
template <class Handle>
std::uint64_t garbage_value(std::mt19937_64& rng, const std::vector<Handle>& live) {
    for (;;) {
        std::uint64_t value = rng();
        if (rng() % 2 == 0) {
            value &= 0xffffffff00000fffULL; // a small slot, likely inside the table
        }
        bool names_live = value == 0;
        for (const Handle& h : live) {
            names_live = names_live || h.value() == value;
        }
        if (!names_live) {
            return value;
        }
    }
}

// A live handle's slot with another generation.
std::uint64_t other_generation(std::mt19937_64& rng, std::uint64_t live) {
    const std::uint32_t generation = detail::handle_value::generation(live);
    const auto delta = static_cast<std::uint32_t>(rng() % 3 == 0 ? 0xffffffff : 1 + rng() % 1000);
    return detail::handle_value::make(detail::handle_value::slot(live), generation + delta);
}

// A slot beyond every slot the pool handed out (and beyond a table chunk, or far beyond).
template <class Handle>
std::uint64_t unused_slot(std::mt19937_64& rng, const std::vector<Handle>& handed_out) {
    std::uint32_t highest = 0;
    for (const Handle& h : handed_out) {
        highest = std::max(highest, detail::handle_value::slot(h.value()));
    }
    const std::uint32_t beyond = rng() % 2 == 0 ? 4096 + static_cast<std::uint32_t>(rng() % 4096)
                                                : 0x10000000 + static_cast<std::uint32_t>(rng());
    return detail::handle_value::make(highest + beyond, static_cast<std::uint32_t>(rng() % 4));
}

// Valid usage before and between misuses: up to max_steps random allocations and frees (two in
// five steps free one when anything is live), then allocations until something is live.
template <class Live, class Add, class Remove>
void random_churn(std::mt19937_64& rng, std::size_t max_steps, const std::vector<Live>& live,
                  Add&& add, Remove&& remove_one) {
    const std::size_t steps = 1 + rng() % max_steps;
    for (std::size_t i = 0; i < steps; ++i) {
        if (!live.empty() && rng() % 5 < 2) {
            (void)remove_one();
        } else {
            add();
        }
    }
    while (live.empty()) {
        add();
    }
}

// ---- byte stores ------------------------------------------------------------------------------

template <class Store>
struct store_session {
    using handle = typename Store::handle;
    struct stored {
        handle h;
        std::uint32_t seed;
        std::size_t size;
    };

    std::mt19937_64 rng;
    std::unique_ptr<arena_type> arena = std::make_unique<arena_type>(arena_bytes);
    std::unique_ptr<Store> pool = std::make_unique<Store>(*arena);
    std::vector<stored> live;
    std::vector<handle> handed_out;

    explicit store_session(std::uint64_t seed) : rng(seed) {}

    void add() {
        const std::size_t largest = std::min<std::size_t>(pool->max_object_size(), 1500);
        const std::size_t size = 1 + rng() % largest;
        const handle h = pool->try_allocate(size);
        if (!h) {
            return; // arena full: valid usage goes on with frees
        }
        const auto seed = static_cast<std::uint32_t>(rng());
        const std::vector<std::byte> bytes = test::pattern(size, seed);
        pool->write(h, bytes);
        live.push_back({h, seed, size});
        handed_out.push_back(h);
    }
    handle remove_one() {
        const std::size_t i = rng() % live.size();
        const stored s = live[i];
        live[i] = live.back();
        live.pop_back();
        std::vector<std::byte> out(s.size);
        pool->read(s.h, out);
        if (!test::holds_pattern(out, s.seed)) {
            std::abort(); // not a contract message: the case fails
        }
        pool->deallocate(s.h);
        return s.h;
    }
    // Random allocations and frees, ending with at least one live object.
    void valid_usage() {
        random_churn(
            rng, 150, live, [this] { add(); }, [this] { return remove_one(); });
    }
    void use(handle h, handle_call call) {
        switch (call) {
        case handle_call::read: {
            std::array<std::byte, 1> out{};
            pool->read(h, out);
            break;
        }
        case handle_call::size:
            (void)pool->size(h);
            break;
        case handle_call::map:
            (void)pool->map(h, store_access::read);
            break;
        case handle_call::free:
            pool->deallocate(h);
            break;
        }
    }
};

constexpr std::array<const char*, 4> store_call_names = {"read", "size", "map", "deallocate"};

// The contract message a case must abort with (its start: it names the call).
template <class Store>
std::string expected_store_message(const misuse_case& c) {
    const std::string name = test::store_name<Store>;
    switch (c.kind) {
    case misuse::destroy_pinned:
        return name + "::~" + name + ": an object is still mapped";
    case misuse::destroy_arena:
        return "frame_arena::~frame_arena: the arena";
    default:
        return name + "::" + store_call_names[static_cast<std::size_t>(c.call)] +
               ": handle is stale";
    }
}

template <class Store>
void play_store_case(const misuse_case& c) {
    store_session<Store> s(c.seed ^ 0x9e3779b97f4a7c15ULL);
    s.valid_usage();
    using handle = typename Store::handle;
    switch (c.kind) {
    case misuse::stale_handle: {
        const handle stale = s.remove_one();
        s.valid_usage(); // may give the slot out again, with the next generation
        s.use(stale, c.call);
        break;
    }
    case misuse::double_free: {
        const handle freed = s.remove_one();
        s.pool->deallocate(freed);
        break;
    }
    case misuse::forged_garbage: {
        std::vector<handle> live;
        for (const auto& stored : s.live) {
            live.push_back(stored.h);
        }
        s.use(handle::from_value(garbage_value(s.rng, live)), c.call);
        break;
    }
    case misuse::forged_generation: {
        const handle victim = s.live[s.rng() % s.live.size()].h;
        s.use(handle::from_value(other_generation(s.rng, victim.value())), c.call);
        break;
    }
    case misuse::forged_slot:
        s.use(handle::from_value(unused_slot(s.rng, s.handed_out)), c.call);
        break;
    case misuse::destroy_pinned: {
        const auto mapped = s.pool->map(s.live[s.rng() % s.live.size()].h, store_access::read);
        s.pool.reset();
        break;
    }
    case misuse::destroy_arena:
        s.arena.reset();
        break;
    case misuse::count:
        break;
    }
}

// ---- object_pool --------------------------------------------------------------------------------

struct record {
    std::uint64_t key;
    std::array<std::uint64_t, 5> payload;
};
using record_pool = object_pool<record, arena_type>;

constexpr std::array<const char*, 4> object_call_names = {"pin", "pin", "pin", "destroy"};

std::string expected_object_message(const misuse_case& c) {
    switch (c.kind) {
    case misuse::destroy_pinned:
        return "object_pool::~object_pool: an object is still pinned";
    case misuse::destroy_arena:
        return "frame_arena::~frame_arena: the arena";
    default:
        return std::string("object_pool::") + object_call_names[static_cast<std::size_t>(c.call)] +
               ": handle";
    }
}

void play_object_case(const misuse_case& c) {
    using handle = record_pool::handle;
    std::mt19937_64 rng(c.seed ^ 0x9e3779b97f4a7c15ULL);
    auto arena = std::make_unique<arena_type>(arena_bytes);
    auto pool = std::make_unique<record_pool>(*arena);
    std::vector<handle> live;
    std::vector<handle> handed_out;
    const auto add = [&] {
        const std::uint64_t key = rng();
        const handle h = pool->try_emplace(record{key, {key, key, key, key, key}});
        if (h) {
            live.push_back(h);
            handed_out.push_back(h);
        }
    };
    const auto remove_one = [&] {
        const std::size_t i = rng() % live.size();
        const handle h = live[i];
        live[i] = live.back();
        live.pop_back();
        if (pool->pin(h)->payload[4] != pool->pin(h)->key) {
            std::abort(); // not a contract message: the case fails
        }
        pool->destroy(h);
        return h;
    };
    const auto valid_usage = [&] { random_churn(rng, 300, live, add, remove_one); };
    const auto use = [&](handle h) {
        if (c.call == handle_call::free) {
            pool->destroy(h);
        } else {
            (void)pool->pin(h);
        }
    };
    valid_usage();
    switch (c.kind) {
    case misuse::stale_handle: {
        const handle stale = remove_one();
        valid_usage();
        use(stale);
        break;
    }
    case misuse::double_free:
        pool->destroy(remove_one());
        break;
    case misuse::forged_garbage:
        use(handle::from_value(garbage_value(rng, live)));
        break;
    case misuse::forged_generation:
        use(handle::from_value(other_generation(rng, live[rng() % live.size()].value())));
        break;
    case misuse::forged_slot:
        use(handle::from_value(unused_slot(rng, handed_out)));
        break;
    case misuse::destroy_pinned: {
        const auto pinned = pool->pin(live[rng() % live.size()]);
        pool.reset();
        break;
    }
    case misuse::destroy_arena:
        arena.reset();
        break;
    case misuse::count:
        break;
    }
}

// Runs `cases` seeded cases through `play`, each in a forked child; each must abort with the
// message `expected` gives. Reports every case that did not, with its seed to replay it.
template <class Expected, class Play>
void run_cases(const char* model, std::uint64_t first_seed, int cases, Expected&& expected,
               Play&& play) {
    std::array<int, static_cast<std::size_t>(misuse::count)> drawn{};
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < cases; ++i) {
        const misuse_case c = draw_case(first_seed + static_cast<std::uint64_t>(i));
        ++drawn[static_cast<std::size_t>(c.kind)];
        const std::string message = expected(c);
        const test::death_result result = test::run_expecting_death([&] { play(c); });
        const bool named =
            result.stderr_text.find("movable: contract violated: " + message) != std::string::npos;
        if (!result.aborted || !named) {
            const std::string model_name = model;
            const std::string misuse_name = misuse_names[static_cast<std::size_t>(c.kind)];
            CAPTURE(model_name);
            CAPTURE(c.seed);
            CAPTURE(misuse_name);
            CAPTURE(message);
            CAPTURE(result.stderr_text);
            FAIL_CHECK("the misuse was not caught with the message naming its call");
        }
    }
    const auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start);
    MESSAGE(std::string(model) << ": " << cases << " misuse cases in " << elapsed.count() << " s");
    for (std::size_t k = 0; k < drawn.size(); ++k) {
        CHECK_MESSAGE(drawn[k] > 0, std::string(model) << " never drew " << misuse_names[k]);
    }
}

struct lending_host {
    bool lend(frame& /*f*/) noexcept { return true; }
    void reclaim(frame& /*f*/) noexcept {}
};

} // namespace

TEST_CASE_TEMPLATE("every random misuse of a byte store aborts naming the call", Store,
                   MOVABLE_COMPRESSED_STORES) {
    run_cases(
        test::store_name<Store>, 1000, cases_per_model(),
        [](const misuse_case& c) { return expected_store_message<Store>(c); },
        [](const misuse_case& c) { play_store_case<Store>(c); });
}

TEST_CASE("every random misuse of an object_pool aborts naming the call") {
    run_cases("object_pool", 2000, cases_per_model(), expected_object_message,
              [](const misuse_case& c) { play_object_case(c); });
}

TEST_CASE("an arena destroyed before the balloon that holds its frames aborts") {
    for (std::uint64_t seed = 0; seed < 8; ++seed) {
        CAPTURE(seed);
        CHECK(test::dies_with("frame_arena::~frame_arena: the arena", [seed] {
            lending_host host;
            auto arena = std::make_unique<arena_type>(arena_bytes);
            auto inflated = std::make_unique<balloon<arena_type, lending_host>>(*arena, host);
            (void)inflated->inflate(1 + seed * 7);
            arena.reset();
        }));
    }
}
