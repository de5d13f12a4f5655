// page_store: a small movable owner for the examples. It keeps numbered 4 KiB pages in frames
// of a frame_arena and a table saying where each page lives, and lets the compactor move them.
// Copy it as the starting point of your own owner.
#pragma once

#include <movable/frame_arena.hpp>
#include <movable/operations.hpp>

#include <cstddef>
#include <cstring>
#include <mutex>
#include <vector>

namespace example {

template <class Arena>
class page_store {
public:
    explicit page_store(Arena& arena) : arena_(arena) {}
    page_store(const page_store&) = delete;
    page_store& operator=(const page_store&) = delete;
    ~page_store() {
        for (std::size_t page = 0; page < table_.size(); ++page) {
            erase(page);
        }
    }

    // Stores page `page` (overwriting nothing: the slot must be empty). False when full.
    bool insert(std::size_t page, const std::byte* bytes) {
        movable::frame* f = arena_.try_allocate(0, movable::frame_kind::movable);
        if (f == nullptr) {
            return false;
        }
        std::memcpy(arena_.address_of(*f), bytes, Arena::frame_size);
        f->set_private_word(page);
        std::lock_guard frame_guard(*f); // lock order: frame, then store
        std::lock_guard guard(mutex_);
        if (table_.size() <= page) {
            table_.resize(page + 1, nullptr);
        }
        table_[page] = f;
        movable::set_movable(*f, *this);
        return true;
    }

    // Frees page `page`. A frame the compactor has isolated is left to the compactor.
    void erase(std::size_t page) {
        for (;;) {
            movable::frame* f = find(page);
            if (f == nullptr) {
                return;
            }
            std::unique_lock frame_guard(*f);
            std::unique_lock guard(mutex_);
            if (table_[page] != f) { // it moved while we were locking it
                continue;
            }
            table_[page] = nullptr;
            const bool compactor_owns_it = movable::clear_movable(*f);
            guard.unlock();
            frame_guard.unlock();
            if (!compactor_owns_it) {
                arena_.deallocate(*f);
            }
            return;
        }
    }

    // Copies page `page` out; false when it is not stored.
    bool read(std::size_t page, std::byte* out) {
        for (;;) {
            movable::frame* f = find(page);
            if (f == nullptr) {
                return false;
            }
            std::lock_guard frame_guard(*f); // migration holds it while copying
            if (find(page) == f) {
                std::memcpy(out, arena_.address_of(*f), Arena::frame_size);
                return true;
            }
        }
    }

    movable::frame* find(std::size_t page) {
        std::lock_guard guard(mutex_);
        return page < table_.size() ? table_[page] : nullptr;
    }

    // ---- the owner protocol (called by the core with the frame locked) ----
    bool isolate(movable::frame&, movable::migrate_mode) noexcept { return true; }
    movable::migrate_status migrate(movable::frame& dst, movable::frame& src,
                                    movable::migrate_mode) noexcept {
        std::memcpy(arena_.address_of(dst), arena_.address_of(src), Arena::frame_size);
        dst.set_private_word(src.private_word());
        std::lock_guard guard(mutex_);
        table_[src.private_word()] = &dst;
        movable::set_movable(dst, *this);
        return movable::migrate_status::success;
    }
    void putback(movable::frame&) noexcept {}

private:
    Arena& arena_;
    std::mutex mutex_;
    std::vector<movable::frame*> table_;
};

} // namespace example
