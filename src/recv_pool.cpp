#include "recv_pool.hpp"

#include "shard.hpp"

#include <troupe/error.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace troupe::detail {

recv_pool::recv_pool(io_uring* ring, unsigned count, std::size_t size)
    : owner_(std::this_thread::get_id()), size_(size), count_(count) {
  if (count_ == 0 || count_ > 32768 || (count_ & (count_ - 1)) != 0)
    throw error("troupe: config::recv_buffers.count must be a power of two, 1..32768");
  const std::size_t page = std::size_t(::sysconf(_SC_PAGESIZE));
  ring_bytes_ = (sizeof(io_uring_buf) * count_ + page - 1) / page * page;
  mapped_ = size_ * count_;
  void* r = ::mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void* b = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED || b == MAP_FAILED) {
    if (r != MAP_FAILED) ::munmap(r, ring_bytes_);
    if (b != MAP_FAILED) ::munmap(b, mapped_);
    throw error(std::string("troupe: config::recv_buffers: cannot map the buffers: ") + std::strerror(errno));
  }
  br_ = static_cast<io_uring_buf_ring*>(r);
  base_ = static_cast<std::byte*>(b);
  next_ = std::make_unique<std::atomic<std::uint32_t>[]>(count_);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uint64_t>(br_);
  reg.ring_entries = count_;
  reg.bgid = group;
  if (int rc = io_uring_register_buf_ring(ring, &reg, 0); rc < 0) {
    why_not_ = std::strerror(-rc);
    return;
  }
  io_uring_buf_ring_init(br_);
  const int mask = io_uring_buf_ring_mask(count_);
  for (unsigned i = 0; i < count_; ++i)
    io_uring_buf_ring_add(br_, base_ + std::size_t(i) * size_, unsigned(size_), std::uint16_t(i), mask, int(i));
  io_uring_buf_ring_advance(br_, int(count_));
  registered_ = true;
}

recv_pool::~recv_pool() {
  ::munmap(br_, ring_bytes_);
  ::munmap(base_, mapped_);
}

void recv_pool::put(std::uint16_t id) noexcept {
  if (!registered_) return;
  io_uring_buf_ring_add(br_, base_ + std::size_t(id) * size_, unsigned(size_), id, io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(br_, 1);
}

void recv_pool::give_back(std::uint16_t id) noexcept {
  if (std::this_thread::get_id() == owner_) {
    put(id);
  } else {
    // Tagged push (ids + 1 in the low half, an ABA tag in the high half).
    std::uint64_t h = returned_.load(std::memory_order_relaxed);
    do {
      next_[id].store(std::uint32_t(h), std::memory_order_relaxed);
    } while (!returned_.compare_exchange_weak(h, ((h >> 32) + 1) << 32 | (std::uint64_t(id) + 1),
                                              std::memory_order_release, std::memory_order_relaxed));
  }
  release();
}

void recv_pool::drain() noexcept {
  std::uint64_t h = returned_.exchange(0, std::memory_order_acquire);
  for (std::uint32_t slot = std::uint32_t(h); slot != 0;) {
    std::uint16_t id = std::uint16_t(slot - 1);
    slot = next_[id].load(std::memory_order_relaxed);
    put(id);
  }
}

void recv_pool::release() noexcept {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

void recv_give_back(recv_pool* pool, std::uint16_t id) noexcept { pool->give_back(id); }

recv_pool* recv_pool_here() noexcept {
  shard* s = this_shard_ptr();
  return s != nullptr ? s->recv_buffers() : nullptr;
}

net::buffer recv_hand_out(recv_pool* pool, std::uint16_t id, std::size_t offset, std::size_t len,
                          quota_state* quota) noexcept {
  if (quota != nullptr) quota_take(quota);
  return pool->hand_out(id, offset, len, quota);
}

const std::byte* recv_data(const recv_pool* pool, std::uint16_t id) noexcept { return pool->data(id); }

// ---- recv_quota ----------------------------------------------------------
//
// when_drained and quota_give race the way a sleeper and a waker do: the
// waiter is published, then the count read; the count is dropped, then
// the waiter read. With both pairs sequentially consistent at least one
// side sees the other, and exchanging the waiter out makes exactly one of
// them keep the promise.

void quota_take(quota_state* q) noexcept {
  q->refs.fetch_add(1, std::memory_order_relaxed);
  q->held.fetch_add(1, std::memory_order_relaxed);
}

namespace {
void keep_waiter_now(quota_state* q) noexcept {
  if (promise<void>* w = q->waiter.exchange(nullptr, std::memory_order_acq_rel)) {
    w->deliver(result<void>());
    delete w;
  }
}
}  // namespace

void quota_give(quota_state* q) noexcept {
  std::uint32_t now = q->held.fetch_sub(1, std::memory_order_seq_cst) - 1;
  if (now <= q->max / 2 && q->waiter.load(std::memory_order_seq_cst) != nullptr) keep_waiter_now(q);
  quota_release(q);
}

void quota_release(quota_state* q) noexcept {
  if (q->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    delete q->waiter.exchange(nullptr);  // nobody can keep it any more: broken_promise
    delete q;
  }
}

}  // namespace troupe::detail

namespace troupe::net {

recv_quota::recv_quota(std::uint32_t max_held) {
  if (max_held == 0) throw error("troupe: net::recv_quota: max_held must be at least 1");
  q_ = new detail::quota_state(max_held);
}

recv_quota::~recv_quota() {
  if (q_ != nullptr) detail::quota_release(q_);
}

void recv_quota::when_drained(promise<void> p) {
  if (q_ == nullptr) throw error("troupe: net::recv_quota::when_drained on an empty quota");
  auto* w = new promise<void>(std::move(p));
  promise<void>* none = nullptr;
  if (!q_->waiter.compare_exchange_strong(none, w, std::memory_order_seq_cst)) {
    delete w;
    throw error("troupe: net::recv_quota::when_drained: a waiter is already there");
  }
  if (q_->held.load(std::memory_order_seq_cst) <= q_->max / 2) detail::keep_waiter_now(q_);
}

}  // namespace troupe::net
