// A TCP echo server: a listener on every shard (SO_REUSEPORT), one actor
// per connection on the shard that accepted it, everything through the
// shards' io_uring rings.
//
//   echo_server [--port N]     serve on 0.0.0.0:N (default 7007) until Ctrl-C
//   echo_server --quick        serve on a free loopback port, echo 1000
//                              messages over 10 connections, exit (b2 test)
//
// Try it: `echo_server & printf 'hello\n' | nc -q1 127.0.0.1 7007`.
#include <actors/tcp_server.hpp>
#include <troupe/troupe.hpp>

#include <fmt/format.h>

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace net = troupe::net;
namespace io = troupe::io;

class echo : public troupe::actors::tcp_connection<echo> {
 public:
  using tcp_connection::tcp_connection;
  // Takes the received buffer over and sends it back: no copy.
  void on_data(io::bytes&& data) { write(std::move(data)); }
};

// --quick: 10 blocking client sockets, 100 messages each, every echo checked.
int self_test(std::uint16_t port) {
  std::vector<int> fds;
  for (int i = 0; i < 10; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    auto at = net::address::loopback(port);
    if (::connect(fd, at.data(), at.size()) != 0) return fmt::print(stderr, "connect failed\n"), 1;
    fds.push_back(fd);
  }
  for (int round = 0; round < 100; ++round)
    for (std::size_t i = 0; i < fds.size(); ++i) {
      std::string msg = fmt::format("connection {} message {}\n", i, round);
      (void)!::send(fds[i], msg.data(), msg.size(), MSG_NOSIGNAL);
      std::string got(msg.size(), '\0');
      std::size_t have = 0;
      while (have < got.size()) {
        ssize_t r = ::recv(fds[i], got.data() + have, got.size() - have, 0);
        if (r <= 0) return fmt::print(stderr, "connection {}: no echo\n", i), 1;
        have += std::size_t(r);
      }
      if (got != msg) return fmt::print(stderr, "connection {}: wrong echo\n", i), 1;
    }
  for (int fd : fds) ::close(fd);
  fmt::print("echoed 1000 messages over 10 connections\n");
  return 0;
}

int main(int argc, char** argv) {
  bool quick = false;
  unsigned port = 7007;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--port" && i + 1 < argc) port = unsigned(std::atoi(argv[++i]));
    else return fmt::print(stderr, "usage: {} [--port N] [--quick]\n", argv[0]), 2;
  }

  // Ctrl-C and SIGTERM are taken by sigwait below, not by a shard thread.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  troupe::config cfg;
  if (quick) {
    cfg.spin_before_park = std::chrono::microseconds(0);
    cfg.pinning = troupe::thread_pinning::none;
  }
  troupe::runtime rt{cfg};
  troupe::actors::tcp_server_options options;
  options.at = quick ? net::address::loopback(0) : net::address::any(std::uint16_t(port));
  auto server = troupe::actors::serve_tcp<echo>(rt, options);
  if (!server) {
    fmt::print(stderr, "cannot listen on {}: {}\n", options.at.to_string(), server.error().message());
    return 1;
  }
  int status = 0;
  if (quick) {
    status = self_test(server->port());
  } else {
    fmt::print("echoing on port {} ({} shards); Ctrl-C stops\n", server->port(), rt.shards());
    int sig = 0;
    sigwait(&stop_signals, &sig);
  }
  rt.stop();
  const auto& c = server->counters();
  fmt::print(stderr, "{} connections accepted, {} refused\n", c.accepted.load(), c.refused.load());
  return status;
}
