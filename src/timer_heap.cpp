#include "timer_heap.hpp"

namespace troupe::detail {

void timer_heap::arm(timer_node* t) {
  if (t->armed()) disarm(t);
  heap_.push_back(t);
  t->heap_index = heap_.size() - 1;
  sift_up(heap_.size() - 1);
}

void timer_heap::disarm(timer_node* t) noexcept {
  if (t->armed()) remove_at(t->heap_index);
}

timer_node* timer_heap::pop_due(std::int64_t now) noexcept {
  if (heap_.empty() || heap_.front()->deadline_ns > now) return nullptr;
  timer_node* t = heap_.front();
  remove_at(0);
  return t;
}

timer_node* timer_heap::pop_any() noexcept {
  if (heap_.empty()) return nullptr;
  timer_node* t = heap_.back();
  heap_.pop_back();
  t->heap_index = ~std::size_t{0};
  return t;
}

void timer_heap::sift_up(std::size_t i) noexcept {
  timer_node* t = heap_[i];
  while (i > 0) {
    std::size_t parent = (i - 1) / 2;
    if (heap_[parent]->deadline_ns <= t->deadline_ns) break;
    place(i, heap_[parent]);
    i = parent;
  }
  place(i, t);
}

void timer_heap::sift_down(std::size_t i) noexcept {
  timer_node* t = heap_[i];
  std::size_t n = heap_.size();
  for (;;) {
    std::size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && heap_[child + 1]->deadline_ns < heap_[child]->deadline_ns) ++child;
    if (heap_[child]->deadline_ns >= t->deadline_ns) break;
    place(i, heap_[child]);
    i = child;
  }
  place(i, t);
}

void timer_heap::remove_at(std::size_t i) noexcept {
  timer_node* gone = heap_[i];
  timer_node* last = heap_.back();
  heap_.pop_back();
  gone->heap_index = ~std::size_t{0};
  if (gone == last) return;
  place(i, last);
  if (i > 0 && heap_[(i - 1) / 2]->deadline_ns > last->deadline_ns)
    sift_up(i);
  else
    sift_down(i);
}

}  // namespace troupe::detail
