// Addresses and listening sockets: parsing literals, printing, and the
// plain system calls that never block (socket, setsockopt, bind, listen).
#include <troupe/net/address.hpp>
#include <troupe/net/datagram.hpp>
#include <troupe/net/framing.hpp>
#include <troupe/net/socket.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <cstring>

namespace troupe::net {

namespace {
std::error_code last_error() { return std::error_code(errno, std::generic_category()); }
std::error_code invalid() { return std::make_error_code(std::errc::invalid_argument); }
}  // namespace

result<address> address::parse(std::string_view ip, std::uint16_t port) {
  if (ip.size() >= 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  if (ip.size() >= INET6_ADDRSTRLEN) return invalid();
  char text[INET6_ADDRSTRLEN] = {};
  std::memcpy(text, ip.data(), ip.size());
  address a;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage_);
  if (::inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    a.size_ = sizeof(sockaddr_in);
    return a;
  }
  a = address();
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
  if (::inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    a.size_ = sizeof(sockaddr_in6);
    return a;
  }
  return invalid();
}

result<address> address::parse(std::string_view s) {
  std::size_t colon = s.rfind(':');
  if (colon == std::string_view::npos) return invalid();
  std::string_view host = s.substr(0, colon), port_text = s.substr(colon + 1);
  // A bare IPv6 literal has colons of its own: it must be in brackets.
  if (host.find(':') != std::string_view::npos && host.front() != '[') return invalid();
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535) return invalid();
  return parse(host, static_cast<std::uint16_t>(port));
}

address address::loopback(std::uint16_t port) noexcept { return ipv4(INADDR_LOOPBACK, port); }

address address::loopback_v6(std::uint16_t port) noexcept {
  address a;
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
  v6->sin6_family = AF_INET6;
  v6->sin6_port = htons(port);
  v6->sin6_addr = in6addr_loopback;
  a.size_ = sizeof(sockaddr_in6);
  return a;
}

address address::any(std::uint16_t port) noexcept { return ipv4(INADDR_ANY, port); }

address address::ipv4(std::uint32_t host_order_ip, std::uint16_t port) noexcept {
  address a;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage_);
  v4->sin_family = AF_INET;
  v4->sin_port = htons(port);
  v4->sin_addr.s_addr = htonl(host_order_ip);
  a.size_ = sizeof(sockaddr_in);
  return a;
}

result<address> address::unix_path(std::string_view path) {
  address a;
  auto* un = reinterpret_cast<sockaddr_un*>(&a.storage_);
  if (path.empty()) return invalid();
  if (path.size() >= sizeof(un->sun_path)) return std::make_error_code(std::errc::filename_too_long);
  un->sun_family = AF_UNIX;
  std::memcpy(un->sun_path, path.data(), path.size());
  const bool abstract = path.front() == '@';
  if (abstract) un->sun_path[0] = '\0';
  // An abstract name is exactly its bytes; a path ends with its NUL.
  a.size_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
  return a;
}

address address::from(const sockaddr* sa, socklen_t len) noexcept {
  address a;
  if (sa == nullptr || len == 0) return a;
  if (len > sizeof(sockaddr_storage)) len = sizeof(sockaddr_storage);
  std::memcpy(&a.storage_, sa, len);
  a.size_ = len;
  return a;
}

std::uint16_t address::port() const noexcept {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  return 0;
}

std::string address::to_string() const {
  char text[INET6_ADDRSTRLEN] = {};
  switch (family()) {
    case AF_INET:
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, text, sizeof text);
      return std::string(text) + ":" + std::to_string(port());
    case AF_INET6:
      ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, text, sizeof text);
    {
      // Appended piece by piece: gcc 12 warns (-Wrestrict, a false
      // positive) on "[" + std::string(...) chains.
      std::string out = "[";
      out += text;
      out += "]:";
      out += std::to_string(port());
      return out;
    }
    case AF_UNIX: {
      const auto* un = reinterpret_cast<const sockaddr_un*>(&storage_);
      const std::size_t n = size_ > offsetof(sockaddr_un, sun_path) ? size_ - offsetof(sockaddr_un, sun_path) : 0;
      if (n == 0) return "unix:(unnamed)";
      if (un->sun_path[0] == '\0') return "unix:@" + std::string(un->sun_path + 1, n - 1);
      return "unix:" + std::string(un->sun_path, ::strnlen(un->sun_path, n));
    }
    default:
      return "-";
  }
}

bool operator==(const address& a, const address& b) noexcept {
  return a.size_ == b.size_ && std::memcmp(&a.storage_, &b.storage_, a.size_) == 0;
}

result<address> socket::local_address() const {
  address a;
  *a.size_slot() = sizeof(sockaddr_storage);
  if (::getsockname(fd(), a.storage(), a.size_slot()) != 0) return last_error();
  return a;
}

result<address> socket::peer_address() const {
  address a;
  *a.size_slot() = sizeof(sockaddr_storage);
  if (::getpeername(fd(), a.storage(), a.size_slot()) != 0) return last_error();
  return a;
}

result<socket> make_socket(int family, int type) {
  int fd = ::socket(family, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return last_error();
  return socket(fd);
}

result<socket> bind_datagram(const address& at) {
  auto s = make_socket(at.family(), SOCK_DGRAM);
  if (!s) return s.error();
  if (::bind(s->fd(), at.data(), at.size()) != 0) return last_error();
  return std::move(*s);
}

result<std::pair<socket, socket>> socket_pair(int type) {
  int fds[2];
  if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) != 0) return last_error();
  return std::pair<socket, socket>(socket(fds[0]), socket(fds[1]));
}

result<socket> listen(const address& at, listen_options options) {
  auto s = make_socket(at.family(), SOCK_STREAM);
  if (!s) return s.error();
  const bool tcp = at.family() != AF_UNIX;
  if (tcp) {
    if (auto r = s->set(reuse_address{}); !r) return r.error();
    if (options.sharing == port_sharing::join_group)
      if (auto r = s->set(reuse_port{}); !r) return r.error();
  }
  if (::bind(s->fd(), at.data(), at.size()) != 0) return last_error();
  // Bound without SO_REUSEPORT, so nobody held the port; set before
  // listen(), where the kernel forms the group the others join.
  if (tcp && options.sharing == port_sharing::open_group)
    if (auto r = s->set(reuse_port{}); !r) return r.error();
  if (::listen(s->fd(), options.backlog) != 0) return last_error();
  return std::move(*s);
}

namespace {
class frame_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "troupe.frame"; }
  std::string message(int v) const override {
    switch (static_cast<frame_error>(v)) {
      case frame_error::too_long: return "line longer than the framer's limit";
      case frame_error::nul_byte: return "NUL byte inside a line";
    }
    return "malformed frame";
  }
};
}  // namespace

const std::error_category& frame_category() noexcept {
  static const frame_category_impl c;
  return c;
}

}  // namespace troupe::net
