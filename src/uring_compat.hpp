// What liburing 2.3 (Debian 12) lacks, named and ordered as upstream
// liburing so each helper can be deleted when the distribution catches up.
#pragma once

#include <liburing.h>

#include <cerrno>
#include <sys/syscall.h>
#include <unistd.h>

namespace troupe::compat {

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
