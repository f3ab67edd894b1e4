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
  for (void* s : slabs_) ::operator delete(s, std::align_val_t{64});
}

void* envelope_pool::allocate() {
  if (free_ == nullptr) reclaim();
  if (free_ == nullptr) {
    auto* slab = static_cast<char*>(
        ::operator new(block_size * defaults::envelope_slab, std::align_val_t{64}));
    slabs_.push_back(slab);
    bump(slab_count_);
    for (std::size_t i = defaults::envelope_slab; i-- > 0;) {
      void* b = slab + i * block_size;
      link_of(b) = free_;
      free_ = b;
    }
  }
  void* b = free_;
  free_ = link_of(b);
  if (free_ != nullptr) __builtin_prefetch(free_, 1);
  bump(taken_);
  return b;
}

void envelope_pool::free_local(void* p) noexcept {
  link_of(p) = free_;
  free_ = p;
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
  // Called only when the free list is empty: the whole returned stack (a
  // chain of chains) becomes the free list. Taking it all at once means no
  // ABA; the owner is the only one who takes.
  free_ = returned_.exchange(nullptr, std::memory_order_acquire);
}


}  // namespace troupe::detail
