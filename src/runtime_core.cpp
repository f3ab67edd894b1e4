// Runtime start-up, the foreign-thread path and the shutdown protocol.
//
// Foreign threads (main, threads the user made) push into the target actor's
// mailbox and the target shard's inbox like any remote sender; only the
// doorbell differs: IORING_REGISTER_SEND_MSG_RING where the kernel has it
// (probed at start), else one small "alien" ring under a mutex. The mutex is
// taken only by foreign threads, never by a shard.
//
// Shutdown: stop() refuses new foreign sends and waits for those in flight,
// then raises `stop_requested_` and wakes every parked shard. The shards then
// run the phases of shard::shutdown(), meeting at a barrier between phases.
#include "runtime_core.hpp"

#include "log.hpp"
#include "uring_compat.hpp"

#include <troupe/error.hpp>

#include <pthread.h>
#include <sched.h>

#include <cerrno>
#include <cstring>
#include <latch>
#include <string>
#include <thread>

namespace troupe::detail {

namespace {

shard_id cpu_count() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  int n = CPU_COUNT(&set);
  return n > 0 ? static_cast<shard_id>(n) : 1;
}

// The i-th CPU of the process's affinity mask (wrapping).
int nth_cpu(unsigned i) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
  int n = CPU_COUNT(&set);
  if (n <= 0) return -1;
  unsigned want = i % static_cast<unsigned>(n);
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set) && want-- == 0) return c;
  return -1;
}

}  // namespace

runtime_core::runtime_core(runtime& owner, const config& cfg) : cfg_(cfg), owner_(&owner) {
  if (cfg_.shards == 0) cfg_.shards = cpu_count();
  if (cfg_.message_budget == 0) throw error("troupe: config::message_budget must be at least 1");
  if (cfg_.sq_entries == 0 || cfg_.cq_entries < cfg_.sq_entries)
    throw error("troupe: config needs sq_entries > 0 and cq_entries >= sq_entries");
  if (cfg_.stealing.steal_batch == 0 || cfg_.stealing.victim_probes == 0)
    throw error("troupe: config::stealing needs steal_batch and victim_probes of at least 1");
  stealing_ = cfg_.stealing.enabled && cfg_.shards > 1;
  blocking_ = std::make_unique<blocking_pool>(cfg_.blocking_threads);
  shards_.reserve(cfg_.shards);
  for (shard_id s = 0; s < cfg_.shards; ++s) shards_.push_back(std::make_unique<shard>(*this, s));
}

runtime_core::~runtime_core() {
  if (alien_open_) io_uring_queue_exit(&alien_);
}

