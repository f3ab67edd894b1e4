// A line chat: every line a client sends goes to every other client. Each
// connection is an actor on the shard that accepted it; the room is one
// actor on shard 0; a line crosses shards twice (connection -> room ->
// the other connections) as a message carrying the text.
//
//   chat [--port N]     serve on 0.0.0.0:N (default 7008) until Ctrl-C
//   chat --quick        three loopback clients talk, every line checked (b2 test)
//
// Try it: `chat &` then `nc 127.0.0.1 7008` in two terminals.
#include <actors/tcp_server.hpp>
#include <troupe/troupe.hpp>

#include <fmt/format.h>

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace net = troupe::net;
namespace io = troupe::io;

class member;
class room;

struct said {
  std::uint64_t from;
  std::string text;  // one line, without its '\n'
};
struct join {
  std::uint64_t id;
  troupe::ref<member> who;
};
struct leave {
  std::uint64_t id;
};
struct head_count {};

class room : public troupe::actor<room> {
  std::map<std::uint64_t, troupe::ref<member>> members_;

 public:
  void on(const join& j) { members_.emplace(j.id, j.who); }
  void on(const leave& l) { members_.erase(l.id); }
  std::size_t on(const head_count&) const { return members_.size(); }
  void on(const said& s);
};

class member : public troupe::actors::tcp_connection<member> {
  troupe::ref<room> room_;
  std::uint64_t id_;
  net::line_framer framer_{4096};

 public:
  member(troupe::actors::tcp_accepted a, troupe::ref<room> r)
      : tcp_connection(std::move(a)), room_(std::move(r)), id_(peer().port()) {}
  void on_start() {
    room_.send(join{id_, self()});
    tcp_connection::on_start();
  }
  void on_data(std::span<const std::byte> data) {
    auto ok = framer_.feed(data, [this](std::string_view line) { room_.send(said{id_, std::string(line)}); });
    if (!ok) close("malformed line: " + ok.error().message());
  }
  void on_closed(std::string_view) { room_.send(leave{id_}); }
  // Someone else's line, from the room (possibly from another shard).
  void on(const said& s) { write(fmt::format("{}: {}\n", s.from, s.text)); }
};

void room::on(const said& s) {
  for (auto& [id, who] : members_)
    if (id != s.from) who.send(s);
}

namespace {

int connect_to(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  auto at = net::address::loopback(port);
  return ::connect(fd, at.data(), at.size()) == 0 ? fd : -1;
}

std::string read_line(int fd) {
  std::string line;
  char c;
  while (::recv(fd, &c, 1, 0) == 1 && c != '\n') line += c;
  return line;
}

// --quick: three clients; each line must reach the two others, in order.
int self_test(std::uint16_t port, const troupe::ref<room>& r, troupe::runtime& rt) {
  std::vector<int> fds;
  for (int i = 0; i < 3; ++i) fds.push_back(connect_to(port));
  for (int fd : fds)
    if (fd < 0) return fmt::print(stderr, "connect failed\n"), 1;
  // Everyone has joined before anyone talks (joins come from the members'
  // on_start, after the connects returned): poll the room, bounded.
  for (int tries = 0; rt.ask(r, head_count{}).get() < fds.size(); ++tries) {
    if (tries == 5000) return fmt::print(stderr, "the members never joined\n"), 1;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (int round = 0; round < 20; ++round)
    for (std::size_t i = 0; i < fds.size(); ++i) {
      std::string line = fmt::format("round {} from {}", round, i);
      (void)!::send(fds[i], (line + "\n").data(), line.size() + 1, MSG_NOSIGNAL);
      for (std::size_t j = 0; j < fds.size(); ++j) {
        if (j == i) continue;
        std::string got = read_line(fds[j]);
        if (got.find(line) == std::string::npos)
          return fmt::print(stderr, "client {} got '{}' instead of '{}'\n", j, got, line), 1;
      }
    }
  for (int fd : fds) ::close(fd);
  fmt::print("60 lines, each delivered to two other clients\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  unsigned port = 7008;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--port" && i + 1 < argc) port = unsigned(std::atoi(argv[++i]));
    else return fmt::print(stderr, "usage: {} [--port N] [--quick]\n", argv[0]), 2;
  }
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
  auto the_room = rt.spawn<room>(troupe::pinned{0});
  troupe::actors::tcp_server_options options;
  options.at = quick ? net::address::loopback(0) : net::address::any(std::uint16_t(port));
  options.idle_timeout = std::chrono::milliseconds(0);  // chat clients may listen for long
  auto server = troupe::actors::serve_tcp<member>(rt, options, the_room);
  if (!server) return fmt::print(stderr, "cannot listen: {}\n", server.error().message()), 1;
  int status = 0;
  if (quick) {
    status = self_test(server->port(), the_room, rt);
  } else {
    fmt::print("chat on port {} ({} shards); Ctrl-C stops\n", server->port(), rt.shards());
    int sig = 0;
    sigwait(&stop_signals, &sig);
  }
  rt.stop();
  return status;
}
