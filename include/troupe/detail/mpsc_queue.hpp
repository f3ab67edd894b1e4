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

// The algorithm on its three words, so that a structure can place the
// consumer's `head` and the producers' `tail` + `stub` on different cache
// lines (the control block does).

/// @threadsafe. seq_cst so that a consumer which publishes "parked" and then
/// checks emptiness and a producer which pushes and then checks "parked"
/// cannot both miss each other.
inline void mpsc_push(std::atomic<mpsc_node*>& tail, mpsc_node* n) noexcept {
  n->next.store(nullptr, std::memory_order_relaxed);
  mpsc_node* prev = tail.exchange(n, std::memory_order_seq_cst);
  prev->next.store(n, std::memory_order_release);
}

/// Consumer only. Returns the oldest node, or nullptr; `busy` is set when the
/// queue is not empty but its next node is still being linked.
inline mpsc_node* mpsc_pop(mpsc_node*& head_ref, std::atomic<mpsc_node*>& tail, mpsc_node& stub,
                           bool& busy) noexcept {
  mpsc_node* head = head_ref;
  mpsc_node* next = head->next.load(std::memory_order_acquire);
  if (head == &stub) {
    if (next == nullptr) {
      busy = tail.load(std::memory_order_acquire) != &stub;
      return nullptr;
    }
    head_ref = next;
    head = next;
    next = next->next.load(std::memory_order_acquire);
  }
  if (next != nullptr) {
    head_ref = next;
    return head;
  }
  if (head != tail.load(std::memory_order_acquire)) {
    busy = true;
    return nullptr;
  }
  mpsc_push(tail, &stub);
  next = head->next.load(std::memory_order_acquire);
  if (next != nullptr) {
    head_ref = next;
    return head;
  }
  busy = true;
  return nullptr;
}

/// Consumer only (or any thread as a hint). seq_cst, see mpsc_push().
inline bool mpsc_empty(const mpsc_node* head, const std::atomic<mpsc_node*>& tail,
                       const mpsc_node& stub) noexcept {
  return head == &stub && tail.load(std::memory_order_seq_cst) == &stub;
}

/// The queue as one object. `TailAlign` > 8 puts the producers' side (tail
/// and stub) on its own cache line, away from the consumer's head.
template <std::size_t TailAlign = alignof(std::atomic<mpsc_node*>)>
class basic_mpsc_queue {
 public:
  basic_mpsc_queue() noexcept : head_(&stub_), tail_(&stub_) {}
  basic_mpsc_queue(const basic_mpsc_queue&) = delete;
  basic_mpsc_queue& operator=(const basic_mpsc_queue&) = delete;

  void push(mpsc_node* n) noexcept { mpsc_push(tail_, n); }
  mpsc_node* pop(bool& busy) noexcept { return mpsc_pop(head_, tail_, stub_, busy); }
  bool empty() const noexcept { return mpsc_empty(head_, tail_, stub_); }

 private:
  mpsc_node* head_;                                   // consumer side
  alignas(TailAlign) std::atomic<mpsc_node*> tail_;  // producer side
  mpsc_node stub_;
};

using mpsc_queue = basic_mpsc_queue<>;

}  // namespace troupe::detail
