// Network peers (no troupe code).  See peers_net.hpp.
//
// Design.  Every server is an `echo_server_handle::impl` owning one thread.
// The liburing servers share `uring_server`: one ring, an eventfd read that
// the destructor completes to stop the loop, and an in-flight count (every
// SQE that will post a CQE counts until its last CQE).  Stopping cancels
// every outstanding operation by user_data and keeps reaping until the count
// is zero, so no kernel write can land in a buffer after it is freed.  The
// user_data of an operation is the address of the object it works on (8-byte
// aligned) ORed with a 3-bit kind.  A connection has at most one operation in
// flight, so its object can be freed as soon as that operation's CQE is
// reaped.
//
// The load client follows the same rules: one ring, one thread, every byte
// checked, nothing left in flight when it returns.
#include "peers_net.hpp"

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

namespace bench::peers {

namespace {

constexpr std::size_t kConnBuffer = 64 * 1024;  // per-connection server buffer
constexpr int kUdpSlots = 1;  // recvmsg armed per UDP socket: see peers_net.hpp
constexpr auto kSetupLimit = std::chrono::seconds(10);

std::string errno_text(int e) { return std::strerror(e); }

[[noreturn]] void fail_errno(const std::string& what, int e) { fail(what + ": " + errno_text(e)); }

double thread_cpu_seconds(clockid_t id) {
  timespec ts{};
  if (clock_gettime(id, &ts) != 0) fail_errno("clock_gettime(thread cpu clock)", errno);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

double this_thread_cpu_seconds() { return thread_cpu_seconds(CLOCK_THREAD_CPUTIME_ID); }

std::uint64_t splitmix64(std::uint64_t x) noexcept {
  std::uint64_t z = x + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

void set_nodelay(int fd) {
  int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) fail_errno("setsockopt(TCP_NODELAY)", errno);
}

// A socket of `type` bound to 127.0.0.1:0 (listening if TCP); returns the fd
// and stores the port.
int bound_socket(int type, std::uint16_t* port) {
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
int connect_tcp(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail_errno("socket", errno);
  sockaddr_in a = loopback(port);
  while (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    if (errno != EINTR) fail_errno("connect to 127.0.0.1:" + std::to_string(port), errno);
  set_nodelay(fd);
  return fd;
}

void close_fd(int fd) {
  if (fd >= 0 && ::close(fd) != 0 && errno != EINTR) fail_errno("close", errno);
}

// Errors a peer may legitimately see on a connection (the other side went
// away); anything else is a bug and fails the benchmark.
bool connection_gone(int e) { return e == ECONNRESET || e == EPIPE || e == ECANCELED || e == ETIMEDOUT; }

// --- liburing helpers ---------------------------------------------------------

// Troupe's default ring setup (SINGLE_ISSUER|COOP_TASKRUN|TASKRUN_FLAG),
// falling back on -EINVAL; created by the thread that will use it.
void make_ring(io_uring* ring, unsigned entries) {
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

void submit_and_wait(io_uring* ring, unsigned n) {
  for (;;) {
    int r = io_uring_submit_and_wait(ring, n);
    if (r >= 0) return;
    if (r != -EINTR && r != -EAGAIN && r != -EBUSY) fail_errno("io_uring_submit_and_wait", -r);
  }
}

io_uring_sqe* get_sqe(io_uring* ring) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (sqe) return sqe;
  int r = io_uring_submit(ring);
  if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) fail_errno("io_uring_submit", -r);
  sqe = io_uring_get_sqe(ring);
  if (!sqe) fail("no SQE after io_uring_submit");
  return sqe;
}

constexpr std::uint64_t kKindMask = 7;

inline std::uint64_t tag(const void* p, unsigned kind) {
  return std::uint64_t(reinterpret_cast<std::uintptr_t>(p)) | kind;
}
template <class T>
inline T* tag_ptr(std::uint64_t t) {
  return reinterpret_cast<T*>(std::uintptr_t(t & ~kKindMask));
}

}  // namespace

// --- the handle -----------------------------------------------------------------

class echo_server_handle::impl {
 public:
  virtual ~impl() = default;
  std::uint16_t port() const noexcept { return port_; }
  double cpu_seconds() const {
    if (!thread_.joinable()) return final_cpu_;
    clockid_t id;
    if (int e = pthread_getcpuclockid(const_cast<std::thread&>(thread_).native_handle(), &id); e != 0)
      fail_errno("pthread_getcpuclockid", e);
    return thread_cpu_seconds(id);
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
    if (f.wait_for(kSetupLimit) != std::future_status::ready) fail(std::string(what) + ": server did not start");
  }
  // Makes the server thread's loop return soon; called from the owner thread.
  virtual void request_stop() noexcept = 0;

  std::uint16_t port_ = 0;

 private:
  std::thread thread_;
  double final_cpu_ = 0;
};

echo_server_handle::echo_server_handle() noexcept = default;
echo_server_handle::echo_server_handle(std::unique_ptr<impl> server) noexcept : impl_(std::move(server)) {}
echo_server_handle::echo_server_handle(echo_server_handle&&) noexcept = default;
echo_server_handle& echo_server_handle::operator=(echo_server_handle&& o) noexcept {
  if (this != &o) {
    stop();
    impl_ = std::move(o.impl_);
  }
  return *this;
}
echo_server_handle::~echo_server_handle() { stop(); }
std::uint16_t echo_server_handle::port() const noexcept { return impl_ ? impl_->port() : 0; }
double echo_server_handle::cpu_seconds() const { return impl_ ? impl_->cpu_seconds() : 0.0; }
void echo_server_handle::stop() noexcept {
  if (impl_) impl_->stop();
}

namespace {

// --- liburing servers -----------------------------------------------------------

// The loop shared by the liburing servers.  Kinds 6 and 7 are the base's.
class uring_server : public echo_server_handle::impl {
 protected:
  static constexpr unsigned kCancel = 6, kStop = 7;

  uring_server() {
    stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
    if (stop_fd_ < 0) fail_errno("eventfd", errno);
  }
  ~uring_server() override { close_fd(stop_fd_); }

  void request_stop() noexcept override {
    std::uint64_t one = 1;
    while (::write(stop_fd_, &one, sizeof one) < 0 && errno == EINTR) {
    }
  }

  // An SQE whose CQE(s) the loop waits for before it may exit.
  io_uring_sqe* sqe(std::uint64_t user_data) {
    io_uring_sqe* s = get_sqe(&ring_);
    io_uring_sqe_set_data64(s, user_data);
    ++inflight_;
    return s;
  }
  void cancel(std::uint64_t user_data) { io_uring_prep_cancel64(sqe(tag(this, kCancel)), user_data, 0); }

  // Runs the loop on the calling (server) thread.
  void run(std::promise<void>& ready, const char* what) {
    make_ring(&ring_, 256);
    io_uring_prep_read(sqe(tag(this, kStop)), stop_fd_, &stop_value_, sizeof stop_value_, 0);
    arm();
    submit_and_wait(&ring_, 0);
    ready.set_value();
    while (!stopping_ || inflight_ > 0) {
      submit_and_wait(&ring_, 1);
      unsigned head, seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        if (!(cqe->flags & IORING_CQE_F_MORE)) --inflight_;
        const unsigned kind = unsigned(cqe->user_data & kKindMask);
        if (kind == kStop) {
          if (cqe->res != int(sizeof stop_value_)) fail(std::string(what) + ": stop eventfd read failed");
          stopping_ = true;
          cancel_all();
        } else if (kind == kCancel) {
          if (cqe->res < 0 && cqe->res != -ENOENT && cqe->res != -EALREADY)
            fail_errno(std::string(what) + ": cancel", -cqe->res);
        } else {
          on_cqe(cqe, kind);
        }
      }
      io_uring_cq_advance(&ring_, seen);
    }
    io_uring_queue_exit(&ring_);
  }

  virtual void arm() = 0;                                        // first operations
  virtual void on_cqe(const io_uring_cqe* cqe, unsigned kind) = 0;  // kinds 0..5
  virtual void cancel_all() = 0;                                 // cancel everything in flight

  io_uring ring_{};
  bool stopping_ = false;

 private:
  int stop_fd_ = -1;
  std::uint64_t stop_value_ = 0;
  long inflight_ = 0;
};

// TCP echo or sink (see peers_net.hpp for the protocols).
class uring_tcp_server final : public uring_server {
 public:
  enum class mode { echo, sink };

  uring_tcp_server(int cpu, mode m) : mode_(m) {
    listen_fd_ = bound_socket(SOCK_STREAM, &port_);
    launch(name(), cpu, [this](std::promise<void>& ready) {
      run(ready, name());
      close_fd(std::exchange(listen_fd_, -1));
    });
  }
  ~uring_tcp_server() override {
    stop();
    close_fd(listen_fd_);  // if the thread never ran
  }

 private:
  static constexpr unsigned kAccept = 0, kRecv = 1, kSend = 2;

  struct conn {
    int fd;
    std::size_t index;        // in live_
    std::uint64_t op;         // user_data of the operation in flight
    std::uint32_t len = 0;    // bytes to send from buf
    std::uint32_t off = 0;    // bytes of them sent
    std::uint64_t count = 0;  // sink: bytes received
    bool closing = false;     // sink: the count is being sent
    std::unique_ptr<std::byte[]> buf{new std::byte[kConnBuffer]};
  };

  const char* name() const { return mode_ == mode::echo ? "raw_uring echo" : "raw_uring sink"; }

  void arm() override { arm_accept(); }

  void arm_accept() {
    io_uring_sqe* s = sqe(tag(this, kAccept));
    if (multishot_)
      io_uring_prep_multishot_accept(s, listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    else
      io_uring_prep_accept(s, listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    accept_armed_ = true;
  }
  void arm_recv(conn* c) {
    c->op = tag(c, kRecv);
    io_uring_prep_recv(sqe(c->op), c->fd, c->buf.get(), kConnBuffer, 0);
  }
  void arm_send(conn* c) {
    c->op = tag(c, kSend);
    io_uring_prep_send(sqe(c->op), c->fd, c->buf.get() + c->off, c->len - c->off, MSG_NOSIGNAL);
  }

  void cancel_all() override {
    if (accept_armed_) cancel(tag(this, kAccept));
    for (conn* c : live_) cancel(c->op);
  }

  void close_conn(conn* c) {
    close_fd(c->fd);
    live_[c->index] = live_.back();
    live_[c->index]->index = c->index;
    live_.pop_back();
    delete c;
  }

  void on_cqe(const io_uring_cqe* cqe, unsigned kind) override {
    if (kind == kAccept) return on_accept(cqe);
    conn* c = tag_ptr<conn>(cqe->user_data);
    const int res = cqe->res;
    if (res < 0) {
      if (!connection_gone(-res)) fail_errno(std::string(name()) + (kind == kRecv ? ": recv" : ": send"), -res);
      return close_conn(c);
    }
    if (stopping_) return close_conn(c);
    if (kind == kRecv) {
      if (res == 0) {  // EOF
        if (mode_ == mode::echo) return close_conn(c);
        std::memcpy(c->buf.get(), &c->count, sizeof c->count);
        c->len = sizeof c->count;
        c->off = 0;
        c->closing = true;
        return arm_send(c);
      }
      if (mode_ == mode::sink) {
        c->count += std::uint64_t(res);
        return arm_recv(c);
      }
      c->len = std::uint32_t(res);
      c->off = 0;
      return arm_send(c);
    }
    c->off += std::uint32_t(res);
    if (c->off < c->len) return arm_send(c);  // partial send: the rest
    if (c->closing) return close_conn(c);
    arm_recv(c);
  }

  void on_accept(const io_uring_cqe* cqe) {
    const bool more = cqe->flags & IORING_CQE_F_MORE;
    if (!more) accept_armed_ = false;
    if (cqe->res >= 0) {
      ++accepted_;
      auto* c = new conn{cqe->res, live_.size(), 0};
      live_.push_back(c);
      set_nodelay(c->fd);
      if (stopping_) return close_conn(c);
      arm_recv(c);
    } else if (cqe->res == -EINVAL && multishot_ && accepted_ == 0) {
      multishot_ = false;  // the kernel has no multishot accept: re-armed single accepts
    } else if (cqe->res != -ECANCELED && cqe->res != -ECONNABORTED && cqe->res != -EINTR) {
      fail_errno(std::string(name()) + ": accept", -cqe->res);
    }
    if (!more && !stopping_) arm_accept();
  }

  mode mode_;
  int listen_fd_ = -1;
  bool multishot_ = true;
  bool accept_armed_ = false;
  long accepted_ = 0;
  std::vector<conn*> live_;
};

// UDP echo: kUdpSlots slots, each cycling recvmsg -> sendmsg to the source.
class uring_udp_server final : public uring_server {
 public:
  explicit uring_udp_server(int cpu) {
    fd_ = bound_socket(SOCK_DGRAM, &port_);
    launch("raw_uring udp echo", cpu, [this](std::promise<void>& ready) {
      run(ready, "raw_uring udp echo");
      close_fd(std::exchange(fd_, -1));
    });
  }
  ~uring_udp_server() override {
    stop();
    close_fd(fd_);  // if the thread never ran
  }

 private:
  static constexpr unsigned kRecv = 0, kSend = 1;

  struct alignas(8) slot {
    sockaddr_in from{};
    iovec iov{};
    msghdr msg{};
    std::unique_ptr<std::byte[]> buf{new std::byte[kConnBuffer]};
    unsigned kind = kRecv;  // of the operation in flight
    bool in_flight = false;
  };

  void arm() override {
    for (slot& s : slots_) arm_recv(&s);
  }
  void arm_recv(slot* s) {
    s->iov = {s->buf.get(), kConnBuffer};
    s->msg = {};
    s->msg.msg_name = &s->from;
    s->msg.msg_namelen = sizeof s->from;
    s->msg.msg_iov = &s->iov;
    s->msg.msg_iovlen = 1;
    io_uring_prep_recvmsg(sqe(tag(s, kRecv)), fd_, &s->msg, 0);
    s->kind = kRecv;
    s->in_flight = true;
  }
  void cancel_all() override {
    for (slot& s : slots_)
      if (s.in_flight) cancel(tag(&s, s.kind));
  }
  void on_cqe(const io_uring_cqe* cqe, unsigned kind) override {
    slot* s = tag_ptr<slot>(cqe->user_data);
    s->in_flight = false;
    if (stopping_) return;
    if (cqe->res < 0)
      fail_errno(std::string("raw_uring udp echo: ") + (kind == kRecv ? "recvmsg" : "sendmsg"), -cqe->res);
    if (kind == kRecv) {
      if (s->msg.msg_flags & MSG_TRUNC) fail("raw_uring udp echo: datagram larger than 64 KiB");
      s->iov.iov_len = std::size_t(cqe->res);
      io_uring_prep_sendmsg(sqe(tag(s, kSend)), fd_, &s->msg, 0);
      s->kind = kSend;
      s->in_flight = true;
      return;
    }
    arm_recv(s);
  }

  int fd_ = -1;
  std::array<slot, kUdpSlots> slots_;
};

// --- Boost.Asio servers -----------------------------------------------------------

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

bool asio_gone(const boost::system::error_code& ec) {
  return ec == asio::error::eof || ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::operation_aborted;
}

class asio_server : public echo_server_handle::impl {
 protected:
  // Runs the io_context on the pinned server thread; `start` queues the first
  // operations from that thread.  After a stop, close_all() closes every
  // socket on that thread and the io_context runs again until the aborted
  // handlers have run, so every socket is closed and every session freed
  // before stop() returns.
  template <class Start>
  void launch_io(const char* what, int cpu, Start start) {
    launch(what, cpu, [this, start, what](std::promise<void>& ready) {
      start();
      ready.set_value();
      try {
        io_.run();
        stopping_ = true;
        close_all();
        io_.restart();
        io_.run();
      } catch (const std::exception& e) {
        fail(std::string(what) + ": " + e.what());
      }
    });
  }
  void request_stop() noexcept override { io_.stop(); }
  virtual void close_all() = 0;

  asio::io_context io_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  bool stopping_ = false;  // server thread only
};

class asio_tcp_server final : public asio_server {
 public:
  enum class mode { echo, sink };

  asio_tcp_server(int cpu, mode m) : mode_(m), acceptor_(io_) {
    const tcp::endpoint ep(asio::ip::address_v4::loopback(), 0);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen(asio::socket_base::max_listen_connections);
    port_ = acceptor_.local_endpoint().port();
    launch_io(name(), cpu, [this] { accept(); });
  }
  ~asio_tcp_server() override {
    stop();
    check(sessions_.empty(), std::string(name()) + ": sessions left after the stop");
  }

 private:
  struct session : std::enable_shared_from_this<session> {
    session(asio_tcp_server* owner, tcp::socket s) : server(owner), socket(std::move(s)) {
      server->sessions_.insert(this);
    }
    ~session() { server->sessions_.erase(this); }
    asio_tcp_server* server;
    tcp::socket socket;
    std::uint64_t count = 0;
    std::unique_ptr<char[]> buf{new char[kConnBuffer]};

    void read() {
      socket.async_read_some(asio::buffer(buf.get(), kConnBuffer),
                             [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                               self->on_read(ec, n);
                             });
    }
    void on_read(boost::system::error_code ec, std::size_t n) {
      if (server->stopping_) return;
      if (ec == asio::error::eof && server->mode_ == mode::sink) {
        std::memcpy(buf.get(), &count, sizeof count);
        return write(sizeof count, false);
      }
      if (ec) {
        if (!asio_gone(ec)) fail("asio tcp: read: " + ec.message());
        return;
      }
      if (server->mode_ == mode::sink) {
        count += n;
        return read();
      }
      write(n, true);
    }
    void write(std::size_t n, bool then_read) {
      asio::async_write(socket, asio::buffer(buf.get(), n),
                        [self = shared_from_this(), then_read](boost::system::error_code ec, std::size_t) {
                          if (self->server->stopping_) return;
                          if (ec) {
                            if (!asio_gone(ec)) fail("asio tcp: write: " + ec.message());
                            return;
                          }
                          if (then_read) self->read();
                        });
    }
  };

  const char* name() const { return mode_ == mode::echo ? "asio echo" : "asio sink"; }

  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (stopping_) return;
      if (ec && ec != asio::error::connection_aborted) fail(std::string(name()) + ": accept: " + ec.message());
      if (!ec) {
        s.set_option(tcp::no_delay(true));
        std::make_shared<session>(this, std::move(s))->read();
      }
      accept();
    });
  }

  void close_all() override {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    for (session* s : sessions_) s->socket.close(ignored);
  }

  mode mode_;
  tcp::acceptor acceptor_;
  std::unordered_set<session*> sessions_;  // server thread only
};

class asio_udp_server final : public asio_server {
 public:
  explicit asio_udp_server(int cpu)
      : socket_(io_, udp::endpoint(asio::ip::address_v4::loopback(), 0)), buf_(new char[kConnBuffer]) {
    port_ = socket_.local_endpoint().port();
    launch_io("asio udp echo", cpu, [this] { receive(); });
  }
  ~asio_udp_server() override { stop(); }

