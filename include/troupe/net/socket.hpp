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

/// Whether a TCP listener shares its port with other listeners
/// (SO_REUSEPORT, the kernel spreading connections over them).
enum class port_sharing {
  /// No SO_REUSEPORT: the bind fails with EADDRINUSE while any other socket
  /// listens on the port, with SO_REUSEPORT or not. The default.
  exclusive,
  /// The first listener of a group (one per shard, say): binds like
  /// `exclusive`, so it fails with EADDRINUSE if anyone holds the port —
  /// also another program's SO_REUSEPORT listeners, which it would
  /// otherwise share the connections with — then sets SO_REUSEPORT before
  /// listening, so that `join_group` listeners can share the port.
  open_group,
  /// SO_REUSEPORT before the bind: shares the port with the SO_REUSEPORT
  /// listeners on it, whoever made them (the kernel asks only for the same
  /// user). Use it after an `open_group` listener of one's own. The kernel
  /// has no way to close a group: a SO_REUSEPORT listener of the same user
  /// started later can still join it.
  join_group,
};

struct listen_options {
  int backlog = 1024;
  /// SO_REUSEPORT or not; only asked for, never set by default.
  port_sharing sharing = port_sharing::exclusive;
};

/// A stream socket (TCP, or Unix for a Unix address) bound to `at` and
/// listening (SO_REUSEADDR set for TCP, SO_REUSEPORT as `options.sharing`
/// says; Unix sockets ignore it). Port 0 picks a free port: see
/// local_address(). Errors: setsockopt's, bind's and listen's (EADDRINUSE
/// when the port is held and not shared...).
result<socket> listen(const address& at, listen_options options = {});

/// A non-connected socket of `type` (SOCK_STREAM, SOCK_DGRAM) for `family`
/// (AF_INET, AF_INET6, AF_UNIX), close-on-exec.
result<socket> make_socket(int family, int type);

}  // namespace troupe::net
