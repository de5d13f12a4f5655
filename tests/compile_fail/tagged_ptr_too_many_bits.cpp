// expect: tagged_ptr: Bits exceeds low_bits_available<T>
#include <movable/tagged_ptr.hpp>
struct alignas(4) four_aligned {
    int value;
};
movable::tagged_ptr<four_aligned, 3> too_many; // alignof 4 leaves 2 bits
