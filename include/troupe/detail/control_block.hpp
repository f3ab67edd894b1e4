// The control block: what a ref points to. It outlives the actor's state.
//
// Who touches what:
// - `mailbox_` is pushed by any thread (remote and foreign senders) and
//   popped by the actor's shard only;
// - `local_head_/local_tail_` (the same-shard queue), `local_scheduled_`,
//   `actor_` and `ready_next_` belong to the actor's shard only;
// - `remote_scheduled_` is won by the one remote sender that puts the actor
//   on its shard's inbox; the shard clears it when it takes the actor off;
// - `refs_` counts refs, plus one "life" reference held while the actor can
//   still receive, plus one per inbox entry.
// Unbound (stealable) actors differ; src/scheduler.cpp has their rules.
#pragma once

#include <troupe/detail/envelope.hpp>
#include <troupe/detail/mpsc_queue.hpp>
#include <troupe/fwd.hpp>

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

namespace troupe::detail {

/// Per actor type, for names in logs and formatted refs.
struct actor_type {
  std::string_view name;
};

/// Why an actor stopped. Written once by its shard before the actor is
/// published as dead; read by anyone after.
struct exit_info {
  std::error_code code;  // empty for a normal stop
  std::string what;
};

enum class life : std::uint8_t { starting, alive, dead };

/// Laid out by who writes what, one cache line each (measured:
/// pingpong_cross_shard, doc/adr/0001-cross-shard-delivery.md):
/// - line 1, written by remote senders and by the owner when it takes the
///   actor off its inbox: the mailbox's tail and stub, the inbox hook, the
///   scheduling flag and the reference count, with the read-mostly fields a
///   sender needs anyway (id, shard, life);
/// - line 2, the owner shard's alone: the mailbox head, the local FIFO, the
///   ready-queue link, the actor.
class control_block {
 public:
  control_block(runtime_core* core, std::uint64_t id, shard_id shard, const actor_type* type,
                std::uint32_t capacity) noexcept
      : mailbox_tail_(&mailbox_stub_), core_(core), type_(type), id_(id), shard_(shard),
        capacity_(capacity), mailbox_head_(&mailbox_stub_) {}
  control_block(const control_block&) = delete;
  control_block& operator=(const control_block&) = delete;

  std::uint64_t id() const noexcept { return id_; }
  runtime_core* core() const noexcept { return core_; }
  const actor_type* type() const noexcept { return type_; }
  /// Unbound actors carry this bit in `shard_`, so that the pinned local
  /// fast path (`shard_ == this shard`) never matches them, at no cost.
  static constexpr shard_id unbound_bit = shard_id{1} << 31;

  /// The shard the actor lives on; for an unbound actor, the one it last
  /// ran on or is queued on.
  shard_id shard() const noexcept {
    return shard_.load(std::memory_order_acquire) & ~unbound_bit;
  }
  bool unbound() const noexcept {
    return (shard_.load(std::memory_order_relaxed) & unbound_bit) != 0;
  }

  bool dead() const noexcept { return life_.load(std::memory_order_acquire) == life::dead; }

  /// The exit reason; only meaningful once dead() is true.
  const exit_info* exit() const noexcept { return exit_; }

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy(this);
  }

  // The remote mailbox (MPSC; any thread pushes, the owner shard pops).
  void mailbox_push(envelope* e) noexcept { mpsc_push(mailbox_tail_, e); }
  mpsc_node* mailbox_pop(bool& busy) noexcept {
    return mpsc_pop(mailbox_head_, mailbox_tail_, mailbox_stub_, busy);
  }
  bool mailbox_empty() const noexcept {
    return mpsc_empty(mailbox_head_, mailbox_tail_, mailbox_stub_);
  }

  // Everything below is the runtime's (src/); public so that the runtime's
  // translation units and the header-only templates can share one layout.

  // Line 1: shared by senders and the owner.
  std::atomic<mpsc_node*> mailbox_tail_;
  mpsc_node mailbox_stub_;
  mpsc_node inbox_hook_;
  runtime_core* core_;
  const actor_type* type_;
  std::uint64_t id_;
  std::atomic<std::uint32_t> refs_{2};  // the spawner's ref + the life ref
  std::atomic<shard_id> shard_;
  std::uint32_t capacity_;  // 0: unbounded
  std::atomic<life> life_{life::starting};
  std::atomic<std::uint8_t> remote_scheduled_{0};

  // Line 2: the owner shard's.
  mpsc_node* mailbox_head_;
  envelope* local_head_ = nullptr;
  envelope* local_tail_ = nullptr;
  control_block* ready_next_ = nullptr;
  actor_base* actor_ = nullptr;
  exit_info* exit_ = nullptr;
  std::atomic<std::uint32_t> depth_{0};  // maintained only when capacity_ != 0
  std::uint32_t local_count_ = 0;        // envelopes in the local FIFO
  bool local_scheduled_ = false;
  // Asks and periodic timers in flight (later: I/O): an unbound actor with
  // any stays on its shard. Written by the actor's runner.
  std::atomic<std::uint32_t> anchors_{0};

 private:
  static void destroy(control_block* cb) noexcept;
};

static_assert(sizeof(control_block) <= 128, "two cache lines: see the layout note");

inline control_block* from_inbox_hook(mpsc_node* n) noexcept {
  return reinterpret_cast<control_block*>(reinterpret_cast<char*>(n) -
                                          offsetof(control_block, inbox_hook_));
}

}  // namespace troupe::detail
