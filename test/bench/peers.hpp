// Peer implementations that troupe's benchmark figures are compared against.
//
// Every function runs ONE repetition, checks its own correctness with
// bench::check / bench::fail (a failed check ends the process with status 1)
// and returns its figure.  Counts are parameters so that --quick can pass tiny
// ones.  Every threaded peer runs under a watchdog: if a repetition has not
// finished after 60 s it fails instead of hanging.
//
// Thread placement: the two threads of a cross-thread peer are pinned to CPU 0
// and CPU 1 (pthread_setaffinity_np; if pinning fails the thread runs
// unpinned).  The threads are created per repetition, each creates its own
// ring inside the thread, publishes its ring fd through a std::atomic and
// waits at a start barrier.
//
// Fan-out layout (peers f and g): the producer thread runs on CPU 0, ONE
// consumer thread on CPU 1 hosts all 64 receivers (a receiver is a counter;
// message i goes to receiver i % 64).  The producer keeps at most a window of
// messages in flight (consumer publishes how many it has processed), so the
// kernel's CQ overflow list and the message pool never grow unboundedly.
// The figure runs from the producer's first send to the consumer's last
// processed message.
//
// Ring flags: SINGLE_ISSUER always, plus DEFER_TASKRUN for "defer" rings (a
// busy poller then calls io_uring_get_events on every empty poll; adding
// TASKRUN_FLAG to let it skip that syscall measured ~1 us/round trip slower)
// or COOP_TASKRUN|TASKRUN_FLAG for the others (a poller enters the kernel only
// when the SQ flags report pending task work or CQ overflow).  Falls back to
// simpler flags when io_uring_setup answers -EINVAL.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace bench::peers {

// Resident set size of this process in bytes (/proc/self/statm resident * page size).
long rss_bytes();

// --- pingpong_cross_shard: ns per round trip, threads on CPU 0 and CPU 1 -----

// One IORING_OP_MSG_RING bounced between two rings; each side blocks in
// io_uring_submit_and_wait / io_uring_wait_cqe.
double uring_msgring_blocking(long round_trips, bool defer_taskrun);

// Same as uring_msgring_blocking, but each side busy-polls its CQ
// (io_uring_peek_cqe; io_uring_get_events on each empty poll of a
// DEFER_TASKRUN ring).
double uring_msgring_busypoll(long round_trips, bool defer_taskrun);

// "Payload in CQE": each message is a heap object whose pointer travels in the
// msg_ring user_data; the receiver busy-polls, reads and frees it, and replies
// with a new object the same way.  Non-defer rings.
double uring_payload_in_cqe(long round_trips);

// The floor: one cache-line-aligned atomic slot each way, both threads spinning.
double spsc_spin_floor(long round_trips);

// --- pingpong_same_shard: ns per round trip, one thread ----------------------

// Two actors on one thread: messages from a free list go through a plain
// intrusive FIFO mailbox (no atomics), the receiver is put on an intrusive
// ready list, and a run loop pops actors and dispatches through a function
// pointer.  The floor for a single-threaded actor ping-pong.
double intrusive_queue_floor(long round_trips);

// --- fanout_throughput: msgs/s, producer CPU 0 -> 64 receivers on CPU 1 ------

// One IORING_OP_MSG_RING SQE per message (receiver in res/len, sequence in
// user_data), submitted in batches of 256; consumer busy-polls a 32768-entry
// CQ.  Failed sends (-EOVERFLOW, -EBUSY, -EAGAIN) are retried.
double uring_msgring_per_message(long total);

// Vyukov intrusive MPSC queue into the consumer thread plus a msg_ring
// doorbell that is rung only when the consumer is parked (parked flag
// published seq_cst, queue re-checked, then io_uring_wait_cqe).  Messages come
// from a pre-allocated pool recycled behind the consumer.  The raw MPSC +
// doorbell floor.
double mpsc_doorbell(long total);

// --- CAF 0.17 -----------------------------------------------------------------

// Ping-pong of n round trips between two event-based actors on a CAF system
// with `threads` scheduler threads (work stealing); detached=true spawns both
// actors with caf::detached (one thread each).  ns per round trip.  Note that
// with threads=2 CAF's work stealing schedules a woken receiver on the
// sender's own worker, so the two actors mostly run on ONE thread; detached
// is CAF's only forced cross-thread mode.
double caf_pingpong(long round_trips, int threads, bool detached);

// One actor sends `total` messages round-robin to 64 event-based actors (with
// credit-based flow control: each receiver acks every 1024 messages, the
// producer keeps at most 64 Ki messages un-acked).  msgs/s from the first
// send to the last message processed; per-receiver counts checked.
double caf_fanout(long total, int threads);

struct spawn_figures {
  double spawns_per_s;
  double rss_bytes_per_actor;
};

// Spawns `count` idle event-based actors (handles kept) and measures the rate
// (until every actor has run its initialisation) and the RSS growth per actor.
// malloc_trim(0) runs first so that every repetition allocates fresh pages
// (else repetitions after the first reuse freed memory and under-report RSS);
// the rate therefore includes first-touch page faults.
spawn_figures caf_spawn(long count, int threads);

// --- skewed_work: makespan in ms -----------------------------------------------

// The CPU burn of one work item: `rounds` chained splitmix64 steps from `x`.
// Each step depends on the one before (no vectorising, no closed form), so
// the time is linear in `rounds`. Shared by every skewed_work implementation.
inline std::uint64_t burn(std::uint64_t x, std::uint32_t rounds) noexcept {
  for (std::uint32_t i = 0; i < rounds; ++i) {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    x = z ^ (z >> 31);
  }
  return x;
}

