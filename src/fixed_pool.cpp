#include "fixed_pool.hpp"

#include "shard.hpp"

#include <troupe/error.hpp>

#include <fmt/format.h>

#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

namespace troupe::detail {

fixed_pool::fixed_pool(std::uint32_t count, std::size_t size) : count_(count) {
  const std::size_t page = std::size_t(::sysconf(_SC_PAGESIZE));
  auto fail = [&](const std::string& why) {
    return error(fmt::format("troupe: config::fixed_buffers: cannot map {} buffers of {} bytes: {}. Lower "
                             "config::fixed_buffers.count or .size",
                             count, size, why));
  };
  if (size == 0) throw fail("a size of 0");
  // Checked: a size near SIZE_MAX, or count x size past it, would wrap to a
  // small mapping and buffers pointing past its end.
  if (size > SIZE_MAX - (page - 1) || __builtin_mul_overflow((size + page - 1) / page * page, std::size_t(count), &mapped_))
    throw fail("their total does not fit in the address space");
  size_ = (size + page - 1) / page * page;
  void* p = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    int err = errno;
    throw fail(fmt::format("mmap of {} bytes: {}", mapped_, std::strerror(err)));
  }
  base_ = static_cast<std::byte*>(p);
  next_ = std::make_unique<std::atomic<std::uint32_t>[]>(count_);
  // Slots 1..count, lowest first.
  for (std::uint32_t i = 0; i < count_; ++i) next_[i].store(i + 2 <= count_ ? i + 2 : 0, std::memory_order_relaxed);
  head_.store(pack(0, count_ > 0 ? 1 : 0), std::memory_order_relaxed);
  free_.store(count_, std::memory_order_relaxed);
}

fixed_pool::~fixed_pool() {
  if (base_ != nullptr) ::munmap(base_, mapped_);
}

std::string fixed_pool::register_with(io_uring* ring) {
  std::vector<iovec> iov(count_);
  for (std::uint32_t i = 0; i < count_; ++i) iov[i] = {base_ + std::size_t(i) * size_, size_};
  int r = io_uring_register_buffers(ring, iov.data(), count_);
  if (r < 0) return std::strerror(-r);
  registered_.store(true, std::memory_order_release);
  return {};
}

io::fixed_buffer fixed_pool::take() noexcept {
  std::uint64_t h = head_.load(std::memory_order_acquire);
  for (;;) {
    std::uint32_t slot = std::uint32_t(h);
    if (slot == 0) return {};
    std::uint32_t next = next_[slot - 1].load(std::memory_order_relaxed);
    if (head_.compare_exchange_weak(h, pack(std::uint32_t(h >> 32) + 1, next), std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
      free_.fetch_sub(1, std::memory_order_relaxed);
      add_ref();
      std::uint32_t index = slot - 1;
      return io::fixed_buffer(this, index, base_ + std::size_t(index) * size_, size_);
    }
  }
}

void fixed_pool::give_back(std::uint32_t index) noexcept {
  std::uint64_t h = head_.load(std::memory_order_relaxed);
  do {
    next_[index].store(std::uint32_t(h), std::memory_order_relaxed);
  } while (!head_.compare_exchange_weak(h, pack(std::uint32_t(h >> 32) + 1, index + 1), std::memory_order_release,
                                        std::memory_order_relaxed));
  free_.fetch_add(1, std::memory_order_relaxed);
  release();
}

void fixed_pool::release() noexcept {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

void fixed_give_back(fixed_pool* pool, std::uint32_t index) noexcept { pool->give_back(index); }

bool fixed_registered_here(const fixed_pool* pool) noexcept {
  shard* s = this_shard_ptr();
  return s != nullptr && s->fixed() == pool && pool->registered();
}

io::fixed_buffer take_fixed_buffer() noexcept {
  shard* s = this_shard_ptr();
  if (s == nullptr || s->fixed() == nullptr) return {};
  return s->fixed()->take();
}

}  // namespace troupe::detail
