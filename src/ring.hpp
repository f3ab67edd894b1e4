// A shard's io_uring ring: set up inside the shard thread with the flags the
// config asks for, falling back to plainer setups when the kernel refuses.
#pragma once

#include <troupe/config.hpp>

#include <liburing.h>

#include <cstdint>
#include <string>
#include <vector>

namespace troupe::detail {

// user_data of the CQEs a shard sees: kind in the top byte, argument below.
enum class cqe_kind : std::uint8_t {
  doorbell = 1,        // a doorbell rung at this shard (nothing to do: it woke us)
  doorbell_sent = 2,   // failure of a doorbell this shard rang (arg: target shard)
  doorbell_fault = 3,  // an injected doorbell failure (arg: target | variant << 32)
  io = 4,              // an I/O operation's completion (arg: its pending_io record)
  io_cancel = 5,       // the failure of an IORING_OP_ASYNC_CANCEL (ignored)
  io_timeout = 6,      // the CQE of an operation's linked timeout (counted, ignored)
};

inline std::uint64_t tag(cqe_kind k, std::uint64_t arg) noexcept {
  return (std::uint64_t(k) << 56) | (arg & ((std::uint64_t(1) << 56) - 1));
}
inline cqe_kind kind_of(std::uint64_t user_data) noexcept { return cqe_kind(user_data >> 56); }
inline std::uint64_t arg_of(std::uint64_t user_data) noexcept {
  return user_data & ((std::uint64_t(1) << 56) - 1);
}

class ring {
 public:
  ring() = default;
  ring(const ring&) = delete;
  ring& operator=(const ring&) = delete;
  ~ring() { close(); }

  /// Sets the ring up for the calling thread. Returns "" on success, else a
  /// message for troupe::error saying what to do.
  std::string open(const config& cfg, unsigned shard);
  void close() noexcept;

  io_uring* get() noexcept { return &ring_; }
  int fd() const noexcept { return ring_.ring_fd; }
  ring_setup setup() const noexcept { return setup_; }
  bool is_open() const noexcept { return open_; }

  /// A free SQE; submits first when the SQ is full, until the kernel took
  /// some (see make_room).
  io_uring_sqe* sqe() noexcept;
  /// Submits first unless `n` SQEs are free: a linked pair must not be
  /// split across two submissions.
  void reserve(unsigned n) noexcept;

  /// io_uring_submit, through config::fault_injection.short_submit_every_kth.
  /// < 0: nothing was submitted; what is queued stays and goes next time.
  int submit() noexcept;
  /// Submits until the kernel took every queued SQE.
  void flush() noexcept;
  /// Submits and waits for one CQE, `timeout` null for ever. The result of
  /// the enter, as submit().
  int submit_and_wait(__kernel_timespec* timeout) noexcept;

  /// CQEs moved out of the CQ by make_room() (a submit that said -EBUSY
  /// while the caller could not reap); reap them before the CQ.
  std::vector<io_uring_cqe>& spilled() noexcept { return spilled_; }

  /// The kernel's count of completions it dropped because the CQ was full
  /// and it could not keep them aside (the ring's cq.koverflow).
  unsigned cq_dropped() const noexcept {
    return __atomic_load_n(ring_.cq.koverflow, __ATOMIC_RELAXED);
  }

  /// Flags the kernel set in the SQ ring (IORING_SQ_TASKRUN, _CQ_OVERFLOW).
  unsigned sq_flags() const noexcept {
    return __atomic_load_n(ring_.sq.kflags, __ATOMIC_RELAXED);
  }

 private:
  // After a submit that took nothing: -EBUSY (completions wait and the
  // kernel wants the CQ read first) spills the CQ; anything else (-EAGAIN,
  // -ENOMEM: the kernel is short of memory) yields and is logged once.
  void make_room(int failed) noexcept;
  int injected_failure() noexcept;
  void note(int failed) noexcept;  // logs a failed enter: -EBADR always, others once

  io_uring ring_{};
  std::vector<io_uring_cqe> spilled_;
  unsigned short_submit_every_ = 0;  // config::fault_injection
  unsigned submits_ = 0;
  unsigned shard_ = 0;
  bool warned_ = false;
  ring_setup setup_ = ring_setup::plain;
  bool open_ = false;
};

/// What to tell the user when io_uring_setup fails with `err` (> 0).
std::string io_uring_unavailable_message(int err);

}  // namespace troupe::detail
