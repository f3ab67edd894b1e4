// resolver: asynchronous DNS for actors, with c-ares (Debian libc-ares-dev)
// driven from the resolver's shard ring: c-ares says which sockets it
// waits on, the resolver polls them with io::poll (IORING_OP_POLL_ADD) and
// hands readiness back. No resolver thread, nothing blocks a shard.
// Built only on troupe's public API.
//
//   auto dns = rt.spawn<troupe::actors::resolver>(troupe::pinned{0});
//   ask(dns, resolver::resolve{"example.org", 443})
//       .then([this](troupe::result<std::vector<troupe::net::address>> a) { ... });
//
// Errors are values: resolver_error (category "c-ares"): not_found for
// NXDOMAIN or no address, timeout (compares equal to std::errc::timed_out)
// when no server answered within the options' timeout, and the others
// c-ares reports. An IP literal is answered at once without a query.
//
// Link with the `actors` library and its c-ares (actors/Jamfile).
#pragma once

#include <troupe/actor.hpp>
#include <troupe/io.hpp>
#include <troupe/net/address.hpp>
#include <troupe/promise.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

struct ares_channeldata;

namespace troupe::actors {

/// c-ares's status codes (ARES_ENOTFOUND = 4 ...), as std::error_code.
const std::error_category& resolver_category() noexcept;
namespace resolver_error {
inline constexpr int not_found = 4;   // ARES_ENOTFOUND: NXDOMAIN, or no address of the family
inline constexpr int timeout = 12;    // ARES_ETIMEOUT
}  // namespace resolver_error

class resolver : public actor<resolver> {
 public:
  struct options {
    /// "ip[:port],..." (c-ares's CSV form); empty: /etc/resolv.conf.
    std::string servers;
    /// Per try, and how many tries per server.
    std::chrono::milliseconds timeout{2000};
    int tries = 2;
  };

  /// Addresses of `host` (with `port` set in each): IPv4 and IPv6 unless
  /// `family` is AF_INET or AF_INET6. → std::vector<net::address>.
  struct resolve {
    std::string host;
    std::uint16_t port = 0;
    int family = 0;  // AF_UNSPEC
  };

  resolver();
  explicit resolver(options o);
  ~resolver();
  resolver(const resolver&) = delete;
  resolver& operator=(const resolver&) = delete;

  deferred<std::vector<net::address>> on(resolve r);

  /// c-ares's own timers (retries, timeouts): a message to itself.
  struct wake {};
  void on(const wake&);

  /// Queries sent and not answered yet.
  struct in_flight_q {};
  std::size_t on(const in_flight_q&) const { return pending_; }

 private:
  struct watched {
    bool read = false, write = false;
    io::handle poll;  // in flight, or empty
  };

  static void on_socket_state(void* self, int fd, int readable, int writable);
  void socket_state(int fd, bool readable, bool writable);
  void arm(int fd);
  void after_ares();  // reschedules c-ares's timer

  ares_channeldata* channel_ = nullptr;
  std::map<int, watched> sockets_;
  std::int64_t wake_at_ns_ = 0;  // the earliest wake in flight, 0: none
  std::size_t pending_ = 0;
  bool destroying_ = false;

  friend struct query;
};

}  // namespace troupe::actors
