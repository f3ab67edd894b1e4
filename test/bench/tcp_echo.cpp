// tcp_echo: 64 connections, 16 pipelined 64-byte messages each, every echo
// checked, driven by the one load client (peers_net.hpp) against troupe's
// echo server (actors/tcp_server + tcp_connection), a hand-written liburing
// echo server, a Boost.Asio (epoll) one and a CAF 0.17 io broker. Server on
// CPU 1, client on CPU 0 (each one thread; troupe: one shard, config::cpus =
// {1}; CAF: all of its actor system's threads pinned to CPU 1, the broker
// running on its multiplexer thread). Figures: messages per second and the
// p99 round trip (µs), and the server's CPU time per message, medians of
// interleaved repetitions. troupe runs three ways to read: into a buffer of
// the connection's own (the default), one recv per arrival into the
// provided-buffer ring, and one multishot recv into that ring.
#include "harness.hpp"
#include "peers_net.hpp"
#include "troupe_net_servers.hpp"

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

namespace {

struct contender {
  std::string impl;
  std::function<bench::peers::echo_load_result(const bench::peers::echo_load_options&)> run;
};

template <class Server>
bench::peers::echo_load_result drive(Server&& server, const bench::peers::echo_load_options& o) {
  return bench::peers::run_echo_load(server.port(), o);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  namespace p = bench::peers;
  auto o = bench::parse(argc, argv);
  p::echo_load_options load;
  load.cpu = 0;
  load.warmup = std::chrono::milliseconds(o.quick ? 20 : 300);
  load.duration = std::chrono::milliseconds(o.quick ? 100 : 2000);
  const int server_cpu = 1;
  std::vector<contender> cs{
      {"troupe", [&](const auto& l) { return drive(bench::troupe_net::tcp_server<bench::troupe_net::echo>(server_cpu), l); }},
      {"troupe_nospin",
       [&](const auto& l) { return drive(bench::troupe_net::tcp_server<bench::troupe_net::echo>(server_cpu, false), l); }},
      {"troupe_provided",
       [&](const auto& l) { return drive(bench::troupe_net::tcp_server<bench::troupe_net::echo_provided<false>>(server_cpu), l); }},
      {"troupe_multishot",
       [&](const auto& l) { return drive(bench::troupe_net::tcp_server<bench::troupe_net::echo_provided<true>>(server_cpu), l); }},
      {"troupe_nospin_provided",
       [&](const auto& l) { return drive(bench::troupe_net::tcp_server<bench::troupe_net::echo_provided<false>>(server_cpu, false), l); }},
      {"troupe_nospin_multishot",
       [&](const auto& l) { return drive(bench::troupe_net::tcp_server<bench::troupe_net::echo_provided<true>>(server_cpu, false), l); }},
      {"raw_uring", [&](const auto& l) { return drive(p::start_raw_uring_echo(server_cpu), l); }},
      {"asio", [&](const auto& l) { return drive(p::start_asio_echo(server_cpu), l); }},
      {"caf_broker", [&](const auto& l) { return drive(p::start_caf_broker_echo(server_cpu), l); }},
  };
  std::vector<std::vector<double>> rate(cs.size()), p99(cs.size()), server_ns(cs.size());
  for (int r = 0; r < o.repetitions; ++r)
    for (std::size_t i = 0; i < cs.size(); ++i) {
      if (!o.only.empty() && cs[i].impl.find(o.only) == std::string::npos) continue;
      bench::watchdog w("tcp_echo " + cs[i].impl, std::chrono::seconds(60));
      auto res = cs[i].run(load);
      rate[i].push_back(res.msgs_per_s);
      p99[i].push_back(res.p99_us);
      server_ns[i].push_back(res.server_cpu * 1e9 / res.msgs_per_s);
      std::fprintf(stderr, "tcp_echo %s: %.0f msgs/s, p50 %.1f us, p99 %.1f us, client cpu %.2f, server cpu %.2f\n",
                   cs[i].impl.c_str(), res.msgs_per_s, res.p50_us, res.p99_us, res.client_cpu, res.server_cpu);
    }
  for (std::size_t i = 0; i < cs.size(); ++i)
    if (!rate[i].empty()) bench::emit("tcp_echo", cs[i].impl, "msgs/s", median(rate[i]));
  for (std::size_t i = 0; i < cs.size(); ++i)
    if (!p99[i].empty()) bench::emit("tcp_echo_p99", cs[i].impl, "us", median(p99[i]));
  // Server CPU (every thread of the process but the client's) per echoed
  // message: what tells servers apart when the client is the limit. A
  // server that spins before it parks spends its idle time here too.
  for (std::size_t i = 0; i < cs.size(); ++i)
    if (!server_ns[i].empty()) bench::emit("tcp_echo_server_cpu", cs[i].impl, "ns/msg", median(server_ns[i]));
  return 0;
}