// Item `k` of actor `actor`, folded into that actor's checksum `acc` (the
// fold is order-dependent: items must run in order, 0 first). The run's
// checksum is the wrapping sum of the actors' checksums, so it does not
// depend on the order in which actors finish.
inline std::uint64_t skewed_item(std::uint64_t acc, std::uint64_t actor, std::uint64_t k,
                                 std::uint32_t rounds) noexcept {
  return burn(acc ^ (actor << 32 | k), rounds);
}

// `actors` event-based actors, spawned from main; each gets one start
// message carrying `items` and then runs its items as a chain of self-sends
// (one skewed_item per message), then adds its checksum to a shared atomic
// and counts down.  Makespan in ms from the first start message to the last
// actor done; the checksum must equal `expected` (else bench::fail).
double caf_skewed_work(long actors, long items, std::uint32_t rounds, int threads,
                       std::uint64_t expected);

// --- file_randread_4k, file_seqread: reads of a temporary data file ----------
//
// The data file is made of 4 KiB blocks; block b starts with b and ends with
// ~b (each a native-endian uint64), the bytes between are filler. Every
// completed read is checked against that pattern, so a read of the wrong
// offset, a short read or a torn buffer fails the benchmark.

// Size of one pattern block, of a random read and of an O_DIRECT buffer's
// alignment.
inline constexpr std::size_t file_block = 4096;

// The data file, created in a fresh directory under $TMPDIR (else /tmp):
// written with the pattern, fsync'ed, then read once through the page cache
// with every block checked (so it is cached and known good). The file and
// its directory are unlinked as soon as the descriptors are open: nothing is
// left on disk however the process ends (bench::fail, a signal).
//
// O_DIRECT is probed, not assumed: a second descriptor is opened with
// O_DIRECT and one 4 KiB-aligned block is read through it and checked.
// direct_fd() is -1 when either step fails; direct_note() says what happened
// (for stderr).
class data_file {
 public:
  explicit data_file(std::uint64_t bytes);  // a multiple of file_block
  ~data_file();
  data_file(const data_file&) = delete;
  data_file& operator=(const data_file&) = delete;

  int fd() const noexcept { return fd_; }
  int direct_fd() const noexcept { return direct_fd_; }
  const std::string& direct_note() const noexcept { return direct_note_; }
  std::uint64_t size() const noexcept { return size_; }
  std::uint64_t blocks() const noexcept { return size_ / file_block; }

 private:
  int fd_ = -1;
  int direct_fd_ = -1;
  std::uint64_t size_ = 0;
  std::string direct_note_;
};

// True when `p` holds pattern block `index` (its first and last uint64).
bool block_ok(const std::byte* p, std::uint64_t index) noexcept;

// Fails the benchmark (bench::fail, naming `what`) unless `p` holds `len`
// bytes (a multiple of file_block) of the file starting at block `first`.
void check_blocks(const std::byte* p, std::size_t len, std::uint64_t first, const char* what);

// The block of random read number `i` (0, 1, ...) of a file of `blocks`
// blocks: splitmix64 of a fixed seed plus i, modulo `blocks`. Every
// implementation reads the same blocks; each may split the indices between
// its workers as it likes.
std::uint64_t random_block(std::uint64_t i, std::uint64_t blocks) noexcept;

// The wrapping sum of random_block(i) over i in [0, reads): what the sum of
// the blocks an implementation read must come to.
std::uint64_t random_blocks_sum(long reads, std::uint64_t blocks) noexcept;

// Random 4 KiB reads (random_block(0..reads-1)) of `fd` from one thread
// pinned to CPU 0: a liburing loop that keeps `depth` reads in flight
// (SINGLE_ISSUER|COOP_TASKRUN|TASKRUN_FLAG ring, as troupe's default; plain
// io_uring_prep_read into 4 KiB-aligned buffers), reaping every ready CQE
// and refilling before each io_uring_submit_and_wait(1). Every read is
// checked. IOPS. `registered`: register_buffers (one registered buffer per
// slot, READ_FIXED) and/or register_file (the fd in the ring's file table,
// IOSQE_FIXED_FILE); 0 for neither.
inline constexpr unsigned register_buffers = 1, register_file = 2;
double uring_randread(int fd, std::uint64_t blocks, long reads, unsigned depth, unsigned registered = 0);

// The same reads with pread(2) from `threads` threads (pinned to CPU 0, 1,
// ...), thread t taking the reads i with i % threads == t, one at a time
// (4 KiB-aligned buffers). IOPS from the start barrier to the last read.
double pread_pool_randread(int fd, std::uint64_t blocks, long reads, int threads);

// Sequential read of the file (`size` bytes, a multiple of `chunk`), `passes`
// times, in `chunk`-byte reads: one liburing thread on CPU 0 keeping `depth`
// chunks in flight, issued in file order. Every chunk is checked. GiB/s
// (passes * size bytes over the time).
double uring_seqread(int fd, std::uint64_t size, std::size_t chunk, int passes, unsigned depth);

// The same with pread(2) from `threads` threads: chunk c goes to thread
// c % threads, each thread reading its chunks in order, one at a time.
double pread_pool_seqread(int fd, std::uint64_t size, std::size_t chunk, int passes, int threads);

}  // namespace bench::peers