 private:
  void receive() {
    socket_.async_receive_from(asio::buffer(buf_.get(), kConnBuffer), from_,
                               [this](boost::system::error_code ec, std::size_t n) {
                                 if (stopping_) return;
                                 if (ec) fail("asio udp echo: receive: " + ec.message());
                                 socket_.async_send_to(asio::buffer(buf_.get(), n), from_,
                                                       [this](boost::system::error_code ec2, std::size_t) {
                                                         if (stopping_) return;
                                                         if (ec2) fail("asio udp echo: send: " + ec2.message());
                                                         receive();
                                                       });
                               });
  }
  void close_all() override {
    boost::system::error_code ignored;
    socket_.close(ignored);
  }

  udp::socket socket_;
  udp::endpoint from_;
  std::unique_ptr<char[]> buf_;
};

}  // namespace

echo_server_handle start_raw_uring_echo(int cpu) {
  return echo_server_handle(std::make_unique<uring_tcp_server>(cpu, uring_tcp_server::mode::echo));
}
echo_server_handle start_raw_uring_sink(int cpu) {
  return echo_server_handle(std::make_unique<uring_tcp_server>(cpu, uring_tcp_server::mode::sink));
}
echo_server_handle start_asio_echo(int cpu) {
  return echo_server_handle(std::make_unique<asio_tcp_server>(cpu, asio_tcp_server::mode::echo));
}
echo_server_handle start_asio_sink(int cpu) {
  return echo_server_handle(std::make_unique<asio_tcp_server>(cpu, asio_tcp_server::mode::sink));
}
echo_server_handle start_raw_uring_udp_echo(int cpu) {
  return echo_server_handle(std::make_unique<uring_udp_server>(cpu));
}
echo_server_handle start_asio_udp_echo(int cpu) {
  return echo_server_handle(std::make_unique<asio_udp_server>(cpu));
}

// --- the load client ----------------------------------------------------------------

namespace {

// Runs body() on one thread pinned to `cpu` under a watchdog.
template <class Body>
void run_pinned(const std::string& what, int cpu, std::chrono::seconds limit, Body body) {
  watchdog w(what, limit);
  std::thread t([&] {
    pin(cpu);
    body();
  });
  t.join();
}

struct ring_guard {
  io_uring* ring;
  ~ring_guard() { io_uring_queue_exit(ring); }
};

// Message `seq` of connection `id`: seq, id, a magic word, then a pattern
// derived from both.
void fill_message(std::byte* p, std::size_t size, std::uint32_t id, std::uint64_t seq) {
  constexpr std::uint32_t kMagic = 0x7e40ec40;
  std::memcpy(p, &seq, 8);
  std::memcpy(p + 8, &id, 4);
  std::memcpy(p + 12, &kMagic, 4);
  std::uint64_t h = splitmix64(seq ^ (std::uint64_t(id) << 40));
  for (std::size_t j = 16; j < size; j += 8, h += 0x9e3779b97f4a7c15ull)
    std::memcpy(p + j, &h, std::min<std::size_t>(8, size - j));
}

// Percentile `q` (0..1) of `v` (reordered), in microseconds.
double percentile_us(std::vector<std::uint32_t>& v, double q) {
  if (v.empty()) return 0;
  auto k = std::size_t(q * double(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + long(k), v.end());
  return double(v[k]) / 1000.0;
}

double mean_us(const std::vector<std::uint32_t>& v) {
  if (v.empty()) return 0;
  return double(std::accumulate(v.begin(), v.end(), std::uint64_t(0))) / double(v.size()) / 1000.0;
}

std::uint32_t ns_between(clock::time_point a, clock::time_point b) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count();
  return std::uint32_t(std::clamp<std::int64_t>(ns, 0, UINT32_MAX));
}

class echo_client {
 public:
  echo_client(std::uint16_t port, const echo_load_options& o) : o_(o), msg_(o.message_size) {
    make_ring(&ring_, 4 * unsigned(o.connections) + 8);
    for (int i = 0; i < o.connections; ++i) {
      auto c = std::make_unique<conn>();
      c->fd = connect_tcp(port);
      c->id = std::uint32_t(i);
      const std::size_t window = std::size_t(o.depth) * msg_;
      c->sbuf.reset(new std::byte[window]);
      c->rbuf_len = std::max<std::size_t>(window, 4096);
      c->rbuf.reset(new std::byte[c->rbuf_len]);
      c->expect.reset(new std::byte[msg_]);
      c->sent_at.resize(std::size_t(o.depth));
      conns_.push_back(std::move(c));
    }
  }
  ~echo_client() {
    for (auto& c : conns_) close_fd(c->fd);
    io_uring_queue_exit(&ring_);
  }

