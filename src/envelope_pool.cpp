#include "envelope_pool.hpp"

#include <new>

namespace troupe::detail {

namespace {
void*& link_of(void* block) noexcept { return *static_cast<void**>(block); }
void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
}  // namespace

envelope_pool::~envelope_pool() {
  for (void* s : slabs_) ::operator delete(s, std::align_val_t{64});
}

void* envelope_pool::allocate() {
  void* b = free_;
  if (b != nullptr) {
    free_ = link_of(b);
  } else {
    b = refill();
  }
  bump(taken_);
  return b;
}

void* envelope_pool::refill() {
  for (;;) {
    if (magazine_ != nullptr) {
      if (magazine_->count > 0) return magazine_->blocks[--magazine_->count];
      void* b = magazine_;  // the carrier itself is the last block
      magazine_ = nullptr;
      return b;
    }
    if (magazines_ == nullptr)
      // The whole stack at once: no ABA, the owner is the only one who takes.
      magazines_ = returned_.exchange(nullptr, std::memory_order_acquire);
    if (magazines_ == nullptr) break;
    magazine_ = magazines_;
    magazines_ = magazine_->next;
    for (std::uint64_t i = 0; i < magazine_->count; ++i) __builtin_prefetch(magazine_->blocks[i], 1);
  }
  auto* slab = static_cast<char*>(
      ::operator new(block_size * defaults::envelope_slab, std::align_val_t{64}));
  slabs_.push_back(slab);
  bump(slab_count_);
  for (std::size_t i = defaults::envelope_slab; i-- > 1;) {
    void* b = slab + i * block_size;
    link_of(b) = free_;
    free_ = b;
  }
  return slab;
}

void envelope_pool::free_local(void* p) noexcept {
  link_of(p) = free_;
  free_ = p;
  bump(freed_local_);
}

void envelope_pool::give_back(carrier* c) noexcept {
  std::uint64_t n = 1 + c->count;
  carrier* old = returned_.load(std::memory_order_relaxed);
  do {
    c->next = old;
  } while (!returned_.compare_exchange_weak(old, c, std::memory_order_release,
                                            std::memory_order_relaxed));
  returned_total_.fetch_add(n, std::memory_order_relaxed);
}

}  // namespace troupe::detail
