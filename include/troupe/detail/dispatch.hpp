// Compile-time dispatch: one envelope type, and so one thunk, per
// (actor, message) pair. No type ids, no registration, no lookup at run time.
#pragma once

#include <troupe/actor_base.hpp>
#include <troupe/detail/control_block.hpp>
#include <troupe/detail/envelope.hpp>
#include <troupe/detail/runtime_api.hpp>
#include <troupe/fwd.hpp>
#include <troupe/result.hpp>

#include <atomic>
#include <chrono>
#include <optional>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace troupe {

/// True when actor type A has a handler `on(M)` for message type M (taking
/// `const M&`, `M&&` or `M`).
template <class A, class M>
concept handles = requires(A& a, M&& m) { a.on(std::move(m)); };

}  // namespace troupe

namespace troupe::detail {

/// What a handler's return type answers an ask with: itself, or R for a
/// handler that answers later through a promise (deferred<R>).
template <class T>
struct answer_of {
  using type = T;
  static constexpr bool later = false;
};
template <class R>
struct answer_of<deferred<R>> {
  using type = R;
  static constexpr bool later = true;
};

/// The reply type of `A::on(M)`: what `ask` answers with. `void` when A has
/// no handler for M, so that the callers' static_assert, not a substitution
/// failure, is the first error a user sees.
template <class A, class M>
struct reply_of {
  using type = void;
};
template <class A, class M>
  requires handles<A, M>
struct reply_of<A, M> {
  using type = typename answer_of<decltype(std::declval<A&>().on(std::declval<M&&>()))>::type;
};
template <class A, class M>
using reply_type = typename reply_of<A, M>::type;

template <class A>
A& actor_of(control_block* cb) noexcept {
  return *static_cast<A*>(cb->actor_);
}

/// The message type an envelope E carries (its `msg`), else E: what a
/// failure of its destructor is reported as.
template <class E>
struct payload_of {
  using type = E;
};
template <class E>
  requires requires(E& e) { e.msg; }
struct payload_of<E> {
  using type = std::remove_cvref_t<decltype(std::declval<E&>().msg)>;
};

/// Destroys an envelope's payload. A destructor that throws (a message type
/// declared `~M() noexcept(false)`) does not end the process: the exception
/// goes to payload_destructor_threw: the receiving actor fails if the
/// message was being delivered to it, else a drop failure is counted.
template <class E>
void destroy_payload(E* e) noexcept {
  if constexpr (std::is_nothrow_destructible_v<E>) {
    e->~E();
  } else {
    const envelope* self = e;
    try {
      e->~E();  // the members after a throwing one are still destroyed
    } catch (...) {
      payload_destructor_threw(self, typeid(typename payload_of<E>::type).name());
    }
  }
}

/// Destroys an envelope's payload when the thunk leaves, normally or not.
template <class E>
struct destroy_on_exit {
  E* e;
  ~destroy_on_exit() { destroy_payload(e); }
};

template <class A, class M>
struct message_envelope final : envelope {
  M msg;
  template <class U>
  explicit message_envelope(U&& u) : msg(std::forward<U>(u)) {
    fn = &run;
  }
  static void run(envelope* e, envelope_action act, control_block* cb) {
    auto* self = static_cast<message_envelope*>(e);
    destroy_on_exit<message_envelope> guard{self};
    if (act == envelope_action::deliver) (void)actor_of<A>(cb).on(std::move(self->msg));
  }
};

/// Runtime dispatch for any_ref: the receiver looks the type up in its
/// `accepts` list.
template <class M>
struct dynamic_envelope final : envelope {
  M msg;
  template <class U>
  explicit dynamic_envelope(U&& u) : msg(std::forward<U>(u)) {
    fn = &run;
  }
  static void run(envelope* e, envelope_action act, control_block* cb) {
    auto* self = static_cast<dynamic_envelope*>(e);
    destroy_on_exit<dynamic_envelope> guard{self};
    if (act == envelope_action::deliver &&
        !actor_access::receive_dynamic(*cb->actor_, typeid(M), &self->msg))
      count_unhandled(cb, typeid(M).name());
  }
};

// ---- ask / reply -----------------------------------------------------------

/// Answers the ask `id` of the actor `a` with `*result` (a result<R>*), or
/// counts a late reply when that ask is no longer pending.
void complete_ask(actor_base* a, std::uint64_t id, void* result);

template <class R>
struct reply_envelope final : envelope {
  std::uint64_t id;
  result<R> value;
  reply_envelope(std::uint64_t i, result<R>&& v) : id(i), value(std::move(v)) { fn = &run; }
  static void run(envelope* e, envelope_action act, control_block* cb) {
    auto* self = static_cast<reply_envelope*>(e);
    destroy_on_exit<reply_envelope> guard{self};
    if (act == envelope_action::deliver) complete_ask(cb->actor_, self->id, &self->value);
  }
};

/// The state shared by a foreign thread blocked in `get()` and the shard
/// that answers. Reference counted: the waiter may give up first.
struct foreign_reply_base {
  std::atomic<std::uint32_t> refs{2};   // waiter + replier
  std::atomic<std::uint32_t> state{0};  // 0 waiting, 1 answered, 2 abandoned
  virtual ~foreign_reply_base() = default;
  void release() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
};

template <class R>
struct foreign_reply final : foreign_reply_base {
  std::optional<result<R>> value;
  void set(result<R>&& r) noexcept {
    value.emplace(std::move(r));
    std::uint32_t waiting = 0;
    if (state.compare_exchange_strong(waiting, 1, std::memory_order_acq_rel))
      futex_wake_all(&state);
    else
      count_late_reply();
    release();
  }
};

/// Where an ask's answer goes: an asking actor (by ask id) or a foreign
/// waiter. Every ask is answered exactly once: if the envelope is dropped
/// unanswered, the destructor answers errc::actor_stopped.
template <class R>
class reply_to {
 public:
  reply_to(control_block* asker, std::uint64_t id) noexcept : asker_(asker), id_(id) {
    asker_->add_ref();
  }
  explicit reply_to(foreign_reply<R>* f) noexcept : foreign_(f) {}
  reply_to(reply_to&& o) noexcept
      : asker_(std::exchange(o.asker_, nullptr)),
        foreign_(std::exchange(o.foreign_, nullptr)),
        id_(o.id_) {}
  reply_to& operator=(reply_to&&) = delete;
  ~reply_to() {
    if (asker_ != nullptr || foreign_ != nullptr) send(result<R>(errc::actor_stopped));
  }