  echo_load_result run() {
    auto now = clock::now();
    const auto warm_end = now + o_.warmup;
    clock::time_point t0, t1;
    double cpu0 = 0, cpu1 = 0;
    enum { warming, measuring, draining } phase = warming;
    lat_.reserve(1 << 20);
    for (auto& c : conns_) {
      arm_recv(c.get());
      refill(c.get(), now);
    }
    long busy = long(conns_.size());  // connections with messages in flight or a send busy
    while (phase != draining || busy > 0) {
      submit_and_wait(&ring_, 1);
      now = clock::now();
      if (phase == warming && now >= warm_end) {
        phase = measuring;
        t0 = now;
        cpu0 = this_thread_cpu_seconds();
      }
      unsigned head, seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        conn* c = tag_ptr<conn>(cqe->user_data);
        const bool was_busy = c->busy();
        if ((cqe->user_data & kKindMask) == kRecv) {
          if (cqe->res <= 0)
            fail("tcp echo load: recv: " + (cqe->res == 0 ? std::string("EOF before all echoes") : errno_text(-cqe->res)));
          consume(c, std::size_t(cqe->res), now, phase == measuring);
          arm_recv(c);
        } else {
          if (cqe->res <= 0) fail("tcp echo load: send: " + errno_text(cqe->res == 0 ? EIO : -cqe->res));
          c->soff += std::size_t(cqe->res);
          if (c->soff < c->slen)
            arm_send(c);
          else
            c->send_busy = false;
        }
        if (phase != draining) refill(c, now);
        if (was_busy && !c->busy()) --busy;
      }
      io_uring_cq_advance(&ring_, seen);
      if (phase == measuring &&
          ((o_.messages > 0 && long(lat_.size()) >= o_.messages) || (o_.messages <= 0 && now - t0 >= o_.duration))) {
        phase = draining;
        t1 = now;
        cpu1 = this_thread_cpu_seconds();
      }
    }
    finish();
    echo_load_result r;
    r.seconds = std::chrono::duration<double>(t1 - t0).count();
    r.messages = long(lat_.size());
    check(r.messages > 0 && r.seconds > 0, "tcp echo load: no message completed in the measured window");
    r.msgs_per_s = double(r.messages) / r.seconds;
    r.client_cpu = (cpu1 - cpu0) / r.seconds;
    r.mean_us = mean_us(lat_);
    r.p50_us = percentile_us(lat_, 0.50);
    r.p99_us = percentile_us(lat_, 0.99);
    return r;
  }

