// The parts of fs.hpp's operations that need what liburing 2.3 lacks.
#include "uring_compat.hpp"

#include <troupe/fs.hpp>

namespace troupe::fs {

void ftruncate::prepare(io_uring_sqe* sqe) {
  compat::io_uring_prep_ftruncate(sqe, fd, static_cast<loff_t>(length));
}

}  // namespace troupe::fs
