// udp_pingpong: one datagram in flight between the load client (CPU 0,
// blocking send/recv, peers_net.hpp) and a UDP echo server on CPU 1:
// troupe's (one recvmsg in flight on one shard) against hand-written liburing
// and Boost.Asio ones. Mean round trip in µs (p99 on stderr). troupe_nospin:
// spin_before_park = 0, so its shard sleeps at once like the peers' threads.
#include "harness.hpp"
#include "peers_net.hpp"
#include "troupe_net_servers.hpp"

#include <cstdio>

namespace {

template <class Server>
double drive(const char* impl, Server&& server, const bench::peers::udp_options& o) {
  auto r = bench::peers::run_udp_pingpong(server.port(), o);
  std::fprintf(stderr, "udp_pingpong %s: mean %.1f us, p50 %.1f us, p99 %.1f us\n", impl, r.mean_us, r.p50_us, r.p99_us);
  return r.mean_us;
}

}  // namespace

int main(int argc, char** argv) {
  namespace p = bench::peers;
  namespace t = bench::troupe_net;
  auto o = bench::parse(argc, argv);
  const int server_cpu = 1;
  p::udp_options u{.round_trips = o.quick ? 2'000 : 100'000, .warmup = o.quick ? 100 : 2'000, .payload = 64, .cpu = 0};
  bench::run_interleaved(o, "udp_pingpong", "us",
                         {
                             {"troupe", [&] { return drive("troupe", t::udp_server<>(server_cpu), u); }},
                             {"troupe_nospin", [&] { return drive("troupe_nospin", t::udp_server<>(server_cpu, false), u); }},
                             {"troupe_multishot", [&] { return drive("troupe_multishot", t::udp_server<t::udp_echo_multishot>(server_cpu), u); }},
                             {"troupe_nospin_multishot",
                              [&] { return drive("troupe_nospin_multishot", t::udp_server<t::udp_echo_multishot>(server_cpu, false), u); }},
                             {"raw_uring", [&] { return drive("raw_uring", p::start_raw_uring_udp_echo(server_cpu), u); }},
                             {"asio", [&] { return drive("asio", p::start_asio_udp_echo(server_cpu), u); }},
                         });
  return 0;
}
