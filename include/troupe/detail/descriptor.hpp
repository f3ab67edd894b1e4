// A descriptor shared by its owner (fs::file, net::socket) and by the
// operations in flight on it: the last one closes it. So a file or socket
// closed (or destroyed) right after a submit keeps its number until the
// kernel is done with it, and an operation can never land on another file
// that reused the number.
#pragma once

#include <unistd.h>

#include <memory>
#include <utility>

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

/// What fs::file and net::socket share: a move-only owner of a shared
/// descriptor, closed when it and every operation holding it are gone.
class owned_descriptor {
 public:
  owned_descriptor() = default;
  explicit owned_descriptor(int fd) : d_(fd >= 0 ? std::make_shared<descriptor>(fd) : nullptr) {}
  owned_descriptor(owned_descriptor&&) noexcept = default;
  owned_descriptor& operator=(owned_descriptor&&) noexcept = default;
  owned_descriptor(const owned_descriptor&) = delete;
  owned_descriptor& operator=(const owned_descriptor&) = delete;

  int fd() const noexcept { return d_ ? d_->fd : -1; }
  explicit operator bool() const noexcept { return fd() >= 0; }
  /// Gives up ownership: the caller closes the descriptor (after the
  /// operations still in flight on it have completed).
  int release() noexcept {
    if (!d_) return -1;
    int fd = std::exchange(d_->fd, -1);
    d_.reset();
    return fd;
  }
  /// For operations: keeps the descriptor open while they are in flight.
  shared_descriptor share() const noexcept { return d_; }
  /// No operation holds the descriptor any more.
  bool sole_owner() const noexcept { return d_ && d_.use_count() == 1; }

 private:
  shared_descriptor d_;
};

}  // namespace troupe::detail
