// The byte pools' cheap argument checks, one message each, shared so every pool words its
// errors alike: a size outside 1..max (std::invalid_argument), the empty handle
// (std::invalid_argument) and a span larger than its object (std::out_of_range), each naming
// the call.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

namespace movable::detail {

// Throws std::invalid_argument naming `call` when `size` is not in 1..max_size.
inline void check_object_size(const char* call, std::size_t size, std::size_t max_size) {
    if (size == 0 || size > max_size) {
        throw std::invalid_argument(std::string(call) + ": size " + std::to_string(size) +
                                    " is not in 1.." + std::to_string(max_size));
    }
}

// Throws std::invalid_argument naming `call` for the empty handle.
template <class Handle>
void check_handle(const char* call, Handle h) {
    if (!h) {
        throw std::invalid_argument(std::string(call) + ": empty handle");
    }
}

// Throws std::out_of_range naming `call` when a span of `bytes` is larger than the object.
inline void check_span(const char* call, std::size_t bytes, std::size_t object_size) {
    if (bytes > object_size) {
        throw std::out_of_range(std::string(call) + ": span of " + std::to_string(bytes) +
                                " bytes is larger than the object (" + std::to_string(object_size) +
                                " bytes)");
    }
}

} // namespace movable::detail
