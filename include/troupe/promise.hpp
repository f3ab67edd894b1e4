// Answering an ask later: a handler that cannot answer before it returns
// (it waits for I/O, or for another actor) returns `deferred<R>` and takes
// the ask's promise with `reply_later<R>()`:
//
//   troupe::deferred<io::bytes> on(const read_block& m) {
//     submit(fs::read(file_, m.offset, 4096))
//         .then([reply = reply_later<io::bytes>()](io::result<io::bytes> b) mutable {
//           reply.deliver(std::move(b));
//         });
//     return {};
//   }
//
// The asker sees an ordinary ask of reply type R. The actor keeps taking
// messages meanwhile; the promise may be delivered from any of its later
// handlers (or moved to another actor and delivered there). Every ask is
// answered exactly once: a promise destroyed unanswered answers
// errc::actor_stopped if its actor has stopped, errc::broken_promise if not.
#pragma once

#include <troupe/detail/dispatch.hpp>
#include <troupe/error.hpp>
#include <troupe/result.hpp>

#include <optional>
#include <typeinfo>
#include <utility>

namespace troupe {

/// What a handler returns when it answers through a promise<R>.
template <class R>
struct deferred {};

/// The right to answer one ask with a result<R>. Move-only. Empty when the
/// message was sent rather than asked (deliver does nothing then).
template <class R>
class promise {
 public:
  promise() noexcept = default;
  promise(promise&& o) noexcept : server_(std::exchange(o.server_, nullptr)) {
    if (o.to_) to_.emplace(std::move(*o.to_)), o.to_.reset();
  }
  promise& operator=(promise&& o) noexcept {
    if (this != &o) {
      abandon();
      server_ = std::exchange(o.server_, nullptr);
      if (o.to_) to_.emplace(std::move(*o.to_)), o.to_.reset();
    }
    return *this;
  }
  promise(const promise&) = delete;
  promise& operator=(const promise&) = delete;
  ~promise() { abandon(); }

  /// An asker waits on this promise.
  explicit operator bool() const noexcept { return to_.has_value(); }

  /// Answers the ask (from any thread). Once: a promise is empty after.
  void deliver(result<R> r) noexcept {
    if (!to_) return;
    to_->send(std::move(r));
    to_.reset();
    release_server();
  }

  /// Takes the promise of the ask being handled; what actor::reply_later
  /// calls. `server` is the answering actor.
  static promise take(detail::control_block* server) {
    detail::reply_slot* slot = detail::current_reply;
    promise p;
    if (slot == nullptr) return p;  // a plain send: nobody waits
    if (slot->taken)
      throw error("troupe: reply_later() called twice while handling one ask");
    if (*slot->answer != typeid(R))
      throw error(std::string("troupe: reply_later<R>(): R must be the R of the handler's deferred<R> (") +
                  slot->answer->name() + ")");
    slot->taken = true;
    p.to_.emplace(std::move(*static_cast<detail::reply_to<R>*>(slot->to)));
    p.server_ = server;
    server->add_ref();
    return p;
  }

  /// A promise that answers `to`; what actor::expect makes.
  static promise of(detail::reply_to<R>&& to) {
    promise p;
    p.to_.emplace(std::move(to));
    return p;
  }

 private:
  void abandon() noexcept {
    if (!to_) return;
    bool stopped = server_ != nullptr && server_->dead();
    deliver(result<R>(stopped ? errc::actor_stopped : errc::broken_promise));
  }
  void release_server() noexcept {
    if (server_ != nullptr) std::exchange(server_, nullptr)->release();
  }

  std::optional<detail::reply_to<R>> to_;
  detail::control_block* server_ = nullptr;
};

}  // namespace troupe
