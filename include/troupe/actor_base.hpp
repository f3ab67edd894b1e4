// actor_base: the untyped part of every actor. Users derive from
// troupe::actor<Derived> (actor.hpp), not from this class.
#pragma once

#include <troupe/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <typeinfo>

namespace troupe {

namespace detail {
struct actor_extras;  // asks in flight, monitors, periodic timers (src/)
struct actor_access;
class control_block;
}  // namespace detail

/// Identifies a periodic timer of one actor, for `cancel`.
using timer_id = std::uint64_t;

class actor_base {
 public:
  actor_base(const actor_base&) = delete;
  actor_base& operator=(const actor_base&) = delete;
  virtual ~actor_base();

  /// The shard this actor is running on. Only from the actor's own handlers.
  shard_id this_shard() const noexcept;

  /// The runtime this actor belongs to. Only from the actor's own handlers.
  troupe::runtime& system() const noexcept;

  /// Stops this actor once the current handler returns: on_stop runs, its
  /// monitors get `down`, messages still queued become dead letters.
  /// Only from the actor's own handlers.
  void stop() noexcept { stop_requested_ = true; }

  /// Cancels a periodic timer started with `every`: no tick reaches the
  /// actor after this call, not even one already in its mailbox. Unknown
  /// ids are ignored. Only from the actor's own handlers.
  void cancel(timer_id id) noexcept;

 protected:
  actor_base() noexcept;

 private:
  friend struct detail::actor_access;

  // Hooks implemented by actor<Derived>.
  virtual void start_hook() = 0;
  virtual void stop_hook() = 0;
  virtual bool receive_dynamic(const std::type_info& type, void* message) = 0;

  detail::control_block* cb_;
  detail::actor_extras* extras_ = nullptr;  // allocated on first ask/monitor/timer
  actor_base* live_prev_ = nullptr;         // the shard's list of live actors
  actor_base* live_next_ = nullptr;
  bool stop_requested_ = false;
};

namespace detail {
/// The runtime's access to an actor's private parts.
struct actor_access {
  static control_block* cb(const actor_base& a) noexcept { return a.cb_; }
  static actor_extras*& extras(actor_base& a) noexcept { return a.extras_; }
  static bool& stop_requested(actor_base& a) noexcept { return a.stop_requested_; }
  static actor_base*& live_prev(actor_base& a) noexcept { return a.live_prev_; }
  static actor_base*& live_next(actor_base& a) noexcept { return a.live_next_; }
  static void start(actor_base& a) { a.start_hook(); }
  static void stop(actor_base& a) { a.stop_hook(); }
  static bool receive_dynamic(actor_base& a, const std::type_info& t, void* m) {
    return a.receive_dynamic(t, m);
  }
};
}  // namespace detail

}  // namespace troupe
