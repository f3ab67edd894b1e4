// tcp_accept: connection churn, to choose how actors/tcp_server accepts.
// Two client threads loop: connect, one 64-byte echo (checked), close with
// SO_LINGER 0 (a reset: no TIME_WAIT piles up over a run). Figure:
// connections per second and the server's CPU time per connection (every
// thread of the process but the two clients'), medians of interleaved
// repetitions; for troupe also how the connections landed on its shards
// (on stderr, and the busiest shard's share as tcp_accept_busiest_shard).
//
// troupe runs tcp_server both ways on a 2-shard runtime (shards on CPUs 0
// and 1, no spin: the client threads share those CPUs): a SO_REUSEPORT
// listener per shard (accept_on::every_shard) and one listener on shard 0
// placing connections in turn (accept_on::shard_zero). For scale, the
// hand-written liburing and Asio echo servers (one thread on CPU 1) take
// the same load: they have one CPU to troupe's two, so compare troupe's two
// modes with each other, and the peers with troupe_1shard (one shard on
// CPU 1, no spin, like them).
#include "harness.hpp"
#include "peers_net.hpp"
#include "troupe_net_servers.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace net = troupe::net;
namespace io = troupe::io;

std::array<std::atomic<long>, 2> landed{};  // troupe connections per shard

class counted_echo : public troupe::actors::tcp_connection<counted_echo> {
 public:
  explicit counted_echo(troupe::actors::tcp_accepted a) : tcp_connection(std::move(a), {.max_queued_bytes = 0}) {
    landed[troupe::this_shard() % landed.size()].fetch_add(1, std::memory_order_relaxed);
    (void)socket().set(net::no_delay{});
  }
  void on_data(io::bytes&& d) { write(std::move(d)); }
};

struct churn_result {
  double conns_per_s = 0;
  double server_ns_per_conn = 0;  // CPU of every thread but the clients' (the server's), per connection
};