void runtime_core::start() {
  const shard_id n = size();
  shutdown_barrier_ = std::make_unique<std::barrier<>>(n);
  std::vector<std::string> errors(n);
  std::latch ready(n);
  for (shard_id s = 0; s < n; ++s) {
    threads_.emplace_back([this, s, &errors, &ready] {
      if (cfg_.pinning == thread_pinning::cpu) {
        int cpu = cfg_.cpus.empty() ? nth_cpu(s) : cfg_.cpus[s % cfg_.cpus.size()];
        if (cpu >= 0) {
          cpu_set_t set;
          CPU_ZERO(&set);
          CPU_SET(cpu, &set);
          pthread_setaffinity_np(pthread_self(), sizeof set, &set);
        }
      }
      std::string name = "troupe-shard-" + std::to_string(s);
      pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
      // Whatever fails here reaches the constructor as its error: a throw out
      // of this thread would terminate the process, and an early return
      // would leave start() waiting for the latch.
      try {
        errors[s] = shards_[s]->open_ring();
      } catch (const std::exception& e) {
        errors[s] = fmt::format("troupe: shard {} could not start: {}", s, e.what());
      } catch (...) {
        errors[s] = fmt::format("troupe: shard {} could not start", s);
      }
      ready.count_down();  // `errors` and `ready` are not touched after this
      start_.wait(start_state::waiting);
      if (start_.load() == start_state::go) shards_[s]->run();
    });
  }
  ready.wait();
  std::string failure;
  for (shard_id s = 0; s < n && failure.empty(); ++s) failure = errors[s];
  if (failure.empty()) {
    try {
      probe_registered_doorbell();
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  start_.store(failure.empty() ? start_state::go : start_state::abort);
  start_.notify_all();
  if (!failure.empty()) {
    for (auto& t : threads_) t.join();
    threads_.clear();
    joined_ = true;
    throw error(failure);
  }
}

void runtime_core::probe_registered_doorbell() {
  if (cfg_.foreign == foreign_doorbell::automatic) {
    io_uring_sqe sqe{};
    io_uring_prep_msg_ring(&sqe, shards_[0]->ring_fd(), 0, tag(cqe_kind::doorbell, 0), 0);
    int r = compat::io_uring_register_sync_msg(&sqe);
    registered_doorbell_ = r == 0;
    if (r != 0)
      log().info("IORING_REGISTER_SEND_MSG_RING unavailable ({}), foreign threads use the alien ring",
                 -r);
  }
  if (!registered_doorbell_) {
    int r = io_uring_queue_init(8, &alien_, 0);
    if (r < 0) throw error(io_uring_unavailable_message(-r));
    alien_open_ = true;
  }
  log().debug("foreign doorbell: {}", registered_doorbell_ ? "IORING_REGISTER_SEND_MSG_RING" : "alien ring");
}

shard_id runtime_core::pick(const placement& where) {
  const shard_id n = size();
  return std::visit(
      [&](const auto& p) -> shard_id {
        using P = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<P, pinned>) {
          if (p.shard >= n)
            throw error(fmt::format("troupe: spawn on pinned{{{}}}, but the runtime has {} shard{} "
                                    "(0..{}); use a shard below {} or config::shards",
                                    p.shard, n, n == 1 ? "" : "s", n - 1, n));
          return p.shard;
        } else if constexpr (std::is_same_v<P, round_robin>) {
          return static_cast<shard_id>(round_robin_.fetch_add(1, std::memory_order_relaxed) % n);
        } else if constexpr (std::is_same_v<P, stealable>) {
          // Round robin, unless that shard is busy: then the least loaded.
          shard_id next = static_cast<shard_id>(round_robin_.fetch_add(1, std::memory_order_relaxed) % n);
          return stealing_ && cfg_.stealing.steer ? steer(next) : next;
        } else if constexpr (std::is_same_v<P, stealable_preferred>) {
          if (p.shard >= n)
            throw error(fmt::format("troupe: spawn on stealable_preferred{{{}}}, but the runtime has "
                                    "{} shard{} (0..{}); use a shard below {} or config::shards",
                                    p.shard, n, n == 1 ? "" : "s", n - 1, n));
          return p.shard;
        } else {
          // splitmix64 finaliser: spreads FNV's low bits before the modulo.
          std::uint64_t z = p.key + 0x9e3779b97f4a7c15ull;
          z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
          z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
          return static_cast<shard_id>((z ^ (z >> 31)) % n);
        }
      },
      where);
}

void runtime_core::post_foreign(control_block* cb, envelope* e, bool depth_reserved) noexcept {
  if (cb->capacity_ != 0 && !depth_reserved) cb->depth_.fetch_add(1, std::memory_order_relaxed);
  foreign_in_flight_.fetch_add(1, std::memory_order_seq_cst);
  sends_foreign_.fetch_add(1, std::memory_order_relaxed);
  if (!accepting_foreign_.load(std::memory_order_seq_cst) || cb->dead()) {
    foreign_in_flight_.fetch_sub(1, std::memory_order_seq_cst);
    return foreign_dead_letter(cb, e);
  }
  cb->mailbox_push(e);
  if (cb->remote_scheduled_.load(std::memory_order_seq_cst) == 0 &&
      cb->remote_scheduled_.exchange(1, std::memory_order_seq_cst) == 0) {
    cb->add_ref();
    if (cb->unbound()) {
      shard& target = *shards_[place_unbound(cb)];
      if (target.push_unbound_inbox(cb)) foreign_doorbell(target);
    } else {
      shard& target = *shards_[cb->shard()];
      if (target.push_inbox(cb)) foreign_doorbell(target);
    }
  }
  foreign_in_flight_.fetch_sub(1, std::memory_order_seq_cst);
}

void runtime_core::foreign_dead_letter(control_block* cb, envelope* e) noexcept {
  foreign_dead_letters_.fetch_add(1, std::memory_order_relaxed);
  if (cb->capacity_ != 0) cb->depth_.fetch_sub(1, std::memory_order_relaxed);
  envelope_fn fn = e->fn;
  try {
    fn(e, envelope_action::drop, cb);  // a throwing payload destructor is counted in there
  } catch (...) {
    log().error("dropping a message for {} threw {}", cb->type()->name, describe_current_exception());
  }
  free_envelope(e);
}

void runtime_core::foreign_doorbell(shard& target) noexcept {
  foreign_doorbells_.fetch_add(1, std::memory_order_relaxed);
  unsigned k = cfg_.fault_injection.fail_every_kth_doorbell;
  if (k == 1) k = 2;  // every doorbell failing would never deliver one
  for (unsigned attempt = 0;; ++attempt) {
    if (attempt > 0) {
      log().debug("foreign doorbell to shard {} failed, ringing again", target.id());
      if (attempt > 3) std::this_thread::yield();
    }
    if (k != 0 && foreign_doorbell_count_.fetch_add(1, std::memory_order_relaxed) % k == k - 1) {
      foreign_faults_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    io_uring_sqe* sqe;
    int r;
    if (registered_doorbell_) {
      io_uring_sqe local{};
      io_uring_prep_msg_ring(&local, target.ring_fd(), 0, tag(cqe_kind::doorbell, target.id()), 0);
      r = compat::io_uring_register_sync_msg(&local);
    } else {
      std::lock_guard lock(alien_mutex_);
      sqe = io_uring_get_sqe(&alien_);
      io_uring_prep_msg_ring(sqe, target.ring_fd(), 0, tag(cqe_kind::doorbell, target.id()), 0);
      io_uring_cqe* cqe = nullptr;
      r = io_uring_submit_and_wait(&alien_, 1);
      if (r >= 0 && io_uring_peek_cqe(&alien_, &cqe) == 0) {
        r = cqe->res;
        io_uring_cqe_seen(&alien_, cqe);
      }
    }
    if (r >= 0) return;
    if (r != -EOVERFLOW && r != -ENOMEM && r != -EBUSY && r != -EAGAIN && r != -EINTR) {
      // Not a full CQ or a short memory: ringing again cannot help (EBADF
      // was a ring already closed, before stop() counted as a send).
      log().error("foreign doorbell to shard {} failed: {}; not ringing again", target.id(),
                  std::strerror(-r));
      return;
    }
  }
}

void runtime_core::request_stop() noexcept {
  accepting_foreign_.store(false, std::memory_order_seq_cst);
  if (stop_requested_.exchange(true, std::memory_order_seq_cst)) return;
  // Wake every shard that is not running, synchronously and retrying until
  // the doorbell got through — also one already "notified" by a sender
  // whose doorbell failed: that sender may go into shutdown before its retry
  // and the barrier would wait forever. Stopping is rare; one system call
  // per sleeping shard is cheap. A shard that parks later sees the flag.
  // The ringing counts as a foreign send: a shard that wakes by itself and
  // sees the request waits for it before it goes on towards closing its
  // ring (wait_foreign_sends), so no doorbell here finds a closed ring, and
  // the owner's join cannot close the alien ring under us.
  foreign_in_flight_.fetch_add(1, std::memory_order_seq_cst);
  shard* me = this_shard_ptr();
  for (auto& s : shards_) {
    if (s.get() == me) continue;
    s->claim_doorbell();
    if (s->parked_state() != park_state::running) {
      if (cfg_.fault_injection.stop_wake_delay.count() > 0)
        std::this_thread::sleep_for(cfg_.fault_injection.stop_wake_delay);
      foreign_doorbell(*s);
    }
  }
  foreign_in_flight_.fetch_sub(1, std::memory_order_seq_cst);
  {
    std::lock_guard lock(state_mutex_);
  }
  state_cv_.notify_all();
}

void runtime_core::wait_and_join() {
  forbid_on_shard("runtime::wait()/stop()");
  {
    std::unique_lock lock(state_mutex_);
    state_cv_.wait(lock, [this] { return stop_requested_.load(); });
  }
  join();
}

void runtime_core::join() noexcept {
  // Not state_mutex_: a shard in request_stop() takes that one, and we are
  // about to wait for the shards.
  std::lock_guard lock(join_mutex_);
  if (joined_) return;
  for (auto& t : threads_) t.join();
  threads_.clear();
  blocking_->join();
  joined_ = true;
  {
    std::lock_guard alien(alien_mutex_);  // a foreign stop() may still be ringing
    if (alien_open_) {
      io_uring_queue_exit(&alien_);
      alien_open_ = false;
    }
  }
  runtime_stats st;
  fill_stats(st);
  // Tests assert the invariant; a foreign thread still sending while we
  // join can make this snapshot differ by a message or two.
  if (st.sent() != st.processed() + st.dead_letters())
    log().debug("after shutdown: sent {} != processed {} + dead letters {}", st.sent(),
                st.processed(), st.dead_letters());
  if (st.envelopes_live() != 0)
    log().error("after shutdown: {} envelopes were not returned to their pools", st.envelopes_live());
}

void runtime_core::fill_stats(runtime_stats& s) const {
  s.shards.resize(shards_.size());
  for (std::size_t i = 0; i < shards_.size(); ++i) shards_[i]->fill_stats(s.shards[i]);
  s.sends_foreign = sends_foreign_.load(std::memory_order_relaxed);
  s.foreign_dead_letters = foreign_dead_letters_.load(std::memory_order_relaxed);
  s.foreign_late_replies = foreign_late_replies.load(std::memory_order_relaxed);
  s.foreign_drop_failures = foreign_drop_failures.load(std::memory_order_relaxed);
  s.foreign_doorbells = foreign_doorbells_.load(std::memory_order_relaxed);
  s.foreign_doorbell_faults_injected = foreign_faults_.load(std::memory_order_relaxed);
  s.unbound_actors_live = unbound_live_.load(std::memory_order_relaxed);
  s.blocking_ops = blocking_->jobs_run();
}

}  // namespace troupe::detail

namespace troupe::detail {
bool runtime_core::foreign_sends_in_flight() const noexcept {
  return foreign_in_flight_.load(std::memory_order_seq_cst) != 0;
}
}  // namespace troupe::detail
