// Helpers shared by the I/O suites: a scratch directory, descriptor
// counting, byte conversions, and a worker actor that runs a test's job.
#pragma once

#include <troupe/actor.hpp>
#include <troupe/io.hpp>

#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <string>

namespace troupe_test {

using namespace std::chrono_literals;
namespace stdfs = std::filesystem;
using troupe::actor;
namespace io = troupe::io;

/// A fresh directory, removed with everything in it at the end.
struct scratch {
  stdfs::path dir;
  scratch() {
    char tmpl[] = "/tmp/troupe-fs-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~scratch() { stdfs::remove_all(dir); }
  std::string operator/(const std::string& name) const { return (dir / name).string(); }
};

inline int open_fds() {
  int n = 0;
  for (auto& e : stdfs::directory_iterator("/proc/self/fd")) {
    (void)e;
    ++n;
  }
  return n;
}

inline io::bytes bytes_of(const std::string& s) {
  io::bytes b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}
inline std::string string_of(const io::bytes& b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

/// Another program's listener, made with plain system calls: TCP on
/// 127.0.0.1, a free port, with or without SO_REUSEPORT. Non-blocking, so
/// that the test can count the connections it got.
class foreign_listener {
 public:
  explicit foreign_listener(bool reuse_port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int on = 1;
    if (reuse_port) ::setsockopt(fd_, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(fd_, 128) == 0;
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~foreign_listener() { ::close(fd_); }
  foreign_listener(const foreign_listener&) = delete;
  foreign_listener& operator=(const foreign_listener&) = delete;

  bool ok() const { return ok_; }
  std::uint16_t port() const { return port_; }
  /// Accepts (and closes) every connection waiting; how many there were.
  int accept_all() {
    int n = 0;
    for (int c; (c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC)) >= 0; ++n) ::close(c);
    return n;
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
  std::uint16_t port_ = 0;
};

/// Runs a job inside an actor: tests write their I/O as continuations.
class worker;
struct job {
  std::function<void(worker&)> run;
};

class worker : public actor<worker> {
 public:
  void on(const job& j) { j.run(*this); }
};

/// The test thread waits for the actor's verdict.
template <class T>
T await(std::future<T>& f) {
  BOOST_REQUIRE(f.wait_for(20s) == std::future_status::ready);
  return f.get();
}

}  // namespace troupe_test
