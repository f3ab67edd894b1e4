// Every tunable of troupe with its default and the measurement that chose it.
// Figures are from the 2-vCPU development VM (kernel 6.18, liburing 2.3);
// see doc/benchmarks.md and doc/adr/ for the runs.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace troupe::defaults {

/// SQ entries per shard ring. Doorbells and (later) I/O are batched per turn;
/// a turn rings at most one doorbell per other shard, so 256 covers it many
/// times over (a full SQ is submitted and reused, never an error).
inline constexpr unsigned sq_entries = 256;

/// CQ entries per shard ring (IORING_SETUP_CQSIZE), 4x the SQ: the kernel
/// keeps overflowed CQEs (FEAT_NODROP) but flushing them costs an enter.
inline constexpr unsigned cq_entries = 1024;

/// How long runtime::stop() waits for the kernel to complete the operations
/// it cancelled before it cancels everything left synchronously
/// (IORING_REGISTER_SYNC_CANCEL), and after that before it gives up on
/// completions that never came (doc/failure-modes.md). A cancelled socket
/// or timer operation completes at once; a file read the kernel is already
/// doing finishes first, and a slow disk may take seconds.
inline constexpr std::chrono::milliseconds shutdown_grace{5000};

/// Messages one actor may run before the shard moves on to the next ready
/// actor (fairness). fanout_throughput (`--budget=N`) is flat within this
/// VM's noise from 8 to 256 (4.1-7.7 M msgs/s, doc/benchmarks.md), so the
/// budget is set for fairness: one busy actor delays its shard's others by
/// at most 64 handlers.
inline constexpr unsigned message_budget = 64;

/// How long an idle shard keeps polling before it parks in io_uring_enter.
/// pingpong_cross_shard: a hop between parked shards costs ~10-15 us (19-30
/// us per round trip), between spinning shards 0.17-0.7 us. Spinning for
/// about two parked hops means a reply that comes within that window costs
/// no wake-up, while an idle shard burns at most 50 us of CPU before it
/// sleeps. Tests use 0.
inline constexpr std::chrono::microseconds spin_before_park{50};

/// SQEs a shard prepared (doorbells to parked shards) wait at most about
/// this long, plus one actor's run, before they are submitted. They wait at
/// all so that a short turn followed by a park submits them in the park's
/// enter (2 syscalls per parked ping-pong round trip, not 3); a long step of
/// many ready actors submits them on the way (skewed_work: a peer woken to
/// steal slept through a 1.5 s step before this).
inline constexpr std::chrono::microseconds max_submit_delay{20};

/// Threads of the runtime's blocking pool (fs::blocking: what io_uring has
/// no opcode for), started on first use. Two, so that one slow call (a huge
/// directory, a hung network filesystem) does not hold up every other.
inline constexpr unsigned blocking_threads = 2;

/// Envelope block size in a shard pool. A 64-byte payload plus the envelope
/// header and an ask's reply address fit (test/allocations.cpp: 0 heap
/// allocations per 64-byte message in steady state); bigger messages use
/// the heap.
inline constexpr std::size_t envelope_block = 128;

/// Envelopes allocated at once when a shard pool runs dry (32 KiB slabs).
inline constexpr std::size_t envelope_slab = 256;

/// Freed envelopes from another shard go back to their origin pool in
/// batches of this many: one block carries pointers to the others (one
/// compare-exchange per batch, and the owner prefetches the whole batch;
/// doc/adr/0001-cross-shard-delivery.md). Follows from the block size.
inline constexpr std::size_t envelope_return_batch = (envelope_block - 16) / sizeof(void*) + 1;

/// Work stealing. skewed_work (1000 actors on shard 0, doc/adr/0002-work-
/// stealing.md) lands within 1.00-1.04x of ideal for every value tried of
/// every knob below: the VM's noise (~3%) is larger than their effect there.
/// The defaults are set by the cases where a knob does matter.
///
/// At most this many ready unbound actors move in one steal (and never more
/// than half of what the victim has queued). 1..128 give the same makespan;
/// 32 needs 20-31 steals per run where 1 needs 500-900.
inline constexpr unsigned steal_batch = 32;

/// An idle shard looks at this many peers (random start) and steals from
/// the one with the most ready unbound actors. Only matters beyond 2
/// shards; with 4 shards on 2 CPUs, 1, 2 and 3 probes were within noise and
/// 2 took half the steals of 1 for the fine grain (57 vs 101).
inline constexpr unsigned victim_probes = 2;

/// A shard whose queue of ready unbound actors holds more than this many
/// wakes one parked peer (msg_ring) so that it can steal; a shard with more
/// than this many is "busy" for steering, and an unbound actor woken there
/// by a send goes to the least loaded shard instead. 0: any actor waiting
/// on a busy shard is worth a peer. With 3 CPU-bound actors and a parked
/// peer, 4 left the peer asleep (2.05x ideal) where 0-2 reached 1.01-1.10x.
inline constexpr unsigned wake_threshold = 0;

/// Default timeout of `ask` (inside actors and from foreign threads): long
/// enough never to fire on a healthy runtime, short enough that a lost
/// peer shows up in tests and logs.
inline constexpr std::chrono::milliseconds ask_timeout{10'000};
using ask_timeout_type = std::chrono::milliseconds;

/// Registered buffers per shard (config::fixed_buffers, fixed_buffer.hpp):
/// none unless asked for, since registered memory is pinned and counts
/// against RLIMIT_MEMLOCK. A size of 64 KiB covers 4 KiB random reads and
/// 64 KiB sequential ones; doc/io.md has the figures with and without.
inline constexpr unsigned fixed_buffer_count = 0;
inline constexpr std::size_t fixed_buffer_size = 64 * 1024;

/// Provided-buffer ring per shard for multishot recv (config::recv_buffers):
/// 256 x 16 KiB = 4 MiB per shard, mapped only when a shard first uses it.
inline constexpr unsigned recv_buffer_count = 256;
inline constexpr std::size_t recv_buffer_size = 16 * 1024;

}  // namespace troupe::defaults
