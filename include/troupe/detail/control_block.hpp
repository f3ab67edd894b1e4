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

class control_block {
 public:
  control_block(runtime_core* core, std::uint64_t id, shard_id shard, const actor_type* type,
                std::uint32_t capacity) noexcept
      : id_(id), core_(core), type_(type), shard_(shard), capacity_(capacity) {}
  control_block(const control_block&) = delete;
  control_block& operator=(const control_block&) = delete;

  std::uint64_t id() const noexcept { return id_; }
  runtime_core* core() const noexcept { return core_; }
  const actor_type* type() const noexcept { return type_; }
  shard_id shard() const noexcept { return shard_.load(std::memory_order_acquire); }

  bool dead() const noexcept { return life_.load(std::memory_order_acquire) == life::dead; }

  /// The exit reason; only meaningful once dead() is true.
  const exit_info* exit() const noexcept { return exit_; }

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy(this);
  }

  // Everything below is the runtime's (src/); public so that the runtime's
  // translation units and the header-only templates can share one layout.
  std::uint64_t id_;
  runtime_core* core_;
  const actor_type* type_;
  std::atomic<shard_id> shard_;
  std::atomic<std::uint32_t> refs_{2};  // the spawner's ref + the life ref
  std::atomic<life> life_{life::starting};
  std::atomic<std::uint8_t> remote_scheduled_{0};
  bool local_scheduled_ = false;
  std::uint32_t capacity_;                    // 0: unbounded
  std::atomic<std::uint32_t> depth_{0};       // maintained only when capacity_ != 0
  std::uint32_t local_count_ = 0;             // envelopes in the local FIFO
  actor_base* actor_ = nullptr;
  exit_info* exit_ = nullptr;
  envelope* local_head_ = nullptr;
  envelope* local_tail_ = nullptr;
  control_block* ready_next_ = nullptr;
  control_block* live_prev_ = nullptr;  // the shard's list of live actors
  control_block* live_next_ = nullptr;
  mpsc_node inbox_hook_;
  mpsc_queue mailbox_;

 private:
  static void destroy(control_block* cb) noexcept;
};

inline control_block* from_inbox_hook(mpsc_node* n) noexcept {
  return reinterpret_cast<control_block*>(reinterpret_cast<char*>(n) -
                                          offsetof(control_block, inbox_hook_));
}

}  // namespace troupe::detail