 private:
  static constexpr unsigned kRecv = 0, kSend = 1;

  struct conn {
    int fd = -1;
    std::uint32_t id = 0;
    std::uint64_t sent = 0;    // messages handed to send so far
    std::uint64_t echoed = 0;  // messages echoed completely
    std::size_t rpos = 0;      // bytes of message `echoed` received
    bool send_busy = false;
    std::size_t soff = 0, slen = 0;
    std::size_t rbuf_len = 0;
    std::unique_ptr<std::byte[]> sbuf, rbuf, expect;
    std::vector<clock::time_point> sent_at;  // by seq % depth
    bool busy() const { return send_busy || echoed != sent; }
  };

  void arm_recv(conn* c) {
    io_uring_sqe* s = get_sqe(&ring_);
    io_uring_prep_recv(s, c->fd, c->rbuf.get(), c->rbuf_len, 0);
    io_uring_sqe_set_data64(s, tag(c, kRecv));
  }
  void arm_send(conn* c) {
    io_uring_sqe* s = get_sqe(&ring_);
    io_uring_prep_send(s, c->fd, c->sbuf.get() + c->soff, c->slen - c->soff, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, tag(c, kSend));
  }

  // Sends new messages for the free slots of `c`'s window, as one send.
  void refill(conn* c, clock::time_point now) {
    if (c->send_busy) return;
    const std::uint64_t k = std::uint64_t(o_.depth) - (c->sent - c->echoed);
    if (k == 0) return;
    for (std::uint64_t i = 0; i < k; ++i) {
      fill_message(c->sbuf.get() + i * msg_, msg_, c->id, c->sent + i);
      c->sent_at[(c->sent + i) % std::uint64_t(o_.depth)] = now;
    }
    c->sent += k;
    c->soff = 0;
    c->slen = std::size_t(k) * msg_;
    c->send_busy = true;
    arm_send(c);
  }

