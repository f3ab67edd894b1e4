// The scheduler of unbound actors: work stealing between shards.
//
// Pinned actors are not touched by anything in this file; their fast path
// (shard.cpp) only gained a bit in `shard_` that makes it skip unbound ones.
//
// Invariants
// - The token. An unbound actor is scheduled when `remote_scheduled_` is 1.
//   Whoever moves it 0 -> 1 (a sender, any thread) holds the actor's one
//   token, with one reference. The token is always in exactly one place: a
//   shard's inbox, a shard's steal deque or ready queue, a thief's hands, or
//   the shard running the actor. Only the token holder may touch the
//   actor's state, its mailbox head, `shard_` and the actor object; so the
//   actor never runs on two shards at once, and it moves only between runs,
//   that is between messages.
// - Mailbox. Every message to an unbound actor goes through its MPSC mailbox
//   (never the pinned actors' local FIFO, which has no atomics). The mailbox
//   is FIFO for everyone, so a sender's messages arrive in send order however
//   often the receiver moves — and however often the sender moves: its
//   pushes are ordered by the hand-over below.
// - Hand-over. The runner publishes the actor with a release (the deque's
//   `tail_`, the inbox push, or the seq_cst clear of `remote_scheduled_`);
//   the next holder takes it with an acquire (the deque's `tail_`/`head_`,
//   the inbox pop, or the seq_cst exchange). Everything the last run wrote
//   happens-before the next run, on whichever shard.
// - Going idle. A runner that found the mailbox empty clears the flag
//   (seq_cst) and then looks at the mailbox tail again: a sender that pushed
//   before the clear saw 1 and did not schedule, so the runner takes the
//   token back if it can. It looks at the tail only — after the clear the
//   head may belong to a new holder.
// - `shard_` is the shard that holds the token (or last did). The thief sets
//   it when it takes an actor, a sender when it steers an idle one;
//   `this_shard()` in a handler is therefore where the handler runs.
// - Anchors. An actor with asks or `every` timers in flight (their timer
//   nodes live on this shard's heap; later, I/O on this shard's ring) has
//   `anchors_` > 0: it is queued on the ready queue, not the deque, and it is
//   not steered, so it stays where its timers are. `anchors_` changes only
//   on the anchoring shard's thread: while the actor runs, or when the CQE
//   of one of its operations comes back.
// - References. The token holds one reference; the life reference is held
//   while the actor is alive (dropped by kill). A dead actor keeps being
//   scheduled until its mailbox is drained, like a pinned one.
//
// The protocol
// - An idle shard steals before it spins or parks: it probes
//   `victim_probes` peers from a random start and takes up to `steal_batch`
//   (at most half) of the most loaded one's deque.
// - A shard whose deque holds more than `wake_threshold` actors wakes one
//   parked peer through msg_ring so that it steals. A shard about to park
//   publishes "parked" and then looks at its peers' deques (a seq_cst fence
//   on both sides): either it sees the backlog and stays up, or the owner
//   sees it parked and wakes it.
// - Steering: a sender that wakes an idle actor queues it on the actor's
//   shard, unless that shard has more than `wake_threshold` ready unbound
//   actors; then on the least loaded shard.
// - Shutdown: after a barrier (no handler runs anywhere any more), each
//   shard stops the anchored unbound actors on it (their timers are on its
//   heap), then, after another barrier, shard 0 stops the others (they have
//   no timers); queued tokens are drained by the shard that holds them.
#include "log.hpp"
#include "runtime_core.hpp"
#include "shard.hpp"

#include <atomic>

