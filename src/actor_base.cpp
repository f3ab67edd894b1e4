// What an actor owns besides its state: asks in flight, monitors, periodic
// timers — created on first use, all touched by the actor's shard only, and
// torn down when the actor dies (monitors get `down`, pending continuations
// are destroyed without running, timers are disarmed).
#include "log.hpp"
#include "runtime_core.hpp"
#include "shard.hpp"

#include <troupe/actor_base.hpp>
#include <troupe/detail/dispatch.hpp>
#include <troupe/detail/io_op.hpp>
#include <troupe/error.hpp>
#include <troupe/ref.hpp>

#include <memory>
#include <unordered_map>
#include <vector>

namespace troupe::detail {

struct monitor_entry {
  control_block* watcher;  // owns a reference
  down_factory make;
};

struct periodic_timer : timer_node {
  timer_id id;
  control_block* owner;
  std::int64_t period_ns;
  std::unique_ptr<tick_source> source;
};

struct actor_extras {
  std::uint64_t next_ask = 1;
  std::unordered_map<std::uint64_t, pending_ask*> asks;
  std::vector<monitor_entry> monitors;
  timer_id next_timer = 1;
  std::unordered_map<timer_id, std::unique_ptr<periodic_timer>> timers;
  pending_io* io_head = nullptr;  // operations submitted, not yet delivered
  std::uint64_t io_serial = 0;
};

namespace {

actor_extras& extras_of(actor_base& a) {
  actor_extras*& x = actor_access::extras(a);
  if (x == nullptr) x = new actor_extras;
  return *x;
}

// Asks and periodic timers keep an unbound actor on the shard whose timer
// heap holds them (scheduler.cpp, "Anchors"). Only the runner writes.
void anchor(control_block* cb, int delta) noexcept {
  cb->anchors_.store(cb->anchors_.load(std::memory_order_relaxed) + delta,
                     std::memory_order_relaxed);
}

any_ref ref_to(control_block* cb) noexcept {
  cb->add_ref();
  return any_ref(cb);
}

/// Delivered to the asker when its ask's timer fires first.
struct ask_timeout_envelope final : envelope {
  std::uint64_t id;
  explicit ask_timeout_envelope(std::uint64_t i) : id(i) { fn = &run; }
  static void run(envelope* e, envelope_action act, control_block* cb) {
    auto* self = static_cast<ask_timeout_envelope*>(e);
    destroy_on_exit<ask_timeout_envelope> guard{self};
    if (act != envelope_action::deliver) return;
    actor_extras* x = actor_access::extras(*cb->actor_);
    auto it = x->asks.find(self->id);
    if (it == x->asks.end()) return;  // the reply won the race
    std::unique_ptr<pending_ask> p(it->second);
    x->asks.erase(it);
    anchor(cb, -1);
    p->fail(make_error_code(errc::timeout));
  }
};

/// Registers a watcher with the target; `down` at once if the target is dead.
struct monitor_envelope final : envelope {
  control_block* watcher;
  down_factory make;
  monitor_envelope(control_block* w, down_factory m) : watcher(w), make(m) { fn = &run; }
  static void run(envelope* e, envelope_action act, control_block* cb) {
    auto* self = static_cast<monitor_envelope*>(e);
    destroy_on_exit<monitor_envelope> guard{self};
    if (act == envelope_action::deliver) {
      extras_of(*cb->actor_).monitors.push_back({self->watcher, self->make});
      return;
    }
    const exit_info* why = cb->exit();
    down d{ref_to(cb), why ? why->code : std::error_code{}, why ? why->what : std::string()};
    post(self->watcher, self->make(self->watcher, std::move(d)));
    self->watcher->release();
  }
};

struct delayed_delivery final : timer_node {
  control_block* target;  // owns a reference
  envelope* e;
};

void fire_delayed(timer_node* t, bool cancelled) {
  std::unique_ptr<delayed_delivery> d(static_cast<delayed_delivery*>(t));
  if (cancelled)
    // Shutdown: it counts as sent and as a dead letter, here and now.
    this_shard_ptr()->dead_letter_unsent(d->target, d->e);
  else
    post(d->target, d->e);
  d->target->release();
}

void fire_ask_timeout(timer_node* t, bool cancelled) {
  if (cancelled) return;  // the asker is gone and took the pending ask with it
  auto* p = static_cast<pending_ask*>(t);
  control_block* owner = actor_access::cb(*p->owner);
  this_shard_ptr()->post(owner, make_envelope<ask_timeout_envelope>(owner, p->id));
}

void fire_periodic(timer_node* t, bool cancelled) {
  if (cancelled) return;
  auto* p = static_cast<periodic_timer*>(t);
  this_shard_ptr()->post(p->owner, p->source->make(p->owner, p->id));
  std::int64_t now = now_ns();
  const std::chrono::nanoseconds period(p->period_ns);
  p->deadline_ns = deadline_after(p->deadline_ns, period);
  if (p->deadline_ns <= now) p->deadline_ns = deadline_after(now, period);  // skip, don't queue up
  arm_timer(p);
}

}  // namespace

std::uint64_t register_ask(actor_base* owner, pending_ask* p, std::chrono::nanoseconds timeout) {
  actor_extras& x = extras_of(*owner);
  p->id = x.next_ask++;
  p->owner = owner;
  p->fire = &fire_ask_timeout;
  x.asks.emplace(p->id, p);
  // A deadline past the clock's range is no timeout (actor::expect passes
  // nanoseconds::max()): never armed, so it costs no heap slot.
  p->deadline_ns = deadline_after(now_ns(), timeout);
  if (p->deadline_ns != never_ns) arm_timer(p);
  anchor(actor_access::cb(*owner), +1);
  return p->id;
}

void complete_ask(actor_base* a, std::uint64_t id, void* result) {
  actor_extras* x = actor_access::extras(*a);
  auto it = x ? x->asks.find(id) : decltype(x->asks.end()){};
  if (x == nullptr || it == x->asks.end()) {
    count_late_reply();
    return;
  }
  std::unique_ptr<pending_ask> p(it->second);
  x->asks.erase(it);
  disarm_timer(p.get());
  anchor(actor_access::cb(*a), -1);
  p->complete(result);
}

void post_after(std::chrono::nanoseconds delay, control_block* target, envelope* e) {
  shard* s = this_shard_ptr();
  if (s == nullptr) throw error("troupe: delayed_send is for actors (it uses the shard's timers)");
  auto* d = new delayed_delivery;
  d->target = target;
  d->e = e;
  d->fire = &fire_delayed;
  d->deadline_ns = deadline_after(now_ns(), delay);  // never_ns: held until shutdown, a dead letter then
  target->add_ref();
  s->arm(d);
}

bool periodic_active(actor_base* a, timer_id id) noexcept {
  actor_extras* x = actor_access::extras(*a);
  return x != nullptr && x->timers.count(id) != 0;
}

timer_id start_periodic(actor_base* owner, std::chrono::nanoseconds period, tick_source* source) {
  std::unique_ptr<tick_source> src(source);
  actor_extras& x = extras_of(*owner);
  auto t = std::make_unique<periodic_timer>();
  t->id = x.next_timer++;
  t->owner = actor_access::cb(*owner);
  t->period_ns = period.count();
  t->source = std::move(src);
  t->fire = &fire_periodic;
  t->deadline_ns = deadline_after(now_ns(), period);
  arm_timer(t.get());
  timer_id id = t->id;
  x.timers.emplace(id, std::move(t));
  anchor(actor_access::cb(*owner), +1);
  return id;
}

void submit_io(actor_base* owner, pending_io* p) {
  shard* s = this_shard_ptr();
  if (s == nullptr) {
    // Not reachable through actor::submit; kept for a clear failure.
    p->fn(p, envelope_action::drop, nullptr);
    free_envelope(p);
    throw error("troupe: I/O is submitted by actors, on their shard");
  }
  actor_extras& x = extras_of(*owner);
  control_block* cb = actor_access::cb(*owner);
  p->owner = cb;
  p->serial = ++x.io_serial;
  cb->add_ref();  // the record may outlive the actor
  p->next_op = x.io_head;
  if (x.io_head) x.io_head->prev = p;
  x.io_head = p;
  anchor(cb, +1);
  s->start_io(p);
}

void submit_blocking(actor_base* owner, pending_io* p) {
  // Not on the actor's list and no anchor: the pool thread owns the record
  // until it posts it, and the result reaches the actor wherever it runs.
  control_block* cb = actor_access::cb(*owner);
  p->owner = cb;
  cb->add_ref();
  this_shard_ptr()->core().blocking().push(p);
}

bool cancel_io(actor_base* owner, const io::handle& h) noexcept {
  actor_extras* x = actor_access::extras(*owner);
  if (x == nullptr || h.record == nullptr) return false;
  for (pending_io* p = x->io_head; p != nullptr; p = p->next_op) {
    if (p != h.record) continue;
    if (p->serial != h.serial || p->st != pending_io::state::in_flight) return false;
    // Off the actor's list now: the record is the kernel's until its last
    // CQE, which is then dropped and lifts the anchor (shard::complete_io).
    if (p->prev) p->prev->next_op = p->next_op;
    else x->io_head = p->next_op;
    if (p->next_op) p->next_op->prev = p->prev;
    p->prev = p->next_op = nullptr;
    this_shard_ptr()->cancel_io(p);
    return true;
  }
  return false;
}

bool end_multishot(actor_base* owner, const io::handle& h) noexcept {
  actor_extras* x = actor_access::extras(*owner);
  if (x == nullptr || h.record == nullptr) return false;
  for (pending_io* p = x->io_head; p != nullptr; p = p->next_op) {
    if (p != h.record) continue;
    if (p->serial != h.serial || p->st != pending_io::state::in_flight || !p->multishot) return false;
    // Stays on the list and anchored: its last CQE ends it as usual.
    this_shard_ptr()->cancel_io(p, false);
    return true;
  }
  return false;
}

void io_delivered(actor_base* owner, pending_io* p) noexcept {
  actor_extras* x = actor_access::extras(*owner);
  if (p->prev) p->prev->next_op = p->next_op;
  else x->io_head = p->next_op;
  if (p->next_op) p->next_op->prev = p->prev;
  p->prev = p->next_op = nullptr;  // its anchor went when its CQE came (io.cpp)
}

void post_monitor(control_block* target, control_block* watcher, down_factory make) {
  post(target, make_envelope<monitor_envelope>(target, watcher, make));
}

void destroy_extras(actor_base& a, control_block* cb, const exit_info& why) noexcept {
  actor_extras* x = std::exchange(actor_access::extras(a), nullptr);
  if (x == nullptr) return;
  for (monitor_entry& m : x->monitors) {
    post(m.watcher, m.make(m.watcher, down{ref_to(cb), why.code, why.what}));
    m.watcher->release();
  }
  for (auto& [id, p] : x->asks) {
    disarm_timer(p);
    delete p;  // its continuation never runs
  }
  for (auto& [id, t] : x->timers) disarm_timer(t.get());
  // Operations still in the kernel are cancelled; their records stay until
  // their CQE and are then dropped. Completed ones wait in the mailbox and
  // are dropped with it.
  for (pending_io* p = x->io_head; p != nullptr; p = p->next_op)
    if (p->st == pending_io::state::in_flight) this_shard_ptr()->cancel_io(p);
  cb->anchors_.store(0, std::memory_order_relaxed);
  delete x;
}

}  // namespace troupe::detail

namespace troupe {

actor_base::actor_base() noexcept : cb_(detail::constructing()) {}

actor_base::~actor_base() {
  // Normally destroy_extras ran already; this covers a constructor of a
  // derived class that threw after using asks or timers.
  if (extras_ != nullptr) detail::destroy_extras(*this, cb_, detail::exit_info{});
}

shard_id actor_base::this_shard() const noexcept { return cb_->shard(); }

troupe::runtime& actor_base::system() const noexcept { return detail::owner_of(cb_->core()); }

void actor_base::cancel(timer_id id) noexcept {
  if (extras_ == nullptr) return;
  auto it = extras_->timers.find(id);
  if (it == extras_->timers.end()) return;
  detail::disarm_timer(it->second.get());
  extras_->timers.erase(it);
  detail::anchor(cb_, -1);
}

}  // namespace troupe
