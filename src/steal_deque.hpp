// The per-shard queue of ready unbound actors that other shards steal from.
//
// A bounded ring of control-block pointers, FIFO for everyone: the owner
// pushes at the tail and pops at the head, stealers take a batch from the
// head. FIFO and not the LIFO of a Chase-Lev deque, because an actor that
// used up its message budget is pushed back and must not be the next one
// popped — every ready actor gets its turn.
//
// Who may do what is in the types: the shard holds the one `owner` (push,
// pop), any shard may hold a `stealer` (size, steal_into — which needs the
// thief's own `owner`, so only a shard thread can steal).
//
// Why it is safe:
// - `head_` only grows and every pop or steal is one compare-exchange on it;
//   a stealer reads the slots [head, head + n) first and claims them with
//   the compare-exchange, so a claimed slot was not reused meanwhile (the
//   owner writes slot `tail`, and tail - head never exceeds the capacity).
//   A stealer that loses the race read stale slots and throws them away;
//   the slots are relaxed atomics, so that read is not a data race.
// - The owner publishes a slot with a release store of `tail_`; a stealer
//   loads `tail_` with acquire, so everything the previous runner wrote to
//   the actor (its state, its mailbox head) is visible to the thief.
// - When the ring is full the owner keeps the newest entries in an overflow
//   list of its own and refills the ring as it pops, so order stays FIFO.
#pragma once

#include <troupe/detail/control_block.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace troupe::detail {

class steal_deque {
 public:
  static constexpr std::size_t capacity = 1024;

  steal_deque() : slots_(new std::atomic<control_block*>[capacity]) {
    for (std::size_t i = 0; i < capacity; ++i) slots_[i].store(nullptr, std::memory_order_relaxed);
  }
  steal_deque(const steal_deque&) = delete;
  steal_deque& operator=(const steal_deque&) = delete;

  class owner;

  /// Any shard: looks at the queue and takes from its head.
  class stealer {
   public:
    explicit stealer(steal_deque& q) noexcept : q_(&q) {}
    /// Ready actors in the ring (a hint: it may change at once).
    std::size_t size() const noexcept {
      std::uint64_t t = q_->tail_.load(std::memory_order_acquire);
      std::uint64_t h = q_->head_.load(std::memory_order_acquire);
      return t > h ? static_cast<std::size_t>(t - h) : 0;
    }
    /// Takes up to `max` actors (never more than half, rounded up) and
    /// writes them to `out`; returns how many. The caller holds their
    /// scheduling tokens afterwards.
    std::size_t steal(control_block** out, std::size_t max) noexcept;

   private:
    steal_deque* q_;
  };

  /// The owner shard's handle: exactly one, held by the shard.
  class owner {
   public:
    explicit owner(steal_deque& q) noexcept : q_(&q) {}
    owner(const owner&) = delete;
    owner& operator=(const owner&) = delete;

    void push(control_block* cb) noexcept {
      if (overflow_head_ != nullptr) refill();
      if (overflow_head_ == nullptr && push_ring(cb)) return;
      cb->ready_next_ = nullptr;
      if (overflow_tail_) overflow_tail_->ready_next_ = cb; else overflow_head_ = cb;
      overflow_tail_ = cb;
      ++overflow_size_;
    }
    control_block* pop() noexcept {
      control_block* cb = pop_ring();
      if (overflow_head_ != nullptr) {
        refill();
        if (cb == nullptr) cb = pop_ring();
      }
      return cb;
    }
    /// Ring and overflow.
    std::size_t size() const noexcept { return ring_size() + overflow_size_; }
    bool empty() const noexcept { return size() == 0; }

   private:
    // Moves the oldest overflow entries into the ring, as many as fit (the
    // ring holds the oldest entries, where stealers look). Each link is read
    // before its actor is published: once in the ring, a thief owns it.
    void refill() noexcept {
      while (overflow_head_ != nullptr) {
        control_block* next = overflow_head_;
        control_block* after = next->ready_next_;
        if (!push_ring(next)) return;
        overflow_head_ = after;
        if (after == nullptr) overflow_tail_ = nullptr;
        --overflow_size_;
      }
    }
    std::size_t ring_size() const noexcept {
      return static_cast<std::size_t>(q_->tail_.load(std::memory_order_relaxed) -
                                      q_->head_.load(std::memory_order_relaxed));
    }
    bool push_ring(control_block* cb) noexcept {
      std::uint64_t t = q_->tail_.load(std::memory_order_relaxed);
      std::uint64_t h = q_->head_.load(std::memory_order_acquire);
      if (t - h >= capacity) return false;
      q_->slots_[t % capacity].store(cb, std::memory_order_relaxed);
      q_->tail_.store(t + 1, std::memory_order_release);
      return true;
    }
    control_block* pop_ring() noexcept {
      std::uint64_t t = q_->tail_.load(std::memory_order_relaxed);
      std::uint64_t h = q_->head_.load(std::memory_order_acquire);
      while (h != t) {
        control_block* cb = q_->slots_[h % capacity].load(std::memory_order_relaxed);
        if (q_->head_.compare_exchange_weak(h, h + 1, std::memory_order_acq_rel,
                                            std::memory_order_acquire))
          return cb;
      }
      return nullptr;
    }

    steal_deque* q_;
    control_block* overflow_head_ = nullptr;  // linked through ready_next_
    control_block* overflow_tail_ = nullptr;
    std::size_t overflow_size_ = 0;
  };

 private:
  alignas(64) std::atomic<std::uint64_t> head_{0};  // owner pops and stealers (CAS)
  alignas(64) std::atomic<std::uint64_t> tail_{0};  // the owner's
  std::unique_ptr<std::atomic<control_block*>[]> slots_;
};

inline std::size_t steal_deque::stealer::steal(control_block** out, std::size_t max) noexcept {
  for (int attempt = 0; attempt < 4; ++attempt) {
    std::uint64_t h = q_->head_.load(std::memory_order_acquire);
    std::uint64_t t = q_->tail_.load(std::memory_order_acquire);
    if (t <= h) return 0;
    std::uint64_t n = t - h;
    std::uint64_t k = n - n / 2;
    if (k > max) k = max;
    for (std::uint64_t i = 0; i < k; ++i)
      out[i] = q_->slots_[(h + i) % capacity].load(std::memory_order_relaxed);
    if (q_->head_.compare_exchange_strong(h, h + k, std::memory_order_acq_rel,
                                          std::memory_order_relaxed))
      return static_cast<std::size_t>(k);
  }
  return 0;  // contended: the caller tries again on its next idle turn
}

}  // namespace troupe::detail
