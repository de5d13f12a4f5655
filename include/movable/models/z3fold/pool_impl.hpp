// z3fold_pool's member functions (the class, its lock order and its documentation are in
// models/z3fold_pool.hpp, which includes this file at its end).
#pragma once

#include <movable/models/compressed_store.hpp>

#include <movable/models/z3fold/invariants.hpp>
#include <movable/models/z3fold_pool.hpp>

#include <algorithm>
#include <cstring>
#include <new>
#include <utility>

#include <movable/pool/pool_frames.hpp>

namespace movable {

// An object found through its handle, the pool lock held by the caller.
template <class Arena>
struct z3fold_pool<Arena>::located {
    detail::handle_slot* entry;
    std::uint32_t slot;
    detail::z3fold_frame* frame;
    detail::z3fold_buddy buddy;
};

// A pinned object: its frame's pin, where its bytes are and its requested size.
template <class Arena>
struct z3fold_pool<Arena>::resolved {
    detail::container_pin<detail::z3fold_frame> pin;
    std::byte* bytes;
    std::size_t size;
};

// ---- construction and destruction ------------------------------------------------------------

template <class Arena>
z3fold_pool<Arena>::z3fold_pool(Arena& arena) : arena_(arena) {
    if (!locations_.fits(arena.frame_count())) {
        throw std::invalid_argument("z3fold_pool: arena has too many frames for the handle "
                                    "location encoding");
    }
    // At most three objects per frame.
    const std::size_t max_slots =
        std::min<std::size_t>(arena.frame_count() * 3, detail::handle_table::none - 1);
    handles_ = std::make_unique<detail::handle_table>(max_slots);
}

template <class Arena>
z3fold_pool<Arena>::~z3fold_pool() {
    detail::z3fold_frame* chain = nullptr;
    {
        std::lock_guard guard(lock_);
        while (detail::z3fold_frame* zf = frames_list_.oldest) {
            MOVABLE_CONTRACT(zf->pins.load(std::memory_order_acquire) == 0,
                             "z3fold_pool::~z3fold_pool: an object is still mapped");
            unbuddied_.unfile(*zf);
            retire_frame_locked(*zf);
            zf->next = chain;
            chain = zf;
        }
        objects_ = bytes_ = chunks_ = 0;
    }
    while (chain != nullptr) {
        release_frame(std::exchange(chain, chain->next));
    }
}

// ---- helpers -------------------------------------------------------------------------------

template <class Arena>
std::byte* z3fold_pool<Arena>::bytes_of(const detail::z3fold_frame& zf,
                                        detail::z3fold_buddy buddy) const noexcept {
    return arena_.address_of(*zf.memory) + std::size_t{layout::start(zf, buddy)} * chunk_size;
}

// Publishes where the object of `slot` lives now. Pool locked.
template <class Arena>
void z3fold_pool<Arena>::set_location(std::uint32_t slot, const detail::z3fold_frame& zf,
                                      detail::z3fold_buddy buddy) const noexcept {
    const std::uint64_t location =
        locations_.make(arena_.index_of(*zf.memory), static_cast<std::uint32_t>(buddy));
    handles_->word(slot).store(detail::slot_word::make(location, 0, true),
                               std::memory_order_release);
}

template <class Arena>
std::size_t z3fold_pool<Arena>::size_of(std::uint32_t slot) const noexcept {
    return handles_->slot(slot).pool_word.load(std::memory_order_relaxed);
}

template <class Arena>
auto z3fold_pool<Arena>::lock_and_locate(handle h, const char* stale_message,
                                         pool_lock& guard) const -> located {
    const std::uint32_t slot = detail::handle_value::slot(h.value());
    detail::handle_slot& entry = handles_->checked_slot(h.value(), stale_message);
    guard = pool_lock(lock_);
    const std::uint64_t location =
        detail::slot_word::location(detail::live_slot_word(entry, h.value(), stale_message));
    detail::z3fold_frame* zf =
        detail::z3fold_frame_of(arena_.frame_at(locations_.frame_index(location)));
    return {&entry, slot, zf, static_cast<detail::z3fold_buddy>(locations_.object(location))};
}

template <class Arena>
auto z3fold_pool<Arena>::resolve_and_pin(handle h, const char* call,
                                         const char* stale_message) const -> resolved {
    detail::check_handle(call, h);
    pool_lock guard;
    const located at = lock_and_locate(h, stale_message, guard);
    return {detail::container_pin<detail::z3fold_frame>(*at.frame), bytes_of(*at.frame, at.buddy),
            static_cast<std::size_t>(at.entry->pool_word.load(std::memory_order_relaxed))};
}

template <class Arena>
void z3fold_pool<Arena>::put_buddy_locked(detail::z3fold_frame& zf, detail::z3fold_place at,
                                          std::uint32_t slot, std::uint32_t chunks) noexcept {
    const auto b = static_cast<std::size_t>(at.buddy);
    zf.chunks[b] = chunks;
    zf.slots[b] = slot;
    if (at.buddy == detail::z3fold_buddy::middle) {
        zf.start_middle = at.start;
    }
    set_location(slot, zf, at.buddy);
}

template <class Arena>
bool z3fold_pool<Arena>::free_buddy_locked(detail::z3fold_frame& zf,
                                           detail::z3fold_buddy buddy) noexcept {
    const auto b = static_cast<std::size_t>(buddy);
    const std::uint32_t slot = zf.slots[b];
    --objects_;
    bytes_ -= size_of(slot);
    chunks_ -= zf.chunks[b];
    zf.chunks[b] = 0;
    if (buddy == detail::z3fold_buddy::middle) {
        zf.start_middle = 0;
    }
    const bool retire = !handles_->end_generation(slot);
    handles_->word(slot).store(detail::slot_word::make(0, 0, false), std::memory_order_release);
    return retire;
}

template <class Arena>
void z3fold_pool<Arena>::give_back_slot(std::uint32_t slot, bool retire) noexcept {
    if (retire) {
        handles_->retire(slot);
    } else {
        handles_->release(slot);
    }
}

template <class Arena>
bool z3fold_pool<Arena>::compact_in_frame_locked(detail::z3fold_frame& zf,
                                                 std::uint32_t min_gap) noexcept {
    detail::z3fold_place to;
    if (!layout::compaction_target(zf, min_gap, to)) {
        return false;
    }
    constexpr auto middle = static_cast<std::size_t>(detail::z3fold_buddy::middle);
    const std::uint32_t slot = zf.slots[middle];
    const std::uint32_t chunks = zf.chunks[middle];
    std::byte* from = bytes_of(zf, detail::z3fold_buddy::middle);
    zf.chunks[middle] = 0;
    zf.start_middle = 0;
    put_buddy_locked(zf, to, slot, chunks);
    std::memmove(bytes_of(zf, to.buddy), from, size_of(slot)); // the runs may overlap
    counters_.middles_moved.fetch_add(1, std::memory_order_relaxed);
    return true;
}

template <class Arena>
void z3fold_pool<Arena>::retire_frame_locked(detail::z3fold_frame& zf) noexcept {
    frames_list_.remove(zf);
    zf.freeing.store(1, std::memory_order_release);
    --frames_;
}

// The frame's memory is final once it is marked freeing: migration answers busy from then on.
template <class Arena>
void z3fold_pool<Arena>::release_frame(detail::z3fold_frame* zf) noexcept {
    if (detail::free_pool_frame(arena_, *zf->memory)) {
        counters_.isolated_frames.fetch_sub(1, std::memory_order_relaxed);
        counters_.frames_released_while_isolated.fetch_add(1, std::memory_order_relaxed);
    }
    delete zf; // after clear_movable under the frame's lock, no callback can reach it
}

// A new, empty frame with its descriptor, movable with this pool as owner; null when the arena
// (or the heap) is exhausted. No lock of the pool held.
template <class Arena>
detail::z3fold_frame* z3fold_pool<Arena>::new_frame() noexcept {
    auto* zf = new (std::nothrow) detail::z3fold_frame;
    if (zf == nullptr) {
        return nullptr;
    }
    if (!detail::new_pool_frame(arena_, *this, *zf)) {
        delete zf;
        return nullptr;
    }
    return zf;
}

// ---- objects ---------------------------------------------------------------------------------

template <class Arena>
z3fold_handle z3fold_pool<Arena>::try_allocate(std::size_t size) noexcept {
    if (size == 0 || size > max_object_size()) {
        return {};
    }
    const std::uint32_t chunks = chunk_math::of_size(size);
    const std::uint32_t slot = handles_->acquire();
    if (slot == detail::handle_table::none) {
        return {};
    }
    pool_lock guard(lock_);
    detail::z3fold_frame* zf =
        unbuddied_.find_best_fit(chunks, [](const detail::z3fold_frame&) { return true; });
    if (zf != nullptr) {
        unbuddied_.unfile(*zf);
        frames_list_.remove(*zf);
    } else {
        guard.unlock();
        zf = new_frame();
        if (zf == nullptr) {
            handles_->release(slot); // never marked allocated: its generation stays
            return {};
        }
        guard.lock();
        ++frames_;
    }
    detail::handle_slot& entry = handles_->slot(slot);
    entry.pool_word.store(static_cast<std::uint32_t>(size), std::memory_order_relaxed);
    put_buddy_locked(*zf, layout::place(*zf, chunks), slot, chunks);
    ++objects_;
    bytes_ += size;
    chunks_ += chunks;
    const std::uint32_t generation = entry.generation.load(std::memory_order_relaxed);
    unbuddied_.file(*zf);
    frames_list_.push_newest(*zf);
    guard.unlock();
    detail::shake_after_allocation(*this);
    return z3fold_handle::from_value(detail::handle_value::make(slot, generation));
}

template <class Arena>
z3fold_handle z3fold_pool<Arena>::allocate(std::size_t size) {
    detail::check_object_size("z3fold_pool::allocate", size, max_object_size());
    const handle h = try_allocate(size);
    if (!h) {
        throw std::bad_alloc();
    }
    return h;
}

template <class Arena>
void z3fold_pool<Arena>::deallocate(handle h) {
    detail::check_handle("z3fold_pool::deallocate", h);
    detail::z3fold_frame* emptied = nullptr;
    bool retire = false;
    std::uint32_t slot = 0;
    {
        pool_lock guard;
        const located at = lock_and_locate(
            h, "z3fold_pool::deallocate: handle is stale (object already freed: double free?)",
            guard);
        detail::z3fold_frame& zf = *at.frame;
        slot = at.slot;
        retire = free_buddy_locked(zf, at.buddy);
        unbuddied_.unfile(zf);
        if (zf.empty()) {
            MOVABLE_CONTRACT(zf.pins.load(std::memory_order_acquire) == 0,
                             "z3fold_pool::deallocate: freed an object that is still mapped");
            retire_frame_locked(zf);
            emptied = &zf;
        } else {
            if (zf.pins.load(std::memory_order_acquire) == 0) {
                compact_in_frame_locked(zf, detail::z3fold_big_gap);
            }
            unbuddied_.file(zf);
        }
    }
    give_back_slot(slot, retire);
    if (emptied != nullptr) {
        release_frame(emptied);
    }
}

template <class Arena>
std::size_t z3fold_pool<Arena>::size(handle h) const {
    return resolve_and_pin(h, "z3fold_pool::size",
                           "z3fold_pool::size: handle is stale (object freed)")
        .size;
}

template <class Arena>
void z3fold_pool<Arena>::read(handle h, std::span<std::byte> out) const {
    const resolved r = resolve_and_pin(h, "z3fold_pool::read",
                                       "z3fold_pool::read: handle is stale (object freed)");
    detail::check_span("z3fold_pool::read", out.size(), r.size);
    if (!out.empty()) {
        std::memcpy(out.data(), r.bytes, out.size());
    }
}

template <class Arena>
void z3fold_pool<Arena>::write(handle h, std::span<const std::byte> data) {
    const resolved r = resolve_and_pin(h, "z3fold_pool::write",
                                       "z3fold_pool::write: handle is stale (object freed)");
    detail::check_span("z3fold_pool::write", data.size(), r.size);
    if (!data.empty()) {
        std::memcpy(r.bytes, data.data(), data.size());
    }
}

template <class Arena>
auto z3fold_pool<Arena>::map(handle h, store_access access) -> mapping {
    resolved r =
        resolve_and_pin(h, "z3fold_pool::map", "z3fold_pool::map: handle is stale (object freed)");
    return mapping(std::move(r.pin), std::span<std::byte>(r.bytes, r.size), access,
                   "z3fold_pool::mapping::writable_bytes: mapped for reading only",
                   detail::unpin_shake_for(*this));
}

template <class Arena>
z3fold_pool_stats z3fold_pool<Arena>::stats() const {
    z3fold_pool_stats out;
    out.frame_size = frame_size;
    {
        std::lock_guard guard(lock_);
        out.frames_in_use = frames_;
        out.objects_in_use = objects_;
        out.bytes_stored = bytes_;
        out.chunks_in_use = chunks_;
        out.unbuddied_frames = unbuddied_.frames;
    }
    constexpr auto relaxed = std::memory_order_relaxed;
    out.compactions = counters_.compactions.load(relaxed);
    out.frames_freed_by_compaction = counters_.frames_freed_by_compaction.load(relaxed);
    out.middles_moved = counters_.middles_moved.load(relaxed);
    out.objects_moved = counters_.objects_moved.load(relaxed);
    out.frames_migrated = counters_.frames_migrated.load(relaxed);
    out.frames_released_while_isolated = counters_.frames_released_while_isolated.load(relaxed);
    out.isolated_frames = counters_.isolated_frames.load(relaxed);
    out.handle_slots_retired = handles_->retired();
    return out;
}

template <class Arena>
void z3fold_pool<Arena>::check_invariants() const {
    detail::z3fold_pool_invariants::check(*this);
}

// ---- owner protocol ----------------------------------------------------------------------------

template <class Arena>
bool z3fold_pool<Arena>::isolate(frame& f, migrate_mode /*mode*/) noexcept {
    const detail::z3fold_frame* zf = detail::z3fold_frame_of(f);
    // Hints only (migrate re-checks under the pool lock).
    if (zf->freeing.load(std::memory_order_acquire) != 0 ||
        zf->pins.load(std::memory_order_acquire) != 0) {
        return false;
    }
    counters_.isolated_frames.fetch_add(1, std::memory_order_relaxed);
    return true;
}

template <class Arena>
migrate_status z3fold_pool<Arena>::migrate(frame& dst, frame& src, migrate_mode mode) noexcept {
    const migrate_status status = detail::migrate_descriptor_frame(
        arena_, *this, *detail::z3fold_frame_of(src), lock_, dst, src, mode,
        "z3fold_pool::migrate: frame is not its descriptor's", [this](detail::z3fold_frame& zf) {
            for (const detail::z3fold_buddy buddy : detail::z3fold_buddies) {
                if (zf.used(buddy)) {
                    set_location(zf.slots[static_cast<std::size_t>(buddy)], zf, buddy);
                }
            }
        });
    if (status == migrate_status::success) {
        counters_.isolated_frames.fetch_sub(1, std::memory_order_relaxed);
        counters_.frames_migrated.fetch_add(1, std::memory_order_relaxed);
    }
    return status;
}

template <class Arena>
void z3fold_pool<Arena>::putback(frame& /*f*/) noexcept {
    counters_.isolated_frames.fetch_sub(1, std::memory_order_relaxed);
}

static_assert(detail::check_compressed_store<z3fold_pool<>>());

} // namespace movable
