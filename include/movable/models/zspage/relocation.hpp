// Moving objects of zspages: compaction of a class (which zspages give objects to which), the
// move of objects from one zspage into another, and migration's move of one frame of a
// zspage's chain. Moves report each object's new place through `relocated(slot, zspage,
// object)`, which the pool turns into the handle's new location. zspage_pool's internals:
// users never name these.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>

#include <movable/frame.hpp>
#include <movable/models/zspage/zspage.hpp>

namespace movable::detail {

// Compacts one class: takes its lock, moves objects from the sparsest unpinned zspages into the
// densest with `move_objects(src, dst)` (class locked, both off the lists and claimed), and hands
// the zspages it empties (marked freeing, off the lists, linked through next) to
// `free_chain(first)` with the lock dropped. Drops the lock and yields whenever another
// thread waits for it. Returns the frames freed.
template <class MoveObjects, class ReleaseChain>
std::size_t zspage_compact_class(zspage_class& cls, MoveObjects&& move_objects,
                                 ReleaseChain&& free_chain) {
    std::size_t freed = 0;
    zspage* emptied = nullptr; // released once the class lock is dropped
    // Back on the lists, unclaimed: readers may pin it again.
    const auto put_back = [&](zspage& zs) {
        cls.link(zs);
        zspage_end_claim(zs);
    };
    std::unique_lock guard(cls.lock);
    zspage* dst = nullptr;
    while (cls.frames_freeable() > 0) {
        if (dst == nullptr && (dst = cls.take_densest_claimed()) == nullptr) {
            break;
        }
        zspage* src = cls.take_sparsest_claimed();
        if (src == nullptr) {
            break;
        }
        // Always from the emptier to the fuller: every move raises the sum of squared in-use
        // counts, so the loop ends even when pins make the picks out of order.
        if (src->in_use > dst->in_use) {
            std::swap(src, dst);
        }
        move_objects(*src, *dst);
        if (src->in_use == 0) {
            src->freeing.store(1, std::memory_order_release);
            zspage_end_claim(*src); // its release claims it again
            --cls.zspages;
            src->next = emptied;
            emptied = src;
            freed += cls.info.frames_per_zspage;
        } else {
            put_back(*src);
        }
        const bool others_wait = cls.lock.contended();
        if (dst->in_use == cls.info.objects_per_zspage || others_wait) {
            put_back(*dst);
            dst = nullptr;
        }
        if (others_wait) {
            guard.unlock();
            free_chain(std::exchange(emptied, nullptr));
            std::this_thread::yield();
            guard.lock();
        }
    }
    if (dst != nullptr) {
        put_back(*dst);
    }
    guard.unlock();
    free_chain(emptied);
    return freed;
}

// Moves allocated objects from src into dst until src is empty or dst is full, copying
// `size_of(slot)` bytes of each (its requested size). A taken place whose slot `take_back(slot)`
// takes back (a thread's idle reservation) goes back on src's free list instead. Both zspages
// claimed and off the lists. Returns the objects moved.
template <class Arena, class SizeOf, class Relocated, class TakeBack>
std::size_t zspage_move_objects(Arena& arena, const zspage_class& cls, zspage& src, zspage& dst,
                                SizeOf&& size_of, Relocated&& relocated,
                                TakeBack&& take_back) noexcept {
    const auto objects = static_cast<std::uint32_t>(cls.info.objects_per_zspage);
    std::size_t moved = 0;
    for (std::uint32_t from = 0; from < objects && src.in_use > 0 && dst.in_use < objects; ++from) {
        const std::uint64_t header = zspage_read_header(arena, cls, src, from);
        if (!object_header::is_allocated(header)) {
            continue;
        }
        const std::uint32_t slot = object_header::slot(header);
        if (take_back(slot)) {
            zspage_push_free_object(arena, cls, src, from);
            continue;
        }
        const std::uint32_t to = zspage_pop_free_object(arena, cls, dst);
        zspage_copy(arena, dst, std::size_t{to} * cls.info.object_size + cls.header_bytes, src,
                    std::size_t{from} * cls.info.object_size + cls.header_bytes, size_of(slot));
        zspage_write_header(arena, cls, dst, to, header);
        relocated(slot, dst, to);
        zspage_push_free_object(arena, cls, src, from);
        ++moved;
    }
    return moved;
}

// Copies frame `position` of zs's chain into dst and puts dst in its place; every allocated
// object that starts in that frame now starts in dst. The core holds both frames locked; zs is
// claimed and not being freed.
template <class Arena, class Relocated>
void zspage_move_frame(Arena& arena, const zspage_class& cls, zspage& zs, std::size_t position,
                       frame& dst, Relocated&& relocated) noexcept {
    constexpr std::size_t frame_size = Arena::frame_size;
    std::memcpy(arena.address_of(dst), arena.address_of(*zs.frames[position]), frame_size);
    zs.frames[position] = &dst;
    const std::size_t size = cls.info.object_size;
    const std::size_t first = (position * frame_size + size - 1) / size;
    const std::size_t end =
        std::min(cls.info.objects_per_zspage, ((position + 1) * frame_size + size - 1) / size);
    for (std::size_t object = first; object < end; ++object) {
        const auto index = static_cast<std::uint32_t>(object);
        const std::uint64_t header = zspage_read_header(arena, cls, zs, index);
        if (object_header::is_allocated(header)) {
            relocated(object_header::slot(header), zs, index);
        }
    }
}

} // namespace movable::detail
