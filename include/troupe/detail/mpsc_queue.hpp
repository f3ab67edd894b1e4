// Intrusive lock-free multi-producer / single-consumer FIFO (Vyukov).
//
// push is wait-free (one exchange); pop belongs to the consumer only. A
// producer that has swung `tail_` but not yet linked its node leaves a gap:
// pop then reports `busy` rather than empty, and the consumer must come back
// later — dropping the queue on the floor there would strand messages.
#pragma once

#include <atomic>
#include <cstddef>

namespace troupe::detail {

struct mpsc_node {
  std::atomic<mpsc_node*> next{nullptr};
};

/// `TailAlign` > 8 puts the producers' side (tail and stub) on its own cache
/// line, away from the consumer's head: worth it for a shard's inbox, not for
/// the mailbox of every actor (it would double the control block).
template <std::size_t TailAlign = alignof(std::atomic<mpsc_node*>)>
class basic_mpsc_queue {
 public:
  basic_mpsc_queue() noexcept : head_(&stub_), tail_(&stub_) {}
  basic_mpsc_queue(const basic_mpsc_queue&) = delete;
  basic_mpsc_queue& operator=(const basic_mpsc_queue&) = delete;

  /// @threadsafe. seq_cst so that a consumer which publishes "parked" and
  /// then checks `empty()` and a producer which pushes and then checks
  /// "parked" cannot both miss each other.
  void push(mpsc_node* n) noexcept {
    n->next.store(nullptr, std::memory_order_relaxed);
    mpsc_node* prev = tail_.exchange(n, std::memory_order_seq_cst);
    prev->next.store(n, std::memory_order_release);
  }

  /// Consumer only. Returns the oldest node, or nullptr; `busy` is set when
  /// the queue is not empty but its next node is still being linked.
  mpsc_node* pop(bool& busy) noexcept {
    mpsc_node* head = head_;
    mpsc_node* next = head->next.load(std::memory_order_acquire);
    if (head == &stub_) {
      if (next == nullptr) {
        busy = tail_.load(std::memory_order_acquire) != &stub_;
        return nullptr;
      }
      head_ = next;
      head = next;
      next = next->next.load(std::memory_order_acquire);
    }
    if (next != nullptr) {
      head_ = next;
      return head;
    }
    if (head != tail_.load(std::memory_order_acquire)) {
      busy = true;
      return nullptr;
    }
    push(&stub_);
    next = head->next.load(std::memory_order_acquire);
    if (next != nullptr) {
      head_ = next;
      return head;
    }
    busy = true;
    return nullptr;
  }

  /// Consumer only (or any thread as a hint). seq_cst, see push().
  bool empty() const noexcept {
    return head_ == &stub_ && tail_.load(std::memory_order_seq_cst) == &stub_;
  }

 private:
  mpsc_node* head_;  // consumer side
  alignas(TailAlign) std::atomic<mpsc_node*> tail_;  // producer side
  mpsc_node stub_;
};

using mpsc_queue = basic_mpsc_queue<>;

}  // namespace troupe::detail
