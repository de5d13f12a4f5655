// movable: make any arena or pool compactable. The umbrella header.
#pragma once

#include <movable/arena.hpp>
#include <movable/compaction.hpp>
#include <movable/fragmentation.hpp>
#include <movable/frame.hpp>
#include <movable/frame_arena.hpp>
#include <movable/migrate.hpp>
#include <movable/models/balloon.hpp>
#include <movable/models/compressed_store.hpp>
#include <movable/models/object_pool.hpp>
#include <movable/models/z3fold_pool.hpp>
#include <movable/models/zbud_pool.hpp>
#include <movable/models/zspage_pool.hpp>
#include <movable/operations.hpp>
#include <movable/service/background_compactor.hpp>
#include <movable/stats_json.hpp>
#include <movable/tagged_ptr.hpp>
#include <movable/version.hpp>
