// Shared by peers_net_servers.cpp and peers_net_client.cpp: socket and
// liburing helpers of the network peers (internal to test/bench).
#pragma once

#include "peers_net.hpp"
#include "harness.hpp"
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <future>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>
#include <boost/asio.hpp>
#include "harness.hpp"

namespace bench::peers::net_detail {


inline constexpr std::size_t kConnBuffer = 64 * 1024;  // per-connection server buffer
inline constexpr int kUdpSlots = 1;  // recvmsg armed per UDP socket: see peers_net.hpp
inline constexpr auto kSetupLimit = std::chrono::seconds(10);

inline std::string errno_text(int e) { return std::strerror(e); }

[[noreturn]] inline void fail_errno(const std::string& what, int e) { fail(what + ": " + errno_text(e)); }

inline double thread_cpu_seconds(clockid_t id) {
  timespec ts{};
  if (clock_gettime(id, &ts) != 0) fail_errno("clock_gettime(thread cpu clock)", errno);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

inline double this_thread_cpu_seconds() { return thread_cpu_seconds(CLOCK_THREAD_CPUTIME_ID); }
/// Every thread of this process: the client's plus the in-process server's.
inline double process_cpu_seconds() { return thread_cpu_seconds(CLOCK_PROCESS_CPUTIME_ID); }

inline std::uint64_t splitmix64(std::uint64_t x) noexcept {
  std::uint64_t z = x + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

inline void set_nodelay(int fd) {
  int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) fail_errno("setsockopt(TCP_NODELAY)", errno);
}

// A socket of `type` bound to 127.0.0.1:0 (listening if TCP); returns the fd
// and stores the port.
inline int bound_socket(int type, std::uint16_t* port) {
  int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) fail_errno("socket", errno);
  int one = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) fail_errno("setsockopt(SO_REUSEADDR)", errno);
  sockaddr_in a = loopback(0);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fail_errno("bind 127.0.0.1:0", errno);
  if (type == SOCK_STREAM && ::listen(fd, SOMAXCONN) != 0) fail_errno("listen", errno);
  socklen_t len = sizeof a;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) fail_errno("getsockname", errno);
  *port = ntohs(a.sin_port);
  return fd;
}

// A blocking TCP connection to 127.0.0.1:port with TCP_NODELAY.
inline int connect_tcp(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail_errno("socket", errno);
  sockaddr_in a = loopback(port);
  while (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    if (errno != EINTR) fail_errno("connect to 127.0.0.1:" + std::to_string(port), errno);
  set_nodelay(fd);
  return fd;
}

inline void close_fd(int fd) {
  if (fd >= 0 && ::close(fd) != 0 && errno != EINTR) fail_errno("close", errno);
}

// Errors a peer may legitimately see on a connection (the other side went
// away); anything else is a bug and fails the benchmark.
inline bool connection_gone(int e) { return e == ECONNRESET || e == EPIPE || e == ECANCELED || e == ETIMEDOUT; }

// --- liburing helpers ---------------------------------------------------------

// Troupe's default ring setup (SINGLE_ISSUER|COOP_TASKRUN|TASKRUN_FLAG),
// falling back on -EINVAL; created by the thread that will use it.
inline void make_ring(io_uring* ring, unsigned entries) {
  const unsigned tries[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
      IORING_SETUP_COOP_TASKRUN,
      0,
  };
  int err = 0;
  for (unsigned flags : tries) {
    io_uring_params p{};
    p.flags = flags;
    err = io_uring_queue_init_params(entries, ring, &p);
    if (err == 0) return;
    if (err != -EINVAL) break;
  }
  fail_errno("io_uring_queue_init_params", -err);
}

inline void submit_and_wait(io_uring* ring, unsigned n) {
  for (;;) {
    int r = io_uring_submit_and_wait(ring, n);
    if (r >= 0) return;
    if (r != -EINTR && r != -EAGAIN && r != -EBUSY) fail_errno("io_uring_submit_and_wait", -r);
  }
}

inline io_uring_sqe* get_sqe(io_uring* ring) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (sqe) return sqe;
  int r = io_uring_submit(ring);
  if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) fail_errno("io_uring_submit", -r);
  sqe = io_uring_get_sqe(ring);
  if (!sqe) fail("no SQE after io_uring_submit");
  return sqe;
}

inline constexpr std::uint64_t kKindMask = 7;

inline std::uint64_t tag(const void* p, unsigned kind) {
  return std::uint64_t(reinterpret_cast<std::uintptr_t>(p)) | kind;
}
template <class T>
T* tag_ptr(std::uint64_t t) {
  return reinterpret_cast<T*>(std::uintptr_t(t & ~kKindMask));
}


}  // namespace bench::peers::net_detail

namespace bench::peers {

// The base of every peer server (peers_net_servers.cpp, peers_net_caf.cpp):
// owns the server's thread and what the handle asks of it.
class echo_server_handle::impl {
 public:
  virtual ~impl() = default;
  std::uint16_t port() const noexcept { return port_; }
  // The server thread's CPU time; a server whose work runs on other threads
  // (CAF) overrides it to add theirs.
  virtual double cpu_seconds() const {
    if (!thread_.joinable()) return final_cpu_;
    clockid_t id;
    if (int e = pthread_getcpuclockid(const_cast<std::thread&>(thread_).native_handle(), &id); e != 0)
      net_detail::fail_errno("pthread_getcpuclockid", e);
    return net_detail::thread_cpu_seconds(id);
  }
  void stop() noexcept {
    if (!thread_.joinable()) return;
    final_cpu_ = cpu_seconds();
    request_stop();
    thread_.join();
  }

 protected:
  // Runs body(ready) on a thread pinned to `cpu`; body sets `ready` once it
  // can serve.  Returns when it has.
  template <class Body>
  void launch(const char* what, int cpu, Body body) {
    std::promise<void> ready;
    auto f = ready.get_future();
    thread_ = std::thread([this, cpu, body, r = std::move(ready)]() mutable {
      pin(cpu);
      body(r);
    });
    if (f.wait_for(net_detail::kSetupLimit) != std::future_status::ready)
      fail(std::string(what) + ": server did not start");
  }
  // Makes the server thread's loop return soon; called from the owner thread.
  virtual void request_stop() noexcept = 0;

  std::uint16_t port_ = 0;

 private:
  std::thread thread_;
  double final_cpu_ = 0;
};

}  // namespace bench::peers