  // Checks `n` received bytes of `c` and completes the messages they end.
  void consume(conn* c, std::size_t n, clock::time_point now, bool record) {
    const std::byte* p = c->rbuf.get();
    while (n > 0) {
      if (c->echoed == c->sent) fail("tcp echo load: more bytes echoed than sent on connection " + std::to_string(c->id));
      if (c->rpos == 0) fill_message(c->expect.get(), msg_, c->id, c->echoed);
      const std::size_t take = std::min(n, msg_ - c->rpos);
      if (std::memcmp(p, c->expect.get() + c->rpos, take) != 0)
        fail("tcp echo load: wrong bytes in echo of message " + std::to_string(c->echoed) + " on connection " +
             std::to_string(c->id));
      c->rpos += take;
      p += take;
      n -= take;
      if (c->rpos == msg_) {
        if (record) lat_.push_back(ns_between(c->sent_at[c->echoed % std::uint64_t(o_.depth)], now));
        ++c->echoed;
        c->rpos = 0;
      }
    }
  }

  // Half-closes every connection and waits for the server's EOF on each (the
  // recv armed on each connection must complete with 0 bytes).
  void finish() {
    for (auto& c : conns_)
      if (::shutdown(c->fd, SHUT_WR) != 0) fail_errno("tcp echo load: shutdown", errno);
    std::size_t eofs = 0;
    while (eofs < conns_.size()) {
      submit_and_wait(&ring_, 1);
      unsigned head, seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        if (cqe->res != 0) fail("tcp echo load: expected EOF after the last echo, got " + std::to_string(cqe->res));
        ++eofs;
      }
      io_uring_cq_advance(&ring_, seen);
    }
  }

