// Received buffers from a shard's provided-buffer ring: the kernel picks a
// free buffer when data arrives (multishot recv), so a connection holds no
// memory while it waits. A net::buffer is move-only; destroyed, it goes
// back to the ring of the shard it came from, from any thread (batched:
// the owner shard puts back what other threads returned once per turn).
// A recv_quota caps how many of them one receiver holds at once.
#pragma once

#include <troupe/promise.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

namespace troupe::detail {
class recv_pool;
/// The buffer group id of every shard's provided-buffer ring.
inline constexpr std::uint16_t recv_buffer_group = 0;
/// Gives buffer `id` back to `pool` and drops the buffer's reference on it.
/// @threadsafe.
void recv_give_back(recv_pool* pool, std::uint16_t id) noexcept;

/// What a recv_quota counts; shared by the quota's handles and the buffers
/// it counts.
struct quota_state {
  explicit quota_state(std::uint32_t m) noexcept : max(m) {}
  std::atomic<std::uint32_t> refs{1};
  std::atomic<std::uint32_t> held{0};
  const std::uint32_t max;
  std::atomic<promise<void>*> waiter{nullptr};
};
/// One more buffer held under `q` (the buffer takes a reference on q).
void quota_take(quota_state* q) noexcept;
/// A buffer held under `q` is given back: the count drops, a waiter is kept
/// when it reaches half, and the buffer's reference goes. @threadsafe.
void quota_give(quota_state* q) noexcept;
void quota_release(quota_state* q) noexcept;
}  // namespace troupe::detail

namespace troupe::net {
class buffer;
}  // namespace troupe::net

namespace troupe::detail {
/// The calling shard's provided-buffer ring (made on first use from
/// config::recv_buffers), or nullptr: none configured, not a shard thread,
/// or the kernel refused it.
recv_pool* recv_pool_here() noexcept;
/// Bytes [offset, offset + len) of buffer `id`, which the kernel filled
/// (a datagram's payload comes after its header), as a handle; counted
/// under `quota` if not null.
net::buffer recv_hand_out(recv_pool* pool, std::uint16_t id, std::size_t offset, std::size_t len,
                          quota_state* quota) noexcept;
/// Start of buffer `id`'s memory.
const std::byte* recv_data(const recv_pool* pool, std::uint16_t id) noexcept;
}  // namespace troupe::detail

namespace troupe::net {

/// A cap on the ring buffers one receiver holds at once: a connection that
/// keeps its buffers (or hands them to a slow actor) cannot take a shard's
/// whole ring from the other connections. Given to a recv, every buffer it
/// hands out counts until it is destroyed, wherever that happens. A hard
/// cap with net::recv_provided (one buffer per recv: issue the next only
/// while !full()); with net::recv_multishot it only counts, since the
/// kernel may fill many buffers in one go. A shared handle: copies name
/// one count.
class recv_quota {
 public:
  /// No cap.
  recv_quota() noexcept = default;
  /// At most `max_held` (at least 1) buffers held.
  explicit recv_quota(std::uint32_t max_held);
  recv_quota(const recv_quota& o) noexcept : q_(o.q_) {
    if (q_ != nullptr) q_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  recv_quota(recv_quota&& o) noexcept : q_(std::exchange(o.q_, nullptr)) {}
  recv_quota& operator=(recv_quota o) noexcept {
    std::swap(q_, o.q_);
    return *this;
  }
  ~recv_quota();

  explicit operator bool() const noexcept { return q_ != nullptr; }
  std::uint32_t max_held() const noexcept { return q_ != nullptr ? q_->max : 0; }
  /// Buffers handed out under this quota and not yet destroyed.
  std::uint32_t held() const noexcept { return q_ != nullptr ? q_->held.load(std::memory_order_relaxed) : 0; }
  bool full() const noexcept { return q_ != nullptr && held() >= q_->max; }

  /// Keeps `p` once held() is down to max_held() / 2: at once if it is,
  /// else on the thread that destroys the buffer that brings it there.
  /// One waiter at a time: a second call while one waits throws.
  void when_drained(promise<void> p);

  detail::quota_state* state() const noexcept { return q_; }

 private:
  detail::quota_state* q_ = nullptr;
};

class buffer {
 public:
  buffer() noexcept = default;
  /// What the runtime hands out (detail::recv_hand_out); takes over a
  /// reference on `pool` and, if not null, on `quota`.
  buffer(detail::recv_pool* pool, std::uint16_t id, const std::byte* data, std::size_t size,
         detail::quota_state* quota) noexcept
      : pool_(pool), quota_(quota), id_(id), data_(data), size_(size) {}
  buffer(buffer&& o) noexcept
      : pool_(std::exchange(o.pool_, nullptr)), quota_(std::exchange(o.quota_, nullptr)), id_(o.id_),
        data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  buffer& operator=(buffer&& o) noexcept {
    if (this != &o) {
      reset();
      pool_ = std::exchange(o.pool_, nullptr);
      quota_ = std::exchange(o.quota_, nullptr);
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

  /// Back to its shard's ring now (and off its quota).
  void reset() noexcept {
    if (pool_ != nullptr) detail::recv_give_back(std::exchange(pool_, nullptr), id_);
    if (quota_ != nullptr) detail::quota_give(std::exchange(quota_, nullptr));
    data_ = nullptr;
    size_ = 0;
  }

 private:
  detail::recv_pool* pool_ = nullptr;
  detail::quota_state* quota_ = nullptr;
  std::uint16_t id_ = 0;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace troupe::net
