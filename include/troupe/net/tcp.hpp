// Stream socket operations on the shard's ring, each one small struct
// (io.hpp), used like the file operations:
//
//   submit(net::accept{listener_}).then([this](io::result<net::accepted> a) {...});
//   submit(net::connect{addr}).timeout(2s).then([this](io::result<net::socket> s) {...});
//   submit(net::recv{sock_, 64 * 1024}).then([this](io::result<io::bytes> b) {...});  // empty: peer closed
//   submit(net::send{sock_, std::move(bytes)}).then([this](io::result<net::sent> s) {...});
//
// Each operation owns its buffer and hands it back; errors are the
// kernel's errno (ECONNREFUSED, ECONNRESET, EPIPE...) as values, never a
// SIGPIPE. A deadline is `.timeout(d)` on the submit (a linked timeout).
// These work for TCP and for Unix stream sockets alike. doc/io.md.
#pragma once

#include <troupe/error.hpp>
#include <troupe/io.hpp>
#include <troupe/net/address.hpp>
#include <troupe/net/buffer.hpp>
#include <troupe/net/socket.hpp>

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <utility>

namespace troupe::net {

/// What an accept hands over.
struct accepted {
  net::socket socket;
  address peer;
};

/// accept4(2) on a listening socket (the new socket close-on-exec).
struct accept {
  detail::shared_descriptor keep;
  int fd;
  address peer{};

  explicit accept(const socket& listener) : keep(listener.share()), fd(listener.fd()) {}

  using output = accepted;
  void prepare(io_uring_sqe* sqe) {
    *peer.size_slot() = sizeof(sockaddr_storage);
    io_uring_prep_accept(sqe, fd, peer.storage(), peer.size_slot(), SOCK_CLOEXEC);
  }
  io::result<accepted> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    return accepted{socket(res), address::from(peer.storage(), *peer.size_slot())};
  }
};

/// Multishot accept (IORING_OP_ACCEPT with IORING_ACCEPT_MULTISHOT): one
/// SQE, one completion per connection, until an error or a cancel ends it
/// (then `more` is false; re-submit to go on accepting). The peer address
/// is not reported (multishot accept has one address slot for all): ask
/// the socket (peer_address()).
struct accept_multishot {
  detail::shared_descriptor keep;
  int fd;
  static constexpr bool multishot = true;

  explicit accept_multishot(const socket& listener) : keep(listener.share()), fd(listener.fd()) {}

  using output = socket;
  void prepare(io_uring_sqe* sqe) { io_uring_prep_multishot_accept(sqe, fd, nullptr, nullptr, SOCK_CLOEXEC); }
  io::result<socket> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    return socket(res);
  }
};

/// A new stream socket connected to `to` (socket(2) at once, connect(2) on
/// the ring). Give it a deadline with `.timeout(d)`.
struct connect {
  address to;
  socket s;
  int error = 0;  // socket(2) failed: reported without reaching the kernel

  explicit connect(address a) : to(std::move(a)) {
    auto made = make_socket(to.family(), SOCK_STREAM);
    if (made) s = std::move(*made);
    else error = made.error().value();
  }

  using output = socket;
  void prepare(io_uring_sqe* sqe) {
    if (error != 0) return io_uring_prep_nop(sqe);
    io_uring_prep_connect(sqe, s.fd(), to.data(), to.size());
  }
  io::result<socket> complete(int res, unsigned) {
    if (error != 0) return std::error_code(error, std::generic_category());
    if (res < 0) return io::error_of(res);
    return std::move(s);
  }
};

/// What a send hands back: the bytes sent and the buffer.
struct sent {
  std::size_t bytes = 0;
  io::bytes buffer;
};

/// send(2) of a buffer the operation owns (MSG_NOSIGNAL always: a closed
/// peer is EPIPE, never a signal). `bytes` may be short.
struct send {
  detail::shared_descriptor keep;
  int fd;
  io::bytes buffer;
  int flags;

  send(const socket& s, io::bytes data, int f = 0)
      : keep(s.share()), fd(s.fd()), buffer(std::move(data)), flags(f | MSG_NOSIGNAL) {}

  using output = sent;
  void prepare(io_uring_sqe* sqe) { io_uring_prep_send(sqe, fd, buffer.data(), buffer.size(), flags); }
  io::result<sent> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    return sent{static_cast<std::size_t>(res), std::move(buffer)};
  }
};

/// send(2) without copying the buffer into the kernel (IORING_OP_SEND_ZC,
/// Linux 6.0+): the pages are sent from the buffer itself, and the result
/// comes once the kernel has let go of them (its second CQE). Whether it
/// pays depends on the size: doc/io.md has the measurement.
struct send_zc {
  detail::shared_descriptor keep;
  int fd;
  io::bytes buffer;
  int flags;
  int sent_res = 0;  // the first CQE's result

  send_zc(const socket& s, io::bytes data, int f = 0)
      : keep(s.share()), fd(s.fd()), buffer(std::move(data)), flags(f | MSG_NOSIGNAL) {}

  using output = sent;
  void prepare(io_uring_sqe* sqe) { io_uring_prep_send_zc(sqe, fd, buffer.data(), buffer.size(), flags, 0); }
  void absorb(int res, unsigned) { sent_res = res; }
  io::result<sent> complete(int res, unsigned cqe_flags) {
    // The notification (IORING_CQE_F_NOTIF) carries no count: the first
    // CQE's result is the send's. A send that failed at once has only one.
    if ((cqe_flags & IORING_CQE_F_NOTIF) == 0) sent_res = res;
    if (sent_res < 0) return io::error_of(sent_res);
    return sent{static_cast<std::size_t>(sent_res), std::move(buffer)};
  }
};