  echo_load_options o_;
  std::size_t msg_;
  io_uring ring_{};
  std::vector<std::unique_ptr<conn>> conns_;
  std::vector<std::uint32_t> lat_;
};

// The tcp_stream pattern: byte i of the stream is byte i % 8 of
// splitmix64(i / 8), with period kPeriod (not a multiple of a write).
constexpr std::size_t kPeriod = (std::size_t(1) << 20) + 104;
constexpr std::size_t kMaxWrite = std::size_t(1) << 24;

std::unique_ptr<std::byte[]> make_pattern(std::size_t extra) {
  std::unique_ptr<std::byte[]> p(new std::byte[kPeriod + extra]);
  for (std::size_t i = 0; i < kPeriod + extra; i += 8) {
    std::uint64_t w = splitmix64((i % kPeriod) / 8);
    std::memcpy(p.get() + i, &w, std::min<std::size_t>(8, kPeriod + extra - i));
  }
  return p;
}

stream_result stream_load(std::uint16_t port, const stream_options& o) {
  const std::size_t ws = std::clamp<std::size_t>(o.write_size, 1, kMaxWrite);  // checked by the caller
  auto pattern = make_pattern(ws);
  std::unique_ptr<std::byte[]> rbuf(new std::byte[ws]);
  io_uring ring;
  make_ring(&ring, 8);
  ring_guard g{&ring};
  const int fd = connect_tcp(port);
  constexpr unsigned kRecv = 0, kSend = 1;
  std::uint64_t sent = 0, got = 0;
  std::size_t in_send = 0;  // bytes of the send in flight
  std::uint64_t count = 0;  // sink: the server's count
  std::size_t count_got = 0;
  auto send_next = [&] {
    in_send = std::size_t(std::min<std::uint64_t>(ws, o.bytes - sent));
    io_uring_sqe* s = get_sqe(&ring);
    io_uring_prep_send(s, fd, pattern.get() + sent % kPeriod, in_send, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, kSend);
  };
  auto recv_next = [&] {
    io_uring_sqe* s = get_sqe(&ring);
    if (o.mode == stream_mode::echo)
      io_uring_prep_recv(s, fd, rbuf.get(), ws, 0);
    else
      io_uring_prep_recv(s, fd, reinterpret_cast<std::byte*>(&count) + count_got, sizeof count - count_got, 0);
    io_uring_sqe_set_data64(s, kRecv);
  };
  const auto t0 = clock::now();
  const double cpu0 = this_thread_cpu_seconds();
  send_next();
  if (o.mode == stream_mode::echo) recv_next();
  bool sending = true, receiving = o.mode == stream_mode::echo;
  while (sending || receiving) {
    submit_and_wait(&ring, 1);
    unsigned head, seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++seen;
      const int res = cqe->res;
      if (cqe->user_data == kSend) {
        if (res <= 0) fail("tcp stream load: send: " + errno_text(res == 0 ? EIO : -res));
        sent += std::uint64_t(res);
        if (std::size_t(res) < in_send) {  // partial: send the rest
          in_send -= std::size_t(res);
          io_uring_sqe* s = get_sqe(&ring);
          io_uring_prep_send(s, fd, pattern.get() + sent % kPeriod, in_send, MSG_NOSIGNAL);
          io_uring_sqe_set_data64(s, kSend);
        } else if (sent < o.bytes) {
          send_next();
        } else {
          sending = false;
          if (::shutdown(fd, SHUT_WR) != 0) fail_errno("tcp stream load: shutdown", errno);
          if (o.mode == stream_mode::sink) {
            receiving = true;
            recv_next();
          }
        }
        continue;
      }
      if (res < 0) fail("tcp stream load: recv: " + errno_text(-res));
      if (o.mode == stream_mode::echo) {
        if (res == 0) fail("tcp stream load: EOF after " + std::to_string(got) + " of " + std::to_string(o.bytes) + " bytes");
        if (got + std::uint64_t(res) > o.bytes) fail("tcp stream load: more bytes echoed than sent");
        if (std::memcmp(rbuf.get(), pattern.get() + got % kPeriod, std::size_t(res)) != 0)
          fail("tcp stream load: wrong bytes echoed at offset " + std::to_string(got));
        got += std::uint64_t(res);
        if (got < o.bytes)
          recv_next();
        else
          receiving = false;
      } else {
        if (res == 0) fail("tcp stream load: EOF before the sink's byte count");
        count_got += std::size_t(res);
        if (count_got < sizeof count)
          recv_next();
        else
          receiving = false;
      }
    }
    io_uring_cq_advance(&ring, seen);
  }
  const auto t1 = clock::now();
  const double cpu1 = this_thread_cpu_seconds();
  if (o.mode == stream_mode::sink)
    check(count == o.bytes, "tcp stream load: the sink counted " + std::to_string(count) + " bytes, sent " +
                                std::to_string(o.bytes));
  // The server closes after its last byte: expect EOF (echo: after shutdown above).
  for (;;) {
    std::byte b[1];
    ssize_t r = ::recv(fd, b, 1, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail_errno("tcp stream load: recv at the end", errno);
    check(r == 0, "tcp stream load: bytes after the end of the stream");
    break;
  }
  close_fd(fd);
  stream_result r;
  r.seconds = std::chrono::duration<double>(t1 - t0).count();
  r.gib_per_s = double(o.bytes) / r.seconds / (1024.0 * 1024.0 * 1024.0);
  r.client_cpu = (cpu1 - cpu0) / r.seconds;
  return r;
}

