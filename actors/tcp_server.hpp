// tcp_server: listens on every shard (one SO_REUSEPORT listener per shard,
// the kernel spreading connections over them), accepts, and spawns one
// connection actor per connection, pinned to the shard that accepted it
// (its I/O stays on that ring). Or, with accept_on::shard_zero, accepts on
// shard 0 and places connections on the shards in turn; doc/io.md has the
// measurement of both. Built only on troupe's public API.
//
//   auto server = troupe::actors::serve_tcp<echo>(rt, {.at = net::address::any(7000)});
//   if (!server) ... server.error() (EADDRINUSE...)
//   server->port();
//
// The connection type takes a tcp_accepted as its first constructor
// argument (tcp_connection<Derived> does the rest), then `args...`, copied
// to every connection. Beyond `max_connections` open at once, a new
// connection is closed at once with a log line. Silent connections are
// closed after `idle_timeout` (by tcp_connection's reads).
#pragma once

#include "tcp_connection.hpp"

#include <troupe/actor.hpp>
#include <troupe/log.hpp>
#include <troupe/net.hpp>
#include <troupe/runtime.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace troupe::actors {

/// Where connections are accepted.
enum class accept_on {
  /// One SO_REUSEPORT listener per shard; the kernel spreads connections
  /// over them by a hash of their addresses, and each connection stays on
  /// the shard that accepted it: no cross-shard step. The default.
  every_shard,
  /// One listener on shard 0 that places each connection on the shards in
  /// turn (an exact round robin, one cross-shard spawn per connection).
  shard_zero,
};

struct tcp_server_options {
  net::address at = net::address::any(0);
  accept_on accept = accept_on::every_shard;
  unsigned max_connections = 10'000;
  /// 0: connections never idle out.
  std::chrono::milliseconds idle_timeout{60'000};
  int backlog = 1024;
};

/// Counters shared by a server's listeners. @threadsafe to read.
struct tcp_server_counters {
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> refused{0};  // over max_connections
  std::atomic<std::uint32_t> open{0};
  std::atomic<std::uint32_t> listeners{0};
};

namespace detail {

struct stop_listening {};

/// One shard's listener: accepts and spawns connections on its shard.
template <class Connection, class... Args>
class tcp_listener : public actor<tcp_listener<Connection, Args...>> {
 public:
  tcp_listener(net::socket s, tcp_server_options o, std::shared_ptr<tcp_server_counters> c, std::tuple<Args...> args,
               shard_id shards)
      : socket_(std::move(s)), options_(std::move(o)), counters_(std::move(c)), args_(std::move(args)), shards_(shards) {}

  void on_start() {
    counters_->listeners.fetch_add(1, std::memory_order_relaxed);
    next();
  }
  void on_stop() { counters_->listeners.fetch_sub(1, std::memory_order_relaxed); }
  void on(const stop_listening&) { this->stop(); }

 private:
  // One multishot accept: a completion per connection from one SQE,
  // re-armed when the kernel ends it.
  void next() {
    this->submit(net::accept_multishot{socket_}).then([this](io::result<net::socket> s, bool more) {
      if (!s) {
        // EMFILE/ENFILE: out of descriptors for now; others end the listener.
        log(log_level::error, "tcp_server on " + options_.at.to_string() + ": accept failed: " + s.error().message());
        if (s.error() != std::errc::too_many_files_open && s.error() != std::errc::too_many_files_open_in_system)
          return this->stop();
      } else {
        accepted(std::move(*s));
      }
      if (!more) next();
    });
  }

