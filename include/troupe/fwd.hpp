// Forward declarations of troupe's public types.
#pragma once

#include <cstdint>

namespace troupe {

/// Index of a shard within its runtime: 0 .. runtime::shards() - 1.
using shard_id = std::uint32_t;

/// The shard_id that `this_shard()` returns on a thread that is not a shard.
inline constexpr shard_id no_shard = ~shard_id{0};

class runtime;
struct config;
class error;
template <class T> class result;
template <class A> class ref;
class any_ref;
template <class Derived> class actor;
class actor_base;
struct down;
template <class R> struct deferred;
template <class R> class promise;
struct shard_stats;
struct runtime_stats;

namespace detail {
class control_block;
class runtime_core;
struct envelope;
}  // namespace detail

}  // namespace troupe