udp_result udp_load(std::uint16_t port, const udp_options& o) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail_errno("socket(udp)", errno);
  timeval tv{2, 0};
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) fail_errno("setsockopt(SO_RCVTIMEO)", errno);
  sockaddr_in a = loopback(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fail_errno("connect(udp)", errno);
  std::vector<std::byte> out(o.payload), in(o.payload + 1);
  std::vector<std::uint32_t> lat;
  lat.reserve(std::size_t(o.round_trips));
  for (long i = 0; i < o.warmup + o.round_trips; ++i) {
    fill_message(out.data(), o.payload, 0xffffffffu, std::uint64_t(i));
    const auto t0 = clock::now();
    ssize_t r;
    while ((r = ::send(fd, out.data(), out.size(), 0)) < 0 && errno == EINTR) {
    }
    if (r < 0) fail_errno("udp pingpong: send", errno);
    check(std::size_t(r) == out.size(), "udp pingpong: short send");
    while ((r = ::recv(fd, in.data(), in.size(), 0)) < 0 && errno == EINTR) {
    }
    const auto t1 = clock::now();
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      fail("udp pingpong: no reply within 2 s to datagram " + std::to_string(i));
    if (r < 0) fail_errno("udp pingpong: recv", errno);
    if (std::size_t(r) != out.size() || std::memcmp(in.data(), out.data(), out.size()) != 0)
      fail("udp pingpong: wrong reply to datagram " + std::to_string(i));
    if (i >= o.warmup) lat.push_back(ns_between(t0, t1));
  }
  close_fd(fd);
  udp_result r;
  r.mean_us = mean_us(lat);
  r.p50_us = percentile_us(lat, 0.50);
  r.p99_us = percentile_us(lat, 0.99);
  return r;
}

}  // namespace

