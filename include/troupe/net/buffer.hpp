// Received buffers from a shard's provided-buffer ring: the kernel picks a
// free buffer when data arrives (multishot recv), so a connection holds no
// memory while it waits. A net::buffer is move-only; destroyed, it goes
// back to the ring of the shard it came from, from any thread (batched:
// the owner shard puts back what other threads returned once per turn).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

namespace troupe::detail {
class recv_pool;
/// Gives buffer `id` back to `pool` and drops the buffer's reference on it.
/// @threadsafe.
void recv_give_back(recv_pool* pool, std::uint16_t id) noexcept;
}  // namespace troupe::detail

namespace troupe::net {
class buffer;
}  // namespace troupe::net

namespace troupe::detail {
/// The calling shard's provided-buffer ring (made on first use from
/// config::recv_buffers), or nullptr: none configured, not a shard thread,
/// or the kernel refused it.
recv_pool* recv_pool_here() noexcept;
/// The buffer `id` the kernel filled with `len` bytes, as a handle.
net::buffer recv_hand_out(recv_pool* pool, std::uint16_t id, std::size_t len) noexcept;
}  // namespace troupe::detail

namespace troupe::net {

class buffer {
 public:
  buffer() noexcept = default;
  buffer(detail::recv_pool* pool, std::uint16_t id, const std::byte* data, std::size_t size) noexcept
      : pool_(pool), id_(id), data_(data), size_(size) {}
  buffer(buffer&& o) noexcept
      : pool_(std::exchange(o.pool_, nullptr)), id_(o.id_), data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)) {}
  buffer& operator=(buffer&& o) noexcept {
    if (this != &o) {
      reset();
      pool_ = std::exchange(o.pool_, nullptr);
      id_ = o.id_;
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;
  ~buffer() { reset(); }

  const std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }

  /// Back to its shard's ring now.
  void reset() noexcept {
    if (pool_ != nullptr) detail::recv_give_back(std::exchange(pool_, nullptr), id_);
    data_ = nullptr;
    size_ = 0;
  }

 private:
  detail::recv_pool* pool_ = nullptr;
  std::uint16_t id_ = 0;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace troupe::net
