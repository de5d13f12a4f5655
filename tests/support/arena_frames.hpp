// Lets basic_test_owner keep its pages in a frame_arena (or any arena with try_allocate,
// deallocate and address_of).
#pragma once

#include <cstddef>

#include <movable/frame_arena.hpp>

#include "test_owner.hpp"

namespace movable::test {

template <class Arena>
struct arena_frames {
    static constexpr std::size_t frame_size = Arena::frame_size;
    Arena& arena;
    frame* allocate_frame() { return arena.try_allocate(0, frame_kind::movable); }
    void free(frame& f) { arena.deallocate(f, 0); }
    std::byte* address_of(const frame& f) { return arena.address_of(f); }
};

template <class Arena>
using arena_owner = basic_test_owner<arena_frames<Arena>>;

} // namespace movable::test
