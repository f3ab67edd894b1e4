// A shard's provided-buffer ring (include/troupe/net/buffer.hpp): `count`
// buffers of `size` bytes registered with the shard's ring as buffer group
// 0, for multishot recv. Only the owner shard's thread writes the ring's
// tail; other threads give buffers back through a lock-free stack that the
// owner drains once per turn. Reference counted like fixed_pool: buffers
// still held keep the memory after the runtime is gone.
#pragma once

#include <troupe/net/buffer.hpp>

#include <liburing.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

namespace troupe::detail {

class recv_pool {
 public:
  static constexpr std::uint16_t group = recv_buffer_group;

  /// Maps and registers on `ring` (owner thread). Throws troupe::error if
  /// the memory cannot be mapped; `registered()` false if the kernel
  /// refused the ring (then multishot recv is unsupported here).
  recv_pool(io_uring* ring, unsigned count, std::size_t size);
  recv_pool(const recv_pool&) = delete;
  recv_pool& operator=(const recv_pool&) = delete;

  bool registered() const noexcept { return registered_; }
  std::string why_not() const { return why_not_; }
  const std::byte* data(std::uint16_t id) const noexcept { return base_ + std::size_t(id) * size_; }

  /// A buffer the kernel filled: a reference for the handle.
  net::buffer hand_out(std::uint16_t id, std::size_t offset, std::size_t len, quota_state* quota) noexcept {
    refs_.fetch_add(1, std::memory_order_relaxed);
    return net::buffer(this, id, data(id) + offset, len, quota);
  }
  void give_back(std::uint16_t id) noexcept;
  /// Owner thread: what other threads gave back goes back on the ring.
  void drain() noexcept;
  bool has_returns() const noexcept { return returned_.load(std::memory_order_relaxed) != 0; }
  /// The ring is closing: nothing goes back to the kernel any more.
  void unregistered() noexcept { registered_ = false; }

  void release() noexcept;

 private:
  ~recv_pool();
  void put(std::uint16_t id) noexcept;  // owner thread

  std::thread::id owner_;
  io_uring_buf_ring* br_ = nullptr;
  std::size_t ring_bytes_ = 0;
  std::byte* base_ = nullptr;
  std::size_t size_;
  std::size_t mapped_ = 0;
  unsigned count_;
  bool registered_ = false;
  std::string why_not_;
  // Given back by other threads: a Treiber stack of ids + 1 through next_.
  std::atomic<std::uint64_t> returned_{0};
  std::unique_ptr<std::atomic<std::uint32_t>[]> next_;
  std::atomic<std::uint32_t> refs_{1};
};

}  // namespace troupe::detail
