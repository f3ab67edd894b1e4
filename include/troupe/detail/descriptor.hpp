// A descriptor shared by its owner (fs::file, net::socket) and by the
// operations in flight on it: the last one closes it. So a file or socket
// closed (or destroyed) right after a submit keeps its number until the
// kernel is done with it, and an operation can never land on another file
// that reused the number.
#pragma once

#include <unistd.h>

#include <memory>

namespace troupe::detail {

struct descriptor {
  int fd;
  explicit descriptor(int f) noexcept : fd(f) {}
  descriptor(const descriptor&) = delete;
  descriptor& operator=(const descriptor&) = delete;
  ~descriptor() {
    if (fd >= 0) ::close(fd);
  }
};
using shared_descriptor = std::shared_ptr<descriptor>;

}  // namespace troupe::detail