  void accepted(net::socket s) {
    auto known = s.peer_address();  // ENOTCONN if the peer left already: then "-"
    net::address peer = known ? *known : net::address();
    counters_->accepted.fetch_add(1, std::memory_order_relaxed);
    if (counters_->open.fetch_add(1, std::memory_order_acq_rel) >= options_.max_connections) {
      counters_->open.fetch_sub(1, std::memory_order_acq_rel);
      counters_->refused.fetch_add(1, std::memory_order_relaxed);
      log(log_level::warn, "tcp_server on " + options_.at.to_string() + ": connection from " + peer.to_string() +
                               " closed: " + std::to_string(options_.max_connections) +
                               " connections open (max_connections)");
      this->submit(net::close{std::move(s)}).then([](io::result<void>) {});
      return;
    }
    // Its place in the count goes back when the connection actor is gone.
    std::shared_ptr<void> slot(nullptr, [c = counters_](void*) { c->open.fetch_sub(1, std::memory_order_acq_rel); });
    tcp_accepted start{std::move(s), std::move(peer), std::move(slot), options_.idle_timeout};
    const shard_id to = options_.accept == accept_on::every_shard ? this->this_shard() : next_shard();
    std::apply([&](const Args&... args) { this->template spawn<Connection>(pinned{to}, std::move(start), args...); }, args_);
  }

  shard_id next_shard() {
    const shard_id to = turn_;
    turn_ = turn_ + 1 == shards_ ? 0 : turn_ + 1;
    return to;
  }

  net::socket socket_;
  tcp_server_options options_;
  std::shared_ptr<tcp_server_counters> counters_;
  std::tuple<Args...> args_;
  shard_id shards_;
  shard_id turn_ = 0;
};

}  // namespace detail

/// A running server: its port, its counters, and stop() for its listeners
/// (connections already open keep running until they close).
template <class Connection, class... Args>
class tcp_server {
 public:
  using listener = detail::tcp_listener<Connection, Args...>;

  tcp_server(std::uint16_t port, std::shared_ptr<tcp_server_counters> c, std::vector<ref<listener>> ls)
      : port_(port), counters_(std::move(c)), listeners_(std::move(ls)) {}

  std::uint16_t port() const noexcept { return port_; }
  const tcp_server_counters& counters() const noexcept { return *counters_; }
  /// Stops accepting (every listener closes). @threadsafe.
  void stop() {
    for (auto& l : listeners_) l.send(detail::stop_listening{});
  }

 private:
  std::uint16_t port_;
  std::shared_ptr<tcp_server_counters> counters_;
  std::vector<ref<listener>> listeners_;
};

/// Binds one SO_REUSEPORT listener per shard of `rt` on `options.at` (the
/// first one picks the port when it is 0), or one on shard 0 with
/// accept_on::shard_zero, and starts accepting. The port must be free:
/// another listener on it, also one with SO_REUSEPORT, is EADDRINUSE
/// (net::port_sharing::open_group), never a silent share. Errors
/// (EADDRINUSE, EACCES...) come back as values. @threadsafe.
template <class Connection, class... Args>
result<tcp_server<Connection, std::decay_t<Args>...>> serve_tcp(runtime& rt, tcp_server_options options,
                                                                  Args&&... args) {
  using server = tcp_server<Connection, std::decay_t<Args>...>;
  std::vector<net::socket> sockets;
  net::address at = options.at;
  const shard_id listening = options.accept == accept_on::every_shard ? rt.shards() : 1;
  for (shard_id s = 0; s < listening; ++s) {
    // The first binds exclusively: a port another program holds, even with
    // SO_REUSEPORT, is refused instead of sharing its connections. Then the
    // other shards' listeners join it.
    const net::port_sharing sharing = listening == 1 ? net::port_sharing::exclusive
                                      : s == 0       ? net::port_sharing::open_group
                                                     : net::port_sharing::join_group;
    auto l = net::listen(at, {.backlog = options.backlog, .sharing = sharing});
    if (!l) return l.error();
    if (s == 0 && at.port() == 0) {
      // The others join the port the first one got.
      auto bound = l->local_address();
      if (!bound) return bound.error();
      at = *bound;
    }
    sockets.push_back(std::move(*l));
  }
  options.at = at;
  auto counters = std::make_shared<tcp_server_counters>();
  std::vector<ref<typename server::listener>> listeners;
  std::tuple<std::decay_t<Args>...> shared(std::forward<Args>(args)...);
  for (shard_id s = 0; s < listening; ++s)
    listeners.push_back(
        rt.spawn<typename server::listener>(pinned{s}, std::move(sockets[s]), options, counters, shared, rt.shards()));
  return server(at.port(), std::move(counters), std::move(listeners));
}

}  // namespace troupe::actors
