// tcp_stream: one connection, 64 KiB writes, GiB/s, driven by the one load
// client (peers_net.hpp): "sink" (the server reads and discards, then
// answers the byte count) and "echo" (every byte comes back and is checked).
// troupe's servers (actors/tcp_server) against hand-written liburing and
// Boost.Asio ones; server on CPU 1, client on CPU 0. troupe_zc: the echo
// server's 64 KiB writes go out with SEND_ZC (connection_limits::zero_copy_from).
#include "harness.hpp"
#include "peers_net.hpp"
#include "troupe_net_servers.hpp"

namespace {

template <class Server>
double drive(Server&& server, const bench::peers::stream_options& o) {
  return bench::peers::run_stream_load(server.port(), o).gib_per_s;
}

}  // namespace

int main(int argc, char** argv) {
  namespace p = bench::peers;
  namespace t = bench::troupe_net;
  auto o = bench::parse(argc, argv);
  const int server_cpu = 1;
  p::stream_options sink{.bytes = o.quick ? (64ull << 20) : (4ull << 30), .write_size = 64 * 1024,
                         .mode = p::stream_mode::sink, .cpu = 0};
  p::stream_options echo = sink;
  echo.mode = p::stream_mode::echo;
  echo.bytes = o.quick ? (32ull << 20) : (1ull << 30);
  bench::run_interleaved(o, "tcp_stream_sink", "GiB/s",
                         {
                             {"troupe", [&] { return drive(t::tcp_server<t::sink>(server_cpu), sink); }},
                             {"raw_uring", [&] { return drive(p::start_raw_uring_sink(server_cpu), sink); }},
                             {"asio", [&] { return drive(p::start_asio_sink(server_cpu), sink); }},
                         });
  bench::run_interleaved(o, "tcp_stream_echo", "GiB/s",
                         {
                             {"troupe", [&] { return drive(t::tcp_server<t::echo>(server_cpu), echo); }},
                             {"troupe_zc", [&] { return drive(t::tcp_server<t::echo_zc>(server_cpu), echo); }},
                             {"raw_uring", [&] { return drive(p::start_raw_uring_echo(server_cpu), echo); }},
                             {"asio", [&] { return drive(p::start_asio_echo(server_cpu), echo); }},
                         });
  return 0;
}