double cpu_seconds(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

/// Connect, echo 64 bytes, reset; as often as it goes for `run` after `warm`.
churn_result churn(std::uint16_t port, std::chrono::milliseconds warm, std::chrono::milliseconds run) {
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::atomic<long> done{0};
  std::atomic<int> phase{0};  // 0 warming, 1 measuring, 2 stop
  std::atomic<double> client_cpu{0};
  auto client = [&] {
    char msg[64], back[64];
    std::memset(msg, 'c', sizeof msg);
    double cpu0 = -1;
    while (phase.load(std::memory_order_relaxed) < 2) {
      if (cpu0 < 0 && phase.load(std::memory_order_relaxed) == 1) cpu0 = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      bench::check(fd >= 0, std::string("socket: ") + std::strerror(errno));
      linger l{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      bench::check(::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0,
                   std::string("connect: ") + std::strerror(errno));
      bench::check(::send(fd, msg, sizeof msg, MSG_NOSIGNAL) == ssize_t(sizeof msg), "send");
      std::size_t got = 0;
      while (got < sizeof back) {
        ssize_t r = ::recv(fd, back + got, sizeof back - got, 0);
        bench::check(r > 0, "recv: the echo did not come back");
        got += std::size_t(r);
      }
      bench::check(std::memcmp(msg, back, sizeof msg) == 0, "the echo differs");
      ::close(fd);
      if (phase.load(std::memory_order_relaxed) == 1) done.fetch_add(1, std::memory_order_relaxed);
    }
    if (cpu0 >= 0) client_cpu.fetch_add(cpu_seconds(CLOCK_THREAD_CPUTIME_ID) - cpu0);
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) threads.emplace_back(client);
  std::this_thread::sleep_for(warm);
  const auto t0 = bench::clock::now();
  const double all0 = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
  phase = 1;
  std::this_thread::sleep_for(run);
  phase = 2;
  const double seconds = std::chrono::duration<double>(bench::clock::now() - t0).count();
  const long n = done.load();
  for (auto& t : threads) t.join();
  const double all1 = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
  bench::check(n > 0, "tcp_accept: no connection completed");
  return {double(n) / seconds, (all1 - all0 - client_cpu.load()) * 1e9 / double(n)};
}

churn_result troupe_churn(troupe::actors::accept_on how, std::chrono::milliseconds warm, std::chrono::milliseconds run,
                          std::vector<double>& busiest, troupe::shard_id shards = 2) {
  troupe::config c;
  c.shards = shards;
  c.cpus = shards == 2 ? std::vector<int>{0, 1} : std::vector<int>{1};
  c.spin_before_park = std::chrono::microseconds(0);
  troupe::runtime rt{c};
  auto s = troupe::actors::serve_tcp<counted_echo>(rt, {.at = net::address::loopback(0), .accept = how, .idle_timeout = {}});
  if (!s) bench::fail("troupe server: " + s.error().message());
  for (auto& l : landed) l = 0;
  const churn_result r = churn(s->port(), warm, run);
  const long a = landed[0].load(), b = landed[1].load();
  if (shards == 2) busiest.push_back(100.0 * double(std::max(a, b)) / double(a + b));
  std::fprintf(stderr, "tcp_accept troupe %u shard(s) %s: %.0f conns/s, server %.0f ns/conn, shard 0 took %ld, shard 1 took %ld\n",
               shards, how == troupe::actors::accept_on::every_shard ? "every_shard" : "shard_zero", r.conns_per_s,
               r.server_ns_per_conn, a, b);
  rt.stop();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  namespace p = bench::peers;
  using troupe::actors::accept_on;
  auto o = bench::parse(argc, argv);
  const auto warm = std::chrono::milliseconds(o.quick ? 20 : 200);
  const auto run = std::chrono::milliseconds(o.quick ? 100 : 2000);
  std::vector<double> busiest_every, busiest_zero;
  auto peer = [&](const char* name, auto&& server) {
    const churn_result r = churn(server.port(), warm, run);
    std::fprintf(stderr, "tcp_accept %s: %.0f conns/s, server %.0f ns/conn\n", name, r.conns_per_s, r.server_ns_per_conn);
    return r;
  };
  struct contender {
    std::string impl;
    std::function<churn_result()> run;
  };
  std::vector<contender> cs{
      {"troupe_every_shard", [&] { return troupe_churn(accept_on::every_shard, warm, run, busiest_every); }},
      {"troupe_shard_zero", [&] { return troupe_churn(accept_on::shard_zero, warm, run, busiest_zero); }},
      {"troupe_1shard", [&] { return troupe_churn(accept_on::every_shard, warm, run, busiest_every, 1); }},
      {"raw_uring", [&] { return peer("raw_uring", p::start_raw_uring_echo(1)); }},
      {"asio", [&] { return peer("asio", p::start_asio_echo(1)); }},
  };
  std::vector<std::vector<double>> rate(cs.size()), server_ns(cs.size());
  for (int rep = 0; rep < o.repetitions; ++rep)
    for (std::size_t i = 0; i < cs.size(); ++i) {
      if (!o.only.empty() && cs[i].impl.find(o.only) == std::string::npos) continue;
      bench::watchdog w("tcp_accept " + cs[i].impl, std::chrono::seconds(60));
      const churn_result r = cs[i].run();
      rate[i].push_back(r.conns_per_s);
      server_ns[i].push_back(r.server_ns_per_conn);
    }
  for (std::size_t i = 0; i < cs.size(); ++i)
    if (!rate[i].empty()) bench::emit("tcp_accept", cs[i].impl, "conns/s", bench::median(rate[i]));
  for (std::size_t i = 0; i < cs.size(); ++i)
    if (!server_ns[i].empty()) bench::emit("tcp_accept_server_cpu", cs[i].impl, "ns/conn", bench::median(server_ns[i]));
  if (!busiest_every.empty()) bench::emit("tcp_accept_busiest_shard", "troupe_every_shard", "%", bench::median(busiest_every));
  if (!busiest_zero.empty()) bench::emit("tcp_accept_busiest_shard", "troupe_shard_zero", "%", bench::median(busiest_zero));
  return 0;
}
