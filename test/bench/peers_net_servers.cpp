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
//
// This file: the peer servers (liburing, Boost.Asio) and their handle.
#include "peers_net_common.hpp"

#include <boost/asio.hpp>

namespace bench::peers {

using namespace net_detail;

// --- the handle -----------------------------------------------------------------

// echo_server_handle::impl, the base of every server, is in peers_net_common.hpp.

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


}  // namespace bench::peers
