// Per-shard envelope pool: fixed blocks from slabs, a free list owned by the
// shard, and a lock-free stack through which other shards hand freed blocks
// back in batches (so one-way traffic does not drain one pool and swell
// another).
//
// A batch travels as a *carrier*: the first block freed for an origin holds
// the pointers to the next ones. The owner drains a carrier as a magazine
// and prefetches all of its blocks at once, so reusing blocks that another
// CPU wrote last costs overlapping misses instead of one serial miss per
// block (walking a linked chain of them was 44% of fanout_throughput).
#pragma once

#include <troupe/defaults.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace troupe::detail {

class envelope_pool {
 public:
  static constexpr std::size_t block_size = defaults::envelope_block;

  /// A freed block that carries pointers to up to `capacity` more.
  struct carrier {
    static constexpr std::size_t capacity = (block_size - 16) / sizeof(void*);
    carrier* next;
    std::uint64_t count;
    void* blocks[capacity];

    static carrier* start(void* block) noexcept {
      auto* c = static_cast<carrier*>(block);
      c->next = nullptr;
      c->count = 0;
      return c;
    }
    bool full() const noexcept { return count == capacity; }
  };
  static_assert(sizeof(carrier) <= block_size);
  static_assert(carrier::capacity + 1 == defaults::envelope_return_batch);

  envelope_pool() = default;
  envelope_pool(const envelope_pool&) = delete;
  envelope_pool& operator=(const envelope_pool&) = delete;
  ~envelope_pool();

  /// Owner shard only.
  void* allocate();
  /// Owner shard only.
  void free_local(void* block) noexcept;
  /// Any thread: hands back a carrier and the blocks it carries.
  void give_back(carrier* c) noexcept;

  /// Blocks handed out and not yet back. @threadsafe (exact when quiescent).
  std::uint64_t live() const noexcept {
    return taken_.load(std::memory_order_relaxed) - freed_local_.load(std::memory_order_relaxed) -
           returned_total_.load(std::memory_order_relaxed);
  }
  std::uint64_t slabs() const noexcept { return slab_count_.load(std::memory_order_relaxed); }

 private:
  void* refill();

  void* free_ = nullptr;           // blocks freed on this shard, LIFO (hot)
  carrier* magazine_ = nullptr;    // the carrier being drained
  carrier* magazines_ = nullptr;   // carriers taken back, not yet drained
  std::vector<void*> slabs_;
  // Counters written by the owner only (load + store, no read-modify-write)
  // and read by stats() from any thread.
  std::atomic<std::uint64_t> taken_{0};
  std::atomic<std::uint64_t> freed_local_{0};
  std::atomic<std::uint64_t> slab_count_{0};
  alignas(64) std::atomic<carrier*> returned_{nullptr};
  std::atomic<std::uint64_t> returned_total_{0};
};

}  // namespace troupe::detail
