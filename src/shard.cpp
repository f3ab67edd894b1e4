// The shard loop and the delivery protocol.
//
// One turn: (1) reap CQEs (failed doorbells, wake-ups), (2) take the inbox
// (actors scheduled by other threads), (3) fire due timers, (4) run the
// actors that were ready at the start of the step, each for at most
// `message_budget` messages, (5) one io_uring_enter at most: submit if SQEs
// are pending, else flush task work / overflowed CQEs if the kernel flagged
// them, else none. An idle shard spins for `spin_before_park`, then parks.
//
// Delivery invariants:
// - Each actor has two queues: the local FIFO (senders on its own shard; no
//   atomics) and the MPSC mailbox (everyone else). A local send first
//   splices whatever the mailbox holds into the local FIFO, and the runner
//   pops the local FIFO first; so messages of one sender arrive in send
//   order even if that sender moves between shards.
// - A remote sender that moves `remote_scheduled_` 0->1 owns the right to put
//   the actor on its shard's inbox (with one reference). The shard clears the
//   flag (seq_cst) before it looks at the mailbox, so a sender that saw 1
//   pushed before the clear and its message is found by the run that
//   follows. A mailbox node still being linked reads as "busy": the actor
//   stays scheduled and is looked at again next turn, never dropped.
// - Doorbell: a shard publishes `parked` (seq_cst) and re-checks its inbox
//   before it blocks; a sender pushes the inbox (seq_cst) and then checks
//   `parked`. One of them sees the other. Only the sender that moves
//   parked->notified rings (one msg_ring); a failed doorbell CQE makes that
//   sender ring again next turn — the target stays "notified", so nobody
//   else would.
// - References: a live actor's shard holds its "life" reference. A dead
//   actor in the ready queue holds one reference (its life reference, or the
//   inbox reference that brought it back); run_actor drains it and drops it.
#include "shard.hpp"

#include "log.hpp"
#include "runtime_core.hpp"

#include <troupe/actor_base.hpp>
#include <troupe/ref.hpp>

#include <boost/core/demangle.hpp>
#include <liburing.h>

#include <cxxabi.h>

#include <cerrno>
#include <ctime>
#include <exception>
#include <typeinfo>
#include <unordered_set>
#include <utility>

