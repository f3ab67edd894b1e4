// Per-shard envelope pool: fixed blocks from slabs, an intrusive free list
// owned by the shard, and a lock-free stack through which other shards hand
// freed blocks back in batches (so one-way traffic does not drain one pool
// and swell another).
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

  /// A chain of blocks linked through their first word.
  struct chain {
    void* head = nullptr;
    void* tail = nullptr;
    std::size_t size = 0;
    void push(void* block) noexcept;
  };

  envelope_pool() = default;
  envelope_pool(const envelope_pool&) = delete;
  envelope_pool& operator=(const envelope_pool&) = delete;
  ~envelope_pool();

  /// Owner shard only.
  void* allocate();
  /// Owner shard only.
  void free_local(void* block) noexcept;
  /// Any thread: hands a chain of this pool's blocks back.
  void give_back(const chain& c) noexcept;

  /// Blocks handed out and not yet back. @threadsafe (exact when quiescent).
  std::uint64_t live() const noexcept {
    return taken_.load(std::memory_order_relaxed) - freed_local_.load(std::memory_order_relaxed) -
           returned_total_.load(std::memory_order_relaxed);
  }
  std::uint64_t slabs() const noexcept { return slab_count_.load(std::memory_order_relaxed); }

 private:
  void reclaim() noexcept;

  // A plain singly linked free list through each block's first word, not a
  // Boost.Intrusive slist: blocks handed back by other shards arrive as a
  // linked chain that becomes the free list in O(1) (fanout_throughput spent
  // 44% of its time walking those chains block by block; doc/benchmarks.md).
  void* free_ = nullptr;
  std::vector<void*> slabs_;
  // Counters written by the owner only (load + store, no read-modify-write)
  // and read by stats() from any thread.
  std::atomic<std::uint64_t> taken_{0};
  std::atomic<std::uint64_t> freed_local_{0};
  std::atomic<std::uint64_t> slab_count_{0};
  alignas(64) std::atomic<void*> returned_{nullptr};
  std::atomic<std::uint64_t> returned_total_{0};
};

}  // namespace troupe::detail
