// The runtime's small pool of threads for what io_uring has no opcode for
// (fs::blocking: directory listing, canonicalize, chmod). Started on first
// use; its results go back to the asking actor as messages, like a foreign
// thread's sends. Jobs cannot be cancelled: at shutdown the shards wait for
// the pool to go idle (its last results become dead letters).
#pragma once

#include <troupe/detail/io_op.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace troupe::detail {

class blocking_pool {
 public:
  explicit blocking_pool(unsigned threads) : size_(threads == 0 ? 1 : threads) {}
  blocking_pool(const blocking_pool&) = delete;
  blocking_pool& operator=(const blocking_pool&) = delete;
  ~blocking_pool() { join(); }

  /// Queues a job (any thread); starts the threads on first use.
  void push(pending_io* p);
  /// Waits until no job is queued or running.
  void wait_idle() noexcept;
  void join() noexcept;
  /// True on one of this pool's threads: runtime::stop() there must not
  /// join (shard 0 waits for the pool to go idle before the shards end).
  bool on_pool_thread() const noexcept;
  std::uint64_t jobs_run() const noexcept { return jobs_run_.load(std::memory_order_relaxed); }

 private:
  void work();

  const unsigned size_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<pending_io*> queue_;
  std::vector<std::thread> threads_;
  bool stopping_ = false;
  std::atomic<std::uint32_t> in_flight_{0};  // queued + running
  std::atomic<std::uint64_t> jobs_run_{0};
};

}  // namespace troupe::detail