namespace troupe::detail {

namespace {
thread_local shard* tl_shard = nullptr;
thread_local control_block* tl_constructing = nullptr;
}  // namespace

shard* this_shard_ptr() noexcept { return tl_shard; }
control_block* constructing() noexcept { return tl_constructing; }
void set_constructing(control_block* cb) noexcept { tl_constructing = cb; }

std::int64_t now_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

shard::shard(runtime_core& core, shard_id id)
    : core_(core), id_(id), returns_(core.cfg().shards, nullptr), retry_doorbell_(core.cfg().shards, 0),
      stealing_(core.cfg().stealing.enabled && core.cfg().shards > 1),
      steal_every_turn_(core.cfg().fault_injection.steal_every_turn),
      rng_(0x9e3779b97f4a7c15ull * (id + 1)) {}

shard::~shard() {
  if (fixed_ != nullptr) fixed_->release();
  if (recv_ != nullptr) recv_->release();
}

recv_pool* shard::recv_buffers() noexcept {
  if (recv_tried_) return recv_;
  recv_tried_ = true;
  const auto& want = cfg().recv_buffers;
  if (want.count == 0) return nullptr;
  try {
    auto* p = new recv_pool(ring_.get(), want.count, want.size);
    if (!p->registered()) {
      log().warn("shard {}: no provided-buffer ring ({}): multishot recv is unsupported here", id_, p->why_not());
      p->release();
      return nullptr;
    }
    recv_ = p;
  } catch (const std::exception& e) {
    log().error("shard {}: {}", id_, e.what());
  }
  return recv_;
}

std::string describe_current_exception() {
  try {
    throw;
  } catch (const std::exception& ex) {
    return boost::core::demangle(typeid(ex).name()) + ": " + ex.what();
  } catch (...) {
    // Not a std::exception: no text, but the ABI still knows its type.
    if (const std::type_info* t = abi::__cxa_current_exception_type())
      return "unknown exception of type " + boost::core::demangle(t->name());
    return "unknown exception";
  }
}

std::string name_of(const control_block* cb) {
  return fmt::format("{}#{}@{}", cb->type()->name, cb->id(), cb->shard());
}

std::string shard::open_ring() {
  tl_shard = this;
  std::string err = ring_.open(cfg(), id_);
  if (err.empty()) {
    probe_opcodes();
    err = open_fixed_buffers();
  }
  if (err.empty()) {
    setup_.store(ring_.setup(), std::memory_order_release);
    ring_fd_.store(ring_.fd(), std::memory_order_release);
  }
  return err;
}

const config& shard::cfg() const noexcept { return core_.cfg(); }

std::string shard::open_fixed_buffers() {
  const auto& want = cfg().fixed_buffers;
  if (want.count == 0) return {};
  // Memory that cannot be mapped fails the runtime's constructor (start()
  // stops and joins the shards, then throws this); a thrown error here
  // would leave the shard thread and terminate the process.
  try {
    fixed_ = new fixed_pool(want.count, want.size);
  } catch (const std::exception& e) {
    return e.what();
  }
  std::string why = fixed_->register_with(ring_.get());
  // Not fatal: reads and writes into the buffers then go as plain ones.
  if (!why.empty())
    log().warn("shard {}: {} fixed buffers of {} bytes not registered with the ring ({}); they work as "
               "plain buffers. Registered memory counts against RLIMIT_MEMLOCK: raise it (ulimit -l, "
               "LimitMEMLOCK= in systemd) or lower config::fixed_buffers.",
               id_, want.count, want.size, why);
  return {};
}

// ---------------------------------------------------------------------------
// Sending

bool shard::push_inbox(control_block* cb) noexcept {
  inbox_.push(&cb->inbox_hook_);
  return claim_doorbell();
}

bool shard::claim_doorbell() noexcept {
  if (park_.load(std::memory_order_seq_cst) != park_state::parked) return false;
  park_state expected = park_state::parked;
  return park_.compare_exchange_strong(expected, park_state::notified, std::memory_order_seq_cst);
}

void shard::post(control_block* cb, envelope* e, bool depth_reserved) noexcept {
  if (cb->capacity_ != 0 && !depth_reserved) cb->depth_.fetch_add(1, std::memory_order_relaxed);
  const shard_id where = cb->shard_.load(std::memory_order_relaxed);
  if (where == id_) {  // pinned here; never true for an unbound actor
    ++sends_local_;
    if (cb->life_.load(std::memory_order_relaxed) == life::dead) return dead_letter(cb, e);
    if (!cb->mailbox_empty()) {
      // Everything queued remotely goes first: a sender that moved to this
      // shard must not overtake its own earlier messages. If a remote node
      // is still being linked (busy), what follows it — the spawn's
      // construct envelope, say — may not be poppable yet: then this message
      // queues behind it in the mailbox too.
      bool busy = false;
      splice_remote(cb, busy, ~std::size_t{0});
      if (busy) {
        cb->mailbox_push(e);
        schedule(cb);
        return;
      }
    }
    e->next.store(nullptr, std::memory_order_relaxed);
    if (cb->local_tail_) cb->local_tail_->next.store(e, std::memory_order_relaxed);
    else cb->local_head_ = e;
    cb->local_tail_ = e;
    mailbox_high_water_.raise_to(++cb->local_count_);
    schedule(cb);
    return;
  }
  ++sends_remote_;
  if (cb->dead()) return dead_letter(cb, e);
  cb->mailbox_push(e);
  if (cb->remote_scheduled_.load(std::memory_order_seq_cst) == 0 &&
      cb->remote_scheduled_.exchange(1, std::memory_order_seq_cst) == 0) {
    cb->add_ref();
    if (where & control_block::unbound_bit) return schedule_unbound(cb);
    if (core_.at(where).push_inbox(cb)) ring_doorbell(where);
  }
}

void shard::schedule(control_block* cb) noexcept {
  if (!cb->local_scheduled_) {
    cb->local_scheduled_ = true;
    ready_.push(cb);
  }
}

void shard::ring_doorbell(shard_id target) noexcept {
  io_uring_sqe* sqe = ring_.sqe();
  unsigned k = cfg().fault_injection.fail_every_kth_doorbell;
  if (k == 1) k = 2;  // every doorbell failing would never deliver one
  ++doorbells_sent_;
  if (k != 0 && ++doorbells_rung_ % k == 0) {
    // The doorbell "fails" as the kernel would fail a msg_ring: the target is
    // not woken and the failure comes back to us as a CQE.
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, tag(cqe_kind::doorbell_fault,
                                     target | (std::uint64_t(doorbells_rung_ / k % 2) << 32)));
    ++faults_injected_;
    ++inflight_;
    return;
  }
  io_uring_prep_msg_ring(sqe, core_.at(target).ring_fd(), 0, tag(cqe_kind::doorbell, id_), 0);
  io_uring_sqe_set_data64(sqe, tag(cqe_kind::doorbell_sent, target));
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

void shard::dead_letter(control_block* cb, envelope* e) noexcept {
  ++dead_letters_;
  if (cb->capacity_ != 0) cb->depth_.fetch_sub(1, std::memory_order_relaxed);
  if (log().should_log(spdlog::level::debug)) log().debug("dead letter to {}", name_of(cb));
  envelope_fn fn = e->fn;
  try {
    fn(e, envelope_action::drop, cb);  // a throwing payload destructor is counted in there
  } catch (...) {
    log().error("dropping a message for {} threw {}", cb->type()->name, describe_current_exception());
  }
  free(e);
}

void shard::dead_letter_unsent(control_block* cb, envelope* e) noexcept {
  ++sends_local_;
  if (cb->capacity_ != 0) cb->depth_.fetch_add(1, std::memory_order_relaxed);
  dead_letter(cb, e);
}

void shard::free(envelope* e) noexcept {
  auto* p = static_cast<envelope_pool*>(e->pool);
  if (p == &pool_) return pool_.free_local(e);
  if (p == nullptr) {
    heap_envelopes_live.fetch_sub(1, std::memory_order_relaxed);
    return ::operator delete(e);
  }
  for (shard_id s = 0; s < core_.size(); ++s) {
    if (&core_.at(s).pool() != p) continue;
    envelope_pool::carrier*& c = returns_[s];
    if (c == nullptr) {
      c = envelope_pool::carrier::start(e);
    } else {
      c->blocks[c->count++] = e;
      if (c->full()) p->give_back(std::exchange(c, nullptr));
    }
    return;
  }
  p->give_back(envelope_pool::carrier::start(e));  // a pool of another runtime
}

void shard::flush_returns() noexcept {
  for (shard_id s = 0; s < returns_.size(); ++s)
    if (returns_[s] != nullptr) core_.at(s).pool().give_back(std::exchange(returns_[s], nullptr));
}

// ---------------------------------------------------------------------------
// The loop

void shard::run() {
  tl_shard = this;
  const std::int64_t spin_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(cfg().spin_before_park).count();
  std::int64_t idle_since = 0;
  unsigned idle_polls = 0;
  for (;;) {
    bool worked = turn();
    if (core_.stop_requested()) break;
    if (steal_every_turn_ && worked) steal();
    if (worked) {
      // With nothing left to run, the next turn is likely idle and about to
      // park: let the park's one io_uring_enter submit the doorbells this
      // turn prepared. At most one turn is skipped, so a busy shard still
      // submits every other turn.
      if (!ready_.empty() || deferred_submit_) {
        submit();
        deferred_submit_ = false;
      } else {
        deferred_submit_ = true;
      }
      idle_since = 0;
      idle_polls = 0;
      continue;
    }
    deferred_submit_ = false;
    if (steal()) {
      idle_since = 0;
      idle_polls = 0;
      continue;
    }
    if (spin_ns > 0) {
      // The clock is read once per 64 idle polls: on this VM a vDSO
      // clock_gettime costs more than a whole poll (pingpong_cross_shard).
      if (++idle_polls % 64 != 1) {
        submit();
        continue;
      }
      std::int64_t now = now_ns();
      if (idle_since == 0) idle_since = now;
      if (now - idle_since < spin_ns) {
        submit();
        continue;
      }
    }
    park();  // submits what is pending and waits, in one io_uring_enter
    idle_since = 0;
    idle_polls = 0;
  }
  shutdown();
  tl_shard = nullptr;
}

namespace {
constexpr std::int64_t max_submit_delay_ns =
    std::chrono::duration_cast<std::chrono::nanoseconds>(defaults::max_submit_delay).count();
}  // namespace

bool shard::turn() {
  if (recv_ != nullptr && recv_->has_returns()) recv_->drain();  // buffers given back elsewhere
  if (cancel_unsubmitted_) submit();
  bool worked = reap();
  worked |= take_inbox();
  if (!timers_.empty()) worked |= fire_timers();
  worked |= run_ready();
  if (any_retry_) retry_doorbells();
  return worked;
}

void shard::retry_doorbells() noexcept {
  any_retry_ = false;
  for (shard_id t = 0; t < retry_doorbell_.size(); ++t)
    if (retry_doorbell_[t]) {
      retry_doorbell_[t] = 0;
      ring_doorbell(t);
    }
}

void shard::submit() noexcept {
  io_uring* r = ring_.get();
  if (cancel_unsubmitted_) {
    // Into the kernel before anything is reaped, whatever it takes.
    ring_.flush();
    cancel_unsubmitted_ = false;
  } else if (io_uring_sq_ready(r) > 0) {
    ring_.submit();  // a submit that took nothing leaves the SQEs for the next turn
  } else if (ring_.sq_flags() & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) {
    io_uring_get_events(r);
  }
  cq_overflows_.raise_to(ring_.cq_dropped());
}

bool shard::reap() noexcept {
  io_uring* r = ring_.get();
  unsigned n = 0;
  // CQEs a submit moved aside while the CQ had to be read come first.
  if (std::vector<io_uring_cqe>& early = ring_.spilled(); !early.empty()) {
    for (std::size_t i = 0; i < early.size(); ++i) on_cqe(early[i].user_data, early[i].res, early[i].flags);
    n += static_cast<unsigned>(early.size());
    early.clear();
  }
  unsigned head, here = 0;
  io_uring_cqe* cqe;
  io_uring_for_each_cqe(r, head, cqe) {
    ++here;
    on_cqe(cqe->user_data, cqe->res, cqe->flags);
  }
  io_uring_cq_advance(r, here);
  n += here;
  // More completions wait aside in the kernel (IORING_FEAT_NODROP); the next
  // submit() flushes them in.
  if (here != 0 && (ring_.sq_flags() & IORING_SQ_CQ_OVERFLOW)) ++cq_backlogs_;
  return n != 0;
}

void shard::on_cqe(std::uint64_t ud, int res, unsigned flags) noexcept {
  switch (kind_of(ud)) {
    case cqe_kind::doorbell: break;  // its job was to wake us
    case cqe_kind::doorbell_sent:
      if (res < 0) {
        log().debug("shard {}: doorbell to shard {} failed ({}), ringing again", id_, arg_of(ud), -res);
        ++doorbells_retried_;
        retry_doorbell_[arg_of(ud)] = 1;
        any_retry_ = true;
      }
      break;
    case cqe_kind::io: {
      auto* p = reinterpret_cast<pending_io*>(arg_of(ud));
      if ((flags & IORING_CQE_F_MORE) == 0) {  // its last CQE
        if (unsigned k = cfg().fault_injection.lose_every_kth_completion; k != 0 && ++final_cqes_ % k == 0)
          break;  // "dropped by the kernel": the record stays owed
        unlink_in_kernel(p);
        --inflight_;
      }
      complete_io(p, res, flags);
      break;
    }
    case cqe_kind::io_cancel: break;  // the target had completed already
    case cqe_kind::io_timeout: --inflight_; break;
    case cqe_kind::doorbell_fault:
      --inflight_;
      ++doorbells_retried_;
      retry_doorbell_[arg_of(ud) & 0xffffffffu] = 1;
      any_retry_ = true;
      break;
  }
}

bool shard::take_inbox() noexcept {
  bool any = false;
  for (;;) {
    bool busy = false;
    mpsc_node* n = inbox_.pop(busy);
    if (n == nullptr) return any || busy;
    any = true;
    control_block* cb = from_inbox_hook(n);
    if (cb->unbound()) {
      incoming_unbound_.fetch_sub(1, std::memory_order_relaxed);
      enqueue_unbound(cb);  // the token moves here, flag and reference with it
      continue;
    }
    cb->remote_scheduled_.store(0, std::memory_order_seq_cst);
    if (cb->dead()) {
      // A dead actor in the ready queue holds a reference: hand it ours, or
      // drop ours if it already has one.
      if (cb->local_scheduled_) {
        cb->release();
      } else {
        cb->local_scheduled_ = true;
        ready_.push(cb);
      }
    } else {
      schedule(cb);
      cb->release();  // the life reference keeps it
    }
  }
}

bool shard::fire_timers() {
  std::int64_t now = now_ns();
  bool any = false;
  while (timer_node* t = timers_.pop_due(now)) {
    any = true;
    t->fire(t, false);
  }
  return any;
}

bool shard::run_ready() {
  // The actors that were ready when the step began, then the ones they made
  // ready on this shard, up to `extra` more runs: a same-shard exchange does
  // not pay a whole turn (reap, inbox, submit) per message, and the inbox
  // and the CQ still get their turn after a bounded step.
  // Then the unbound actors that were in the steal deque at that point
  // (those pushed back meanwhile wait for the next step, where stealers
  // can still reach them).
  std::size_t n = ready_.size();
  std::size_t unbound = own_.size();
  if (n == 0 && unbound == 0) return false;
  std::size_t runs = 0;
  const std::size_t limit = n + 64;
  std::int64_t pending_since = 0;
  while (runs < limit) {
    control_block* cb = ready_.pop();
    if (cb == nullptr) break;
    run_actor(cb);
    ++runs;
    submit_if_late(pending_since);
  }
  for (; unbound > 0; --unbound) {
    control_block* cb = own_.pop();
    if (cb == nullptr) break;  // stolen meanwhile
    run_actor(cb);
    submit_if_late(pending_since);
  }
  return true;
}

void shard::submit_if_late(std::int64_t& pending_since) noexcept {
  // SQEs (doorbells) wait for the end of the turn so that a short turn
  // followed by a park submits them in the park's one enter; a long step
  // must not hold them back: a parked peer would sleep through it. The
  // clock starts when they are first seen after a run, so they wait at most
  // max_submit_delay plus two actors' runs.
  if (io_uring_sq_ready(ring_.get()) == 0) return;
  std::int64_t now = now_ns();
  if (pending_since == 0) {
    pending_since = now;
  } else if (now - pending_since >= max_submit_delay_ns) {
    submit();
    pending_since = 0;
  }
}

void shard::requeue(control_block* cb) noexcept {
  if (cb->unbound()) enqueue_unbound(cb);
  else ready_.push(cb);  // still local_scheduled_
}

envelope* shard::pop_local(control_block* cb) noexcept {
  envelope* e = cb->local_head_;
  if (e) {
    --cb->local_count_;
    cb->local_head_ = static_cast<envelope*>(e->next.load(std::memory_order_relaxed));
    if (cb->local_head_ == nullptr) cb->local_tail_ = nullptr;
  }
  return e;
}

void shard::splice_remote(control_block* cb, bool& busy, std::size_t limit) noexcept {
  for (; limit > 0; --limit) {
    mpsc_node* n = cb->mailbox_pop(busy);
    if (n == nullptr) break;
    auto* e = static_cast<envelope*>(n);
    e->next.store(nullptr, std::memory_order_relaxed);
    if (cb->local_tail_) cb->local_tail_->next.store(e, std::memory_order_relaxed);
    else cb->local_head_ = e;
    cb->local_tail_ = e;
    ++cb->local_count_;
  }
  mailbox_high_water_.raise_to(cb->local_count_);
}

void shard::run_actor(control_block* cb) {
  if (cb->life_.load(std::memory_order_relaxed) == life::dead || draining_) {
    if (!cb->dead()) kill(cb, nullptr, false);
    return drain_dead(cb);
  }
  unsigned budget = cfg().message_budget;
  bool busy = false;
  if (cb->unbound()) ++unbound_runs_;
  while (budget > 0) {
    envelope* e = pop_local(cb);
    if (e == nullptr) {
      // Only what this run can handle: an envelope is then touched twice
      // in a row (moved, run) while its line is still in cache. Splicing a
      // deep mailbox whole made every later pop a miss (fanout_throughput).
      splice_remote(cb, busy, budget);
      e = pop_local(cb);
      if (e == nullptr) break;
    }
    --budget;
    deliver(cb, e);
    if (cb->life_.load(std::memory_order_relaxed) == life::dead) return drain_dead(cb);
    if (cb->actor_ && actor_access::stop_requested(*cb->actor_)) {
      kill(cb, nullptr, true);
      return drain_dead(cb);
    }
  }
  if (busy || cb->local_head_ != nullptr || !cb->mailbox_empty()) {
    requeue(cb);
  } else if (cb->unbound()) {
    finish_unbound_run(cb);
  } else {
    cb->local_scheduled_ = false;
  }
}

void shard::deliver(control_block* cb, envelope* e) {
  envelope_fn fn = e->fn;
  bool starting = cb->actor_ == nullptr;
  // The capacity bounds what waits, not what runs.
  if (cb->capacity_ != 0) cb->depth_.fetch_sub(1, std::memory_order_relaxed);
  std::string what;
  payload_scope scope(e);
  try {
    fn(e, envelope_action::deliver, cb);
  } catch (...) {
    what = describe_current_exception();
  }
  ++messages_run_;
  free(e);
  if (!what.empty()) {
    const char* where = !starting ? "handler" : cb->actor_ ? "on_start" : "constructor";
    std::string reason = std::string(where) + " threw " + what;
    if (!scope.failure().empty()) reason += "; then the message destructor threw: " + scope.failure();
    fail(cb, std::move(reason));
  } else if (!scope.failure().empty() && cb->actor_ != nullptr && !cb->dead()) {
    // Like a handler's exception: this actor fails, the shard goes on.
    fail(cb, "message destructor threw: " + scope.failure());
  } else if (!scope.failure().empty()) {
    ++drop_failures_;  // nobody left to fail
  }
}

// ---------------------------------------------------------------------------
// Lifecycle

void shard::actor_started(control_block* cb) {
  cb->life_.store(life::alive, std::memory_order_release);
  if (cb->unbound()) core_.link_unbound(*cb->actor_);
  else link_live(cb);
  actor_access::start(*cb->actor_);  // on_start; a throw fails the actor
}

void shard::fail(control_block* cb, std::string what) {
  // The reason names the actor too: a watcher of many sees which one.
  std::string reason = fmt::format("{} failed: {}", name_of(cb), what);
  log().error("{}", reason);
  kill(cb, new exit_info{make_error_code(errc::actor_failed), std::move(reason)}, false);
}

void destroy_extras(actor_base& a, control_block* cb, const exit_info& why) noexcept;

void shard::kill(control_block* cb, exit_info* why, bool run_on_stop) {
  if (why == nullptr) why = new exit_info{};
  actor_base* a = cb->actor_;
  if (a != nullptr && run_on_stop) {
    try {
      actor_access::stop(*a);
    } catch (...) {
      log().error("{}: on_stop threw {}", name_of(cb), describe_current_exception());
    }
  }
  cb->exit_ = why;
  cb->life_.store(life::dead, std::memory_order_release);
  unlink_live(cb);
  if (a != nullptr) {
    destroy_extras(*a, cb, *why);  // monitors get down; asks and timers go
    delete a;
    cb->actor_ = nullptr;
  }
  if (cb->unbound()) {
    // The runner holds the token and drains next; a shutdown kill may not:
    // then it takes the token if it is free, or leaves the draining to the
    // shard whose queue holds it.
    if (cb->remote_scheduled_.load(std::memory_order_seq_cst) == 0 &&
        cb->remote_scheduled_.exchange(1, std::memory_order_seq_cst) == 0) {
      cb->add_ref();
      ready_.push(cb);
    }
    cb->release();  // the life reference
    return;
  }
  // The life reference now belongs to the ready-queue entry.
  if (!cb->local_scheduled_) {
    cb->local_scheduled_ = true;
    ready_.push(cb);
  }
}

void shard::drain_dead(control_block* cb) {
  while (envelope* e = pop_local(cb)) dead_letter(cb, e);
  bool busy = false;
  while (mpsc_node* n = cb->mailbox_pop(busy)) dead_letter(cb, static_cast<envelope*>(n));
  if (busy) {
    ready_.push(cb);  // a sender is still linking its message; keep our reference
    return;
  }
  if (cb->unbound()) return finish_unbound_run(cb);
  cb->local_scheduled_ = false;
  cb->release();
}

void shard::link_live(control_block* cb) noexcept {
  actor_base& a = *cb->actor_;
  actor_access::live_prev(a) = nullptr;
  actor_access::live_next(a) = live_head_;
  if (live_head_) actor_access::live_prev(*live_head_) = &a;
  live_head_ = &a;
  ++actors_live_;
}

void shard::unlink_live(control_block* cb) noexcept {
  if (cb->actor_ == nullptr) return;  // never constructed
  actor_base& a = *cb->actor_;
  if (cb->unbound()) return core_.unlink_unbound(a);
  actor_base* prev = actor_access::live_prev(a);
  actor_base* next = actor_access::live_next(a);
  if (prev == nullptr && live_head_ != &a) return;  // never started
  if (prev) actor_access::live_next(*prev) = next;
  else live_head_ = next;
  if (next) actor_access::live_prev(*next) = prev;
  actor_access::live_prev(a) = actor_access::live_next(a) = nullptr;
  actors_live_.v.store(actors_live_.get() - 1, std::memory_order_relaxed);
}

void shard::count_unhandled(control_block* cb, std::string_view type) noexcept {
  ++unhandled_;
  static thread_local std::unordered_set<std::string> warned;
  std::string key = std::string(cb->type()->name) + "/" + std::string(type);
  if (warned.insert(key).second)
    log().warn("{} has no handler for {} (sent through any_ref; add it to `accepts`)",
               cb->type()->name, short_type_name(std::string(type).c_str()));
}

// ---------------------------------------------------------------------------
// Parking and shutdown

void shard::park() {
  flush_returns();
  park_.store(park_state::parked, std::memory_order_seq_cst);
  if (!inbox_.empty() || core_.stop_requested() || !ready_.empty() || !own_.empty() ||
      !ring_.spilled().empty() || peers_have_work()) {
    park_.store(park_state::running, std::memory_order_seq_cst);
    submit();  // what the last turns prepared must not wait any longer
    return;
  }
  ++parks_;
  __kernel_timespec ts{};
  __kernel_timespec* tsp = nullptr;
  // Deadlines come from deadline_after: never_ns (nothing due, ever) waits
  // without a timeout, and the difference of two clock readings cannot
  // overflow.
  if (!timers_.empty() && timers_.next_deadline() != never_ns) {
    std::int64_t wait = timers_.next_deadline() - now_ns();
    if (wait < 0) wait = 0;
    ts.tv_sec = wait / 1'000'000'000;
    ts.tv_nsec = wait % 1'000'000'000;
    tsp = &ts;
  }
  // A submit that took nothing returns at once: the next turn tries again.
  ring_.submit_and_wait(tsp);
  park_.store(park_state::running, std::memory_order_seq_cst);
}

void shard::shutdown() {
  draining_ = true;
  // Reaping meanwhile: a foreign doorbell to a full CQ fails until we make
  // room, and its sender retries until it gets through.
  while (core_.foreign_sends_in_flight()) {
    reap();
    std::this_thread::yield();
  }
  // Phase 0: no handler runs anywhere any more, so an unbound actor is idle
  // or queued somewhere, never running.
  core_.shutdown_barrier();
  // Phase 1: on_stop of every live actor; sends after that are dead letters.
  // The unbound actors anchored here have their timers on this shard's heap:
  // they stop here (anchored actors are never steered, so the list holds).
  // After a barrier, shard 0 stops the other unbound ones, which have none.
  while (live_head_ != nullptr) kill(actor_access::cb(*live_head_), nullptr, true);
  for (control_block* cb : core_.anchored_unbound_on(id_))
    if (cb->life_.load(std::memory_order_acquire) == life::alive) kill(cb, nullptr, true);
  core_.shutdown_barrier();
  if (id_ == 0)
    while (control_block* cb = core_.first_unbound()) kill(cb, nullptr, true);
  submit();
  core_.shutdown_barrier();
  // Phase 2: reap until nothing we wait for is in flight; the blocking pool
  // finishes its jobs (their results are dead letters now).
  if (id_ == 0) core_.blocking().wait_idle();
  wait_in_flight();
  submit();
  core_.shutdown_barrier();
  // Phase 3: drain. Nobody sends any more; every queued envelope is a dead
  // letter and goes back to its pool. Pending delayed sends go first, as
  // dead letters counted here, so nothing lands on another shard's inbox
  // after that shard has drained.
  while (timer_node* t = timers_.pop_any()) t->fire(t, true);
  for (;;) {
    bool any = take_inbox();
    while (control_block* cb = ready_.pop()) {
      any = true;
      run_actor(cb);
    }
    while (control_block* cb = own_.pop()) {
      any = true;
      run_actor(cb);
    }
    if (!any) break;
  }
  flush_returns();
  core_.shutdown_barrier();
  // Phase 4: every envelope of this pool is home; close the ring.
  reap();
  cq_overflows_.raise_to(ring_.cq_dropped());
  if (fixed_ != nullptr) fixed_->unregistered();  // buffers still held work as plain memory
  if (recv_ != nullptr) recv_->unregistered();
  ring_.close();
}

void shard::fill_stats(shard_stats& s) const {
  s.messages_run = messages_run_.get();
  s.sends_local = sends_local_.get();
  s.sends_remote = sends_remote_.get();
  s.doorbells_sent = doorbells_sent_.get();
  s.doorbells_retried = doorbells_retried_.get();
  s.doorbell_faults_injected = faults_injected_.get();
  s.parks = parks_.get();
  s.dead_letters = dead_letters_.get();
  s.late_replies = late_replies_.get();
  s.unhandled = unhandled_.get();
  s.mailbox_high_water = mailbox_high_water_.get();
  s.envelopes_live = pool_.live();
  s.pool_slabs = pool_.slabs();
  s.cq_overflows = cq_overflows_.get();
  s.cq_backlogs = cq_backlogs_.get();
  s.drop_failures = drop_failures_.get();
  s.actors_live = actors_live_.get();
  s.steal_attempts = steal_attempts_.get();
  s.steals = steals_.get();
  s.actors_stolen = actors_stolen_.get();
  s.migrated_in = migrated_in_.load(std::memory_order_relaxed);
  s.migrated_out = migrated_out_.load(std::memory_order_relaxed);
  s.peer_wakeups = peer_wakeups_.get();
  s.unbound_runs = unbound_runs_.get();
  s.io_submitted = io_submitted_.get();
  s.io_cancelled = io_cancelled_.get();
  s.io_completed = io_completed_.get();
  s.io_abandoned = io_abandoned_.get();
}

}  // namespace troupe::detail
