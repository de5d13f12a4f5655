// object_pool's member functions (the class, its lock order and its documentation are in
// models/object_pool.hpp, which includes this file at its end): construction and destruction,
// emplace and destroy, pins and visits, compaction and the owner callbacks that move its frames.
#pragma once

#include <movable/models/object_pool.hpp>

#include <string>
#include <thread>

namespace movable {

namespace detail {
// Marks the calling thread as relocating `pool`'s objects while it lives (Debug and hardened
// builds only), for the contract that T's move constructor must not call the pool.
class relocation_scope {
public:
    explicit relocation_scope(const void* pool) noexcept {
        if constexpr (contracts_enabled) {
            previous_ = std::exchange(relocating_pool(), pool);
        }
    }
    ~relocation_scope() {
        if constexpr (contracts_enabled) {
            relocating_pool() = previous_;
        }
    }
    relocation_scope(const relocation_scope&) = delete;
    relocation_scope& operator=(const relocation_scope&) = delete;

private:
    const void* previous_ = nullptr;
};
} // namespace detail

// ---- construction and destruction ------------------------------------------------------------

template <class T, class Arena>
object_pool<T, Arena>::object_pool(Arena& arena, object_pool_options options)
    : arena_(arena), options_(options), locations_(objects_per_frame - 1) {
    static_assert(sizeof(T) > frame_size || // said once, by check_fits_frame
                      (objects_per_frame >= 1 && objects_per_frame <= 0x7fffffff),
                  "object_pool: a slab's places must fit its 31-bit free links");
    if (!locations_.fits(arena.frame_count())) {
        throw std::invalid_argument("object_pool: arena has too many frames for the handle "
                                    "location encoding");
    }
    groups_.capacity = objects_per_frame;
    // Every live object needs a slot: at most one per place in the arena.
    const std::size_t max_slots = std::min<std::size_t>(
        arena.frame_count() * objects_per_frame, std::size_t{detail::slab_entry::max_slot} + 1);
    handles_ = std::make_unique<detail::handle_table>(max_slots);
}

template <class T, class Arena>
object_pool<T, Arena>::~object_pool() {
    caches_.retire(); // no exiting thread flushes into the pool from now on
    detail::object_slab* chain = nullptr;
    {
        std::lock_guard guard(lock_);
        groups_.take_all([&](detail::object_slab& slab) {
            slab.freeing.store(1, std::memory_order_relaxed);
            slab.next = chain;
            chain = &slab;
        });
        if (detail::object_slab* spare = std::exchange(spare_, nullptr)) {
            spare->freeing.store(1, std::memory_order_relaxed);
            spare->next = chain;
            chain = spare;
        }
        slabs_ = 0;
        taken_ = 0;
    }
    // No migration can touch these slabs now (they are freeing): end their objects.
    for (detail::object_slab* slab = chain; slab != nullptr; slab = slab->next) {
        for (std::uint32_t place = 0; place < slab->capacity; ++place) {
            const std::uint32_t entry = slab->entries()[place];
            // A taken place holds an object, or is a thread's reservation (nothing to end).
            if (detail::slab_entry::is_taken(entry) && built(detail::slab_entry::slot(entry))) {
                MOVABLE_CONTRACT(handles_->slot(detail::slab_entry::slot(entry))
                                         .pool_word.load(std::memory_order_acquire) == 0,
                                 "object_pool::~object_pool: an object is still pinned");
                std::destroy_at(object_at(*slab->home, place));
            }
        }
    }
    live_.store(0, std::memory_order_relaxed);
    caches_.for_each([](magazine& m) { m.live.store(0, std::memory_order_relaxed); });
    free_chain(chain);
}

// ---- helpers ---------------------------------------------------------------------------------

template <class T, class Arena>
void object_pool<T, Arena>::check_not_relocating(const char* call) const noexcept {
    if constexpr (detail::contracts_enabled) {
        if (detail::relocating_pool() == this) {
            detail::contract_violation(call, "called from T's move constructor or destructor "
                                             "while the pool relocates objects under its lock");
        }
    }
}

// The handle's slot. Throws std::invalid_argument naming `call` for the empty handle; a handle
// whose slot the pool never gave out aborts, in every build: the pin that follows writes the
// slot's pin word, which would lie outside the handle table.
template <class T, class Arena>
detail::handle_slot& object_pool<T, Arena>::slot_of(handle h, const char* call) const {
    if (!h) {
        throw std::invalid_argument(std::string(call) + ": empty handle");
    }
    check_not_relocating(call);
    const std::uint32_t slot = detail::handle_value::slot(h.value());
    if (!handles_->contains(slot)) {
        detail::contract_violation(call, "handle was not made by this pool");
    }
    return handles_->slot(slot);
}

// The slot word of the object `h` names, which the caller has pinned or claimed; a stale handle
// aborts, reported as `stale`. A freed slot is caught in every build: its place may be in a slab
// given back to the arena, outside the pool's memory. A slot reused since (a later generation)
// names another handle's object, inside the pool: caught in Debug and hardened builds only, as
// comparing the generation on the pin's fast path cost a third of a pinned read in a pool of
// 262,144 objects (23 -> 31 ns; the allocated bit and the slot bound: 23 -> 24.5 ns; see
// docs/concepts.md, "Handles: what Release checks").
template <class T, class Arena>
std::uint64_t object_pool<T, Arena>::live_word(handle h, const detail::handle_slot& entry,
                                               const char* call, const char* stale) const noexcept {
    const std::uint64_t word = entry.word.load(std::memory_order_acquire);
    if (!detail::slot_word::allocated(word)) {
        detail::contract_violation(call, stale);
    }
    if constexpr (detail::contracts_enabled) {
        if (!detail::names_live_object(entry, word, h.value())) {
            detail::contract_violation(call, stale);
        }
    }
    return word;
}

template <class T, class Arena>
detail::object_slab* object_pool<T, Arena>::give_back_place(detail::object_slab& slab,
                                                            std::uint32_t place,
                                                            bool may_keep) noexcept {
    slab.give_back(place);
    --taken_;
    if (slab.in_use != 0) {
        groups_.refile(slab);
        return nullptr;
    }
    groups_.unlink(slab);
    if (may_keep && spare_ == nullptr) {
        spare_ = &slab; // the next emplace that finds no room takes it
        return nullptr;
    }
    slab.freeing.store(1, std::memory_order_release);
    slab.next = nullptr;
    --slabs_;
    return &slab;
}

// Gives emptied slabs (linked through next) back; frames the core holds isolated are the
// core's to free.
template <class T, class Arena>
void object_pool<T, Arena>::free_chain(detail::object_slab* first) noexcept {
    while (first != nullptr) {
        detail::object_slab* next = first->next;
        if (detail::slab_release(arena_, first)) {
            counters_.isolated_frames.fetch_sub(1, std::memory_order_relaxed);
            counters_.frames_released_while_isolated.fetch_add(1, std::memory_order_relaxed);
        }
        first = next;
    }
}

// ---- objects ---------------------------------------------------------------------------------

template <class T, class Arena>
template <class... Args>
auto object_pool<T, Arena>::emplace_or_empty(Args&&... args) -> handle {
    check_not_relocating("object_pool::emplace");
    // The common case takes a reservation from this thread's magazine: no pool lock, no shared
    // cache line. A thread without one (memory ran out) reserves one place for this call.
    magazine* m = local_magazine();
    magazine just_one;
    magazine& from = m != nullptr ? *m : just_one;
    std::uint32_t slot = 0;
    std::uint64_t word = 0;
    bool created = false; // a slab made for this call (without a magazine: freed on failure)
    for (;;) {
        if (from.count == 0 && !refill(from, m != nullptr ? magazine::refill : 1, created)) {
            return {};
        }
        slot = from.slots[--from.count];
        // Claimed while T is built: movers leave the place alone (compaction skips it,
        // migration of its frame answers busy), so the location read here stays its home. The
        // claim's acquire sees where a mover last put the reservation.
        detail::pin_word::claim(handles_->slot(slot).pool_word);
        word = handles_->word(slot).load(std::memory_order_relaxed);
        if (word != magazine::stolen) {
            break;
        }
        detail::pin_word::end_claim(handles_->slot(slot).pool_word);
        handles_->release(slot); // compact() took its place back
    }
    detail::handle_slot& entry = handles_->slot(slot);
    const std::uint64_t location = detail::slot_word::location(word);
    try {
        ::new (static_cast<void*>(object_at(location))) T(std::forward<Args>(args)...);
    } catch (...) {
        detail::pin_word::end_claim(entry.pool_word);
        if (m != nullptr) {
            keep_reservation(m, slot); // reserved again, for this thread's next emplace
        } else {
            // Without a thread cache a failed emplace leaves the pool as it found it: a slab it
            // made is freed, the spare it took is the spare again.
            give_back_reservations(&slot, 1, !created);
        }
        throw;
    }
    count_live(m, 1);
    const std::uint32_t generation = entry.generation.load(std::memory_order_relaxed);
    entry.word.store(detail::slot_word::make(location, 0, true), std::memory_order_release);
    detail::pin_word::end_claim(entry.pool_word);
    detail::shake_after_allocation(*this);
    return handle::from_value(detail::handle_value::make(slot, generation));
}

template <class T, class Arena>
template <class... Args>
auto object_pool<T, Arena>::emplace(Args&&... args) -> handle {
    const handle h = emplace_or_empty(std::forward<Args>(args)...);
    if (!h) {
        throw std::bad_alloc();
    }
    return h;
}

template <class T, class Arena>
template <class... Args>
auto object_pool<T, Arena>::try_emplace(Args&&... args) noexcept(
    std::is_nothrow_constructible_v<T, Args...>) -> handle {
    return emplace_or_empty(std::forward<Args>(args)...);
}

template <class T, class Arena>
void object_pool<T, Arena>::destroy(handle h) {
    constexpr const char* call = "object_pool::destroy";
    detail::handle_slot& entry = slot_of(h, call);
    const std::uint32_t slot = detail::handle_value::slot(h.value());
    // Claimed: no reader, no mover, no other destroyer while ~T runs.
    detail::pin_word::claim(entry.pool_word);
    const std::uint64_t word = live_word(h, entry, call,
                                         "handle is stale (object already destroyed: double "
                                         "destroy?)");
    const std::uint64_t location = detail::slot_word::location(word);
    std::destroy_at(object_at(location));
    magazine* m = local_magazine();
    count_live(m, -1);
    // Every handle this slot gives out has a generation of its own: one that would wrap retires
    // the slot instead.
    const bool retire = !handles_->end_generation(slot);
    // The place stays taken, as this thread's reservation (the word keeps its location).
    entry.word.store(detail::slot_word::make(location, 0, false), std::memory_order_release);
    detail::pin_word::end_claim(entry.pool_word);
    if (retire) {
        give_back_reservations(&slot, 1, true, true);
    } else {
        keep_reservation(m, slot);
    }
}

// ---- access ----------------------------------------------------------------------------------

template <class T, class Arena>
template <class U>
pinned<U> object_pool<T, Arena>::pin_checked(handle h, const char* call) const {
    detail::handle_slot& entry = slot_of(h, call);
    detail::pin_guard pin(entry.pool_word);
    // Pinned: the object can neither move nor end until the pin does.
    const std::uint64_t word = live_word(h, entry, call, "handle is stale (object destroyed)");
    return pinned<U>(object_at(detail::slot_word::location(word)), std::move(pin),
                     detail::unpin_shake_for(*this));
}

template <class T, class Arena>
pinned<T> object_pool<T, Arena>::pin(handle h) {
    return pin_checked<T>(h, "object_pool::pin");
}

template <class T, class Arena>
pinned<const T> object_pool<T, Arena>::pin(handle h) const {
    return pin_checked<const T>(h, "object_pool::pin");
}

// Visits every allocated slot: pinned, then checked again (a slot is marked allocated only once
// its object is built, and cannot be freed while pinned).
template <class T, class Arena>
template <class U, class Fn>
void object_pool<T, Arena>::for_each_in(Fn& fn) const {
    check_not_relocating("object_pool::for_each");
    const std::size_t published = handles_->published();
    for (std::size_t index = 0; index < published; ++index) {
        const auto slot = static_cast<std::uint32_t>(index);
        detail::handle_slot& entry = handles_->slot(slot);
        if (!detail::slot_word::allocated(entry.word.load(std::memory_order_relaxed))) {
            continue;
        }
        const detail::pin_guard pin(entry.pool_word);
        const std::uint64_t word = entry.word.load(std::memory_order_acquire);
        if (!detail::slot_word::allocated(word)) {
            continue;
        }
        U& object = *object_at(detail::slot_word::location(word));
        if constexpr (std::is_invocable_v<Fn&, handle, U&>) {
            const handle h = handle::from_value(
                detail::handle_value::make(slot, entry.generation.load(std::memory_order_relaxed)));
            fn(h, object);
        } else {
            fn(object);
        }
    }
}

template <class T, class Arena>
template <class Fn>
void object_pool<T, Arena>::for_each(Fn&& fn) {
    for_each_in<T>(fn);
}

template <class T, class Arena>
template <class Fn>
void object_pool<T, Arena>::for_each(Fn&& fn) const {
    for_each_in<const T>(fn);
}

// ---- compaction ------------------------------------------------------------------------------

// Moves objects from src into dst until src is empty or dst is full, skipping pinned ones
// (and those being built or destroyed). Pool locked, both slabs off the lists and not freeing.
// Returns the objects moved.
template <class T, class Arena>
std::size_t object_pool<T, Arena>::relocate_objects(detail::object_slab& src,
                                                    detail::object_slab& dst) noexcept {
    const detail::relocation_scope relocating(this);
    std::size_t moved = 0;
    std::size_t skipped = 0;
    for (std::uint32_t from = 0; from < src.capacity && src.in_use > 0 && dst.in_use < dst.capacity;
         ++from) {
        const std::uint32_t entry = src.entries()[from];
        if (!detail::slab_entry::is_taken(entry)) {
            continue;
        }
        const std::uint32_t slot = detail::slab_entry::slot(entry);
        std::atomic<std::uint32_t>& pins = handles_->slot(slot).pool_word;
        // A pinned object, or a reservation being built on, is skipped; an idle reservation
        // moves like an object (its place is as good as taken).
        if (!detail::pin_word::try_claim(pins)) {
            ++skipped;
            continue;
        }
        const std::uint32_t to = dst.take(slot);
        relocate_place(slot, *dst.home, to, *src.home, from);
        src.give_back(from);
        detail::pin_word::end_claim(pins);
        ++moved;
    }
    counters_.objects_moved.fetch_add(moved, std::memory_order_relaxed);
    counters_.objects_skipped_pinned.fetch_add(skipped, std::memory_order_relaxed);
    return moved;
}

template <class T, class Arena>
std::size_t object_pool<T, Arena>::compact() {
    check_not_relocating("object_pool::compact");
    std::unique_lock only_one(compaction_lock_, std::try_to_lock);
    if (!only_one.owns_lock()) {
        return 0;
    }
    std::size_t freed = 0;
    pool_lock guard(lock_);
    // Freed once the pool lock is dropped: first the slabs that held only idle reservations.
    detail::object_slab* emptied = steal_reservations();
    for (const detail::object_slab* s = emptied; s != nullptr; s = s->next) {
        ++freed;
    }
    const std::uint32_t epoch = ++epoch_;
    // A slab whose objects this pass found pinned and could not move is neither picked again
    // as a source nor as a target: each round moves an object or rules a slab out, so it ends.
    const auto eligible = [epoch](const detail::object_slab& slab) {
        return slab.skip_epoch != epoch;
    };
    detail::object_slab* dst = nullptr;
    while (frames_freeable() > 0) {
        if (dst == nullptr && (dst = groups_.take_densest(eligible)) == nullptr) {
            break;
        }
        detail::object_slab* src = groups_.take_sparsest(eligible);
        if (src == nullptr) {
            break;
        }
        // Always from the emptier to the fuller: every move raises the sum of squared in-use
        // counts, so the loop ends even when the picks are out of order.
        if (src->in_use > dst->in_use) {
            std::swap(src, dst);
        }
        relocate_objects(*src, *dst);
        if (src->in_use == 0) {
            src->freeing.store(1, std::memory_order_release);
            --slabs_;
            src->next = emptied;
            emptied = src;
            ++freed;
        } else {
            if (dst->in_use < dst->capacity) {
                src->skip_epoch = epoch; // what is left of it is pinned
            }
            groups_.link(*src);
        }
        const bool others_wait = lock_.contended();
        if (dst->in_use == dst->capacity || others_wait) {
            groups_.link(*dst);
            dst = nullptr;
        }
        if (others_wait) {
            counters_.compaction_yields.fetch_add(1, std::memory_order_relaxed);
            guard.unlock();
            free_chain(std::exchange(emptied, nullptr));
            std::this_thread::yield();
            guard.lock();
        }
    }
    if (dst != nullptr) {
        groups_.link(*dst);
    }
    if (detail::object_slab* spare = std::exchange(spare_, nullptr)) {
        spare->freeing.store(1, std::memory_order_release);
        --slabs_;
        spare->next = emptied;
        emptied = spare;
        ++freed;
    }
    guard.unlock();
    free_chain(emptied);
    counters_.compactions.fetch_add(1, std::memory_order_relaxed);
    counters_.frames_freed_by_compaction.fetch_add(freed, std::memory_order_relaxed);
    only_one.unlock();
    detail::shake_after_compaction(*this);
    return freed;
}

template <class T, class Arena>
std::size_t object_pool<T, Arena>::compactable_frames() const {
    std::lock_guard guard(lock_);
    return frames_freeable_by_compact();
}

template <class T, class Arena>
object_pool_stats object_pool<T, Arena>::stats() const {
    object_pool_stats out;
    out.object_size = sizeof(T);
    out.object_stride = object_stride;
    out.objects_per_frame = objects_per_frame;
    out.frame_size = frame_size;
    {
        std::lock_guard guard(lock_);
        out.frames = slabs_;
        out.reserve_frames = spare_ != nullptr ? 1 : 0;
        out.frames_freeable = frames_freeable_by_compact();
        out.fullness = groups_.histogram();
        const std::size_t live = size();
        out.reserved_places = taken_ > live ? taken_ - live : 0; // less places being built on
    }
    out.reservations_stolen = counters_.reservations_stolen.load(std::memory_order_relaxed);
    out.objects = size();
    out.min_frames = (out.objects + objects_per_frame - 1) / objects_per_frame;
    out.compactions = counters_.compactions.load(std::memory_order_relaxed);
    out.objects_moved = counters_.objects_moved.load(std::memory_order_relaxed);
    out.frames_freed_by_compaction =
        counters_.frames_freed_by_compaction.load(std::memory_order_relaxed);
    out.objects_skipped_pinned = counters_.objects_skipped_pinned.load(std::memory_order_relaxed);
    out.compaction_yields = counters_.compaction_yields.load(std::memory_order_relaxed);
    out.frames_migrated = counters_.frames_migrated.load(std::memory_order_relaxed);
    out.migrations_refused = counters_.migrations_refused.load(std::memory_order_relaxed);
    out.frames_released_while_isolated =
        counters_.frames_released_while_isolated.load(std::memory_order_relaxed);
    out.isolated_frames = counters_.isolated_frames.load(std::memory_order_relaxed);
    out.handle_slots_retired = handles_->retired();
    return out;
}

// ---- owner protocol ----------------------------------------------------------------------------

template <class T, class Arena>
bool object_pool<T, Arena>::isolate(frame& f, migrate_mode /*mode*/) noexcept {
    // A hint (migrate re-checks under the pool lock): a slab being freed is about to hand the
    // frame back.
    if (slab_of(f)->freeing.load(std::memory_order_acquire) != 0) {
        return false;
    }
    counters_.isolated_frames.fetch_add(1, std::memory_order_relaxed);
    return true;
}

template <class T, class Arena>
migrate_status object_pool<T, Arena>::migrate(frame& dst, frame& src, migrate_mode mode) noexcept {
    detail::object_slab& slab = *slab_of(src);
    pool_lock guard(lock_, std::defer_lock);
    if (!detail::lock_for_migration(guard, mode)) {
        return migrate_status::retry;
    }
    const auto refuse = [&] {
        counters_.migrations_refused.fetch_add(1, std::memory_order_relaxed);
        return migrate_status::busy;
    };
    if (slab.freeing.load(std::memory_order_relaxed) != 0) {
        return refuse();
    }
    MOVABLE_CONTRACT(slab.home == &src, "object_pool::migrate: frame is not its slab's home");
    const std::uint32_t* entries = slab.entries();
    const auto pins_of = [&](std::uint32_t place) -> std::atomic<std::uint32_t>& {
        return handles_->slot(detail::slab_entry::slot(entries[place])).pool_word;
    };
    // Claim every object (and reservation) of the frame, or none: a pinned object, or a place
    // being built on (its builder holds the claim), cannot move.
    for (std::uint32_t place = 0; place < slab.capacity; ++place) {
        if (detail::slab_entry::is_taken(entries[place]) &&
            !detail::pin_word::try_claim(pins_of(place))) {
            while (place-- > 0) {
                if (detail::slab_entry::is_taken(entries[place])) {
                    detail::pin_word::end_claim(pins_of(place));
                }
            }
            return refuse();
        }
    }
    if constexpr (moves_by_memcpy) {
        std::memcpy(arena_.address_of(dst), arena_.address_of(src), frame_size);
    }
    for (std::uint32_t place = 0; place < slab.capacity; ++place) {
        if (detail::slab_entry::is_taken(entries[place])) {
            relocate_place(detail::slab_entry::slot(entries[place]), dst, place, src, place,
                           moves_by_memcpy);
        }
    }
    slab.home = &dst;
    dst.set_private_word(src.private_word());
    set_movable(dst, *this);
    for (std::uint32_t place = 0; place < slab.capacity; ++place) {
        if (detail::slab_entry::is_taken(entries[place])) {
            detail::pin_word::end_claim(pins_of(place));
        }
    }
    guard.unlock();
    counters_.isolated_frames.fetch_sub(1, std::memory_order_relaxed);
    counters_.frames_migrated.fetch_add(1, std::memory_order_relaxed);
    return migrate_status::success;
}

template <class T, class Arena>
void object_pool<T, Arena>::putback(frame& /*f*/) noexcept {
    counters_.isolated_frames.fetch_sub(1, std::memory_order_relaxed);
}

} // namespace movable
