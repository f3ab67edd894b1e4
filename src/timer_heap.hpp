// One timer heap per shard: a binary min-heap of intrusive timer nodes that
// know their index, so a timer can be disarmed in O(log n) when its ask is
// answered early. The earliest deadline becomes the timeout of the shard's
// io_uring_enter when it parks; no timer thread, no tick while idle.
#pragma once

#include <troupe/detail/runtime_api.hpp>

#include <cstdint>
#include <vector>

namespace troupe::detail {

class timer_heap {
 public:
  bool empty() const noexcept { return heap_.empty(); }
  std::size_t size() const noexcept { return heap_.size(); }
  std::int64_t next_deadline() const noexcept { return heap_.front()->deadline_ns; }

  void arm(timer_node* t);
  void disarm(timer_node* t) noexcept;
  /// Removes and returns the earliest timer if it is due at `now`.
  timer_node* pop_due(std::int64_t now) noexcept;
  /// Removes and returns any timer (for shutdown), or nullptr.
  timer_node* pop_any() noexcept;

 private:
  void place(std::size_t i, timer_node* t) noexcept {
    heap_[i] = t;
    t->heap_index = i;
  }
  void sift_up(std::size_t i) noexcept;
  void sift_down(std::size_t i) noexcept;
  void remove_at(std::size_t i) noexcept;

  std::vector<timer_node*> heap_;
};

}  // namespace troupe::detail
