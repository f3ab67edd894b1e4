// A shard: one thread, one io_uring ring, its ready queue, inbox, timers
// and envelope pool.
#pragma once

#include "envelope_pool.hpp"
#include "fixed_pool.hpp"
#include "recv_pool.hpp"
#include "ring.hpp"
#include "steal_deque.hpp"
#include "timer_heap.hpp"

#include <troupe/actor_base.hpp>
#include <troupe/config.hpp>
#include <troupe/detail/control_block.hpp>
#include <troupe/detail/envelope.hpp>
#include <troupe/detail/io_op.hpp>
#include <troupe/detail/mpsc_queue.hpp>
#include <troupe/stats.hpp>

#include <atomic>
#include <bitset>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace troupe::detail {

class runtime_core;

/// A counter written by its shard only and read by stats() from anywhere:
/// a relaxed load + store (a plain increment on x86), tsan-clean.
struct counter {
  std::atomic<std::uint64_t> v{0};
  void operator++() noexcept { v.store(v.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }
  void raise_to(std::uint64_t x) noexcept {
    if (x > v.load(std::memory_order_relaxed)) v.store(x, std::memory_order_relaxed);
  }
  std::uint64_t get() const noexcept { return v.load(std::memory_order_relaxed); }
};

enum class park_state : std::uint32_t { running, parked, notified };

/// Intrusive FIFO of control blocks through `ready_next_`; owner shard only.
class ready_queue {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  std::size_t size() const noexcept { return size_; }
  void push(control_block* cb) noexcept {
    cb->ready_next_ = nullptr;
    if (tail_) tail_->ready_next_ = cb; else head_ = cb;
    tail_ = cb;
    ++size_;
  }
  control_block* pop() noexcept {
    control_block* cb = head_;
    if (cb) {
      head_ = cb->ready_next_;
      if (head_ == nullptr) tail_ = nullptr;
      --size_;
    }
    return cb;
  }

 private:
  std::size_t size_ = 0;
  control_block* head_ = nullptr;
  control_block* tail_ = nullptr;
};

class shard {
 public:
  shard(runtime_core& core, shard_id id);
  shard(const shard&) = delete;
  shard& operator=(const shard&) = delete;
  ~shard();

  shard_id id() const noexcept { return id_; }
  runtime_core& core() const noexcept { return core_; }

  /// Sets up the ring on the calling (shard) thread; "" or what went wrong.
  std::string open_ring();
  /// Thread body, after open_ring() succeeded.
  void run();

  // --- any thread ----------------------------------------------------------
  /// Puts `cb` on this shard's inbox (the caller won its remote_scheduled_
  /// flag and passes one reference). Returns true when this shard was
  /// parked and the caller won the right to ring its doorbell.
  bool push_inbox(control_block* cb) noexcept;
  int ring_fd() const noexcept { return ring_fd_.load(std::memory_order_acquire); }
  envelope_pool& pool() noexcept { return pool_; }
  /// Wakes the shard if it is parked (used by stop()).
  bool claim_doorbell() noexcept;
  void fill_stats(shard_stats& s) const;
  ring_setup setup() const noexcept { return setup_.load(std::memory_order_acquire); }
  /// Ready unbound actors others may steal (a hint).
  std::size_t backlog() const noexcept { return stealer_.size(); }
  /// Ready unbound actors here or on their way here (steering's measure).
  std::size_t load() const noexcept {
    return backlog() + incoming_unbound_.load(std::memory_order_relaxed);
  }
  /// push_inbox for an unbound actor's token: counted in load().
  bool push_unbound_inbox(control_block* cb) noexcept {
    incoming_unbound_.fetch_add(1, std::memory_order_relaxed);
    return push_inbox(cb);
  }
  steal_deque::stealer& deque_stealer() noexcept { return stealer_; }

