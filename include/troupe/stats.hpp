// Counters of the runtime, per shard. Read them with runtime::stats().
#pragma once

#include <troupe/fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace troupe {

struct shard_stats {
  std::uint64_t messages_run = 0;      // envelopes delivered to a live actor
  std::uint64_t sends_local = 0;       // enqueued from this shard to an actor on it
  std::uint64_t sends_remote = 0;      // enqueued from this shard to another shard
  std::uint64_t doorbells_sent = 0;    // msg_ring doorbells this shard rang
  std::uint64_t doorbells_retried = 0; // of those, failed (-EOVERFLOW/-ENOMEM...) and rung again
  std::uint64_t doorbell_faults_injected = 0;  // config::fault_injection
  std::uint64_t parks = 0;             // times the shard blocked in io_uring_enter
  std::uint64_t dead_letters = 0;      // envelopes whose target had stopped
  std::uint64_t late_replies = 0;      // replies that came after their ask timed out
  std::uint64_t unhandled = 0;         // any_ref messages the actor does not accept
  std::uint64_t mailbox_high_water = 0;// deepest mailbox seen on this shard
  std::uint64_t envelopes_live = 0;    // taken from this shard's pool, not yet back
  std::uint64_t pool_slabs = 0;        // slab allocations of this shard's pool
  std::uint64_t cq_overflows = 0;      // completions the kernel dropped: its CQ overflow count
  std::uint64_t cq_backlogs = 0;       // turns that found completions kept aside by a full CQ
  std::uint64_t drop_failures = 0;     // dropped messages (dead letters...) whose destructor threw
  std::uint64_t actors_live = 0;       // pinned actors alive on this shard
  // Work stealing (unbound actors).
  std::uint64_t steal_attempts = 0;    // idle turns that looked for a victim with work
  std::uint64_t steals = 0;            // of those, took at least one actor
  std::uint64_t actors_stolen = 0;     // actors this shard took from others
  std::uint64_t migrated_in = 0;       // actors moved here (stolen or steered)
  std::uint64_t migrated_out = 0;      // actors moved away from here
  std::uint64_t peer_wakeups = 0;      // parked peers woken to steal from this shard
  std::uint64_t unbound_runs = 0;      // runs of unbound actors on this shard
  // I/O.
  std::uint64_t io_submitted = 0;      // operations issued on this shard's ring
  std::uint64_t io_cancelled = 0;      // of those, cancelled (by their actor, or because it stopped)
  std::uint64_t io_completed = 0;      // of those, whose last completion came back
  std::uint64_t io_abandoned = 0;      // of those, whose completion never came: dropped at stop (logged)
};

struct runtime_stats {
  std::vector<shard_stats> shards;
  std::uint64_t sends_foreign = 0;         // from threads that are not shards
  std::uint64_t foreign_dead_letters = 0;  // refused or undeliverable foreign sends
  std::uint64_t foreign_late_replies = 0;
  std::uint64_t foreign_drop_failures = 0;  // drop_failures on threads that are not shards (process-wide)
  std::uint64_t foreign_doorbells = 0;
  std::uint64_t foreign_doorbell_faults_injected = 0;  // config::fault_injection
  std::uint64_t unbound_actors_live = 0;   // stealable actors alive, on any shard
  std::uint64_t blocking_ops = 0;          // fs::blocking operations run by the pool

  /// Every envelope sent, from anywhere.
  std::uint64_t sent() const noexcept;
  /// Every envelope delivered to a live actor.
  std::uint64_t processed() const noexcept;
  /// Every envelope that found its target stopped.
  std::uint64_t dead_letters() const noexcept;
  std::uint64_t late_replies() const noexcept;
  /// Every dropped message whose destructor threw (counted, logged once per
  /// type; a throw while the message is delivered fails its actor instead).
  std::uint64_t drop_failures() const noexcept;
  std::uint64_t envelopes_live() const noexcept;

  /// A table, one line per shard.
  std::string text() const;
};

}  // namespace troupe
