// Registered ("fixed") buffers: memory each shard registers with its ring at
// start (config::fixed_buffers), so that a read or write into it skips the
// kernel's per-operation page pinning (IORING_OP_READ_FIXED/WRITE_FIXED).
// The buffers are page aligned, which O_DIRECT needs.
//
//   io::fixed_buffer b = take_fixed_buffer();   // in a handler; empty if none free
//   if (b) submit(fs::read_fixed(file, offset, std::move(b), 4096)).then(...);
//
// A buffer belongs to the shard that handed it out and goes back to that
// shard's pool when the handle is destroyed, on any thread. Used on another
// shard's ring (an unbound actor that moved), the operation is issued as a
// plain read or write of the same memory: correct, only not "fixed".
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

namespace troupe::detail {
class fixed_pool;
/// Gives buffer `index` back to `pool` (and drops the buffer's reference on
/// the pool). @threadsafe.
void fixed_give_back(fixed_pool* pool, std::uint32_t index) noexcept;
/// Whether `pool` is registered with the calling shard's ring.
bool fixed_registered_here(const fixed_pool* pool) noexcept;
}  // namespace troupe::detail

namespace troupe::io {

/// One registered buffer: `capacity()` bytes of which the first `size()`
/// hold data. Move-only.
class fixed_buffer {
 public:
  fixed_buffer() noexcept = default;
  fixed_buffer(detail::fixed_pool* pool, std::uint32_t index, std::byte* data, std::size_t capacity) noexcept
      : pool_(pool), index_(index), data_(data), capacity_(capacity) {}
  fixed_buffer(fixed_buffer&& o) noexcept
      : pool_(std::exchange(o.pool_, nullptr)), index_(o.index_), data_(std::exchange(o.data_, nullptr)),
        capacity_(std::exchange(o.capacity_, 0)), size_(std::exchange(o.size_, 0)) {}
  fixed_buffer& operator=(fixed_buffer&& o) noexcept {
    if (this != &o) {
      reset();
      pool_ = std::exchange(o.pool_, nullptr);
      index_ = o.index_;
      data_ = std::exchange(o.data_, nullptr);
      capacity_ = std::exchange(o.capacity_, 0);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  fixed_buffer(const fixed_buffer&) = delete;
  fixed_buffer& operator=(const fixed_buffer&) = delete;
  ~fixed_buffer() { reset(); }

  explicit operator bool() const noexcept { return data_ != nullptr; }
  std::byte* data() noexcept { return data_; }
  const std::byte* data() const noexcept { return data_; }
  std::size_t capacity() const noexcept { return capacity_; }
  /// The bytes holding data (what a read filled, what a write sends).
  std::size_t size() const noexcept { return size_; }
  void resize(std::size_t n) noexcept { size_ = n < capacity_ ? n : capacity_; }
  std::span<std::byte> bytes() noexcept { return {data_, size_}; }
  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }

  /// The index the ring knows it by; only meaningful on its shard.
  std::uint32_t index() const noexcept { return index_; }
  /// Whether it is registered with the calling shard's ring.
  bool registered_here() const noexcept { return pool_ != nullptr && detail::fixed_registered_here(pool_); }

  /// Gives the buffer back to its shard now.
  void reset() noexcept {
    if (pool_ != nullptr) detail::fixed_give_back(std::exchange(pool_, nullptr), index_);
    data_ = nullptr;
    capacity_ = size_ = 0;
  }

 private:
  detail::fixed_pool* pool_ = nullptr;
  std::uint32_t index_ = 0;
  std::byte* data_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t size_ = 0;
};

}  // namespace troupe::io

namespace troupe::detail {
/// A free buffer of the calling shard, or an empty handle (none free, none
/// configured, not a shard thread).
io::fixed_buffer take_fixed_buffer() noexcept;
}  // namespace troupe::detail
