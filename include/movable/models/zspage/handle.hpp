// zspage_handle, the opaque reference to an object of a zspage_pool, and zspage_access, how a
// mapping of one is used: the byte pools' shared handle and access (pool/store_handle.hpp).
#pragma once

#include <movable/pool/store_handle.hpp>

namespace movable {

struct zspage_handle_tag;
// An opaque reference to an object of a zspage_pool. Stays valid while the object is
// allocated, across compaction and frame migration. The empty handle (default) is false.
using zspage_handle = store_handle<zspage_handle_tag>;

// How a mapping is used: `read` or `write` (an object that spans two frames is served through
// a copy, written back when the mapping ends).
using zspage_access = store_access;

} // namespace movable
