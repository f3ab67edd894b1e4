// Datagram and message operations on the shard's ring: UDP and Unix
// datagrams with their source address (sendmsg/recvmsg), and descriptors
// passed over Unix sockets (SCM_RIGHTS).
//
//   auto s = net::bind_datagram(net::address::loopback(0));
//   submit(net::recv_from{*s, 2048}).then([this](io::result<net::datagram> d) {
//     ... d->data, d->peer, d->truncated ...
//   });
//   submit(net::send_to{*s, peer, std::move(bytes)}).then(...);
//
// or, with the shard's provided-buffer ring and one SQE for many datagrams,
// net::recv_from_multishot.
#pragma once

#include <troupe/fs.hpp>
#include <troupe/io.hpp>
#include <troupe/net/address.hpp>
#include <troupe/net/socket.hpp>
#include <troupe/net/tcp.hpp>

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

namespace troupe::net {

/// A datagram socket (UDP for an IP address, Unix datagram for a Unix
/// path) bound to `at`; port 0 picks one (local_address()). Never blocks.
result<socket> bind_datagram(const address& at);

/// Two connected Unix sockets of `type` (SOCK_STREAM, SOCK_DGRAM,
/// SOCK_SEQPACKET), close-on-exec.
result<std::pair<socket, socket>> socket_pair(int type = SOCK_STREAM);

/// One datagram and where it came from.
struct datagram {
  io::bytes data;
  address peer;
  bool truncated = false;  // longer than the buffer: the rest is lost (MSG_TRUNC)
};

/// recvmsg(2) of one datagram of up to `len` bytes (or into the buffer
/// passed), with its source address.
struct recv_from {
  detail::shared_descriptor keep;
  int fd;
  io::bytes buffer;
  address from{};
  iovec iov{};
  msghdr msg{};

  recv_from(const socket& s, std::size_t len) : keep(s.share()), fd(s.fd()), buffer(len) {}
  recv_from(const socket& s, io::bytes buf) : keep(s.share()), fd(s.fd()), buffer(std::move(buf)) {}

  using output = datagram;
  void prepare(io_uring_sqe* sqe) {
    iov = {buffer.data(), buffer.size()};
    msg = {};
    msg.msg_name = from.storage();
    msg.msg_namelen = sizeof(sockaddr_storage);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    io_uring_prep_recvmsg(sqe, fd, &msg, 0);
  }
  io::result<datagram> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    buffer.resize(std::min(buffer.size(), static_cast<std::size_t>(res)));
    return datagram{std::move(buffer), address::from(from.storage(), msg.msg_namelen), (msg.msg_flags & MSG_TRUNC) != 0};
  }
};

/// One datagram received into a ring buffer, and where it came from.
struct ring_datagram {
  buffer data;  // the payload
  address peer;
  bool truncated = false;  // longer than a ring buffer less its header: the rest is lost (MSG_TRUNC)
};

/// Multishot recvmsg(2) into the shard's provided-buffer ring
/// (config::recv_buffers): one SQE, a completion per datagram, each in a
/// ring buffer of its own (the kernel writes a small header and the source
/// address in front of the payload, so a payload can be at most the buffer
/// size less sizeof(io_uring_recvmsg_out) + sizeof(sockaddr_storage)). No
/// memory is held while nothing arrives. std::errc::no_buffer_space
/// (ENOBUFS): the ring ran dry and the recv ended (`more` false): datagrams
/// that come meanwhile wait in the socket's queue (or are dropped by the
/// kernel once it is full, as UDP does); re-arm it. errc::unsupported: no
/// buffer ring on this shard. With a quota, every buffer handed out counts
/// against it.
struct recv_from_multishot {
  detail::shared_descriptor keep;
  int fd;
  recv_quota quota;
  msghdr msg{};  // read by the kernel for every datagram: lives in the operation
  detail::recv_pool* pool = nullptr;
  static constexpr bool multishot = true;

  explicit recv_from_multishot(const socket& s, recv_quota q = {}) : keep(s.share()), fd(s.fd()), quota(std::move(q)) {}

