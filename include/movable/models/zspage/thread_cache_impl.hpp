// zspage_pool's per-thread caches (the class and its documentation are in models/zspage_pool.hpp,
// which includes this file at its end; the magazine and what a reservation is, in
// models/zspage/magazine.hpp): reserving places, turning a reservation into an object and back
// without the class lock, and giving reservations back.
#pragma once

#include <movable/models/zspage_pool.hpp>

#include <algorithm>
#include <array>
#include <memory>
#include <new>
#include <vector>

namespace movable {

template <class Arena>
auto zspage_pool<Arena>::local_magazine() noexcept -> magazine* {
    if (!options_.thread_cache) {
        return nullptr;
    }
    magazine* m = caches_.local(&flush_exiting_thread);
    if (m != nullptr && m->classes() == nullptr) {
        // The thread's first call: one cache per class (a reused magazine has them already).
        std::unique_ptr<magazine::class_cache[]> caches(
            new (std::nothrow) magazine::class_cache[class_map_.size()]);
        if (caches == nullptr) {
            return nullptr;
        }
        m->adopt(std::move(caches));
    }
    return m;
}

template <class Arena>
auto zspage_pool<Arena>::allocate_cached(magazine& m, class_state& cls, std::size_t size) noexcept
    -> handle {
    magazine::class_cache& cache = m.classes()[cls.id];
    for (;;) {
        if (cache.size() == 0 && !refill(cache, cls)) {
            return {};
        }
        const std::uint32_t n = cache.size();
        const std::uint32_t slot = cache.slots[n - 1];
        cache.set_size(n - 1);
        if (const handle h = take_reservation(cls, slot, size)) {
            cache.add_bytes(static_cast<std::int64_t>(size));
            return h;
        }
    }
}

template <class Arena>
auto zspage_pool<Arena>::take_reservation(class_state& cls, std::uint32_t slot,
                                          std::size_t size) noexcept -> handle {
    detail::handle_slot& entry = handles_->slot(slot);
    const auto publish = [&](std::uint64_t reserved) {
        entry.pool_word.store(static_cast<std::uint32_t>(size), std::memory_order_relaxed);
        entry.word.store(reserved | detail::slot_word::allocated_tag, std::memory_order_release);
        return zspage_handle::from_value(
            detail::handle_value::make(slot, entry.generation.load(std::memory_order_relaxed)));
    };
    const std::uint64_t w = entry.word.load(std::memory_order_acquire);
    if (w != magazine::stolen) {
        // Pinned, the place stays where the word says: the object is born there.
        if (const std::optional<detail::zspage_pin> pin = pin_at(entry, w)) {
            return publish(w);
        }
        // A mover holds the place's zspage right now; under the class lock the word is settled.
        const std::lock_guard guard(cls.lock);
        const std::uint64_t settled = entry.word.load(std::memory_order_relaxed);
        if (settled != magazine::stolen) {
            return publish(settled);
        }
    }
    cls.stolen_pending.fetch_sub(1, std::memory_order_relaxed);
    handles_->release(slot); // its generation was ended when it became a reservation, or is new
    return {};
}

template <class Arena>
bool zspage_pool<Arena>::deallocate_cached(magazine& m, handle h) noexcept {
    const std::uint32_t slot = detail::handle_value::slot(h.value());
    if (!handles_->contains(slot)) {
        return false; // the locked way reports it
    }
    detail::handle_slot& entry = handles_->slot(slot);
    const std::uint32_t class_id =
        detail::slot_word::class_id(entry.word.load(std::memory_order_relaxed));
    if (class_id >= class_map_.size()) {
        return false;
    }
    magazine::class_cache& cache = m.classes()[class_id];
    const std::uint32_t capacity = magazine::capacity_for(classes_[class_id].info.object_size);
    if (cache.size() >= capacity) {
        // Full: the older half goes back, so a thread that only frees does not hold the pool's
        // places (and one that alternates keeps its fast path).
        const std::uint32_t keep = capacity / 2;
        const std::uint32_t n = cache.size();
        give_back_reservations(classes_[class_id], cache.slots.data(), n - keep);
        std::copy(cache.slots.begin() + (n - keep), cache.slots.begin() + n, cache.slots.begin());
        cache.set_size(keep);
    }
    const std::optional<resolved> r = try_pin_unlocked(h);
    // Others pin the zspage (reading its other objects, or, misuse, this one): the locked way
    // frees the place, and reports a mapping left on a zspage it empties.
    if (!r || r->cls->id != class_id ||
        detail::container_claim::readers(r->zspage().pins.load(std::memory_order_relaxed)) != 1 ||
        !handles_->end_generation(slot)) {
        return false; // raced with a move, stale (reported there), or its generation ran out
    }
    // Pinned: no mover changes the word. From here the slot is this thread's reservation.
    entry.pool_word.store(0, std::memory_order_relaxed);
    entry.word.store(entry.word.load(std::memory_order_relaxed) & ~detail::slot_word::allocated_tag,
                     std::memory_order_release);
    cache.add_bytes(-static_cast<std::int64_t>(r->size));
    const std::uint32_t n = cache.size();
    cache.slots[n] = slot;
    cache.set_size(n + 1);
    return true;
}

template <class Arena>
bool zspage_pool<Arena>::refill(magazine::class_cache& cache, class_state& cls) noexcept {
    // The slots first, lock-free; then their places, under the class lock.
    std::array<std::uint32_t, magazine::capacity> slots{};
    const std::uint32_t want = magazine::capacity_for(cls.info.object_size) / 2;
    std::uint32_t acquired = 0;
    while (acquired < want) {
        const std::uint32_t slot = handles_->acquire();
        if (slot == detail::handle_table::none) {
            break;
        }
        slots[acquired++] = slot;
    }
    std::uint32_t reserved = 0;
    {
        std::unique_lock guard(cls.lock);
        while (reserved < acquired) {
            detail::zspage* zs = cls.fullest_not_full();
            const bool fresh = zs == nullptr;
            if (fresh) {
                // A new zspage only for the first reservation: a cache never makes the pool
                // hold a zspage more than its thread is filling.
                if (reserved > 0) {
                    break;
                }
                guard.unlock();
                zs = detail::zspage_create(arena_, cls, *this, descriptors_);
                guard.lock();
                if (zs == nullptr) {
                    break;
                }
                ++cls.zspages;
            }
            const std::uint32_t slot = slots[reserved++];
            const std::uint32_t object = detail::zspage_pop_free_object(arena_, cls, *zs);
            detail::zspage_write_header(arena_, cls, *zs, object,
                                        detail::object_header::allocated(slot));
            ++cls.objects_in_use;
            handles_->slot(slot).pool_word.store(0, std::memory_order_relaxed);
            set_location(slot, *zs, cls, object, false);
            if (fresh) {
                cls.link(*zs);
            } else {
                cls.refile(*zs);
            }
        }
    }
    for (std::uint32_t i = reserved; i < acquired; ++i) {
        handles_->release(slots[i]); // never marked allocated: its generation stays
    }
    // Popped from the back: the places of the fullest zspage, reserved first, are used first.
    for (std::uint32_t i = 0; i < reserved; ++i) {
        cache.slots[i] = slots[reserved - 1 - i];
    }
    cache.set_size(reserved);
    return reserved > 0;
}

template <class Arena>
void zspage_pool<Arena>::give_back_reservations(class_state& cls, const std::uint32_t* slots,
                                                std::size_t count) noexcept {
    detail::zspage* chain = nullptr;
    {
        // Under the class lock no mover is moving a reservation, and the words are settled.
        const std::lock_guard guard(cls.lock);
        for (std::size_t i = 0; i < count; ++i) {
            std::atomic<std::uint64_t>& word = handles_->word(slots[i]);
            const std::uint64_t w = word.load(std::memory_order_relaxed);
            if (w == magazine::stolen) {
                cls.stolen_pending.fetch_sub(1, std::memory_order_relaxed);
                continue; // compaction took its place back already
            }
            const std::uint64_t location = detail::slot_word::location(w);
            detail::zspage& zs = *zspage_of(frame_of(location));
            detail::zspage_push_free_object(arena_, cls, zs, locations_.object(location));
            --cls.objects_in_use;
            chain = cls.settle_after_free(zs, chain);
            word.store(detail::slot_word::make(0, cls.id, false), std::memory_order_relaxed);
        }
    }
    for (std::size_t i = 0; i < count; ++i) {
        handles_->release(slots[i]);
    }
    free_chain(chain);
}

template <class Arena>
bool zspage_pool<Arena>::take_back_reservation(class_state& cls, std::uint32_t slot) noexcept {
    std::atomic<std::uint64_t>& word = handles_->word(slot);
    if (detail::slot_word::allocated(word.load(std::memory_order_relaxed))) {
        return false; // an object
    }
    word.store(magazine::stolen, std::memory_order_release);
    --cls.objects_in_use;
    cls.stolen_pending.fetch_add(1, std::memory_order_relaxed);
    counters_.reservations_stolen.fetch_add(1, std::memory_order_relaxed);
    return true;
}

template <class Arena>
detail::zspage* zspage_pool<Arena>::take_back_reservations(class_state& cls) noexcept {
    if (!options_.thread_cache || cls.objects_in_use == 0) {
        return nullptr;
    }
    std::vector<detail::zspage*> zspages;
    try {
        zspages.reserve(cls.zspages); // every listed zspage: push_back never allocates again
    } catch (const std::bad_alloc&) {
        return nullptr; // nothing taken back this time
    }
    cls.groups.check([](bool, const char*) {}, [&](detail::zspage& zs) { zspages.push_back(&zs); });
    const auto objects = static_cast<std::uint32_t>(cls.info.objects_per_zspage);
    detail::zspage* chain = nullptr;
    for (detail::zspage* zs : zspages) {
        if (!detail::zspage_try_claim(*zs)) {
            continue; // pinned: a thread may be using one of its reservations right now
        }
        bool took = false;
        for (std::uint32_t object = 0; object < objects && zs->in_use > 0; ++object) {
            const std::uint64_t header = detail::zspage_read_header(arena_, cls, *zs, object);
            if (detail::object_header::is_allocated(header) &&
                take_back_reservation(cls, detail::object_header::slot(header))) {
                detail::zspage_push_free_object(arena_, cls, *zs, object);
                took = true;
            }
        }
        if (took) {
            chain = cls.settle_after_free(*zs, chain);
        }
        detail::zspage_end_claim(*zs);
    }
    return chain;
}

template <class Arena>
std::size_t zspage_pool<Arena>::take_back_idle(class_state& cls) noexcept {
    detail::zspage* emptied = nullptr;
    {
        const std::lock_guard guard(cls.lock);
        emptied = take_back_reservations(cls);
    }
    std::size_t frames = 0;
    for (const detail::zspage* zs = emptied; zs != nullptr; zs = zs->next) {
        frames += cls.info.frames_per_zspage;
    }
    free_chain(emptied);
    return frames;
}

template <class Arena>
void zspage_pool<Arena>::give_back_magazine(magazine& m) noexcept {
    magazine::class_cache* caches = m.classes();
    if (caches == nullptr) {
        return;
    }
    for (std::size_t c = 0; c < class_map_.size(); ++c) {
        magazine::class_cache& cache = caches[c];
        give_back_reservations(classes_[c], cache.slots.data(), cache.size());
        cache.set_size(0);
    }
}

template <class Arena>
void zspage_pool<Arena>::release_thread_cache() noexcept {
    if (magazine* m = local_magazine()) {
        give_back_magazine(*m);
    }
}

template <class Arena>
void zspage_pool<Arena>::flush_exiting_thread(void* pool, void* cache) noexcept {
    auto& self = *static_cast<zspage_pool*>(pool);
    auto& m = *static_cast<magazine*>(cache);
    self.give_back_magazine(m);
    self.caches_.orphan(m);
}

template <class Arena>
std::vector<std::size_t> zspage_pool<Arena>::reserved_by_class() const {
    std::vector<std::size_t> reserved(class_map_.size(), 0);
    caches_.for_each([&](const magazine& m) {
        if (const magazine::class_cache* caches = m.classes()) {
            for (std::size_t c = 0; c < reserved.size(); ++c) {
                reserved[c] += caches[c].size();
            }
        }
    });
    for (std::size_t c = 0; c < reserved.size(); ++c) {
        const std::size_t stolen = classes_[c].stolen_pending.load(std::memory_order_relaxed);
        reserved[c] -= std::min(stolen, reserved[c]);
    }
    return reserved;
}

template <class Arena>
std::vector<std::int64_t> zspage_pool<Arena>::cached_bytes_by_class() const {
    std::vector<std::int64_t> bytes(class_map_.size(), 0);
    caches_.for_each([&](const magazine& m) {
        if (const magazine::class_cache* caches = m.classes()) {
            for (std::size_t c = 0; c < bytes.size(); ++c) {
                bytes[c] += caches[c].bytes.load(std::memory_order_relaxed);
            }
        }
    });
    return bytes;
}

} // namespace movable