  void send(result<R>&& r) noexcept {
    if (asker_ != nullptr) {
      post(asker_, make_envelope<reply_envelope<R>>(asker_, id_, std::move(r)));
      std::exchange(asker_, nullptr)->release();
    } else if (foreign_ != nullptr) {
      std::exchange(foreign_, nullptr)->set(std::move(r));
    }
  }

 private:
  control_block* asker_ = nullptr;
  foreign_reply<R>* foreign_ = nullptr;
  std::uint64_t id_ = 0;
};

/// The ask being handled on this thread by a handler that answers later:
/// promise<R>::take moves `to` (a reply_to<R>*) out of it.
struct reply_slot {
  void* to;
  const std::type_info* answer;
  bool taken = false;
};
inline thread_local reply_slot* current_reply = nullptr;

template <class A, class M>
struct ask_envelope final : envelope {
  using reply = reply_type<A, M>;
  static constexpr bool later = answer_of<decltype(std::declval<A&>().on(std::declval<M&&>()))>::later;
  reply_to<reply> to;
  M msg;
  template <class U>
  ask_envelope(reply_to<reply>&& t, U&& u) : to(std::move(t)), msg(std::forward<U>(u)) {
    fn = &run;
  }
  static void run(envelope* e, envelope_action act, control_block* cb) {
    auto* self = static_cast<ask_envelope*>(e);
    destroy_on_exit<ask_envelope> guard{self};
    if (act != envelope_action::deliver) return;  // ~reply_to answers actor_stopped
    try {
      if constexpr (later) {
        reply_slot slot{&self->to, &typeid(reply)};
        struct scope {
          reply_slot* saved = std::exchange(current_reply, nullptr);
          ~scope() { current_reply = saved; }
        } restore;
        current_reply = &slot;
        (void)actor_of<A>(cb).on(std::move(self->msg));
        if (!slot.taken) self->to.send(result<reply>(errc::broken_promise));
      } else if constexpr (std::is_void_v<reply>) {
        actor_of<A>(cb).on(std::move(self->msg));
        self->to.send(result<void>{});
      } else {
        self->to.send(result<reply>(actor_of<A>(cb).on(std::move(self->msg))));
      }
    } catch (...) {
      self->to.send(result<reply>(errc::actor_failed));
      throw;  // fails the actor
    }
  }
};

/// An ask of an actor waiting for its answer: a timer node (the timeout) and
/// the continuation. Lives in the asking actor's table until answered,
/// timed out, or the asker stops (then it is destroyed without running).
struct pending_ask : timer_node {
  std::uint64_t id = 0;
  actor_base* owner = nullptr;
  virtual ~pending_ask() = default;
  virtual void complete(void* result) = 0;   // a result<R>*
  virtual void fail(std::error_code ec) = 0;
};

template <class R, class F>
struct pending_ask_with final : pending_ask {
  F fn;
  template <class G>
  explicit pending_ask_with(G&& g) : fn(std::forward<G>(g)) {}
  void complete(void* r) override { fn(std::move(*static_cast<result<R>*>(r))); }
  void fail(std::error_code ec) override { fn(result<R>(ec)); }
};

/// Registers `p` with its owner, gives it an id and arms its timeout.
std::uint64_t register_ask(actor_base* owner, pending_ask* p, std::chrono::nanoseconds timeout);

// ---- timers ----------------------------------------------------------------

/// Posts `e` to `target` after `delay`, from the calling shard's timer heap.
void post_after(std::chrono::nanoseconds delay, control_block* target, envelope* e);

/// Whether the periodic timer `id` of `a` still runs (not cancelled).
bool periodic_active(actor_base* a, timer_id id) noexcept;

/// One tick of the periodic timer `id`: handled only while the timer runs,
/// so that no tick reaches the actor after cancel(id), also one that was
/// already in its mailbox.
template <class A, class M>
struct tick_envelope final : envelope {
  timer_id id;
  M msg;
  tick_envelope(timer_id i, const M& m) : id(i), msg(m) { fn = &run; }
  static void run(envelope* e, envelope_action act, control_block* cb) {
    auto* self = static_cast<tick_envelope*>(e);
    destroy_on_exit<tick_envelope> guard{self};
    if (act == envelope_action::deliver && periodic_active(cb->actor_, self->id))
      (void)actor_of<A>(cb).on(std::move(self->msg));
  }
};

/// Makes the envelope of one periodic tick.
struct tick_source {
  virtual ~tick_source() = default;
  virtual envelope* make(const control_block* to, timer_id id) = 0;
};

template <class A, class M>
struct tick_of final : tick_source {
  // In a union, so that this destructor (noexcept, as tick_source's) can
  // catch a throwing ~M(): the timer's copy goes when it is cancelled.
  union {
    M msg;
  };
  explicit tick_of(M m) : msg(std::move(m)) {}
  ~tick_of() noexcept override {
    try {
      msg.~M();
    } catch (...) {
      payload_destructor_threw(nullptr, typeid(M).name());  // a drop failure
    }
  }
  envelope* make(const control_block* to, timer_id id) override {
    return make_envelope<tick_envelope<A, M>>(to, id, msg);
  }
};

timer_id start_periodic(actor_base* owner, std::chrono::nanoseconds period, tick_source* source);

// ---- lifecycle -------------------------------------------------------------

/// Builds the `down` message envelope for the watcher `to` (of type W).
using down_factory = envelope* (*)(const control_block* to, down&&);

/// Asks `target` to tell `watcher` with `down` when it stops (at once if it
/// already has).
void post_monitor(control_block* target, control_block* watcher, down_factory make);

/// Constructs the actor on its shard, then runs on_start.
template <class A, class... Args>
struct construct_envelope final : envelope {
  std::tuple<std::decay_t<Args>...> args;
  template <class... U>
  explicit construct_envelope(U&&... u) : args(std::forward<U>(u)...) {
    fn = &run;
  }
  static void run(envelope* e, envelope_action act, control_block* cb) {
    auto* self = static_cast<construct_envelope*>(e);
    destroy_on_exit<construct_envelope> guard{self};
    if (act != envelope_action::deliver) return spawn_refused(cb);
    set_constructing(cb);
    struct reset {
      ~reset() { set_constructing(nullptr); }
    } r;
    cb->actor_ = std::apply(
        [](auto&&... a) -> actor_base* { return new A(std::move(a)...); }, std::move(self->args));
    actor_started(cb);
  }
};

}  // namespace troupe::detail