namespace troupe::detail {

// ---------------------------------------------------------------------------
// Sending side (any shard, or a foreign thread through runtime_core)

void runtime_core::migrate(control_block* cb, shard_id from, shard_id to) noexcept {
  cb->shard_.store(to | control_block::unbound_bit, std::memory_order_relaxed);
  at(from).migrated_out_.fetch_add(1, std::memory_order_relaxed);
  at(to).migrated_in_.fetch_add(1, std::memory_order_relaxed);
}

shard_id runtime_core::steer(shard_id home) const noexcept {
  const std::size_t threshold = cfg_.stealing.wake_threshold;
  std::size_t best_load = shards_[home]->load();
  if (best_load <= threshold) return home;
  shard_id best = home;
  for (shard_id s = 0; s < size(); ++s) {
    std::size_t l = shards_[s]->load();
    if (l < best_load) {
      best = s;
      best_load = l;
    }
  }
  return best;
}

shard_id runtime_core::place_unbound(control_block* cb) noexcept {
  shard_id home = cb->shard();
  // Not while stopping: a token steered to a shard that has drained already
  // would stay there.
  if (!stealing_ || !cfg_.stealing.steer || stop_requested() ||
      cb->anchors_.load(std::memory_order_relaxed) != 0)
    return home;
  shard_id target = steer(home);
  if (target != home) migrate(cb, home, target);
  return target;
}

void shard::schedule_unbound(control_block* cb) noexcept {
  shard_id target = core_.place_unbound(cb);
  if (target == id_) return enqueue_unbound(cb);
  if (core_.at(target).push_unbound_inbox(cb)) ring_doorbell(target);
}

// ---------------------------------------------------------------------------
// The owner shard

void shard::enqueue_unbound(control_block* cb) noexcept {
  if (!stealing_ || draining_ || cb->anchors_.load(std::memory_order_relaxed) != 0 ||
      cb->life_.load(std::memory_order_relaxed) == life::dead) {
    ready_.push(cb);
    return;
  }
  own_.push(cb);
  if (own_.size() > cfg().stealing.wake_threshold) wake_peer();
}

void shard::wake_peer() noexcept {
  // Pairs with the fence in peers_have_work(): we published the deque's
  // tail, a parking peer published "parked"; one of us sees the other.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const shard_id n = core_.size();
  for (shard_id i = 1; i < n; ++i) {
    shard& peer = core_.at((id_ + i) % n);
    if (peer.claim_doorbell()) {
      ++peer_wakeups_;
      ring_doorbell(peer.id());
      // Now, not at the end of this turn: the turn may run for long (that
      // backlog is why we wake the peer), and the peer should steal meanwhile.
      submit();
      return;
    }
  }
}

bool shard::peers_have_work() const noexcept {
  if (!stealing_) return false;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  for (shard_id s = 0; s < core_.size(); ++s)
    if (s != id_ && core_.at(s).backlog() > cfg().stealing.wake_threshold) return true;
  return false;
}

bool shard::steal() noexcept {
  const shard_id n = core_.size();
  if (!stealing_ || n < 2) return false;
  // Probe from a random peer; take from the most loaded one seen.
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  const shard_id start = static_cast<shard_id>(rng_ % (n - 1));
  const unsigned probes = std::max(1u, std::min<unsigned>(cfg().stealing.victim_probes, n - 1));
  shard* victim = nullptr;
  std::size_t most = 0;
  for (unsigned p = 0; p < probes; ++p) {
    shard_id v = (start + p) % (n - 1);
    if (v >= id_) ++v;  // skip ourselves
    std::size_t load = core_.at(v).backlog();
    if (load > most) {
      most = load;
      victim = &core_.at(v);
    }
  }
  if (victim == nullptr) return false;
  ++steal_attempts_;
  control_block* taken[steal_deque::capacity / 2];
  std::size_t batch = std::max(1u, std::min<unsigned>(cfg().stealing.steal_batch, std::size(taken)));
  std::size_t k = victim->deque_stealer().steal(taken, batch);
  if (k == 0) return false;
  ++steals_;
  actors_stolen_.v.store(actors_stolen_.get() + k, std::memory_order_relaxed);
  for (std::size_t i = 0; i < k; ++i) {
    core_.migrate(taken[i], victim->id(), id_);
    own_.push(taken[i]);
  }
  if (own_.size() > cfg().stealing.wake_threshold) wake_peer();  // a third shard may sleep
  return true;
}

void shard::finish_unbound_run(control_block* cb) noexcept {
  cb->remote_scheduled_.store(0, std::memory_order_seq_cst);
  if (cb->mailbox_tail_.load(std::memory_order_seq_cst) != &cb->mailbox_stub_ &&
      cb->remote_scheduled_.exchange(1, std::memory_order_seq_cst) == 0)
    return enqueue_unbound(cb);  // a sender came in between: keep the token
  cb->release();                 // the token's reference
}

// ---------------------------------------------------------------------------
// Live unbound actors: one list per runtime, under a mutex taken when one
// starts or dies (never per message), walked by shard 0 at shutdown.

void runtime_core::link_unbound(actor_base& a) {
  std::lock_guard lock(unbound_mutex_);
  actor_access::live_prev(a) = nullptr;
  actor_access::live_next(a) = unbound_head_;
  if (unbound_head_) actor_access::live_prev(*unbound_head_) = &a;
  unbound_head_ = &a;
  unbound_live_.fetch_add(1, std::memory_order_relaxed);
}

void runtime_core::unlink_unbound(actor_base& a) noexcept {
  std::lock_guard lock(unbound_mutex_);
  actor_base* prev = actor_access::live_prev(a);
  actor_base* next = actor_access::live_next(a);
  if (prev == nullptr && unbound_head_ != &a) return;  // never started
  if (prev) actor_access::live_next(*prev) = next;
  else unbound_head_ = next;
  if (next) actor_access::live_prev(*next) = prev;
  actor_access::live_prev(a) = actor_access::live_next(a) = nullptr;
  unbound_live_.fetch_sub(1, std::memory_order_relaxed);
}

control_block* runtime_core::first_unbound() noexcept {
  std::lock_guard lock(unbound_mutex_);
  return unbound_head_ ? actor_access::cb(*unbound_head_) : nullptr;
}

std::vector<control_block*> runtime_core::anchored_unbound_on(shard_id s) {
  std::vector<control_block*> out;
  std::lock_guard lock(unbound_mutex_);
  for (actor_base* a = unbound_head_; a != nullptr; a = actor_access::live_next(*a)) {
    control_block* cb = actor_access::cb(*a);
    if (cb->anchors_.load(std::memory_order_relaxed) != 0 && cb->shard() == s) out.push_back(cb);
  }
  return out;
}

}  // namespace troupe::detail
