// Handles to actors: the typed ref<A> and the untyped any_ref.
//
// A ref points to the actor's control block, which holds its never-reused
// 64-bit id and its mailbox and outlives the actor's state: sending through a
// ref to a stopped actor is safe and counts a dead letter. Refs compare and
// hash by id and print as `counter#42@1` (type, id, shard) with to_string and
// operator<<; fmt::format("{}", r) needs <troupe/log.hpp>, which keeps fmt out
// of every translation unit that only sends messages.
#pragma once

#include <troupe/detail/control_block.hpp>
#include <troupe/detail/dispatch.hpp>
#include <troupe/detail/runtime_api.hpp>
#include <troupe/error.hpp>
#include <troupe/fwd.hpp>

#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>

namespace troupe {

namespace detail {

template <class A>
const actor_type* type_of() {
  static const std::string name = short_type_name(typeid(A).name());
  static const actor_type type{name};
  return &type;
}

/// The shared part of ref<A> and any_ref: one counted control-block pointer.
class ref_base {
 public:
  ref_base() noexcept = default;
  explicit ref_base(control_block* adopt) noexcept : cb_(adopt) {}
  ref_base(const ref_base& o) noexcept : cb_(o.cb_) {
    if (cb_) cb_->add_ref();
  }
  ref_base(ref_base&& o) noexcept : cb_(std::exchange(o.cb_, nullptr)) {}
  ref_base& operator=(ref_base o) noexcept {
    std::swap(cb_, o.cb_);
    return *this;
  }
  ~ref_base() {
    if (cb_) cb_->release();
  }

  explicit operator bool() const noexcept { return cb_ != nullptr; }

  /// The actor's id: unique in the process, never reused. 0 for an empty ref.
  std::uint64_t id() const noexcept { return cb_ ? cb_->id() : 0; }

  /// The shard the actor lives on (no_shard for an empty ref).
  shard_id shard() const noexcept { return cb_ ? cb_->shard() : no_shard; }

  /// The actor type's name, without namespaces ("" for an empty ref).
  std::string_view type_name() const noexcept { return cb_ ? cb_->type()->name : ""; }

  /// True once the actor has stopped (its state is gone). @threadsafe.
  bool stopped() const noexcept { return cb_ && cb_->dead(); }

  detail::control_block* control() const noexcept { return cb_; }

  friend bool operator==(const ref_base& a, const ref_base& b) noexcept {
    return a.id() == b.id();
  }
  friend std::strong_ordering operator<=>(const ref_base& a, const ref_base& b) noexcept {
    return a.id() <=> b.id();
  }

 protected:
  detail::control_block* checked() const {
    if (cb_ == nullptr) throw error("troupe: send through an empty ref (default-constructed or moved-from)");
    return cb_;
  }

  detail::control_block* cb_ = nullptr;
};

}  // namespace detail

/// Typed handle to an actor of type A. `send(m)` compiles only when A has a
/// handler for m's type. Copying a ref is one atomic increment. @threadsafe.
template <class A>
class ref : public detail::ref_base {
 public:
  ref() noexcept = default;
  explicit ref(detail::control_block* adopt) noexcept : ref_base(adopt) {}

  /// Enqueues `m` for the actor; never runs the handler inline and never
  /// blocks. To a stopped actor it is a dead letter. @threadsafe.
  template <class M>
  void send(M&& m) const {
    using message = std::remove_cvref_t<M>;
    static_assert(handles<A, message>,
                  "troupe: ref<Actor>::send(Message): the actor type has no handler on(Message) "
                  "for this message type — see 'with M = ...; A = ...' above");
    detail::control_block* cb = checked();
    detail::post(cb, detail::make_envelope<detail::message_envelope<A, message>>(cb, std::forward<M>(m)));
  }

  /// Like send, but when the actor was spawned with a mailbox_capacity and
  /// its mailbox is full, the message is handed back (the optional holds it);
  /// an empty optional means it was enqueued. @threadsafe.
  template <class M>
  std::optional<std::remove_cvref_t<M>> try_send(M&& m) const {
    using message = std::remove_cvref_t<M>;
    static_assert(handles<A, message>,
                  "troupe: ref<Actor>::try_send(Message): the actor type has no handler "
                  "on(Message) for this message type — see 'with M = ...; A = ...' above");
    detail::control_block* cb = checked();
    auto* e = detail::make_envelope<detail::message_envelope<A, message>>(cb, std::forward<M>(m));
    if (detail::try_post(cb, e)) return std::nullopt;
    std::optional<message> back(std::move(e->msg));
    detail::destroy_payload(e);  // the moved-from shell
    detail::free_envelope(e);
    return back;
  }
};

/// Untyped handle to any actor, with runtime dispatch: `send(m)` is checked
/// when the message arrives, against the `accepts` list of the actor type
/// (`using accepts = std::tuple<add, get>;`). A message the actor does not
/// accept is counted in the stats as unhandled and logged. @threadsafe.
class any_ref : public detail::ref_base {
 public:
  any_ref() noexcept = default;
  explicit any_ref(detail::control_block* adopt) noexcept : ref_base(adopt) {}
  template <class A>
  any_ref(const ref<A>& r) noexcept : ref_base(r) {}

  template <class M>
  void send(M&& m) const {
    detail::control_block* cb = checked();
    detail::post(cb, detail::make_envelope<detail::dynamic_envelope<std::remove_cvref_t<M>>>(
                         cb, std::forward<M>(m)));
  }

  /// The typed ref, if the actor is of type A.
  template <class A>
  std::optional<ref<A>> as() const noexcept {
    if (cb_ == nullptr || cb_->type() != detail::type_of<A>()) return std::nullopt;
    cb_->add_ref();
    return ref<A>(cb_);
  }
};

/// Sent to a monitoring actor when the monitored actor stops.
struct down {
  any_ref actor;          // who stopped
  std::error_code error;  // empty for a normal stop
  /// What happened, for logs ("" for a normal stop). A failure reads like
  /// its log line: "counter#42@1 failed: handler threw ns::type: what()".
  std::string reason;
  bool normal() const noexcept { return !error; }
};

/// `counter#42@1`: type, id, shard.
std::string to_string(const detail::ref_base& r);

inline std::ostream& operator<<(std::ostream& os, const detail::ref_base& r) {
  return os << to_string(r);
}

}  // namespace troupe

template <class A>
struct std::hash<troupe::ref<A>> {
  std::size_t operator()(const troupe::ref<A>& r) const noexcept {
    return std::hash<std::uint64_t>{}(r.id());
  }
};
template <>
struct std::hash<troupe::any_ref> {
  std::size_t operator()(const troupe::any_ref& r) const noexcept {
    return std::hash<std::uint64_t>{}(r.id());
  }
};
