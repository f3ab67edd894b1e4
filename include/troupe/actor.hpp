// actor<Derived>: the base of every user actor.
//
//   struct add { int n; };
//   struct get {};
//   class counter : public troupe::actor<counter> {
//     long total_ = 0;
//    public:
//     void on(const add& m) { total_ += m.n; }
//     long on(const get&) { return total_; }   // a return value is the reply
//   };
//
// Handlers are public overloads `on(const M&)` (or `on(M&&)` for move-only
// payloads). An actor runs one message at a time on its shard. Optional
// hooks: `void on_start()` (after the constructor, on the actor's shard),
// `void on_stop()` (when it stops normally or the runtime shuts down).
// Everything in this class is to be called from the actor's own handlers.
#pragma once

#include <troupe/actor_base.hpp>
#include <troupe/defaults.hpp>
#include <troupe/detail/dispatch.hpp>
#include <troupe/detail/io_op.hpp>
#include <troupe/fixed_buffer.hpp>
#include <troupe/io.hpp>
#include <troupe/placement.hpp>
#include <troupe/promise.hpp>
#include <troupe/ref.hpp>
#include <troupe/spawn.hpp>

#include <chrono>
#include <tuple>
#include <type_traits>
#include <utility>

namespace troupe {

/// What `ask(...)` inside an actor returns: call `.then(fn)` to send it.
/// `fn(result<R>)` runs later as a message of the asking actor, on its
/// shard: with the reply, or errc::timeout, errc::actor_stopped (at once
/// when the target is already dead) or errc::actor_failed. If the asker
/// stops first, `fn` never runs.
///
/// The request owns a copy of its target ref and the message (`M` is the
/// message type without cv or reference), so it may be made in one frame
/// and sent from another: nothing it holds dangles when the temporaries it
/// was made from are gone.
template <class A, class M>
class [[nodiscard("an ask is sent by .then(fn)")]] ask_request {
  static_assert(std::is_same_v<M, std::remove_cvref_t<M>>, "troupe: ask_request<A, M>: M is a plain message type");

 public:
  using reply = detail::reply_type<A, M>;

  template <class T>
  ask_request(actor_base* asker, const ref<A>& target, T&& msg, std::chrono::nanoseconds timeout)
      : asker_(asker), target_(target), msg_(std::forward<T>(msg)), timeout_(timeout) {}

  template <class F>
  void then(F&& fn) && {
    static_assert(std::is_invocable_v<F&, result<reply>>,
                  "troupe: ask(...).then(fn): fn must be callable with troupe::result<Reply>");
    detail::control_block* target = target_.control();
    if (target == nullptr) throw error("troupe: ask through an empty ref");
    auto* p = new detail::pending_ask_with<reply, std::decay_t<F>>(std::forward<F>(fn));
    std::uint64_t id = detail::register_ask(asker_, p, timeout_);
    detail::post(target, detail::make_envelope<detail::ask_envelope<A, M>>(target,
                             detail::reply_to<reply>(detail::actor_access::cb(*asker_), id),
                             std::move(msg_)));
  }

 private:
  actor_base* asker_;
  ref<A> target_;
  M msg_;
  std::chrono::nanoseconds timeout_;
};

/// What `submit(op)` inside an actor returns: call `.then(fn)` to issue it.
/// `fn(io::result<Output>)` runs later as a message of this actor, on its
/// shard. A ring operation (io::operation) is cancelled if the actor stops
/// first; a blocking one (io::blocking_operation, or an
/// io::operation_with_fallback whose opcode the kernel lacks) runs to its end. Either
/// way `fn` never runs for a stopped actor.
template <class Op>
  requires io::operation<Op> || io::blocking_operation<Op>
class [[nodiscard("an I/O operation is issued by .then(fn)")]] io_request {
 public:
  using output = typename Op::output;

  io_request(actor_base* owner, Op&& op) : owner_(owner), op_(std::move(op)) {}

  /// A deadline for a ring operation (a linked timeout, armed when the SQE
  /// is submitted): if it has not completed `d` later, the kernel cancels
  /// it and it completes with std::errc::timed_out. Any duration type; one
  /// too long for nanoseconds (hours::max()) is "no deadline", it never
  /// fires. Throws troupe::error when `d` is zero or negative.
  template <class Rep, class Period>
  io_request&& timeout(std::chrono::duration<Rep, Period> d) &&
    requires io::operation<Op>
  {
    std::chrono::nanoseconds ns = detail::saturating_ns(d);
    if (ns <= std::chrono::nanoseconds::zero()) throw error("troupe: submit(op).timeout(d): d must be positive");
    timeout_ = ns;
    return std::move(*this);
  }

