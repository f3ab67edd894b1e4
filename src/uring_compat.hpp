// What liburing 2.3 (Debian 12) lacks, named and ordered as upstream
// liburing so each helper can be deleted when the distribution catches up.
#pragma once

#include <liburing.h>

#include <cerrno>
#include <sys/syscall.h>
#include <unistd.h>

namespace troupe::compat {

// Kernel 6.9: IORING_OP_FTRUNCATE (opcode 55 upstream).
inline constexpr unsigned op_ftruncate = 55;

/// upstream: void io_uring_prep_ftruncate(struct io_uring_sqe *sqe, int fd, loff_t len);
inline void io_uring_prep_ftruncate(io_uring_sqe* sqe, int fd, loff_t len) noexcept {
  io_uring_prep_rw(static_cast<int>(op_ftruncate), sqe, fd, nullptr, 0, static_cast<__u64>(len));
}

// Kernel 6.13: IORING_REGISTER_SEND_MSG_RING runs a MSG_RING SQE without a
// source ring (io_uring_register with fd -1).
inline constexpr unsigned register_send_msg_ring = 31;

/// upstream: int io_uring_register_sync_msg(struct io_uring_sqe *sqe);
/// Returns 0 or -errno.
inline int io_uring_register_sync_msg(io_uring_sqe* sqe) noexcept {
  long r = ::syscall(__NR_io_uring_register, -1, register_send_msg_ring, sqe, 1);
  return r < 0 ? -errno : static_cast<int>(r);
}

}  // namespace troupe::compat