  // --- this shard's thread only --------------------------------------------
  /// `depth_reserved`: try_post already counted it against the capacity.
  void post(control_block* cb, envelope* e, bool depth_reserved = false) noexcept;
  void ring_doorbell(shard_id target) noexcept;
  void dead_letter(control_block* cb, envelope* e) noexcept;
  /// A message that is dropped before it was sent (a delayed send at
  /// shutdown): counts as sent and as a dead letter.
  void dead_letter_unsent(control_block* cb, envelope* e) noexcept;
  park_state parked_state() const noexcept { return park_.load(std::memory_order_seq_cst); }
  void free(envelope* e) noexcept;
  void arm(timer_node* t) { timers_.arm(t); }
  void disarm(timer_node* t) noexcept { timers_.disarm(t); }
  void actor_started(control_block* cb);
  void count_late_reply() noexcept { ++late_replies_; }
  /// A payload destructor threw outside a delivery (see payload_scope).
  void count_drop_failure() noexcept { ++drop_failures_; }
  void count_unhandled(control_block* cb, std::string_view type) noexcept;
  /// This shard won the token of an unbound actor (scheduler.cpp).
  void schedule_unbound(control_block* cb) noexcept;
  // I/O operations (io.cpp).
  void start_io(pending_io* p) noexcept;
  /// Cancels `p` in the kernel. Orphaned: what it still produces is
  /// dropped (actor::cancel, stop); else its last results still reach its
  /// actor (actor::end_multishot).
  void cancel_io(pending_io* p, bool orphan = true) noexcept;
  bool supports(unsigned opcode) const noexcept { return opcode < 256 && supported_[opcode]; }
  /// This shard's registered buffers, or nullptr (config::fixed_buffers).
  fixed_pool* fixed() const noexcept { return fixed_; }
  /// This shard's provided-buffer ring, made on first use; nullptr if none
  /// is configured or the kernel refused it (logged once).
  recv_pool* recv_buffers() noexcept;
  const config& cfg() const noexcept;

 private:
  bool turn();
  bool reap() noexcept;
  bool take_inbox() noexcept;
  bool fire_timers();
  bool run_ready();
  void run_actor(control_block* cb);
  void deliver(control_block* cb, envelope* e);
  void splice_remote(control_block* cb, bool& busy, std::size_t limit) noexcept;
  envelope* pop_local(control_block* cb) noexcept;
  void schedule(control_block* cb) noexcept;
  void fail(control_block* cb, std::string what);
  void kill(control_block* cb, exit_info* why, bool run_on_stop);
  void drain_dead(control_block* cb);
  void link_live(control_block* cb) noexcept;
  void unlink_live(control_block* cb) noexcept;
  void submit() noexcept;
  void retry_doorbells() noexcept;  // the doorbells whose failure CQE came back
  void park();
  void shutdown();
  void flush_returns() noexcept;
  void requeue(control_block* cb) noexcept;
  void submit_if_late(std::int64_t& pending_since) noexcept;
  void complete_io(pending_io* p, int res, unsigned flags) noexcept;
  void on_cqe(std::uint64_t user_data, int res, unsigned flags) noexcept;
  void link_in_kernel(pending_io* p) noexcept;
  void unlink_in_kernel(pending_io* p) noexcept;
  // Shutdown phase 2: waits, bounded by config::shutdown_grace, for every
  // CQE we wait for; cancels what is left synchronously, then gives up.
  void wait_in_flight() noexcept;
  void abandon_in_kernel(bool kernel_done) noexcept;
  void probe_opcodes() noexcept;
  /// "" or why the buffers cannot be had (then the runtime does not start).
  std::string open_fixed_buffers();

  // Unbound actors (scheduler.cpp).
  void enqueue_unbound(control_block* cb) noexcept;
  void finish_unbound_run(control_block* cb) noexcept;
  bool steal() noexcept;
  void wake_peer() noexcept;
  bool peers_have_work() const noexcept;