echo_load_result run_echo_load(std::uint16_t port, const echo_load_options& o) {
  check(o.connections > 0 && o.depth > 0 && o.message_size >= 16, "tcp echo load: bad options");
  const auto limit = std::chrono::duration_cast<std::chrono::seconds>(o.warmup + o.duration) +
                     std::chrono::seconds(o.messages > 0 ? 120 : 30);
  echo_load_result r;
  run_pinned("tcp echo load", o.cpu, limit, [&] { r = echo_client(port, o).run(); });
  return r;
}

stream_result run_stream_load(std::uint16_t port, const stream_options& o) {
  check(o.bytes > 0 && o.write_size > 0 && o.write_size <= kMaxWrite, "tcp stream load: bad options");
  stream_result r;
  run_pinned("tcp stream load", o.cpu, std::chrono::seconds(120), [&] { r = stream_load(port, o); });
  return r;
}

udp_result run_udp_pingpong(std::uint16_t port, const udp_options& o) {
  check(o.round_trips > 0 && o.warmup >= 0 && o.payload >= 16 && o.payload <= 65000, "udp pingpong: bad options");
  udp_result r;
  run_pinned("udp pingpong", o.cpu, std::chrono::seconds(120), [&] { r = udp_load(port, o); });
  return r;
}

}  // namespace bench::peers
