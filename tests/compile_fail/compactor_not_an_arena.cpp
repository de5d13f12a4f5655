// expect: compactor: Arena must model movable::compactable_arena
#include <movable/compaction.hpp>
struct just_memory {
    static constexpr std::size_t frame_size = 4096;
    std::size_t frame_count() const { return 0; }
};
void compact(just_memory& memory) {
    movable::compactor<just_memory>(memory).compact();
}
