// Contracts in a Release build of the library (this program is compiled with NDEBUG and without
// MOVABLE_HARDENED): a contract's condition is not evaluated at all, while the checks that stay
// on in every build still abort.
#include <movable/detail/contract.hpp>
#include <movable/frame_arena.hpp>
#include <movable/models/object_pool.hpp>
#include <movable/operations.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <string>

#include "support/compressed_stores.hpp"
#include "support/death_test.hpp"
#include "support/inert_owner.hpp"

using namespace movable;

static_assert(!detail::contracts_enabled, "this test must be built with NDEBUG");

TEST_CASE("in Release a contract's condition is not evaluated") {
    int evaluated = 0;
    MOVABLE_CONTRACT(++evaluated > 100, "never checked");
    CHECK(evaluated == 0);
}

TEST_CASE("in Release the checks that protect stored data still abort") {
    CHECK(test::dies_with("set_movable: frame belongs to a multi-frame allocation", [] {
        test::inert_owner o;
        frame_arena<4096, 4> arena(frame_arena<4096, 4>::block_bytes);
        frame& first = arena.allocate(1);
        first.lock();
        set_movable(first, o);
    }));
    CHECK(test::dies_with("frame_arena::check_invariants", [] {
        frame_arena<4096, 4> arena(frame_arena<4096, 4>::block_bytes);
        arena.frame_at(3).acquire_first_reference();
        arena.check_invariants();
    }));
}

// A handle's slot bound and allocated bit are checked in every build before a pool follows it
// (docs/concepts.md, "Handles: what Release checks"): without them a slot past the table reads a
// chunk that does not exist (SIGSEGV), and a freed slot's word sends the call to a frame that is
// not the object's, whose contents and descriptor it writes.
TEST_CASE_TEMPLATE("in Release a forged handle, a freed slot and a double free abort before the "
                   "store follows them, and a reused slot is left to the contract checks",
                   Store, MOVABLE_COMPRESSED_STORES) {
    using handle = typename Store::handle;
    const auto session = [](auto&& misuse) {
        return [misuse] {
            test::store_arena arena(4 * test::store_arena::block_bytes);
            Store pool(arena);
            const handle kept = pool.allocate(100);
            const handle freed = pool.allocate(200);
            misuse(pool, kept, freed);
        };
    };
    std::array<std::byte, 8> out{};
    CHECK(test::dies_with(test::stale_message<Store>("read").c_str(),
                          session([&out](Store& pool, handle /*kept*/, handle /*freed*/) {
                              // A slot past the table's first chunk (none allocated there).
                              pool.read(handle::from_value(detail::handle_value::make(5000, 0)),
                                        out);
                          })));
    CHECK(test::dies_with(test::stale_message<Store>("size").c_str(),
                          session([](Store& pool, handle /*kept*/, handle /*freed*/) {
                              // A slot past the table's directory.
                              (void)pool.size(handle::from_value(0xdeadbeefcafef00dULL));
                          })));
    CHECK(test::dies_with(test::stale_message<Store>("deallocate").c_str(),
                          session([](Store& pool, handle /*kept*/, handle freed) {
                              pool.deallocate(freed);
                              test::release_thread_cache(pool);
                              pool.deallocate(freed);
                          })));
    CHECK(test::dies_with(test::stale_message<Store>("write").c_str(),
                          session([&out](Store& pool, handle /*kept*/, handle freed) {
                              pool.deallocate(freed);
                              test::release_thread_cache(pool);
                              pool.write(freed, out);
                          })));
    // Left to the contract checks (docs/concepts.md): a live slot with another generation
    // reaches the slot's object.
    test::store_arena arena(4 * test::store_arena::block_bytes);
    Store pool(arena);
    const handle kept = pool.allocate(8);
    pool.write(kept, test::pattern(8, 5));
    std::array<std::byte, 8> read_back{};
    pool.read(handle::from_value(kept.value() + (1ULL << 32)), read_back);
    CHECK(test::holds_pattern(read_back, 5));
    pool.deallocate(kept);
}

TEST_CASE("in Release an object_pool aborts on a forged handle, a freed slot or a double "
          "destroy, and leaves a reused slot to the contract checks") {
    struct item {
        std::uint64_t value;
    };
    using pool_type = object_pool<item, test::store_arena>;
    using handle = pool_type::handle;
    const auto session = [](auto&& misuse) {
        return [misuse] {
            test::store_arena arena(4 * test::store_arena::block_bytes);
            pool_type pool(arena);
            const handle kept = pool.emplace(item{1});
            const handle destroyed = pool.emplace(item{2});
            misuse(pool, kept, destroyed);
        };
    };
    CHECK(test::dies_with("object_pool::pin: handle was not made by this pool",
                          session([](pool_type& pool, handle /*kept*/, handle /*destroyed*/) {
                              (void)pool.pin(handle::from_value(0xdeadbeefcafef00dULL));
                          })));
    CHECK(test::dies_with("object_pool::destroy: handle is stale",
                          session([](pool_type& pool, handle /*kept*/, handle destroyed) {
                              pool.destroy(destroyed);
                              pool.destroy(destroyed);
                          })));
    CHECK(test::dies_with("object_pool::pin: handle is stale",
                          session([](pool_type& pool, handle /*kept*/, handle destroyed) {
                              pool.destroy(destroyed);
                              pool.release_thread_cache(); // its place goes back to the slab
                              (void)pool.pin(destroyed);
                          })));
    // Left to the contract checks (docs/concepts.md): a reused slot reaches its new object.
    test::store_arena arena(4 * test::store_arena::block_bytes);
    pool_type pool(arena);
    const handle old = pool.emplace(item{1});
    pool.destroy(old);
    const handle reused = pool.emplace(item{2});
    REQUIRE(detail::handle_value::slot(reused.value()) == detail::handle_value::slot(old.value()));
    CHECK(pool.pin(old)->value == 2);
    pool.destroy(reused);
}
