// Runs every network peer server under the one load client and prints one
// JSON line per figure; a failed check exits non-zero.  Server on CPU 1,
// client on CPU 0.
//
//   peers_net_selftest         quick: 20k-message echo windows, 16 MiB streams,
//                              2k UDP round trips
//   peers_net_selftest --full  2 s echo windows after 0.5 s warm-up, 4 GiB
//                              streams, 100k UDP round trips
//
// Besides the figures it checks odd shapes (100-byte messages, one in
// flight) and that a server stops while a client still holds a connection.
// Diagnostics (message counts, client and server CPU use) go to stderr.
#include "peers_net.hpp"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "harness.hpp"

namespace {

namespace p = bench::peers;
using std::chrono::milliseconds;
using start_fn = p::echo_server_handle (*)(int);

constexpr int kServerCpu = 1, kClientCpu = 0;

struct sizes {
  bool full;
  std::uint64_t stream_bytes;
  long udp_round_trips;
};

p::echo_load_options echo_options(const sizes& s) {
  p::echo_load_options o;
  o.cpu = kClientCpu;
  if (s.full) {
    o.warmup = milliseconds(500);
    o.duration = milliseconds(2000);
  } else {
    o.warmup = milliseconds(20);
    o.messages = 20'000;
  }
  return o;
}

void tcp_echo(const char* impl, start_fn start, const sizes& s) {
  bench::watchdog w(std::string("tcp_echo ") + impl, std::chrono::seconds(120));
  p::echo_server_handle server = start(kServerCpu);
  const double cpu0 = server.cpu_seconds();
  const auto t0 = bench::clock::now();
  const p::echo_load_result r = p::run_echo_load(server.port(), echo_options(s));
  const double wall = bench::ns_since(t0) * 1e-9;
  const double server_cpu = (server.cpu_seconds() - cpu0) / wall;
  server.stop();
  bench::emit("tcp_echo", impl, "msgs/s", r.msgs_per_s);
  bench::emit("tcp_echo_p50", impl, "us", r.p50_us);
  bench::emit("tcp_echo_p99", impl, "us", r.p99_us);
  std::fprintf(stderr, "  tcp_echo %s: %ld messages in %.3f s, mean %.1f us; cpu busy: client %.2f, server %.2f\n",
               impl, r.messages, r.seconds, r.mean_us, r.client_cpu, server_cpu);
}

// Shapes the figures do not use: message sizes that are not a multiple of 8,
// one message in flight, few connections; counted runs.
void tcp_echo_shapes(const char* impl, start_fn start) {
  bench::watchdog w(std::string("tcp_echo shapes ") + impl, std::chrono::seconds(60));
  p::echo_server_handle server = start(kServerCpu);
  struct shape {
    int connections, depth;
    std::size_t size;
  };
  for (shape sh : {shape{3, 1, 100}, shape{1, 64, 17}, shape{8, 4, 4000}}) {
    p::echo_load_options o;
    o.connections = sh.connections;
    o.depth = sh.depth;
    o.message_size = sh.size;
    o.warmup = milliseconds(0);
    o.messages = 2'000;
    o.cpu = kClientCpu;
    const p::echo_load_result r = p::run_echo_load(server.port(), o);
    bench::check(r.messages >= o.messages, "tcp_echo shapes: too few messages");
  }
  std::fprintf(stderr, "  tcp_echo shapes %s: ok\n", impl);
}

// A server must stop while a client still holds an idle connection.
void stop_with_open_connection(const char* impl, start_fn start) {
  bench::watchdog w(std::string("stop with an open connection ") + impl, std::chrono::seconds(20));
  p::echo_server_handle server = start(kServerCpu);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bench::check(fd >= 0, "socket failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(server.port());
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    bench::fail(std::string("connect: ") + std::strerror(errno));
  char b = 'x', back = 0;
  bench::check(::send(fd, &b, 1, MSG_NOSIGNAL) == 1, "send failed");
  bench::check(::recv(fd, &back, 1, 0) == 1 && back == b, "no echo of one byte");
  server.stop();
  bench::check(::recv(fd, &back, 1, 0) == 0, "no EOF after the server stopped");
  ::close(fd);
  std::fprintf(stderr, "  stop with an open connection %s: ok\n", impl);
}

void tcp_stream(const char* bench, const char* impl, start_fn start, p::stream_mode mode, const sizes& s) {
  bench::watchdog w(std::string(bench) + " " + impl, std::chrono::seconds(120));
  p::echo_server_handle server = start(kServerCpu);
  p::stream_options o;
  o.bytes = s.stream_bytes;
  o.mode = mode;
  o.cpu = kClientCpu;
  const double cpu0 = server.cpu_seconds();
  const p::stream_result r = p::run_stream_load(server.port(), o);
  const double server_cpu = (server.cpu_seconds() - cpu0) / r.seconds;
  server.stop();
  bench::emit(bench, impl, "GiB/s", r.gib_per_s);
  std::fprintf(stderr, "  %s %s: %.3f s; cpu busy: client %.2f, server %.2f\n", bench, impl, r.seconds,
               r.client_cpu, server_cpu);
}

void udp_pingpong(const char* impl, start_fn start, const sizes& s) {
  bench::watchdog w(std::string("udp_pingpong ") + impl, std::chrono::seconds(120));
  p::echo_server_handle server = start(kServerCpu);
  p::udp_options o;
  o.round_trips = s.udp_round_trips;
  o.cpu = kClientCpu;
  const p::udp_result r = p::run_udp_pingpong(server.port(), o);
  server.stop();
  bench::emit("udp_pingpong", impl, "us", r.mean_us);
  bench::emit("udp_pingpong_p99", impl, "us", r.p99_us);
  std::fprintf(stderr, "  udp_pingpong %s: p50 %.1f us\n", impl, r.p50_us);
}

}  // namespace

int main(int argc, char** argv) {
  bool full = false;
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--full") full = true;
  const sizes s = full ? sizes{true, std::uint64_t(4) << 30, 100'000} : sizes{false, std::uint64_t(16) << 20, 2'000};

  tcp_echo_shapes("raw_uring", p::start_raw_uring_echo);
  tcp_echo_shapes("asio", p::start_asio_echo);
  stop_with_open_connection("raw_uring", p::start_raw_uring_echo);
  stop_with_open_connection("asio", p::start_asio_echo);

  tcp_echo("raw_uring", p::start_raw_uring_echo, s);
  tcp_echo("asio", p::start_asio_echo, s);
  tcp_stream("tcp_stream", "raw_uring", p::start_raw_uring_sink, p::stream_mode::sink, s);
  tcp_stream("tcp_stream", "asio", p::start_asio_sink, p::stream_mode::sink, s);
  tcp_stream("tcp_stream_echo", "raw_uring", p::start_raw_uring_echo, p::stream_mode::echo, s);
  tcp_stream("tcp_stream_echo", "asio", p::start_asio_echo, p::stream_mode::echo, s);
  udp_pingpong("raw_uring", p::start_raw_uring_udp_echo, s);
  udp_pingpong("asio", p::start_asio_udp_echo, s);
  return 0;
}
