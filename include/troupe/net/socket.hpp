// A socket descriptor shared with the operations in flight on it (like
// fs::file), its options as strong types, and listening sockets. Setting an
// option or making a listener is a plain system call that never blocks.
#pragma once

#include <troupe/detail/descriptor.hpp>
#include <troupe/net/address.hpp>
#include <troupe/result.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <memory>
#include <system_error>
#include <utility>

namespace troupe::net {

/// Socket options: each names its level and option and gives its value.
struct reuse_address {
  bool on = true;
  static constexpr int level = SOL_SOCKET, name = SO_REUSEADDR;
  int value() const noexcept { return on; }
};
/// SO_REUSEPORT: several sockets (one per shard) listen on one port and the
/// kernel spreads the connections over them.
struct reuse_port {
  bool on = true;
  static constexpr int level = SOL_SOCKET, name = SO_REUSEPORT;
  int value() const noexcept { return on; }
};
struct no_delay {
  bool on = true;
  static constexpr int level = IPPROTO_TCP, name = TCP_NODELAY;
  int value() const noexcept { return on; }
};
struct keep_alive {
  bool on = true;
  static constexpr int level = SOL_SOCKET, name = SO_KEEPALIVE;
  int value() const noexcept { return on; }
};
struct receive_buffer {
  int bytes;
  static constexpr int level = SOL_SOCKET, name = SO_RCVBUF;
  int value() const noexcept { return bytes; }
};
struct send_buffer {
  int bytes;
  static constexpr int level = SOL_SOCKET, name = SO_SNDBUF;
  int value() const noexcept { return bytes; }
};

template <class O>
concept socket_option = requires(const O& o) {
  { O::level } -> std::convertible_to<int>;
  { O::name } -> std::convertible_to<int>;
  { o.value() } -> std::same_as<int>;
};

/// An open socket, closed when the socket and every operation submitted on
/// it are gone (or through net::close). Move-only.
class socket : public detail::owned_descriptor {
 public:
  using owned_descriptor::owned_descriptor;

  /// setsockopt(2).
  template <socket_option O>
  result<void> set(const O& option) const {
    int v = option.value();
    if (::setsockopt(fd(), O::level, O::name, &v, sizeof v) != 0) return std::error_code(errno, std::generic_category());
    return {};
  }
  /// getsockname(2) / getpeername(2).
  result<address> local_address() const;
  result<address> peer_address() const;
};

struct listen_options {
  int backlog = 1024;
  /// SO_REUSEPORT, so that every shard may have a listener on the port.
  bool reuse_port = false;
};

/// A stream socket (TCP, or Unix for a Unix address) bound to `at` and
/// listening (SO_REUSEADDR set for TCP). Port 0
/// picks a free port: see local_address(). Errors: bind's and listen's
/// (EADDRINUSE...).
result<socket> listen(const address& at, listen_options options = {});

/// A non-connected socket of `type` (SOCK_STREAM, SOCK_DGRAM) for `family`
/// (AF_INET, AF_INET6, AF_UNIX), close-on-exec.
result<socket> make_socket(int family, int type);

}  // namespace troupe::net
