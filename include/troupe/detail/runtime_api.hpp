// The non-template entry points of the runtime (implemented in src/) that the
// header-only templates of the public API call.
#pragma once

#include <troupe/detail/deadline.hpp>
#include <troupe/detail/envelope.hpp>
#include <troupe/fwd.hpp>
#include <troupe/placement.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace troupe::detail {

class control_block;
struct actor_type;

/// Enqueues `e` for `target`; never runs a handler inline. Counts the send;
/// a dead target (or a stopped runtime) makes it a dead letter. @threadsafe.
void post(control_block* target, envelope* e) noexcept;

/// Like post, but refuses (returns false, `e` untouched) when the target has
/// a mailbox_capacity and holds that many messages. @threadsafe.
bool try_post(control_block* target, envelope* e) noexcept;

/// Creates the control block of a new actor on the shard `where` picks.
/// Throws troupe::error for a shard that does not exist. @threadsafe.
control_block* new_control_block(runtime_core* core, const placement& where,
                                  const actor_type* type, std::uint32_t capacity);

/// The control block an actor constructor is running for (set by the
/// runtime around the constructor call).
control_block* constructing() noexcept;
void set_constructing(control_block* cb) noexcept;

/// Marks a freshly constructed actor alive and runs its on_start.
void actor_started(control_block* cb);

/// The construct envelope of `cb` was dropped: if the actor never reached a
/// shard (the runtime was stopping), it is dead now and its life reference
/// goes. @threadsafe.
void spawn_refused(control_block* cb) noexcept;

/// The runtime core of the calling shard thread, or nullptr.
runtime_core* current_core() noexcept;

/// Throws troupe::error when called on a shard thread (a blocking wait there
/// would deadlock the shard). `what` names the call for the message.
void forbid_on_shard(const char* what);

/// The runtime object a core belongs to.
runtime& owner_of(runtime_core* core) noexcept;

/// Counts a reply that arrived after its ask had timed out.
void count_late_reply() noexcept;

/// Counts a dynamically sent message the receiver has no handler for and
/// logs it once per (actor type, message type).
void count_unhandled(control_block* cb, std::string_view message_type) noexcept;

/// Called inside a catch block by destroy_payload: the destructor of the
/// payload of `e` (its message of mangled type `message_type`) threw. If
/// the calling shard is delivering `e`, its actor fails with that reason;
/// otherwise (a dead letter, a drop, a handed-back try_send) it counts as a
/// drop failure, logged once per message type at warn. @threadsafe.
void payload_destructor_threw(const envelope* e, const char* message_type) noexcept;

/// A stable short name for a type: namespaces stripped, templates kept.
std::string short_type_name(const char* mangled);

// Timers: one heap per shard, armed as the timeout of the shard's wait.
struct timer_node {
  std::int64_t deadline_ns = 0;  // steady_clock, from deadline_after; never_ns: never fires
  std::size_t heap_index = ~std::size_t{0};
  /// Called when the deadline passes, or with `cancelled` at shutdown.
  void (*fire)(timer_node*, bool cancelled) = nullptr;
  bool armed() const noexcept { return heap_index != ~std::size_t{0}; }
};
std::int64_t now_ns() noexcept;
/// On the calling shard's heap. Shard threads only.
void arm_timer(timer_node* t) noexcept;
void disarm_timer(timer_node* t) noexcept;

// Blocking waits of foreign threads (futex; never used on a shard thread).
/// Waits while *word == expected, at most until deadline_ns (never_ns: no
/// limit); false on timeout.
bool futex_wait_until(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                      std::int64_t deadline_ns) noexcept;
void futex_wake_all(std::atomic<std::uint32_t>* word) noexcept;

}  // namespace troupe::detail
