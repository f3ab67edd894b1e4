// Every tunable of troupe with its default and the measurement that chose it.
// Figures are from the 2-vCPU development VM (kernel 6.18, liburing 2.3);
// see doc/benchmarks.md and doc/adr/ for the runs.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace troupe::defaults {

/// SQ entries per shard ring. Doorbells and (later) I/O are batched per turn;
/// 256 covers a full turn of doorbells to every shard many times over.
inline constexpr unsigned sq_entries = 256;

/// CQ entries per shard ring (IORING_SETUP_CQSIZE), 4x the SQ: the kernel
/// keeps overflowed CQEs (FEAT_NODROP) but flushing them costs an enter.
inline constexpr unsigned cq_entries = 1024;

/// Messages one actor may run before the shard moves on to the next ready
/// actor (fairness). fanout_throughput flattens out above ~32; 64 keeps the
/// per-turn overhead under 2% with 64 busy receivers (doc/benchmarks.md).
inline constexpr unsigned message_budget = 64;

/// How long an idle shard keeps polling before it parks in io_uring_enter.
/// A parked wake-up costs 16-24 us on the VM (DESIGN.md figures), so spinning
/// about that long turns most short gaps into ~200 ns hand-overs
/// (pingpong_cross_shard, "hot" vs "parking" rows).
inline constexpr std::chrono::microseconds spin_before_park{50};

/// Envelope block size in a shard pool. A 64-byte payload plus the envelope
/// header and an ask's reply address fit; bigger messages use the heap.
inline constexpr std::size_t envelope_block = 128;

/// Envelopes allocated at once when a shard pool runs dry.
inline constexpr std::size_t envelope_slab = 256;

/// Freed envelopes from another shard are handed back to their origin pool in
/// batches of this many (one atomic exchange per batch).
inline constexpr std::size_t envelope_return_batch = 32;

/// Default timeout of `ask` (inside actors and from foreign threads).
inline constexpr std::chrono::milliseconds ask_timeout{10'000};

}  // namespace troupe::defaults
