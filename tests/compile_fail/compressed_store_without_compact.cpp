// expect: compressed_store: Store needs compact\(\), max_object_size\(\) const, arena\(\)
#include <movable/models/compressed_store.hpp>
#include <movable/models/zspage_pool.hpp>
// A store that has everything but compact().
struct store_without_compact {
    using handle = movable::zspage_handle;
    using access_mode = movable::store_access;
    using mapping = movable::zspage_pool<>::mapping;
    struct stats_type {
        std::size_t frames_in_use = 0;
        std::size_t objects_in_use = 0;
        std::size_t bytes_stored = 0;
    };
    handle allocate(std::size_t);
    handle try_allocate(std::size_t) noexcept;
    void deallocate(handle);
    void read(handle, std::span<std::byte>) const;
    void write(handle, std::span<const std::byte>);
    std::size_t size(handle) const;
    mapping map(handle, access_mode);
    std::size_t max_object_size() const;
    movable::frame_arena<>& arena() const;
    stats_type stats() const;
};
static_assert(movable::detail::check_compressed_store<store_without_compact>());
