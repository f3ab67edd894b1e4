// The runtime's shared state: shards, the foreign-thread path, shutdown.
#pragma once

#include "blocking_pool.hpp"
#include "shard.hpp"

#include <troupe/config.hpp>
#include <troupe/runtime.hpp>

#include <liburing.h>

#include <atomic>
#include <barrier>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace troupe::detail {

class runtime_core {
 public:
  runtime_core(runtime& owner, const config& cfg);
  ~runtime_core();

  /// Starts the shard threads; throws troupe::error if a ring cannot be set up.
  void start();
  /// Requests the stop (any thread). Idempotent.
  void request_stop() noexcept;
  /// Blocks until stop was requested, then joins. Not from a shard thread.
  void wait_and_join();

  const config& cfg() const noexcept { return cfg_; }
  runtime& owner() const noexcept { return *owner_; }
  shard_id size() const noexcept { return static_cast<shard_id>(shards_.size()); }
  shard& at(shard_id s) noexcept { return *shards_[s]; }
  bool stop_requested() const noexcept { return stop_requested_.load(std::memory_order_seq_cst); }
  bool registered_doorbell() const noexcept { return registered_doorbell_; }

  shard_id pick(const placement& where);

  /// A send from a thread that is not one of this runtime's shards.
  void post_foreign(control_block* cb, envelope* e, bool depth_reserved = false) noexcept;
  /// Rings `target`'s doorbell from a foreign thread (retries failures).
  void foreign_doorbell(shard& target) noexcept;
  /// Drops an envelope on a foreign thread and counts it.
  void foreign_dead_letter(control_block* cb, envelope* e) noexcept;

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  void fill_stats(runtime_stats& s) const;

  // Unbound actors (scheduler.cpp).
  bool stealing() const noexcept { return stealing_; }
  /// Where a woken idle unbound actor goes (its token is the caller's); sets
  /// its shard. Any thread.
  shard_id place_unbound(control_block* cb) noexcept;
  /// The least loaded shard if `home` has more than wake_threshold ready.
  shard_id steer(shard_id home) const noexcept;
  void migrate(control_block* cb, shard_id from, shard_id to) noexcept;
  void link_unbound(actor_base& a);
  void unlink_unbound(actor_base& a) noexcept;
  control_block* first_unbound() noexcept;
  blocking_pool& blocking() noexcept { return *blocking_; }
  /// Live unbound actors anchored to shard `s` (shutdown, after the
  /// barrier: nothing runs, so the answer holds).
  std::vector<control_block*> anchored_unbound_on(shard_id s);

  /// The shards' shutdown phases meet here.
  void shutdown_barrier() { shutdown_barrier_->arrive_and_wait(); }

  /// Whether a foreign send (or stop()'s ringing) is between its
  /// "accepting" check and its doorbell; the shards wait for none once stop
  /// was requested.
  bool foreign_sends_in_flight() const noexcept;

 private:
  void probe_registered_doorbell();
  void join() noexcept;

  config cfg_;
  runtime* owner_;
  std::vector<std::unique_ptr<shard>> shards_;
  std::vector<std::thread> threads_;
  std::unique_ptr<std::barrier<>> shutdown_barrier_;
  std::atomic<std::uint32_t> refs_{1};  // the runtime + one per control block
  std::atomic<std::uint64_t> round_robin_{0};

  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> accepting_foreign_{true};
  std::atomic<std::uint32_t> foreign_in_flight_{0};
  std::atomic<std::uint64_t> sends_foreign_{0};
  std::atomic<std::uint64_t> foreign_dead_letters_{0};
  std::atomic<std::uint64_t> foreign_doorbells_{0};
  std::atomic<std::uint64_t> foreign_faults_{0};
  std::atomic<std::uint64_t> foreign_doorbell_count_{0};

  bool stealing_ = false;
  std::unique_ptr<blocking_pool> blocking_;
  std::mutex unbound_mutex_;  // live unbound actors: taken at start and death only
  actor_base* unbound_head_ = nullptr;
  std::atomic<std::uint64_t> unbound_live_{0};

  bool registered_doorbell_ = false;
  std::mutex alien_mutex_;  // foreign side only
  io_uring alien_{};
  bool alien_open_ = false;

  enum class start_state { waiting, go, abort };
  std::atomic<start_state> start_{start_state::waiting};
  std::mutex state_mutex_;  // guards the wait for the stop request only
  std::condition_variable state_cv_;
  std::mutex join_mutex_;   // never taken by a shard thread
  bool joined_ = false;     // under join_mutex_

  friend class shard;
};

}  // namespace troupe::detail
