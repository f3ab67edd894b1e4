// The runtime: N shards, each one thread with one io_uring ring.
#pragma once

#include <troupe/config.hpp>
#include <troupe/defaults.hpp>
#include <troupe/detail/dispatch.hpp>
#include <troupe/detail/runtime_api.hpp>
#include <troupe/error.hpp>
#include <troupe/placement.hpp>
#include <troupe/ref.hpp>
#include <troupe/result.hpp>
#include <troupe/spawn.hpp>
#include <troupe/stats.hpp>

#include <chrono>
#include <type_traits>
#include <utility>

namespace troupe {

/// The answer to a blocking ask from a thread that is not a shard.
template <class R>
class [[nodiscard]] blocking_reply {
 public:
  explicit blocking_reply(detail::foreign_reply<R>* state, std::chrono::nanoseconds timeout) noexcept
      : state_(state), deadline_ns_(detail::deadline_after(detail::now_ns(), timeout)) {}
  blocking_reply(blocking_reply&& o) noexcept
      : state_(std::exchange(o.state_, nullptr)), deadline_ns_(o.deadline_ns_) {}
  blocking_reply& operator=(blocking_reply&&) = delete;
  ~blocking_reply() {
    if (state_) abandon();
  }

  /// Blocks until the reply or the ask's timeout: the reply, or
  /// errc::timeout / actor_stopped / actor_failed / runtime_stopped.
  /// Throws troupe::error on a shard thread (it would deadlock the shard).
  result<R> wait() {
    detail::forbid_on_shard("blocking_reply::wait()/get()");
    if (state_ == nullptr) throw error("troupe: blocking_reply already consumed");
    while (state_->state.load(std::memory_order_acquire) == 0) {
      if (!detail::futex_wait_until(&state_->state, 0, deadline_ns_)) {
        std::uint32_t waiting = 0;
        if (state_->state.compare_exchange_strong(waiting, 2, std::memory_order_acq_rel)) {
          std::exchange(state_, nullptr)->release();
          return result<R>(errc::timeout);
        }
      }
    }
    result<R> r = std::move(*state_->value);
    std::exchange(state_, nullptr)->release();
    return r;
  }

  /// The reply's value; throws std::system_error with the errc otherwise.
  R get() {
    if constexpr (std::is_void_v<R>)
      wait().value();
    else
      return std::move(wait()).value();
  }

 private:
  void abandon() noexcept {
    std::uint32_t waiting = 0;
    state_->state.compare_exchange_strong(waiting, 2, std::memory_order_acq_rel);
    std::exchange(state_, nullptr)->release();
  }
  detail::foreign_reply<R>* state_;
  std::int64_t deadline_ns_;
};

class runtime {
 public:
  /// Starts the shards. Throws troupe::error when io_uring is unavailable
  /// (kernel.io_uring_disabled, a seccomp filter) with what to do about it,
  /// or when config::fixed_buffers cannot be mapped; the shards already
  /// started are stopped and joined first.
  explicit runtime(config cfg = {});
  /// Stops (see stop()) and joins. Must not run on one of the runtime's own
  /// threads (a handler, a blocking job): there it logs a critical error
  /// that says so and calls std::terminate, since it can neither throw nor
  /// wait for itself.
  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  /// Creates an actor of type A with `args` on the shard `where` picks.
  /// Returns at once; the constructor and on_start run on that shard (if
  /// either throws, monitors get `down` and queued messages become dead
  /// letters). Throws troupe::error for a shard that does not exist, and
  /// once stop() has been called: "the runtime is stopping or stopped".
  /// The one exception is a call from this runtime's own handlers (or
  /// on_stop) while the stop is under way: there it returns a ref to an
  /// actor that never starts (its monitors get `down` with
  /// errc::runtime_stopped, sends to it are dead letters). A foreign spawn
  /// that races with stop() may end the same way. @threadsafe (also from
  /// handlers).
  template <class A, class... Args>
  ref<A> spawn(const placement& where, Args&&... args) {
    return detail::spawn<A>(core_, where, mailbox_capacity{0}, std::forward<Args>(args)...);
  }
  template <class A, class... Args>
  ref<A> spawn(const placement& where, mailbox_capacity cap, Args&&... args) {
    return detail::spawn<A>(core_, where, cap, std::forward<Args>(args)...);
  }

  /// Sends `m` to `to` and returns a handle to wait for the reply, for
  /// threads that are not shards (inside an actor use actor::ask).
  /// A stopped target answers errc::actor_stopped at once. `timeout` is any
  /// duration type, counted from this call; one whose deadline does not fit
  /// in the steady clock's nanoseconds (nanoseconds::max(), hours::max())
  /// means no timeout. @threadsafe.
  template <class A, class M, class Rep = defaults::ask_timeout_type::rep,
            class Period = defaults::ask_timeout_type::period>
  auto ask(const ref<A>& to, M&& m, std::chrono::duration<Rep, Period> timeout = defaults::ask_timeout)
      -> blocking_reply<detail::reply_type<A, std::remove_cvref_t<M>>> {
    using message = std::remove_cvref_t<M>;
    using reply = detail::reply_type<A, message>;
    static_assert(handles<A, message>,
                  "troupe: runtime::ask(ref<Actor>, Message): the actor type has no handler "
                  "on(Message) for this message type — see 'with M = ...; A = ...' above");
    if (!to) throw error("troupe: ask through an empty ref");
    auto* state = new detail::foreign_reply<reply>();
    blocking_reply<reply> answer(state, detail::saturating_ns(timeout));
    detail::post(to.control(), detail::make_envelope<detail::ask_envelope<A, message>>(
                                   to.control(), detail::reply_to<reply>(state), std::forward<M>(m)));
    return answer;
  }

  /// Stops the runtime, in phases: refuse new foreign sends; run every
  /// actor's on_stop (sends after that are dead letters); reap what is in
  /// flight; a barrier across shards; drain mailboxes into the dead-letter
  /// count; close the rings; join the threads. From one of the runtime's
  /// own threads (a handler, a blocking job's run()) it only requests the
  /// stop and returns: the owner's wait(), stop() or destructor joins.
  /// From any other thread it returns once everything is joined. Calls
  /// after the first, from any thread and at the same time, are harmless.
  /// @threadsafe.
  void stop();

  /// Blocks until the runtime has been stopped (by stop() from anywhere),
  /// then joins its threads. Throws troupe::error on one of the runtime's
  /// own threads (a handler, a blocking job), where it would wait for
  /// itself.
  void wait();

  /// Number of shards.
  shard_id shards() const noexcept;

  /// A snapshot of the counters. @threadsafe; exact once stopped.
  runtime_stats stats() const;

  /// The ring setup each shard actually got (after fallbacks).
  ring_setup ring_of(shard_id s) const;

  /// True when foreign doorbells use IORING_REGISTER_SEND_MSG_RING.
  bool foreign_doorbell_registered() const noexcept;

 private:
  detail::runtime_core* core_;
};

/// The shard the calling thread runs, or no_shard on other threads.
shard_id this_shard() noexcept;

}  // namespace troupe