  template <class F>
  io::handle then(F&& fn) && {
    if constexpr (io::multishot_operation<Op>)
      static_assert(std::is_invocable_v<F&, io::result<output>, bool>,
                    "troupe: submit(multishot op).then(fn): fn must be callable with "
                    "(troupe::io::result<Output>, bool more)");
    else
      static_assert(std::is_invocable_v<F&, io::result<output>>,
                    "troupe: submit(op).then(fn): fn must be callable with troupe::io::result<Output>");
    detail::control_block* cb = detail::actor_access::cb(*owner_);
    if constexpr (io::blocking_operation<Op>) {
      blocking(cb, std::forward<F>(fn));
      return {};
    } else {
      if constexpr (io::operation_with_fallback<Op>) {
        io_uring_sqe probe{};
        op_.prepare(&probe);  // prepare has no side effect the ring sees
        if (!detail::ring_supports(probe)) {
          blocking(cb, std::forward<F>(fn));
          return {};
        }
      }
      auto* p = detail::make_envelope<detail::pending_io_with<Op, std::decay_t<F>>>(cb, std::move(op_),
                                                                                 std::forward<F>(fn));
      p->timeout_ns = timeout_.count();
      detail::submit_io(owner_, p);
      return io::handle{p, p->serial};
    }
  }

 private:
  template <class F>
  void blocking(detail::control_block* cb, F&& fn) {
    detail::submit_blocking(owner_, detail::make_envelope<detail::pending_blocking_with<Op, std::decay_t<F>>>(
                                        cb, std::move(op_), std::forward<F>(fn)));
  }

  actor_base* owner_;
  Op op_;
  std::chrono::nanoseconds timeout_{0};
};

template <class Derived>
class actor : public actor_base {
 public:
  /// A ref to this actor.
  ref<Derived> self() const noexcept {
    detail::control_block* cb = detail::actor_access::cb(*this);
    cb->add_ref();
    return ref<Derived>(cb);
  }

  /// Same as `to.send(m)`.
  template <class A, class M>
  void send(const ref<A>& to, M&& m) const {
    to.send(std::forward<M>(m));
  }

  /// Sends `m` to `to` and, through `.then(fn)`, runs fn with the reply.
  /// `timeout` is any duration type: zero or negative times out at once
  /// (the timeout is the next message this actor gets); one whose deadline
  /// does not fit in the steady clock's nanoseconds (nanoseconds::max(),
  /// hours::max(), centuries) means no timeout: the ask waits for its reply
  /// or for its target or this actor to stop.
  template <class A, class M, class Rep = defaults::ask_timeout_type::rep,
            class Period = defaults::ask_timeout_type::period>
  ask_request<A, std::remove_cvref_t<M>> ask(const ref<A>& to, M&& m,
                        std::chrono::duration<Rep, Period> timeout = defaults::ask_timeout) {
    static_assert(handles<A, std::remove_cvref_t<M>>,
                  "troupe: ask(ref<Actor>, Message): the actor type has no handler on(Message) "
                  "for this message type — see 'with M = ...; A = ...' above");
    return ask_request<A, std::remove_cvref_t<M>>(this, to, std::forward<M>(m), detail::saturating_ns(timeout));
  }

  /// In a handler that returns deferred<R>: takes the promise of the ask
  /// being handled, to answer it later (promise.hpp). An empty promise when
  /// the message was sent, not asked.
  template <class R>
  promise<R> reply_later() {
    return promise<R>::take(detail::actor_access::cb(*this));
  }

  /// Issues an I/O operation (fs.hpp, io.hpp): on this shard's ring, or for
  /// fs::blocking ones on the runtime's blocking pool. Through `.then(fn)`,
  /// fn runs with its result as a message of this actor. While ring
  /// operations are in the kernel an unbound actor stays on this shard.
  template <class Op>
    requires io::operation<Op> || io::blocking_operation<Op>
  io_request<Op> submit(Op op) {
    return io_request<Op>(this, std::move(op));
  }

  /// A registered buffer of this shard (config::fixed_buffers), for
  /// fs::read_fixed / write_fixed; empty when none is free or none is
  /// configured. It goes back to its shard when the handle is destroyed.
  io::fixed_buffer take_fixed_buffer() const noexcept { return detail::take_fixed_buffer(); }

  /// Cancels a ring operation still in the kernel (IORING_OP_ASYNC_CANCEL):
  /// its continuation never runs, and what it owned is released when the
  /// kernel lets go of it. False if it had completed already (then its
  /// continuation runs or has run).
  bool cancel(const io::handle& h) noexcept { return detail::cancel_io(this, h); }
  using actor_base::cancel;

  /// Ends a multishot operation (a multishot recv or accept) without losing
  /// what it has produced: results the kernel posted before it saw the
  /// request still reach fn, and the last call has `more` false (with
  /// std::errc::operation_canceled when the cancel ended it). Unlike
  /// cancel(), nothing already received is dropped. False if the
  /// operation had ended already or is not multishot.
  bool end_multishot(const io::handle& h) noexcept { return detail::end_multishot(this, h); }