  runtime_core& core_;
  const shard_id id_;
  ring ring_;
  std::atomic<int> ring_fd_{-1};
  std::atomic<ring_setup> setup_{ring_setup::plain};
  envelope_pool pool_;
  timer_heap timers_;
  ready_queue ready_;
  actor_base* live_head_ = nullptr;  // live actors, linked through actor_base
  std::vector<envelope_pool::carrier*> returns_;  // per origin shard, filling
  std::vector<char> retry_doorbell_;           // per target shard
  bool any_retry_ = false;
  std::uint64_t doorbells_rung_ = 0;
  unsigned inflight_ = 0;  // SQEs that will produce a CQE we wait for
  pending_io* in_kernel_ = nullptr;  // records the kernel owes their last CQE
  std::uint64_t final_cqes_ = 0;     // for config::fault_injection.lose_every_kth_completion
  bool draining_ = false;  // shutdown: no handler runs any more
  bool deferred_submit_ = false;  // the last worked turn left its SQEs to the next
  // A cancel SQE waits in the SQ: it goes to the kernel before the next
  // reap, or the record it names could complete, be freed and its address
  // reused by a new operation that the late cancel would then hit.
  bool cancel_unsubmitted_ = false;
  const bool stealing_;           // config::stealing.enabled, and more than one shard
  const bool steal_every_turn_;   // config::fault_injection
  std::bitset<256> supported_;    // opcodes the kernel has (probed at start)
  fixed_pool* fixed_ = nullptr;   // holds one reference
  recv_pool* recv_ = nullptr;     // holds one reference
  bool recv_tried_ = false;
  std::uint64_t rng_;             // victim choice (xorshift)
  steal_deque deque_;
  steal_deque::owner own_{deque_};
  steal_deque::stealer stealer_{deque_};

  alignas(64) std::atomic<park_state> park_{park_state::running};
  alignas(64) basic_mpsc_queue<64> inbox_;

  alignas(64) counter messages_run_, sends_local_, sends_remote_, doorbells_sent_,
      doorbells_retried_, faults_injected_, parks_, dead_letters_, late_replies_, unhandled_,
      mailbox_high_water_, cq_overflows_, cq_backlogs_, drop_failures_, actors_live_, steal_attempts_, steals_,
      actors_stolen_, peer_wakeups_, unbound_runs_, io_submitted_, io_cancelled_, io_completed_,
      io_abandoned_;
  // Written by thieves and steering senders too.
  alignas(64) std::atomic<std::uint64_t> migrated_in_{0}, migrated_out_{0};
  std::atomic<std::size_t> incoming_unbound_{0};  // unbound tokens on the inbox

  friend class runtime_core;
};

/// Set by shard::deliver around the thunk of `e`: a throw from the
/// destructor of that envelope's payload is kept here (and fails the
/// actor), while payloads destroyed meanwhile by anything else (a dead
/// letter sent from the handler) count as drop failures. Nests.
class payload_scope {
 public:
  explicit payload_scope(const envelope* e) noexcept;
  ~payload_scope();
  payload_scope(const payload_scope&) = delete;
  payload_scope& operator=(const payload_scope&) = delete;
  /// "msg_type: exception_type: what()", or "" if the destructor did not throw.
  const std::string& failure() const noexcept { return failure_; }

 private:
  friend void payload_destructor_threw(const envelope*, const char*) noexcept;
  const envelope* e_;
  payload_scope* saved_;
  std::string failure_;
};

/// Drop failures counted on threads that are not shards, process-wide.
extern std::atomic<std::uint64_t> foreign_drop_failures;

/// Envelopes on the heap (too big for a pool block, or sent by a foreign
/// thread), process-wide.
extern std::atomic<std::int64_t> heap_envelopes_live;
/// Late replies counted on threads that are not shards, process-wide.
extern std::atomic<std::uint64_t> foreign_late_replies;

/// The shard whose thread this is, or nullptr.
shard* this_shard_ptr() noexcept;

/// The exception being handled (call it inside a catch block):
/// "ns::type: what()", or "unknown exception of type T" for a throw of
/// something that is not a std::exception.
std::string describe_current_exception();

/// `counter#42@1`, without touching reference counts.
std::string name_of(const control_block* cb);

}  // namespace troupe::detail
