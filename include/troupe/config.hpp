// The runtime's configuration. Every default lives in defaults.hpp.
#pragma once

#include <troupe/defaults.hpp>
#include <troupe/fwd.hpp>

#include <chrono>
#include <vector>

namespace troupe {

/// How each shard sets up its ring. Every choice includes
/// IORING_SETUP_SINGLE_ISSUER and IORING_SETUP_CQSIZE; a kernel that refuses
/// a flag gets the next plainer setup, and the shard logs which it got.
enum class ring_setup {
  /// COOP_TASKRUN | TASKRUN_FLAG: a doorbell to a parked shard is posted
  /// straight to its CQ (~185 ns/msg received, DESIGN.md figures).
  coop_taskrun,
  /// DEFER_TASKRUN | TASKRUN_FLAG: task work runs only when the shard enters
  /// the kernel; fewer interruptions, slower msg_ring receipt (~430 ns/msg).
  defer_taskrun,
  /// No task-run flags at all.
  plain,
};

/// How threads that are not shards (main, foreign threads) ring a parked
/// shard's doorbell.
enum class foreign_doorbell {
  /// IORING_REGISTER_SEND_MSG_RING (no ring needed) when the kernel has it
  /// (probed at start), else the alien ring.
  automatic,
  /// Always the runtime's small "alien" ring, shared by foreign threads
  /// under a mutex (the mutex is never on a shard's path).
  alien_ring,
};

/// Whether shard threads are pinned to CPUs (shard i to the i-th CPU of the
/// process's affinity mask).
enum class thread_pinning { cpu, none };

/// Work stealing between shards, for unbound actors (`stealable`,
/// `stealable_preferred`). Pinned actors never move. doc/placement.md.
struct work_stealing {
  /// Off: unbound actors stay on the shard they started on (pure sharding;
  /// no steals, no steering, no peer wake-ups).
  bool enabled = true;
  /// Most actors taken in one steal (never more than half the victim's).
  unsigned steal_batch = defaults::steal_batch;
  /// Peers an idle shard looks at before it picks the most loaded one.
  unsigned victim_probes = defaults::victim_probes;
  /// Ready unbound actors above which a shard wakes a parked peer, and
  /// above which steering sends a woken actor elsewhere.
  unsigned wake_threshold = defaults::wake_threshold;
  /// Submission-time steering: a send (or a `stealable` spawn) that wakes an
  /// idle unbound actor on a shard with more than wake_threshold ready puts
  /// it on the least loaded shard instead. Off: only idle shards move work.
  bool steer = true;
};

struct config {
  /// Number of shards; 0 means one per CPU in the process's affinity mask.
  shard_id shards = 0;
  unsigned sq_entries = defaults::sq_entries;
  unsigned cq_entries = defaults::cq_entries;
  /// COOP_TASKRUN by measurement: doc/adr/0001-cross-shard-delivery.md.
  ring_setup ring = ring_setup::coop_taskrun;
  /// Messages one actor runs before the shard moves on.
  unsigned message_budget = defaults::message_budget;
  /// How long an idle shard polls before it parks. Tests use 0.
  std::chrono::microseconds spin_before_park = defaults::spin_before_park;
  thread_pinning pinning = thread_pinning::cpu;
  /// With thread_pinning::cpu: shard i runs on cpus[i % size]. Empty: the
  /// i-th CPU of the affinity mask of the thread that creates the runtime.
  std::vector<int> cpus{};
  foreign_doorbell foreign = foreign_doorbell::automatic;
  work_stealing stealing{};
  /// How long stop() waits for operations still in the kernel, twice at
  /// most: before cancelling all of them synchronously, and after that
  /// before the ones whose completion never came are logged and dropped.
  std::chrono::milliseconds shutdown_grace = defaults::shutdown_grace;
  /// Threads for fs::blocking operations (started on first use).
  unsigned blocking_threads = defaults::blocking_threads;
  /// Buffers each shard registers with its ring at start, for
  /// fs::read_fixed / write_fixed (fixed_buffer.hpp). `size` is rounded up
  /// to the page size. Memory that cannot be mapped (count x size past the
  /// address space, a size of 0) makes the runtime's constructor throw
  /// troupe::error naming count, size and the errno text, after stopping
  /// the shards it had started. Registration failing (RLIMIT_MEMLOCK) is
  /// logged with what to raise (ulimit -l), not fatal: the buffers then
  /// work as plain memory.
  struct registered_buffers {
    unsigned count = defaults::fixed_buffer_count;
    std::size_t size = defaults::fixed_buffer_size;
  } fixed_buffers{};
  /// The provided-buffer ring each shard registers on first use of a
  /// multishot recv (net::recv_multishot, net/buffer.hpp): `count` buffers
  /// (a power of two) of `size` bytes. The kernel picks one when data
  /// arrives; when all are held, multishot recvs end with ENOBUFS and are
  /// re-armed once buffers come back.
  struct provided_buffers {
    unsigned count = defaults::recv_buffer_count;
    std::size_t size = defaults::recv_buffer_size;
  } recv_buffers{};

  /// For tests: fault injection on the delivery path.
  struct faults {
    /// Every k-th doorbell a shard rings fails as the kernel would fail it
    /// (-EOVERFLOW and -ENOMEM alternately) and must be retried. 0: never;
    /// 1 would fail every retry too, so it counts as 2.
    unsigned fail_every_kth_doorbell = 0;
    /// A shard steals on every turn, not only when idle, so that unbound
    /// actors move between shards as often as they can.
    bool steal_every_turn = false;
    /// This io_uring opcode counts as missing from the kernel's probe, so
    /// operations using it take their "unsupported" path. -1: none.
    int hide_opcode = -1;
    /// runtime::stop() waits this long between finding a shard parked and
    /// ringing it awake, so that shards which wake by themselves can get
    /// through their whole shutdown in between. 0: no wait.
    std::chrono::nanoseconds stop_wake_delay{0};
    /// Submits to a shard's ring take nothing and fail as a kernel can fail
    /// them: every one while the CQ is full with -EBUSY (as kernels that
    /// take no SQE until the CQ is read), and every k-th other one with
    /// -EAGAIN and -ENOMEM alternately. 0: never; 1 counts as 2.
    unsigned short_submit_every_kth = 0;
    /// Every k-th last completion of an I/O operation is ignored as if the
    /// kernel had dropped it (-EBADR): its continuation never runs, and
    /// shutdown must give up on it. 0: never.
    unsigned lose_every_kth_completion = 0;
  } fault_injection{};
};

}  // namespace troupe
