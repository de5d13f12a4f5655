// zbud_pool's member functions (the class, its lock order and its documentation are in
// models/zbud_pool.hpp, which includes this file at its end).
#pragma once

#include <movable/models/compressed_store.hpp>

#include <movable/models/zbud/invariants.hpp>
#include <movable/models/zbud_pool.hpp>

#include <cstring>
#include <new>
#include <thread>
#include <utility>

#include <movable/pool/pool_frames.hpp>

namespace movable {

// An object found through its handle, the pool lock held by the caller.
template <class Arena>
struct zbud_pool<Arena>::located {
    detail::handle_slot* entry;
    std::uint32_t slot;
    detail::zbud_frame* frame;
    detail::zbud_buddy buddy;
};

// A pinned object: its frame's pin, where its bytes are and its requested size.
template <class Arena>
struct zbud_pool<Arena>::resolved {
    detail::container_pin<detail::zbud_frame> pin;
    std::byte* bytes;
    std::size_t size;
};

// ---- construction and destruction ------------------------------------------------------------

template <class Arena>
zbud_pool<Arena>::zbud_pool(Arena& arena) : arena_(arena) {
    if (!locations_.fits(arena.frame_count())) {
        throw std::invalid_argument("zbud_pool: arena has too many frames for the handle "
                                    "location encoding");
    }
    // At most two objects per frame.
    const std::size_t max_slots =
        std::min<std::size_t>(arena.frame_count() * 2, detail::handle_table::none - 1);
    handles_ = std::make_unique<detail::handle_table>(max_slots);
}

template <class Arena>
zbud_pool<Arena>::~zbud_pool() {
    detail::zbud_frame* chain = nullptr;
    {
        std::lock_guard guard(lock_);
        while (detail::zbud_frame* zf = lru_.oldest) {
            MOVABLE_CONTRACT(zf->pins.load(std::memory_order_acquire) == 0,
                             "zbud_pool::~zbud_pool: an object is still mapped");
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
std::byte* zbud_pool<Arena>::bytes_of(const detail::zbud_frame& zf,
                                      detail::zbud_buddy buddy) const noexcept {
    return arena_.address_of(*zf.memory) +
           chunk_math::offset(buddy, zf.chunks[static_cast<std::size_t>(buddy)]);
}

// Publishes where the object of `slot` lives now. Pool locked.
template <class Arena>
void zbud_pool<Arena>::set_location(std::uint32_t slot, const detail::zbud_frame& zf,
                                    detail::zbud_buddy buddy) const noexcept {
    const std::uint64_t location =
        locations_.make(arena_.index_of(*zf.memory), static_cast<std::uint32_t>(buddy));
    handles_->word(slot).store(detail::slot_word::make(location, 0, true),
                               std::memory_order_release);
}

template <class Arena>
auto zbud_pool<Arena>::lock_and_locate(handle h, const char* stale_message, pool_lock& guard) const
    -> located {
    const std::uint32_t slot = detail::handle_value::slot(h.value());
    detail::handle_slot& entry = handles_->checked_slot(h.value(), stale_message);
    guard = pool_lock(lock_);
    const std::uint64_t w = detail::live_slot_word(entry, h.value(), stale_message);
    const std::uint64_t location = detail::slot_word::location(w);
    detail::zbud_frame* zf =
        detail::zbud_frame_of(arena_.frame_at(locations_.frame_index(location)));
    return {&entry, slot, zf, static_cast<detail::zbud_buddy>(locations_.object(location))};
}

template <class Arena>
auto zbud_pool<Arena>::resolve_and_pin(handle h, const char* call, const char* stale_message) const
    -> resolved {
    detail::check_handle(call, h);
    pool_lock guard;
    const located at = lock_and_locate(h, stale_message, guard);
    return {detail::container_pin<detail::zbud_frame>(*at.frame), bytes_of(*at.frame, at.buddy),
            static_cast<std::size_t>(at.entry->pool_word.load(std::memory_order_relaxed))};
}

template <class Arena>
bool zbud_pool<Arena>::free_buddy_locked(detail::zbud_frame& zf,
                                         detail::zbud_buddy buddy) noexcept {
    const auto b = static_cast<std::size_t>(buddy);
    detail::handle_slot& entry = handles_->slot(zf.slots[b]);
    --objects_;
    bytes_ -= entry.pool_word.load(std::memory_order_relaxed);
    chunks_ -= zf.chunks[b];
    zf.chunks[b] = 0;
    const bool retire = !handles_->end_generation(zf.slots[b]);
    entry.word.store(detail::slot_word::make(0, 0, false), std::memory_order_release);
    return retire;
}

template <class Arena>
void zbud_pool<Arena>::give_back_slot(std::uint32_t slot, bool retire) noexcept {
    if (retire) {
        handles_->retire(slot);
    } else {
        handles_->release(slot);
    }
}

template <class Arena>
void zbud_pool<Arena>::retire_frame_locked(detail::zbud_frame& zf) noexcept {
    if (!zf.reclaiming) {
        lru_.remove(zf);
    }
    zf.freeing.store(1, std::memory_order_release);
    --frames_;
}

// The frame's memory is final once it is marked freeing: migration answers busy from then on.
template <class Arena>
void zbud_pool<Arena>::release_frame(detail::zbud_frame* zf) noexcept {
    if (detail::free_pool_frame(arena_, *zf->memory)) {
        counters_.isolated_frames.fetch_sub(1, std::memory_order_relaxed);
        counters_.frames_released_while_isolated.fetch_add(1, std::memory_order_relaxed);
    }
    delete zf; // after clear_movable under the frame's lock, no callback can reach it
}

// A new, empty frame with its descriptor, movable with this pool as owner; null when the arena
// (or the heap) is exhausted. No lock of the pool held.
template <class Arena>
detail::zbud_frame* zbud_pool<Arena>::new_frame() noexcept {
    auto* zf = new (std::nothrow) detail::zbud_frame;
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
zbud_handle zbud_pool<Arena>::try_allocate(std::size_t size) noexcept {
    if (size == 0 || size > max_object_size()) {
        return {};
    }
    const std::uint32_t chunks = chunk_math::of_size(size);
    const std::uint32_t slot = handles_->acquire();
    if (slot == detail::handle_table::none) {
        return {};
    }
    pool_lock guard(lock_);
    detail::zbud_frame* zf =
        unbuddied_.find_best_fit(chunks, [](const detail::zbud_frame&) { return true; });
    if (zf != nullptr) {
        unbuddied_.unfile(*zf);
        lru_.remove(*zf);
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
    const detail::zbud_buddy buddy = zf->free_buddy();
    const auto b = static_cast<std::size_t>(buddy);
    zf->chunks[b] = chunks;
    zf->slots[b] = slot;
    ++objects_;
    bytes_ += size;
    chunks_ += chunks;
    detail::handle_slot& entry = handles_->slot(slot);
    entry.pool_word.store(static_cast<std::uint32_t>(size), std::memory_order_relaxed);
    const std::uint32_t generation = entry.generation.load(std::memory_order_relaxed);
    set_location(slot, *zf, buddy);
    unbuddied_.file(*zf);
    lru_.push_newest(*zf);
    guard.unlock();
    detail::shake_after_allocation(*this);
    return zbud_handle::from_value(detail::handle_value::make(slot, generation));
}

template <class Arena>
zbud_handle zbud_pool<Arena>::allocate(std::size_t size) {
    detail::check_object_size("zbud_pool::allocate", size, max_object_size());
    const handle h = try_allocate(size);
    if (!h) {
        throw std::bad_alloc();
    }
    return h;
}

template <class Arena>
void zbud_pool<Arena>::deallocate(handle h) {
    detail::check_handle("zbud_pool::deallocate", h);
    detail::zbud_frame* emptied = nullptr;
    bool retire = false;
    std::uint32_t slot = 0;
    {
        pool_lock guard;
        const located at = lock_and_locate(
            h, "zbud_pool::deallocate: handle is stale (object already freed: double free?)",
            guard);
        detail::zbud_frame& zf = *at.frame;
        slot = at.slot;
        retire = free_buddy_locked(zf, at.buddy);
        if (!zf.reclaiming) {
            unbuddied_.unfile(zf);
            if (zf.empty()) {
                MOVABLE_CONTRACT(zf.pins.load(std::memory_order_acquire) == 0,
                                 "zbud_pool::deallocate: freed an object that is still mapped");
                retire_frame_locked(zf);
                emptied = &zf;
            } else {
                unbuddied_.file(zf);
            }
        }
    }
    give_back_slot(slot, retire);
    if (emptied != nullptr) {
        release_frame(emptied);
    }
}

template <class Arena>
std::size_t zbud_pool<Arena>::size(handle h) const {
    return resolve_and_pin(h, "zbud_pool::size", "zbud_pool::size: handle is stale (object freed)")
        .size;
}

template <class Arena>
void zbud_pool<Arena>::read(handle h, std::span<std::byte> out) const {
    const resolved r =
        resolve_and_pin(h, "zbud_pool::read", "zbud_pool::read: handle is stale (object freed)");
    detail::check_span("zbud_pool::read", out.size(), r.size);
    if (!out.empty()) {
        std::memcpy(out.data(), r.bytes, out.size());
    }
}

template <class Arena>
void zbud_pool<Arena>::write(handle h, std::span<const std::byte> data) {
    const resolved r =
        resolve_and_pin(h, "zbud_pool::write", "zbud_pool::write: handle is stale (object freed)");
    detail::check_span("zbud_pool::write", data.size(), r.size);
    if (!data.empty()) {
        std::memcpy(r.bytes, data.data(), data.size());
    }
}

template <class Arena>
auto zbud_pool<Arena>::map(handle h, store_access access) -> mapping {
    resolved r =
        resolve_and_pin(h, "zbud_pool::map", "zbud_pool::map: handle is stale (object freed)");
    return mapping(std::move(r.pin), std::span<std::byte>(r.bytes, r.size), access,
                   "zbud_pool::mapping::writable_bytes: mapped for reading only",
                   detail::unpin_shake_for(*this));
}

// ---- compaction and eviction -----------------------------------------------------------------

// Moves the buddy of the least used unpinned unbuddied frame into the best-fitting other
// unbuddied frame; the emptied frame goes on emptied_. False when no such pair is left.
template <class Arena>
bool zbud_pool<Arena>::compact_one_pair() noexcept {
    for (std::size_t list = chunks_per_frame; list-- > 1;) {
        for (detail::zbud_frame* src = unbuddied_.lists[list].head; src != nullptr;
             src = src->next) {
            if (src->pins.load(std::memory_order_acquire) != 0) {
                continue;
            }
            detail::zbud_frame* dst = unbuddied_.find_best_fit(
                src->used_chunks(), [&](const detail::zbud_frame& f) { return &f != src; });
            if (dst == nullptr) {
                continue;
            }
            unbuddied_.unfile(*src);
            unbuddied_.unfile(*dst);
            const detail::zbud_buddy from = src->free_buddy() == detail::zbud_buddy::first
                                                ? detail::zbud_buddy::last
                                                : detail::zbud_buddy::first;
            const detail::zbud_buddy to = dst->free_buddy();
            const auto f = static_cast<std::size_t>(from);
            const auto t = static_cast<std::size_t>(to);
            const std::uint32_t slot = src->slots[f];
            dst->chunks[t] = src->chunks[f];
            dst->slots[t] = slot;
            // Only the requested bytes: the rest of the chunks is nobody's.
            std::memcpy(bytes_of(*dst, to), bytes_of(*src, from),
                        handles_->slot(slot).pool_word.load(std::memory_order_relaxed));
            set_location(slot, *dst, to);
            src->chunks[f] = 0;
            unbuddied_.file(*dst);
            retire_frame_locked(*src);
            src->next = emptied_;
            emptied_ = src;
            counters_.objects_moved.fetch_add(1, std::memory_order_relaxed);
            return true;
        }
    }
    return false;
}

template <class Arena>
std::size_t zbud_pool<Arena>::compact() {
    std::unique_lock only_one(compaction_lock_, std::try_to_lock);
    if (!only_one.owns_lock()) {
        return 0;
    }
    std::size_t freed = 0;
    const auto release_emptied = [&](pool_lock& guard) {
        detail::zbud_frame* chain = std::exchange(emptied_, nullptr);
        guard.unlock();
        while (chain != nullptr) {
            release_frame(std::exchange(chain, chain->next));
            ++freed;
        }
    };
    pool_lock guard(lock_);
    while (compact_one_pair()) {
        if (lock_.contended()) {
            release_emptied(guard);
            std::this_thread::yield();
            guard.lock();
        }
    }
    release_emptied(guard);
    counters_.compactions.fetch_add(1, std::memory_order_relaxed);
    counters_.frames_freed_by_compaction.fetch_add(freed, std::memory_order_relaxed);
    only_one.unlock();
    detail::shake_after_compaction(*this);
    return freed;
}

template <class Arena>
template <class Callback>
requires std::invocable<Callback&, zbud_handle, std::span<const std::byte>> std::size_t
zbud_pool<Arena>::evict(std::size_t frames, Callback&& callback) {
    std::size_t freed = 0;
    while (freed < frames) {
        pool_lock guard(lock_);
        detail::zbud_frame* zf = lru_.oldest;
        while (zf != nullptr && zf->pins.load(std::memory_order_acquire) != 0) {
            zf = zf->lru_newer;
        }
        if (zf == nullptr) {
            break;
        }
        // Off every list and pinned: no allocation goes into it, nothing moves it.
        unbuddied_.unfile(*zf);
        lru_.remove(*zf);
        zf->reclaiming = true;
        detail::container_pin<detail::zbud_frame> pin(*zf);
        for (const detail::zbud_buddy buddy :
             {detail::zbud_buddy::first, detail::zbud_buddy::last}) {
            const auto b = static_cast<std::size_t>(buddy);
            if (!zf->used(buddy)) { // never used, or freed by another thread meanwhile
                continue;
            }
            detail::handle_slot& entry = handles_->slot(zf->slots[b]);
            const handle h = zbud_handle::from_value(detail::handle_value::make(
                zf->slots[b], entry.generation.load(std::memory_order_relaxed)));
            const std::span<const std::byte> bytes(bytes_of(*zf, buddy),
                                                   entry.pool_word.load(std::memory_order_relaxed));
            guard.unlock();
            try {
                callback(h, bytes);
            } catch (...) {
                guard.lock();
                if (zf->empty()) { // another thread freed what was left meanwhile
                    retire_frame_locked(*zf);
                    guard.unlock();
                    pin.release();
                    release_frame(zf);
                    throw;
                }
                zf->reclaiming = false;
                unbuddied_.file(*zf);
                lru_.push_newest(*zf); // handed over or not, it was looked at last
                throw;
            }
            guard.lock();
            counters_.objects_evicted.fetch_add(1, std::memory_order_relaxed);
            if (zf->used(buddy)) { // not freed by another thread meanwhile
                const std::uint32_t slot = zf->slots[b];
                const bool retire = free_buddy_locked(*zf, buddy);
                guard.unlock();
                give_back_slot(slot, retire);
                guard.lock();
            }
        }
        MOVABLE_CONTRACT(zf->empty(), "zbud_pool::evict: an object was allocated in a frame "
                                      "being evicted");
        retire_frame_locked(*zf);
        guard.unlock();
        pin.release(); // before the descriptor goes
        release_frame(zf);
        counters_.frames_evicted.fetch_add(1, std::memory_order_relaxed);
        ++freed;
    }
    return freed;
}

template <class Arena>
zbud_pool_stats zbud_pool<Arena>::stats() const {
    zbud_pool_stats out;
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
    out.objects_moved = counters_.objects_moved.load(relaxed);
    out.frames_migrated = counters_.frames_migrated.load(relaxed);
    out.frames_released_while_isolated = counters_.frames_released_while_isolated.load(relaxed);
    out.isolated_frames = counters_.isolated_frames.load(relaxed);
    out.frames_evicted = counters_.frames_evicted.load(relaxed);
    out.objects_evicted = counters_.objects_evicted.load(relaxed);
    out.handle_slots_retired = handles_->retired();
    return out;
}

template <class Arena>
void zbud_pool<Arena>::check_invariants() const {
    detail::zbud_pool_invariants::check(*this);
}

// ---- owner protocol ----------------------------------------------------------------------------

template <class Arena>
bool zbud_pool<Arena>::isolate(frame& f, migrate_mode /*mode*/) noexcept {
    const detail::zbud_frame* zf = detail::zbud_frame_of(f);
    // Hints only (migrate re-checks under the pool lock).
    if (zf->freeing.load(std::memory_order_acquire) != 0 ||
        zf->pins.load(std::memory_order_acquire) != 0) {
        return false;
    }
    counters_.isolated_frames.fetch_add(1, std::memory_order_relaxed);
    return true;
}

template <class Arena>
migrate_status zbud_pool<Arena>::migrate(frame& dst, frame& src, migrate_mode mode) noexcept {
    const migrate_status status = detail::migrate_descriptor_frame(
        arena_, *this, *detail::zbud_frame_of(src), lock_, dst, src, mode,
        "zbud_pool::migrate: frame is not its descriptor's", [this](detail::zbud_frame& zf) {
            for (const detail::zbud_buddy buddy :
                 {detail::zbud_buddy::first, detail::zbud_buddy::last}) {
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
void zbud_pool<Arena>::putback(frame& /*f*/) noexcept {
    counters_.isolated_frames.fetch_sub(1, std::memory_order_relaxed);
}

static_assert(detail::check_compressed_store<zbud_pool<>>());

} // namespace movable
