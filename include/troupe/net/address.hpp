// Socket addresses: IPv4, IPv6 and Unix paths, made from literals. Nothing
// here resolves a host name or blocks; a name that is not an address
// literal is an error (name resolution is asynchronous, elsewhere).
#pragma once

#include <troupe/result.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace troupe::net {

class address {
 public:
  /// No address (family AF_UNSPEC).
  address() noexcept = default;

  /// An IPv4 ("127.0.0.1") or IPv6 ("::1", "[::1]") literal and a port.
  /// std::errc::invalid_argument for anything else (host names included).
  static result<address> parse(std::string_view ip, std::uint16_t port);
  /// "127.0.0.1:8080" or "[::1]:8080".
  static result<address> parse(std::string_view ip_and_port);
  static address loopback(std::uint16_t port) noexcept;      // 127.0.0.1
  static address loopback_v6(std::uint16_t port) noexcept;   // ::1
  static address any(std::uint16_t port) noexcept;           // 0.0.0.0
  /// An IPv4 address given as a number in host order (0x7f000001).
  static address ipv4(std::uint32_t host_order_ip, std::uint16_t port) noexcept;
  /// A Unix socket path; a leading '@' names an abstract socket (Linux).
  /// std::errc::filename_too_long past sizeof(sun_path).
  static result<address> unix_path(std::string_view path);
  /// A copy of what the kernel wrote (accept, recvmsg, getsockname).
  static address from(const sockaddr* sa, socklen_t len) noexcept;

  int family() const noexcept { return storage_.ss_family; }
  explicit operator bool() const noexcept { return family() != AF_UNSPEC; }
  /// The port of an IP address (host order); 0 for others.
  std::uint16_t port() const noexcept;
  /// "127.0.0.1:8080", "[::1]:8080", "unix:/run/x.sock", "unix:@name", "-".
  std::string to_string() const;

  const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t size() const noexcept { return size_; }
  /// For the kernel to fill (accept, recvmsg): the whole storage.
  sockaddr* storage() noexcept { return reinterpret_cast<sockaddr*>(&storage_); }
  socklen_t* size_slot() noexcept { return &size_; }

  friend bool operator==(const address& a, const address& b) noexcept;

 private:
  sockaddr_storage storage_{};
  socklen_t size_ = 0;
};

}  // namespace troupe::net
