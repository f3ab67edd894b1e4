#include "envelope_pool.hpp"

#include <new>

namespace troupe::detail {

namespace {
void*& link_of(void* block) noexcept { return *static_cast<void**>(block); }
void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
}  // namespace

void envelope_pool::chain::push(void* b) noexcept {
  link_of(b) = head;
  head = b;
  if (tail == nullptr) tail = b;
  ++size;
}

envelope_pool::~envelope_pool() {
  free_.clear();
  for (void* s : slabs_) ::operator delete(s, std::align_val_t{64});
}

void* envelope_pool::allocate() {
  if (free_.empty()) reclaim();
  if (free_.empty()) {
    auto* slab = static_cast<char*>(
        ::operator new(block_size * defaults::envelope_slab, std::align_val_t{64}));
    slabs_.push_back(slab);
    bump(slab_count_);
    for (std::size_t i = defaults::envelope_slab; i-- > 0;)
      free_.push_front(*new (slab + i * block_size) block);
  }
  block& b = free_.front();
  free_.pop_front();
  bump(taken_);
  return &b;
}

void envelope_pool::free_local(void* p) noexcept {
  free_.push_front(*new (p) block);
  bump(freed_local_);
}

void envelope_pool::give_back(const chain& c) noexcept {
  if (c.head == nullptr) return;
  void* old = returned_.load(std::memory_order_relaxed);
  do {
    link_of(c.tail) = old;
  } while (!returned_.compare_exchange_weak(old, c.head, std::memory_order_release,
                                            std::memory_order_relaxed));
  returned_total_.fetch_add(c.size, std::memory_order_relaxed);
}

void envelope_pool::reclaim() noexcept {
  // Taking the whole stack at once: no ABA, the owner is the only popper.
  void* p = returned_.exchange(nullptr, std::memory_order_acquire);
  while (p != nullptr) {
    void* next = link_of(p);
    free_.push_front(*new (p) block);
    p = next;
  }
}


}  // namespace troupe::detail
