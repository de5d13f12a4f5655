// zspage_pool's member functions (the class, its lock order and its documentation are in
// models/zspage_pool.hpp, which includes this file at its end): construction and destruction,
// handle lookup and pinning, allocation and freeing, reads, writes and mappings, compaction and
// the owner callbacks that move its frames.
#pragma once

#include <movable/models/compressed_store.hpp>

#include <movable/models/zspage_pool.hpp>

namespace movable {

// An object found through its handle, its class lock held by the caller.
template <class Arena>
struct zspage_pool<Arena>::located {
    class_state* cls;
    detail::handle_slot* entry;
    std::uint32_t slot;
    detail::zspage* zspage;
    std::uint32_t object;
};

// A pinned object: its zspage's pin, class, index and requested size.
template <class Arena>
struct zspage_pool<Arena>::resolved {
    detail::zspage_pin pin;
    class_state* cls;
    std::uint32_t object;
    std::size_t size;
    [[nodiscard]] detail::zspage& zspage() const noexcept { return *pin.get(); }
    [[nodiscard]] std::size_t payload_offset() const noexcept {
        return std::size_t{object} * cls->info.object_size + cls->header_bytes;
    }
};

// ---- construction and destruction ------------------------------------------------------------

template <class Arena>
zspage_pool<Arena>::zspage_pool(Arena& arena, zspage_pool_options options)
    : arena_(arena), options_(options), max_chain_(options.max_frames_per_zspage),
      class_map_(frame_size, max_chain_), descriptors_(arena.frame_count()) {
    static_assert(detail::size_class_count(frame_size) <= detail::slot_word::class_count,
                  "zspage_pool: every size class id must fit the slot word's class bits");
    static_assert(frame_size <= 0xffffffff,
                  "zspage_pool: an object's size (at most a frame) must fit a handle slot's 32 "
                  "bits");
    // An object index must be able to say "none" (objects_per_zspage) too.
    locations_ = detail::location_format(class_map_.max_objects_per_zspage());
    if (!locations_.fits(arena.frame_count())) {
        throw std::invalid_argument("zspage_pool: arena has too many frames for the handle "
                                    "location encoding");
    }
    classes_ = std::make_unique<class_state[]>(class_map_.size());
    for (std::size_t i = 0; i < class_map_.size(); ++i) {
        classes_[i].init(class_map_.classes()[i], static_cast<std::uint32_t>(i));
    }
    // Every live object needs a slot: at most one per smallest object in the arena.
    const std::size_t max_slots =
        std::min<std::size_t>(arena.frame_count() * (frame_size / zspage_min_object_size),
                              detail::handle_table::none - 1);
    handles_ = std::make_unique<detail::handle_table>(max_slots);
}

template <class Arena>
zspage_pool<Arena>::~zspage_pool() {
    caches_.retire(); // no exiting thread gives its cache back from now on
    detail::zspage* chain = nullptr;
    for (std::size_t c = 0; c < class_map_.size(); ++c) {
        std::lock_guard guard(classes_[c].lock);
        chain = classes_[c].take_all(chain);
    }
    free_chain(chain);
}

// ---- helpers -------------------------------------------------------------------------------

template <class Arena>
const zspage_size_class& zspage_pool<Arena>::size_class_for(std::size_t size) const {
    detail::check_object_size("zspage_pool::size_class_for", size, max_object_size());
    return class_of_payload(size).info;
}

// Publishes where the object (or reservation: not `allocated`) of `slot` lives now: the frame it
// starts in and its index in the zspage. Class locked, or the zspage pinned by the caller.
template <class Arena>
void zspage_pool<Arena>::set_location(std::uint32_t slot, detail::zspage& zs,
                                      const class_state& cls, std::uint32_t object,
                                      bool allocated) const noexcept {
    const std::size_t position = std::size_t{object} * cls.info.object_size / frame_size;
    const std::uint64_t location = locations_.make(arena_.index_of(*zs.frames[position]), object);
    handles_->word(slot).store(detail::slot_word::make(location, cls.id, allocated),
                               std::memory_order_release);
}
template <class Arena>
void zspage_pool<Arena>::relocate(std::uint32_t slot, detail::zspage& zs, const class_state& cls,
                                  std::uint32_t object) const noexcept {
    set_location(
        slot, zs, cls, object,
        detail::slot_word::allocated(handles_->word(slot).load(std::memory_order_relaxed)));
}

// Gives emptied zspages (linked through next) back (detail::zspage_release); their frames
// that the core holds isolated are the core's to free.
template <class Arena>
void zspage_pool<Arena>::free_chain(detail::zspage* first) noexcept {
    while (first != nullptr) {
        detail::zspage* next = first->next;
        const std::size_t left_to_core = detail::zspage_release(
            arena_, first, classes_[first->class_id].info.frames_per_zspage, descriptors_);
        counters_.isolated_frames.fetch_sub(left_to_core, std::memory_order_relaxed);
        counters_.frames_released_while_isolated.fetch_add(left_to_core, std::memory_order_relaxed);
        first = next;
    }
}

// Finds the object a handle names and takes its class lock into `guard`: the one locked lookup
// of the handle's slot that resolve_and_pin and deallocate share. A stale handle (or one the
// pool never gave out) is a contract violation, reported with `stale_message`.
template <class Arena>
auto zspage_pool<Arena>::lock_and_locate(handle h, const char* stale_message,
                                         std::unique_lock<detail::contended_mutex>& guard) const
    -> located {
    const std::uint32_t slot = detail::handle_value::slot(h.value());
    detail::handle_slot& entry = handles_->checked_slot(h.value(), stale_message);
    const std::uint64_t first_look = entry.word.load(std::memory_order_acquire);
    const std::uint32_t class_id = detail::slot_word::class_id(first_look);
    // Every build: the class indexes classes_, whose lock is taken next.
    detail::release_check(class_id < class_map_.size(), stale_message);
    class_state& cls = classes_[class_id];
    // Harmless when the first look is stale or garbage: a prefetch never faults.
    const std::uint64_t guess = detail::slot_word::location(first_look);
    detail::zspage_prefetch_object(arena_, cls, locations_.frame_index(guess),
                                   locations_.object(guess));
    guard = std::unique_lock(cls.lock);
    // Under the class lock the word cannot change: every move and free of the object holds it.
    // Every build: a free slot's word is not a location, and the class lock taken must be the
    // object's. The generation in Debug and hardened builds (detail::live_slot_word says why).
    const std::uint64_t w = entry.word.load(std::memory_order_relaxed);
    detail::release_check(detail::slot_word::allocated(w) &&
                              detail::slot_word::class_id(w) == class_id,
                          stale_message);
    MOVABLE_CONTRACT(detail::names_live_object(entry, w, h.value()), stale_message);
    const std::uint64_t location = detail::slot_word::location(w);
    return {&cls, &entry, slot, zspage_of(frame_of(location)), locations_.object(location)};
}

// Resolves a handle and pins its zspage, so the object stays put until the pin ends. Throws
// std::invalid_argument naming `call` for the empty handle.
template <class Arena>
auto zspage_pool<Arena>::resolve_and_pin(handle h, const char* call,
                                         const char* stale_message) const -> resolved {
    detail::check_handle(call, h);
    if (std::optional<resolved> pinned = try_pin_unlocked(h)) {
        return std::move(*pinned);
    }
    // A mover holds the zspage, the handle is stale, or the look raced with a move: the class
    // lock settles it (and reports a stale handle).
    std::unique_lock<detail::contended_mutex> guard;
    const located at = lock_and_locate(h, stale_message, guard);
    return {detail::zspage_pin(*at.zspage), at.cls, at.object,
            static_cast<std::size_t>(at.entry->pool_word.load(std::memory_order_relaxed))};
}

// The common pin, without the class lock: follows the handle's location to its frame and the
// frame's private word to a zspage descriptor (type-stable: descriptors_.find says whether the
// word names one), pins that zspage optimistically (no mover holds it), then checks that the
// handle's word and the frame's private word are still what it followed. Once pinned, no mover
// can change either, so the object is in that zspage until the pin ends. Nothing when any step
// does not hold: the caller takes the locked way.
template <class Arena>
auto zspage_pool<Arena>::try_pin_unlocked(handle h) const noexcept -> std::optional<resolved> {
    const std::uint32_t slot = detail::handle_value::slot(h.value());
    if (!handles_->contains(slot)) {
        return std::nullopt;
    }
    const detail::handle_slot& entry = handles_->slot(slot);
    const std::uint64_t w = entry.word.load(std::memory_order_acquire);
    const std::uint32_t class_id = detail::slot_word::class_id(w);
    if (!detail::slot_word::allocated(w) || class_id >= class_map_.size()) {
        return std::nullopt;
    }
    std::optional<detail::zspage_pin> pin = pin_at(entry, w);
    if (!pin || entry.generation.load(std::memory_order_relaxed) !=
                    detail::handle_value::generation(h.value())) {
        return std::nullopt; // a pin taken ends with `pin`
    }
    return resolved{std::move(*pin), &classes_[class_id],
                    locations_.object(detail::slot_word::location(w)),
                    static_cast<std::size_t>(entry.pool_word.load(std::memory_order_relaxed))};
}

// Pins, without a lock, the zspage that the location in `w` (entry's word, just loaded) names,
// and checks that entry's word is still `w` and the frame still leads to that zspage: then no
// mover can change either until the pin ends. Nothing when a step does not hold.
template <class Arena>
std::optional<detail::zspage_pin> zspage_pool<Arena>::pin_at(const detail::handle_slot& entry,
                                                             std::uint64_t w) const noexcept {
    const std::size_t frame_index = locations_.frame_index(detail::slot_word::location(w));
    if (frame_index >= arena_.frame_count()) {
        return std::nullopt;
    }
    const frame& f = arena_.frame_at(frame_index);
    const std::uintptr_t link = f.private_word();
    detail::zspage* zs = descriptors_.find(detail::zspage_link::from_raw(link).pointer());
    if (zs == nullptr || !detail::container_claim::try_pin(zs->pins)) {
        return std::nullopt;
    }
    detail::zspage_pin pin = detail::zspage_pin::adopt(*zs);
    if (entry.word.load(std::memory_order_acquire) != w || f.private_word() != link) {
        return std::nullopt; // the pin ends with `pin`
    }
    return pin;
}

// ---- objects ---------------------------------------------------------------------------------

template <class Arena>
zspage_handle zspage_pool<Arena>::try_allocate(std::size_t size) noexcept {
    if (size == 0 || size > max_object_size()) {
        return {};
    }
    class_state& cls = class_of_payload(size);
    magazine* m = local_magazine();
    if (m != nullptr) {
        if (const handle h = allocate_cached(*m, cls, size)) {
            detail::shake_after_allocation(*this);
            return h;
        }
    }
    if (const handle h = allocate_locked(cls, size)) {
        return h;
    }
    if (m == nullptr) {
        return {};
    }
    // The arena (or the handle table) is exhausted: places reserved in threads' caches may be
    // what is missing. Give this thread's back, take back every idle one, and try once more.
    give_back_magazine(*m);
    for (std::size_t c = 0; c < class_map_.size(); ++c) {
        take_back_idle(classes_[c]);
    }
    return allocate_locked(cls, size);
}

template <class Arena>
zspage_handle zspage_pool<Arena>::allocate_locked(class_state& cls, std::size_t size) noexcept {
    const std::uint32_t slot = handles_->acquire();
    if (slot == detail::handle_table::none) {
        return {};
    }
    std::unique_lock guard(cls.lock);
    detail::zspage* zs = cls.fullest_not_full();
    const bool fresh = zs == nullptr;
    if (fresh) {
        guard.unlock();
        zs = detail::zspage_create(arena_, cls, *this, descriptors_);
        if (zs == nullptr) {
            handles_->release(slot); // never marked allocated: its generation stays
            return {};
        }
        guard.lock();
        ++cls.zspages;
    }
    const std::uint32_t object = detail::zspage_pop_free_object(arena_, cls, *zs);
    detail::zspage_write_header(arena_, cls, *zs, object, detail::object_header::allocated(slot));
    ++cls.objects_in_use;
    cls.bytes_in_use += size;
    detail::handle_slot& entry = handles_->slot(slot);
    entry.pool_word.store(static_cast<std::uint32_t>(size), std::memory_order_relaxed);
    const std::uint32_t generation = entry.generation.load(std::memory_order_relaxed);
    set_location(slot, *zs, cls, object, true);
    if (fresh) {
        cls.link(*zs);
    } else {
        cls.refile(*zs);
    }
    if constexpr (detail::expensive_checks_enabled) {
        detail::zspage_pool_invariants::check_class(arena_, cls, zs);
    }
    guard.unlock();
    detail::shake_after_allocation(*this);
    return zspage_handle::from_value(detail::handle_value::make(slot, generation));
}

template <class Arena>
zspage_handle zspage_pool<Arena>::allocate(std::size_t size) {
    detail::check_object_size("zspage_pool::allocate", size, max_object_size());
    const handle h = try_allocate(size);
    if (!h) {
        throw std::bad_alloc();
    }
    return h;
}

template <class Arena>
void zspage_pool<Arena>::deallocate(handle h) {
    detail::check_handle("zspage_pool::deallocate", h);
    if (magazine* m = local_magazine(); m != nullptr && deallocate_cached(*m, h)) {
        return;
    }
    detail::zspage* emptied = nullptr;
    bool retire = false;
    std::uint32_t slot = 0;
    {
        std::unique_lock<detail::contended_mutex> guard;
        const located at = lock_and_locate(
            h, "zspage_pool::deallocate: handle is stale (object already freed: double free?)",
            guard);
        class_state& cls = *at.cls;
        detail::zspage& zs = *at.zspage;
        slot = at.slot;
        detail::zspage_push_free_object(arena_, cls, zs, at.object);
        --cls.objects_in_use;
        cls.bytes_in_use -=
            static_cast<std::size_t>(at.entry->pool_word.load(std::memory_order_relaxed));
        // Every handle this slot gives out has a generation of its own: one that would wrap
        // retires the slot instead.
        retire = !handles_->end_generation(slot);
        at.entry->word.store(detail::slot_word::make(0, cls.id, false), std::memory_order_release);
        // A mapping left on an emptied zspage (misuse) is reported when it is claimed for
        // release.
        emptied = cls.settle_after_free(zs, nullptr);
        if constexpr (detail::expensive_checks_enabled) {
            detail::zspage_pool_invariants::check_class(arena_, cls, &zs);
        }
    }
    if (retire) {
        handles_->retire(slot);
    } else {
        handles_->release(slot);
    }
    free_chain(emptied); // none, or one zspage
}

template <class Arena>
std::size_t zspage_pool<Arena>::size(handle h) const {
    return resolve_and_pin(h, "zspage_pool::size",
                           "zspage_pool::size: handle is stale (object freed)")
        .size;
}

template <class Arena>
void zspage_pool<Arena>::read(handle h, std::span<std::byte> out) const {
    const resolved r = resolve_and_pin(h, "zspage_pool::read",
                                       "zspage_pool::read: handle is stale (object freed)");
    detail::check_span("zspage_pool::read", out.size(), r.size);
    detail::zspage_copy_out(arena_, r.zspage(), r.payload_offset(), out.data(), out.size());
}

template <class Arena>
void zspage_pool<Arena>::write(handle h, std::span<const std::byte> data) {
    const resolved r = resolve_and_pin(h, "zspage_pool::write",
                                       "zspage_pool::write: handle is stale (object freed)");
    detail::check_span("zspage_pool::write", data.size(), r.size);
    detail::zspage_copy_in(arena_, r.zspage(), r.payload_offset(), data.data(), data.size());
}

template <class Arena>
auto zspage_pool<Arena>::map(handle h, zspage_access access) -> mapping {
    resolved r =
        resolve_and_pin(h, "zspage_pool::map", "zspage_pool::map: handle is stale (object freed)");
    const std::size_t offset = r.payload_offset();
    return mapping(*this, std::move(r.pin), offset, r.size, access);
}

// ---- compaction ------------------------------------------------------------------------------

// Compacts one class (detail::zspage_compact_class), rewriting the handles of the objects moved.
template <class Arena>
std::size_t zspage_pool<Arena>::compact_class(class_state& cls) {
    const auto size_of = [&](std::uint32_t slot) -> std::size_t {
        return handles_->slot(slot).pool_word.load(std::memory_order_relaxed);
    };
    const auto relocated = [&](std::uint32_t slot, detail::zspage& zs, std::uint32_t object) {
        set_location(slot, zs, cls, object, true);
    };
    const auto take_back = [&](std::uint32_t slot) { return take_back_reservation(cls, slot); };
    // Idle reservations first: the zspages that held only those go at once.
    return take_back_idle(cls) +
           detail::zspage_compact_class(
               cls,
               [&](detail::zspage& src, detail::zspage& dst) {
                   const std::size_t moved = detail::zspage_move_objects(
                       arena_, cls, src, dst, size_of, relocated, take_back);
                   counters_.objects_moved.fetch_add(moved, std::memory_order_relaxed);
               },
               [&](detail::zspage* emptied) { free_chain(emptied); });
}

template <class Arena>
std::size_t zspage_pool<Arena>::compact() {
    std::unique_lock only_one(compaction_lock_, std::try_to_lock);
    if (!only_one.owns_lock()) {
        return 0;
    }
    std::size_t freed = 0;
    for (std::size_t c = class_map_.size(); c-- > 0;) {
        // A huge class's zspage holds one object: nothing to pack, only reservations to take.
        freed += classes_[c].info.huge ? take_back_idle(classes_[c]) : compact_class(classes_[c]);
    }
    counters_.compactions.fetch_add(1, std::memory_order_relaxed);
    counters_.frames_freed_by_compaction.fetch_add(freed, std::memory_order_relaxed);
    only_one.unlock();
    detail::shake_after_compaction(*this);
    return freed;
}

template <class Arena>
std::size_t zspage_pool<Arena>::compactable_frames() const {
    const std::vector<std::size_t> reserved = reserved_by_class();
    std::size_t frames = 0;
    for (std::size_t c = 0; c < class_map_.size(); ++c) {
        std::lock_guard guard(classes_[c].lock);
        frames += classes_[c].frames_freeable(reserved[c]);
    }
    return frames;
}

template <class Arena>
zspage_pool_stats zspage_pool<Arena>::stats() const {
    return detail::pool_stats_of(std::span(classes_.get(), class_map_.size()), frame_size,
                                 counters_, handles_->retired(), reserved_by_class(),
                                 cached_bytes_by_class());
}

// ---- owner protocol ----------------------------------------------------------------------------

template <class Arena>
bool zspage_pool<Arena>::isolate(frame& f, migrate_mode /*mode*/) noexcept {
    const detail::zspage* zs = zspage_of(f);
    // Hints only (migrate re-checks under the class lock): a pinned zspage would answer busy,
    // and a zspage being freed is about to hand the frame back.
    if (zs->freeing.load(std::memory_order_acquire) != 0 ||
        zs->pins.load(std::memory_order_acquire) != 0) {
        return false;
    }
    counters_.isolated_frames.fetch_add(1, std::memory_order_relaxed);
    return true;
}

template <class Arena>
migrate_status zspage_pool<Arena>::migrate(frame& dst, frame& src, migrate_mode mode) noexcept {
    const detail::zspage_link link = detail::zspage_link::from_raw(src.private_word());
    detail::zspage* zs = link.pointer();
    const std::size_t position = link.tag();
    class_state& cls = classes_[zs->class_id];
    std::unique_lock guard(cls.lock, std::defer_lock);
    if (!detail::lock_for_migration(guard, mode)) {
        return migrate_status::retry;
    }
    if (zs->freeing.load(std::memory_order_relaxed) != 0) {
        return migrate_status::busy;
    }
    if (!detail::zspage_try_claim(*zs) &&
        (mode != migrate_mode::sync || !wait_for_unpinned(*zs, guard))) {
        return migrate_status::busy;
    }
    MOVABLE_CONTRACT(zs->frames[position] == &src,
                     "zspage_pool::migrate: frame is not where its zspage's chain says");
    detail::zspage_move_frame(arena_, cls, *zs, position, dst,
                              [&](std::uint32_t slot, detail::zspage& moved, std::uint32_t object) {
                                  relocate(slot, moved, cls, object); // object or reservation
                              });
    dst.set_private_word(link.raw());
    set_movable(dst, *this);
    detail::zspage_end_claim(*zs);
    guard.unlock();
    counters_.isolated_frames.fetch_sub(1, std::memory_order_relaxed);
    counters_.frames_migrated.fetch_add(1, std::memory_order_relaxed);
    return migrate_status::success;
}

// `sync` migration of a frame of the pinned zspage `zs`, class lock held by `guard`: waits,
// bounded (options().sync_pin_wait_attempts looks), for the pins to drop; true with zs claimed.
template <class Arena>
bool zspage_pool<Arena>::wait_for_unpinned(
    detail::zspage& zs, std::unique_lock<detail::contended_mutex>& guard) noexcept {
    if (options_.sync_pin_wait_attempts == 0) {
        return false;
    }
    counters_.migrate_pin_waits.fetch_add(1, std::memory_order_relaxed);
    return detail::zspage_wait_for_unpinned(zs, guard, options_.sync_pin_wait_attempts);
}

template <class Arena>
void zspage_pool<Arena>::putback(frame& /*f*/) noexcept {
    counters_.isolated_frames.fetch_sub(1, std::memory_order_relaxed);
}

static_assert(detail::check_compressed_store<zspage_pool<>>());

} // namespace movable