/// recv(2) of up to `len` new bytes, or into the buffer passed (its size is
/// the most). The result is the buffer cut to what arrived; empty when the
/// peer has shut its side down (end of stream).
struct recv {
  detail::shared_descriptor keep;
  int fd;
  io::bytes buffer;
  int flags = 0;

  recv(const socket& s, std::size_t len) : keep(s.share()), fd(s.fd()), buffer(len) {}
  recv(const socket& s, io::bytes buf) : keep(s.share()), fd(s.fd()), buffer(std::move(buf)) {}

  using output = io::bytes;
  void prepare(io_uring_sqe* sqe) { io_uring_prep_recv(sqe, fd, buffer.data(), buffer.size(), flags); }
  io::result<io::bytes> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    buffer.resize(static_cast<std::size_t>(res));
    return std::move(buffer);
  }
};

}  // namespace troupe::net

namespace troupe::detail {
/// What a recv into the provided-buffer ring completes with.
inline io::result<net::buffer> provided_result(recv_pool* pool, const net::recv_quota& quota, int res,
                                               unsigned flags) {
  if (pool == nullptr) return make_error_code(errc::unsupported);
  net::buffer b;
  if ((flags & IORING_CQE_F_BUFFER) != 0)
    b = recv_hand_out(pool, std::uint16_t(flags >> IORING_CQE_BUFFER_SHIFT), 0,
                      res > 0 ? static_cast<std::size_t>(res) : 0, quota.state());
  if (res < 0) return io::error_of(res);
  return b;
}
/// A recv SQE that lets the kernel pick a buffer of the calling shard's
/// ring; a NOP (answered errc::unsupported) when the shard has none.
inline recv_pool* prepare_provided(io_uring_sqe* sqe, int fd, bool multishot) {
  recv_pool* pool = recv_pool_here();
  if (pool == nullptr) {
    io_uring_prep_nop(sqe);
    return nullptr;
  }
  if (multishot) io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
  else io_uring_prep_recv(sqe, fd, nullptr, 0, 0);  // 0: the whole buffer
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = recv_buffer_group;
  return pool;
}
}  // namespace troupe::detail

namespace troupe::net {

/// One recv into a buffer the kernel picks from the shard's provided-buffer
/// ring (config::recv_buffers) when data arrives: a connection waiting on
/// it holds no memory, and it takes exactly one buffer. An empty buffer:
/// end of stream. std::errc::no_buffer_space (ENOBUFS): every buffer of the
/// ring is held. errc::unsupported: no buffer ring on this shard. With a
/// quota, the buffer counts against it until destroyed; issue the next
/// recv only while !quota.full() for a hard cap.
struct recv_provided {
  detail::shared_descriptor keep;
  int fd;
  recv_quota quota;
  detail::recv_pool* pool = nullptr;

  explicit recv_provided(const socket& s, recv_quota q = {}) : keep(s.share()), fd(s.fd()), quota(std::move(q)) {}

  using output = buffer;
  void prepare(io_uring_sqe* sqe) { pool = detail::prepare_provided(sqe, fd, false); }
  io::result<buffer> complete(int res, unsigned flags) { return detail::provided_result(pool, quota, res, flags); }
};

/// Multishot recv into the shard's provided-buffer ring: one SQE, a
/// completion per arrival, each a net::buffer. Cheaper per arrival than
/// recv_provided, but the kernel takes as many buffers in one go as the
/// socket has data queued, so a quota given here only counts (end the recv
/// with actor::end_multishot when quota.full(); what the kernel took
/// meanwhile still arrives). An empty buffer: end of stream.
/// std::errc::no_buffer_space (ENOBUFS): the ring ran dry and the recv has
/// ended (`more` false); re-arm it once buffers come back. The kernel also
/// ends a multishot recv when its CQ is full: a result with data and `more`
/// false; re-arm then too (actors/tcp_connection.hpp does both).
/// errc::unsupported: no buffer ring on this shard.
struct recv_multishot {
  detail::shared_descriptor keep;
  int fd;
  recv_quota quota;
  detail::recv_pool* pool = nullptr;
  static constexpr bool multishot = true;

  explicit recv_multishot(const socket& s, recv_quota q = {}) : keep(s.share()), fd(s.fd()), quota(std::move(q)) {}

  using output = buffer;
  void prepare(io_uring_sqe* sqe) { pool = detail::prepare_provided(sqe, fd, true); }
  io::result<buffer> complete(int res, unsigned flags) { return detail::provided_result(pool, quota, res, flags); }
};

/// shutdown(2): SHUT_WR (a half-close: the peer reads end of stream), SHUT_RD
/// or SHUT_RDWR.
struct shutdown {
  detail::shared_descriptor keep;
  int fd;
  int how;

  shutdown(const socket& s, int h) : keep(s.share()), fd(s.fd()), how(h) {}

  using output = void;
  void prepare(io_uring_sqe* sqe) { io_uring_prep_shutdown(sqe, fd, how); }
  io::result<void> complete(int res, unsigned) { return io::status_of(res); }
};

/// close(2) through the ring once no other operation holds the socket (like
/// fs::close); the socket is given up either way.
struct close {
  socket s;
  bool closing = false;

  using output = void;
  void prepare(io_uring_sqe* sqe) {
    closing = s.sole_owner();
    if (closing) io_uring_prep_close(sqe, s.fd());
    else io_uring_prep_nop(sqe);
  }
  io::result<void> complete(int res, unsigned) {
    if (!closing) {
      s = socket();
      return {};
    }
    s.release();
    return io::status_of(res);
  }
};

}  // namespace troupe::net
