// object_handle<T> (a typed, generation-checked reference to an object of an object_pool),
// pinned<T> (the object held in place while the guard lives) and object_pool_stats. The
// handle's value is packed by detail::handle_value (pool/handle_table.hpp).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>

#include <movable/pool/fullness_groups.hpp>
#include <movable/pool/pins.hpp>
#include <movable/shake.hpp>

namespace movable {

template <class T, class Arena>
class object_pool;

// A reference to an object of an object_pool<T>: one 64-bit value, copyable and comparable.
// Stays valid while the object lives, across compaction and frame migration; a handle kept
// after destroy() is stale, and using it is caught (contract) even after its slot is reused.
// The empty handle (default) is false.
template <class T>
class object_handle {
public:
    constexpr object_handle() noexcept = default;
    [[nodiscard]] constexpr explicit operator bool() const noexcept { return value_ != 0; }
    friend constexpr bool operator==(object_handle, object_handle) noexcept = default;

    // The handle as one integer (0 for the empty handle), e.g. to keep it in a table.
    [[nodiscard]] constexpr std::uint64_t value() const noexcept { return value_; }
    [[nodiscard]] static constexpr object_handle from_value(std::uint64_t value) noexcept {
        object_handle handle;
        handle.value_ = value;
        return handle;
    }

private:
    std::uint64_t value_ = 0; // detail::handle_value: (generation << 32) | (slot index + 1)
};

// An object of an object_pool held in place: while a pinned<T> lives, the object neither moves
// (compaction skips it, migration of its frame answers busy) nor may be destroyed. `T` may be
// const-qualified (object_pool::pin on a const pool). Move-only; empty when moved from.
// A pin keeps the object in place and alive; it does not order the threads that use it: two
// threads may pin one object at once, so synchronise writes to it with its other readers as
// for any shared T. Under the pool's shake mode (shake.hpp) the end of the pin moves the object's
// frame to a new place when no other pin holds it.
template <class T>
class pinned {
public:
    pinned() noexcept = default;
    pinned(pinned&& other) noexcept
        : object_(std::exchange(other.object_, nullptr)), pin_(std::move(other.pin_)),
          shake_(std::exchange(other.shake_, {})) {}
    pinned& operator=(pinned&& other) noexcept {
        if (this != &other) {
            reset();
            pin_ = std::move(other.pin_);
            object_ = std::exchange(other.object_, nullptr);
            shake_ = std::exchange(other.shake_, {});
        }
        return *this;
    }
    pinned(const pinned&) = delete;
    pinned& operator=(const pinned&) = delete;
    ~pinned() { reset(); }

    [[nodiscard]] T* get() const noexcept { return object_; }
    [[nodiscard]] T* operator->() const noexcept { return object_; }
    [[nodiscard]] T& operator*() const noexcept { return *object_; }
    [[nodiscard]] explicit operator bool() const noexcept { return object_ != nullptr; }
    // Unpins now. Idempotent.
    void reset() noexcept {
        const bool held = static_cast<bool>(pin_);
        pin_.release();
        const T* const object = std::exchange(object_, nullptr);
        if (held) {
            std::exchange(shake_, {}).run(object, sizeof(T));
        }
    }

private:
    template <class, class>
    friend class object_pool;
    pinned(T* object, detail::pin_guard pin, detail::unpin_shake shake) noexcept
        : object_(object), pin_(std::move(pin)), shake_(shake) {}

    T* object_ = nullptr;
    detail::pin_guard pin_;
    detail::unpin_shake shake_; // empty unless the pool's shake was on
};

struct object_pool_stats {
    std::size_t object_size = 0;   // sizeof(T)
    std::size_t object_stride = 0; // sizeof(T) rounded up to alignof(T): a place in a frame
    std::size_t objects_per_frame = 0;
    std::size_t frame_size = 0;
    std::size_t objects = 0;         // live objects (size())
    std::size_t frames = 0;          // frames the pool holds (one slab each)
    std::size_t reserve_frames = 0;  // of those, the emptied one kept for the next emplace (0/1)
    std::size_t min_frames = 0;      // frames the live objects need: ceil(objects / per frame)
    std::size_t frames_freeable = 0; // what compact() could free now (compactable_frames())
    // Slabs per in-use group (the reserve, empty, is in none).
    std::array<std::size_t, fullness_group_count> fullness{};
    std::size_t compactions = 0;   // compact() calls that ran
    std::size_t objects_moved = 0; // by compact()
    std::size_t frames_freed_by_compaction = 0;
    std::size_t objects_skipped_pinned = 0; // compact() found them pinned (or being built)
    std::size_t compaction_yields = 0;      // times compact() stepped aside for a thread waiting
    std::size_t frames_migrated = 0;        // frames moved through the core protocol
    std::size_t migrations_refused = 0;     // migrate answered busy (a pinned object, a slab freed)
    std::size_t frames_released_while_isolated = 0; // emptied slabs' frames the core freed
    std::size_t isolated_frames = 0;                // frames isolated by the core right now
    std::size_t handle_slots_retired = 0;           // slots whose 32-bit generation ran out
    // Places the threads' magazines hold for their next emplace (taken, no object), and those
    // compact() took back from them.
    std::size_t reserved_places = 0;
    std::size_t reservations_stolen = 0;

    // Frames held per frame needed (1.0 is perfectly packed; 0 when there are no objects).
    [[nodiscard]] double frames_per_min_frame() const noexcept {
        return min_frames == 0 ? 0.0
                               : static_cast<double>(frames) / static_cast<double>(min_frames);
    }
};

} // namespace movable
