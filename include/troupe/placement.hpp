// Placement hints: how `spawn` picks the shard an actor lives on.
#pragma once

#include <troupe/fwd.hpp>

#include <cstdint>
#include <string_view>
#include <variant>

namespace troupe {

/// Lives on shard `shard` for its whole life. Spawning on a shard the runtime
/// does not have throws troupe::error.
struct pinned {
  shard_id shard;
};

/// Pinned to the next shard in turn (a per-runtime counter).
struct round_robin {};

/// Pinned to the shard chosen by a stable hash of `key`: the same key maps to
/// the same shard in every run with the same shard count.
struct sticky {
  std::uint64_t key;
  sticky(std::uint64_t k) : key(k) {}
  sticky(std::string_view k) : key(hash(k)) {}

  /// FNV-1a 64: stable across runs, platforms and standard libraries.
  static constexpr std::uint64_t hash(std::string_view s) noexcept {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    return h;
  }
};

/// Unbound: starts on the shard the runtime picks (the one with the fewest
/// ready unbound actors, round robin among equals) and may move to another
/// shard between two messages when that shard is idle (work stealing) or
/// when it is woken on a busy shard (steering). It never runs on two shards
/// at once, and every sender's messages still arrive in send order. While it
/// has asks, `every` timers or I/O operations in the kernel, it stays where
/// it is.
/// See doc/placement.md.
struct stealable {};

/// Unbound, starting on shard `shard` (spawning on a shard the runtime does
/// not have throws troupe::error).
struct stealable_preferred {
  shard_id shard;
};

/// Any placement hint.
using placement = std::variant<pinned, round_robin, sticky, stealable, stealable_preferred>;

/// An opt-in bound on an actor's mailbox; `try_send` hands a message back
/// when the mailbox holds this many. Plain `send` is never refused.
struct mailbox_capacity {
  std::uint32_t messages;
};

}  // namespace troupe