  using output = ring_datagram;
  void prepare(io_uring_sqe* sqe) {
    pool = detail::recv_pool_here();
    if (pool == nullptr) return io_uring_prep_nop(sqe);
    msg = {};
    msg.msg_namelen = sizeof(sockaddr_storage);
    io_uring_prep_recvmsg_multishot(sqe, fd, &msg, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = detail::recv_buffer_group;
  }
  io::result<ring_datagram> complete(int res, unsigned flags) {
    if (pool == nullptr) return make_error_code(errc::unsupported);
    if ((flags & IORING_CQE_F_BUFFER) == 0) return res < 0 ? io::error_of(res) : make_error_code(std::errc::bad_message);
    const auto id = std::uint16_t(flags >> IORING_CQE_BUFFER_SHIFT);
    auto* base = const_cast<std::byte*>(detail::recv_data(pool, id));
    io_uring_recvmsg_out* out = res >= 0 ? io_uring_recvmsg_validate(base, res, &msg) : nullptr;
    if (out == nullptr) {
      (void)detail::recv_hand_out(pool, id, 0, 0, nullptr);  // straight back to the ring
      return res < 0 ? io::error_of(res) : make_error_code(std::errc::bad_message);
    }
    const auto* payload = static_cast<const std::byte*>(io_uring_recvmsg_payload(out, &msg));
    ring_datagram d{detail::recv_hand_out(pool, id, std::size_t(payload - base),
                                          io_uring_recvmsg_payload_length(out, res, &msg), quota.state()),
                    address::from(static_cast<const sockaddr*>(io_uring_recvmsg_name(out)),
                                  std::min<socklen_t>(out->namelen, sizeof(sockaddr_storage))),
                    (out->flags & MSG_TRUNC) != 0};
    return d;
  }
};

/// sendmsg(2) of one datagram to `to` (MSG_NOSIGNAL).
struct send_to {
  detail::shared_descriptor keep;
  int fd;
  address to;
  io::bytes buffer;
  iovec iov{};
  msghdr msg{};

  send_to(const socket& s, address dest, io::bytes data)
      : keep(s.share()), fd(s.fd()), to(std::move(dest)), buffer(std::move(data)) {}

  using output = sent;
  void prepare(io_uring_sqe* sqe) {
    iov = {buffer.data(), buffer.size()};
    msg = {};
    msg.msg_name = const_cast<sockaddr*>(to.data());
    msg.msg_namelen = to.size();
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    io_uring_prep_sendmsg(sqe, fd, &msg, MSG_NOSIGNAL);
  }
  io::result<sent> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    return sent{static_cast<std::size_t>(res), std::move(buffer)};
  }
};

/// sendmsg(2) of `data` with descriptors attached (SCM_RIGHTS) over a Unix
/// socket. The descriptors are duplicated into the receiver; the files
/// passed stay open here until the send completes (then they close with
/// the operation, unless shared elsewhere).
struct send_fds {
  detail::shared_descriptor keep;
  int fd;
  io::bytes buffer;
  std::vector<fs::file> files;
  std::vector<char> control;
  iovec iov{};
  msghdr msg{};

  send_fds(const socket& s, io::bytes data, std::vector<fs::file> fds)
      : keep(s.share()), fd(s.fd()), buffer(std::move(data)), files(std::move(fds)) {}

  using output = std::size_t;  // bytes of data sent
  void prepare(io_uring_sqe* sqe) {
    iov = {buffer.data(), buffer.size()};
    msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (!files.empty()) {
      control.assign(CMSG_SPACE(sizeof(int) * files.size()), 0);
      msg.msg_control = control.data();
      msg.msg_controllen = control.size();
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * files.size());
      int* out = reinterpret_cast<int*>(CMSG_DATA(c));
      for (std::size_t i = 0; i < files.size(); ++i) out[i] = files[i].fd();
    }
    io_uring_prep_sendmsg(sqe, fd, &msg, MSG_NOSIGNAL);
  }
  io::result<std::size_t> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    return static_cast<std::size_t>(res);
  }
};

/// What recv_fds hands over: the data and the descriptors that came with it
/// (owned: closed with the fs::file unless released).
struct with_fds {
  io::bytes data;
  std::vector<fs::file> files;
  bool truncated = false;  // descriptors beyond `max_fds` were lost (MSG_CTRUNC)
};

/// recvmsg(2) of up to `len` bytes and up to `max_fds` descriptors
/// (SCM_RIGHTS; received close-on-exec).
struct recv_fds {
  detail::shared_descriptor keep;
  int fd;
  io::bytes buffer;
  std::vector<char> control;
  iovec iov{};
  msghdr msg{};

  recv_fds(const socket& s, std::size_t len, std::size_t max_fds = 16)
      : keep(s.share()), fd(s.fd()), buffer(len), control(CMSG_SPACE(sizeof(int) * max_fds), 0) {}

  using output = with_fds;
  void prepare(io_uring_sqe* sqe) {
    iov = {buffer.data(), buffer.size()};
    msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    io_uring_prep_recvmsg(sqe, fd, &msg, MSG_CMSG_CLOEXEC);
  }
  io::result<with_fds> complete(int res, unsigned) {
    // Descriptors that arrived are ours even when the call failed after.
    with_fds out;
    for (cmsghdr* c = res >= 0 ? CMSG_FIRSTHDR(&msg) : nullptr; c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const int* in = reinterpret_cast<const int*>(CMSG_DATA(c));
      for (std::size_t i = 0; i < n; ++i) out.files.emplace_back(in[i]);
    }
    if (res < 0) return io::error_of(res);
    buffer.resize(static_cast<std::size_t>(res));
    out.data = std::move(buffer);
    out.truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
    return out;
  }
};

}  // namespace troupe::net
