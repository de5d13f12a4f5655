// object_pool's per-thread caches (the class and its documentation are in models/object_pool.hpp,
// which includes this file at its end): reserving places for a thread's magazine, giving them
// back, and moving a place (object or reservation) when the pool compacts or a frame migrates.
//
// A reservation is a taken place of a slab owned by a handle slot whose word holds the place's
// location, not marked allocated, and whose pin word is not claimed. It sits in one thread's
// magazine. emplace claims the slot, builds the object there and marks the word allocated;
// destroy ends the object and leaves the place reserved, back in the destroying thread's
// magazine. Movers claim a reservation's slot as they claim an object's and move it by
// rewriting its word, so a magazine's places never pin a frame. A magazine holds at most
// magazine::capacity reservations; beyond that, and when its thread exits, they go back to the
// pool.
#pragma once

#include <movable/models/object_pool.hpp>

#include <algorithm>
#include <vector>

namespace movable {

template <class T, class Arena>
void object_pool<T, Arena>::relocate_place(std::uint32_t slot, const frame& dst, std::uint32_t to,
                                           const frame& src, std::uint32_t from,
                                           bool copied) noexcept {
    std::atomic<std::uint64_t>& word = handles_->word(slot);
    const bool object = detail::slot_word::allocated(word.load(std::memory_order_relaxed));
    if (object && !copied) {
        const detail::relocation_scope relocating(this);
        relocation_traits<T>::relocate(object_at(dst, to), object_at(src, from));
    }
    word.store(detail::slot_word::make(locations_.make(arena_.index_of(dst), to), 0, object),
               std::memory_order_release);
}

template <class T, class Arena>
bool object_pool<T, Arena>::refill(magazine& m, std::uint32_t want, bool& created) noexcept {
    // The slots first, lock-free; then their places, under the pool lock.
    std::array<std::uint32_t, magazine::capacity> slots{};
    std::uint32_t acquired = 0;
    want = std::min(want, magazine::capacity - m.count);
    while (acquired < want) {
        const std::uint32_t slot = handles_->acquire();
        if (slot == detail::handle_table::none) {
            break;
        }
        slots[acquired++] = slot;
    }
    std::uint32_t reserved = 0;
    const std::uint32_t first = m.count;
    {
        pool_lock guard(lock_);
        while (reserved < acquired) {
            detail::object_slab* slab = groups_.fullest_not_full();
            const bool listed = slab != nullptr;
            // A new (or the spare) slab only for the first reservation: a magazine never makes
            // the pool hold a frame more than its thread is filling.
            if (!listed && reserved > 0) {
                break;
            }
            if (!listed) {
                slab = std::exchange(spare_, nullptr);
                if (slab == nullptr) {
                    guard.unlock();
                    slab = detail::slab_create(
                        arena_, static_cast<std::uint32_t>(objects_per_frame), alignof(T), *this);
                    guard.lock();
                    if (slab == nullptr) {
                        break;
                    }
                    ++slabs_;
                    created = true;
                }
            }
            const std::uint32_t slot = slots[reserved++];
            const std::uint32_t place = slab->take(slot);
            ++taken_;
            if (listed) {
                groups_.refile(*slab);
            } else {
                groups_.link(*slab);
            }
            handles_->word(slot).store(
                detail::slot_word::make(locations_.make(arena_.index_of(*slab->home), place), 0,
                                        false),
                std::memory_order_relaxed);
            m.slots[m.count++] = slot;
        }
    }
    for (std::uint32_t i = reserved; i < acquired; ++i) {
        handles_->release(slots[i]); // never marked allocated: its generation stays
    }
    // Popped from the back: the places of the fullest slab, reserved first, are used first.
    std::reverse(m.slots.begin() + first, m.slots.begin() + m.count);
    return reserved > 0;
}

template <class T, class Arena>
void object_pool<T, Arena>::keep_reservation(magazine* m, std::uint32_t slot) noexcept {
    if (m == nullptr) {
        give_back_reservations(&slot, 1, true);
        return;
    }
    if (m->count == magazine::capacity) {
        // Full: the older half goes back, so a thread that only frees does not hold the pool's
        // places (and a thread that alternates keeps its fast path).
        const std::uint32_t keep = magazine::refill;
        give_back_reservations(m->slots.data(), m->count - keep, true);
        std::copy(m->slots.begin() + (m->count - keep), m->slots.begin() + m->count,
                  m->slots.begin());
        m->count = keep;
    }
    m->slots[m->count++] = slot;
}

template <class T, class Arena>
void object_pool<T, Arena>::give_back_reservations(const std::uint32_t* slots, std::size_t count,
                                                   bool may_keep, bool retire) noexcept {
    detail::object_slab* chain = nullptr;
    {
        // Under the pool lock no mover is moving a reservation, and the words are stable.
        std::lock_guard guard(lock_);
        for (std::size_t i = 0; i < count; ++i) {
            std::atomic<std::uint64_t>& word = handles_->word(slots[i]);
            if (word.load(std::memory_order_relaxed) == magazine::stolen) {
                continue; // compact() took its place back already
            }
            const std::uint64_t location =
                detail::slot_word::location(word.load(std::memory_order_relaxed));
            detail::object_slab& slab = *slab_of(arena_.frame_at(locations_.frame_index(location)));
            if (detail::object_slab* emptied =
                    give_back_place(slab, locations_.object(location), may_keep)) {
                emptied->next = chain;
                chain = emptied;
            }
            word.store(detail::slot_word::make(0, 0, false), std::memory_order_relaxed);
        }
    }
    for (std::size_t i = 0; i < count; ++i) {
        if (retire) {
            handles_->retire(slots[i]);
        } else {
            handles_->release(slots[i]);
        }
    }
    free_chain(chain);
}

template <class T, class Arena>
void object_pool<T, Arena>::release_thread_cache() noexcept {
    if (magazine* m = local_magazine()) {
        give_back_reservations(m->slots.data(), m->count, true);
        m->count = 0;
    }
}

template <class T, class Arena>
detail::object_slab* object_pool<T, Arena>::steal_reservations() {
    std::vector<detail::object_slab*> slabs;
    slabs.reserve(slabs_);
    groups_.check([](bool, const char*) {},
                  [&](detail::object_slab& slab) { slabs.push_back(&slab); });
    detail::object_slab* chain = nullptr;
    for (detail::object_slab* slab : slabs) {
        for (std::uint32_t place = 0; place < slab->capacity && slab->in_use > 0; ++place) {
            const std::uint32_t entry = slab->entries()[place];
            if (!detail::slab_entry::is_taken(entry)) {
                continue;
            }
            const std::uint32_t slot = detail::slab_entry::slot(entry);
            std::atomic<std::uint32_t>& pins = handles_->slot(slot).pool_word;
            if (built(slot) || !detail::pin_word::try_claim(pins)) {
                continue; // an object, or a reservation being built on
            }
            if (built(slot)) { // built between the look and the claim: an object now
                detail::pin_word::end_claim(pins);
                continue;
            }
            handles_->word(slot).store(magazine::stolen, std::memory_order_relaxed);
            detail::pin_word::end_claim(pins);
            if (detail::object_slab* emptied = give_back_place(*slab, place, false)) {
                emptied->next = chain;
                chain = emptied;
            }
            counters_.reservations_stolen.fetch_add(1, std::memory_order_relaxed);
        }
    }
    return chain;
}

template <class T, class Arena>
void object_pool<T, Arena>::flush_exiting_thread(void* pool, void* cache) noexcept {
    auto& self = *static_cast<object_pool*>(pool);
    auto& m = *static_cast<magazine*>(cache);
    self.give_back_reservations(m.slots.data(), m.count, false);
    m.count = 0;
    self.caches_.orphan(m);
}

} // namespace movable