  /// A promise this actor makes itself: whoever delivers it, from any
  /// thread (a C library's callback, a destructor on another shard), makes
  /// fn(result<R>) run later as a message of this actor. No timeout; a
  /// promise destroyed undelivered gives errc::broken_promise; if this
  /// actor stops first, fn never runs. Like an ask in flight, it keeps an
  /// unbound actor on its shard until it is kept.
  template <class R, class F>
  promise<R> expect(F&& fn) {
    static_assert(std::is_invocable_v<std::decay_t<F>&, result<R>>,
                  "troupe: expect<R>(fn): fn must be callable with troupe::result<R>");
    auto* p = new detail::pending_ask_with<R, std::decay_t<F>>(std::forward<F>(fn));
    std::uint64_t id = detail::register_ask(this, p, std::chrono::nanoseconds::max());
    return promise<R>::of(detail::reply_to<R>(detail::actor_access::cb(*this), id));
  }

  /// Sends `m` to `to` after `delay` (a timer on this shard's heap; no
  /// timer thread). `delay` is any duration type. Zero or negative means
  /// now: the message is sent on this shard's next turn (never inline). A
  /// delay whose deadline does not fit in the steady clock's nanoseconds
  /// (nanoseconds::max(), hours::max()) means never: the message is held,
  /// costs no wake-up, and becomes a dead letter when the runtime stops.
  template <class A, class M, class Rep, class Period>
  void delayed_send(std::chrono::duration<Rep, Period> delay, const ref<A>& to, M&& m) const {
    using message = std::remove_cvref_t<M>;
    static_assert(handles<A, message>,
                  "troupe: delayed_send(delay, ref<Actor>, Message): the actor type has no "
                  "handler on(Message) — see 'with M = ...; A = ...' above");
    if (!to) throw error("troupe: delayed_send through an empty ref");
    detail::post_after(detail::saturating_ns(delay), to.control(),
                       detail::make_envelope<detail::message_envelope<A, message>>(
                           to.control(), std::forward<M>(m)));
  }

  /// Sends a copy of `m` to this actor every `period`, until `cancel(id)` or
  /// the actor stops. A tick that would fall behind is skipped, not queued.
  /// `period` is any duration type; throws troupe::error when it is zero or
  /// negative. A period whose first deadline does not fit in the steady
  /// clock's nanoseconds (nanoseconds::max(), hours::max()) never ticks and
  /// costs its shard no wake-up; cancel(id) still works.
  template <class M, class Rep, class Period>
  timer_id every(std::chrono::duration<Rep, Period> period, M m) {
    static_assert(handles<Derived, M>,
                  "troupe: every(period, Message): this actor has no handler on(Message)");
    std::chrono::nanoseconds ns = detail::saturating_ns(period);
    if (ns <= std::chrono::nanoseconds::zero()) throw error("troupe: every(): period must be positive");
    return detail::start_periodic(this, ns, new detail::tick_of<Derived, M>(std::move(m)));
  }

  /// Sends `down` to this actor when `target` stops (at once if it already
  /// has). This actor needs a handler `on(const troupe::down&)`.
  template <class A>
  void monitor(const ref<A>& target) const {
    static_assert(handles<Derived, down>,
                  "troupe: monitor(ref): the monitoring actor needs a handler on(const troupe::down&)");
    if (!target) throw error("troupe: monitor of an empty ref");
    detail::control_block* me = detail::actor_access::cb(*this);
    me->add_ref();
    detail::post_monitor(target.control(), me, &make_down);
  }

  /// Spawns an actor (see runtime::spawn); returns at once, the constructor
  /// and on_start run on the target shard. While this runtime is stopping
  /// it does not throw: the actor it returns never starts.
  template <class A, class... Args>
  ref<A> spawn(const placement& where, Args&&... args) const {
    return detail::spawn<A>(detail::actor_access::cb(*this)->core(), where, mailbox_capacity{0},
                            std::forward<Args>(args)...);
  }
  template <class A, class... Args>
  ref<A> spawn(const placement& where, mailbox_capacity cap, Args&&... args) const {
    return detail::spawn<A>(detail::actor_access::cb(*this)->core(), where, cap,
                            std::forward<Args>(args)...);
  }

 protected:
  actor() noexcept = default;

 private:
  static detail::envelope* make_down(const detail::control_block* to, down&& d) {
    if constexpr (handles<Derived, down>)
      return detail::make_envelope<detail::message_envelope<Derived, down>>(to, std::move(d));
    else
      return nullptr;
  }

  void start_hook() final {
    if constexpr (requires(Derived& d) { d.on_start(); }) static_cast<Derived*>(this)->on_start();
  }
  void stop_hook() final {
    if constexpr (requires(Derived& d) { d.on_stop(); }) static_cast<Derived*>(this)->on_stop();
  }
  bool receive_dynamic(const std::type_info& type, void* message) final {
    if constexpr (requires { typename Derived::accepts; }) {
      return dispatch_dynamic(type, message, static_cast<typename Derived::accepts*>(nullptr));
    } else {
      return false;
    }
  }
  template <class... Ms>
  bool dispatch_dynamic(const std::type_info& type, void* message, std::tuple<Ms...>*) {
    auto& self = *static_cast<Derived*>(this);
    return ((type == typeid(Ms) ? ((void)self.on(std::move(*static_cast<Ms*>(message))), true)
                                : false) ||
            ...);
  }
};

}  // namespace troupe
