// A shard's registered buffers (include/troupe/fixed_buffer.hpp): one
// page-aligned mapping cut into equal buffers, registered with the shard's
// ring, and a lock-free free list, since a buffer may be given back from any
// thread. Reference counted: the shard holds one reference and every buffer
// handed out holds one, so memory outlives a runtime whose buffers are still
// held.
#pragma once

#include <troupe/fixed_buffer.hpp>

#include <liburing.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace troupe::detail {

class fixed_pool {
 public:
  /// `count` buffers of `size` bytes (rounded up to the page size); throws
  /// troupe::error if the memory cannot be mapped.
  fixed_pool(std::uint32_t count, std::size_t size);
  fixed_pool(const fixed_pool&) = delete;
  fixed_pool& operator=(const fixed_pool&) = delete;

  /// Registers every buffer with `ring` (on the ring's thread). "" or why not.
  std::string register_with(io_uring* ring);
  bool registered() const noexcept { return registered_.load(std::memory_order_acquire); }
  /// The ring is closing: nothing is registered any more.
  void unregistered() noexcept { registered_.store(false, std::memory_order_release); }

  /// A free buffer, or an empty handle. @threadsafe.
  io::fixed_buffer take() noexcept;
  /// @threadsafe.
  void give_back(std::uint32_t index) noexcept;
  std::uint32_t count() const noexcept { return count_; }
  std::uint32_t free_now() const noexcept { return free_.load(std::memory_order_relaxed); }

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept;

 private:
  ~fixed_pool();
  static std::uint64_t pack(std::uint32_t tag, std::uint32_t slot) noexcept {
    return (std::uint64_t(tag) << 32) | slot;
  }

  std::byte* base_ = nullptr;
  std::size_t size_;       // of one buffer
  std::size_t mapped_;     // of the whole mapping
  std::uint32_t count_;
  // Free list: a Treiber stack of slots (index + 1; 0 ends it), its head
  // tagged against ABA.
  std::atomic<std::uint64_t> head_{0};
  std::unique_ptr<std::atomic<std::uint32_t>[]> next_;
  std::atomic<std::uint32_t> free_{0};
  std::atomic<std::uint32_t> refs_{1};
  std::atomic<bool> registered_{false};
};

}  // namespace troupe::detail
