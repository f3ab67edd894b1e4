// Network peers for tcp_echo, tcp_stream and udp_pingpong: peer servers
// (hand-written liburing, Boost.Asio) and the ONE load-generating client that
// drives every server, troupe's included.  No troupe code.
//
// Placement (2 vCPUs shared by client and server): each server runs on ONE
// thread pinned to the CPU its starter is given (bench::pin); each load runs
// on ONE thread of its own pinned to its options' `cpu`.  The benchmarks and
// the selftest put the server on CPU 1 and the client on CPU 0; the calling
// (main) thread stays unpinned and sleeps in a join meanwhile.  Every thread
// blocks in the kernel when it has nothing to do (io_uring_submit_and_wait,
// epoll_wait, recv): nobody spins, so a server's figure is not its spinning
// neighbour's loss.
//
// Protocols (what a troupe server must do to be driven by these loads):
//   TCP echo     write back every byte received, in order; close on EOF.
//   TCP sink     read and discard; at EOF write the number of bytes received
//                as one native-endian std::uint64_t, then close.
//   UDP echo     send every datagram back to its source, unchanged.
// Servers set TCP_NODELAY on every accepted connection (so does the client);
// sends use MSG_NOSIGNAL.
//
// Every check failure (a wrong byte, a short count, an unexpected errno) ends
// the process through bench::fail; every load runs under a bench::watchdog.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace bench::peers {

// A running peer server (TCP echo, TCP sink or UDP echo) listening on
// 127.0.0.1:port() on ONE thread.  Destruction (or stop()) stops the server
// thread, cancels its outstanding I/O, closes its sockets and joins it.
// Movable, not copyable; a default-constructed or moved-from handle holds
// nothing.  Only the thread that owns the handle may call its members.
class echo_server_handle {
 public:
  class impl;  // one per server kind: peers_net_servers.cpp, peers_net_caf.cpp (declared in peers_net_common.hpp)

  echo_server_handle() noexcept;
  explicit echo_server_handle(std::unique_ptr<impl> server) noexcept;
  echo_server_handle(echo_server_handle&&) noexcept;
  echo_server_handle& operator=(echo_server_handle&&) noexcept;
  ~echo_server_handle();

  // The ephemeral port the server listens on (bound before the starter returns).
  std::uint16_t port() const noexcept;

  // CPU time (user + system) the server thread has used so far, in seconds;
  // difference two calls around a load to see how busy the server was.
  double cpu_seconds() const;

  // Stops and joins the server; idempotent.
  void stop() noexcept;

 private:
  std::unique_ptr<impl> impl_;
};

// --- servers ------------------------------------------------------------------
//
// Each starter binds 127.0.0.1:0 (listen backlog SOMAXCONN), starts the
// server thread pinned to `cpu`, waits until that thread has set up its event
// loop and armed its first receive/accept, and returns.

// Hand-written liburing TCP echo: one ring (SINGLE_ISSUER|COOP_TASKRUN|
// TASKRUN_FLAG, falling back to COOP_TASKRUN, then no flags, on -EINVAL),
// multishot accept (re-armed single accepts if the kernel answers -EINVAL),
// and per connection a 64 KiB buffer cycling recv -> send of what was
// received (partial sends resent from where they stopped) -> recv.  One
// operation in flight per connection; the loop blocks in
// io_uring_submit_and_wait(1) and reaps every ready CQE per wake-up.
// (A provided-buffer ring with multishot recv was not used: echoing from it
// needs a per-connection queue of buffers waiting to be sent, for a saving
// of one recv SQE per echo; with 64 connections the per-connection buffers
// are 4 MiB in all.)
echo_server_handle start_raw_uring_echo(int cpu);

// The same loop as start_raw_uring_echo, but recv only: counts the bytes and
// at EOF sends the count (the TCP sink protocol above).
echo_server_handle start_raw_uring_sink(int cpu);

// Boost.Asio TCP echo: one io_context (epoll reactor, concurrency hint
// BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO: no reactor locking, Asio's fastest
// single-threaded setting) run by one thread; per connection a 64 KiB buffer
// cycling async_read_some -> async_write of what was read -> async_read_some.
echo_server_handle start_asio_echo(int cpu);

// The Asio counterpart of start_raw_uring_sink.
echo_server_handle start_asio_sink(int cpu);

// CAF 0.17 io broker TCP echo (peers_net_caf.cpp): a function-based
// caf::io::broker adopts the listening socket (add_doorman); for each new
// connection it sets receive_policy::at_most(64 KiB) and answers every
// new_data_msg with write + flush of the chunk; on EOF CAF detaches the
// connection (connection_closed_msg) and closes its socket.  CAF sets
// TCP_NODELAY on every socket it manages.  flush() does not send: it arms
// EPOLLOUT and the send follows on the next epoll_wait round (then EPOLLOUT
// is disarmed), so an echo costs two epoll_ctl calls and one epoll round
// more than with Asio, which tries the send at once.
// Not ONE thread: the starter's thread, pinned to `cpu`, creates an
// actor_system (1 scheduler worker, work-sharing policy, the middleman's
// utility actor on the scheduler) and then sleeps until stop(); the system
// starts 4 threads of its own: the scheduler worker (which CAF 0.17.6 names
// "caf.multiplexer" too), the clock thread "caf.clock", the printer actor
// behind caf::aout (detached, always spawned) "caf.actor", and the
// middleman's epoll loop "caf.multiplexer".  Each inherits the pinning to
// `cpu` and is pinned to it again by a caf::thread_hook.  The broker runs on
// the epoll loop's thread only; the other three stay blocked on condition
// variables during a load.  cpu_seconds() adds up the starter's thread and
// all of CAF's threads.  stop() sends the broker an exit and destroys the
// actor system, which joins all of them.
echo_server_handle start_caf_broker_echo(int cpu);

// Hand-written liburing UDP echo on 127.0.0.1: ONE recvmsg armed at a time
// (64 KiB buffer, source address) -> sendmsg back to the source -> recvmsg.
// One, because every armed recvmsg on a socket is woken by each datagram:
// with 8 armed, a round trip measured ~5 us (15%) slower, and slower than
// Asio's.
echo_server_handle start_raw_uring_udp_echo(int cpu);

// Boost.Asio UDP echo: async_receive_from -> async_send_to back, one
// datagram at a time, same io_context setup as start_asio_echo.
echo_server_handle start_asio_udp_echo(int cpu);

// --- the load client ------------------------------------------------------------

struct echo_load_options {
  int connections = 64;
  std::size_t message_size = 64;  // bytes, at least 16
  int depth = 16;                 // messages in flight per connection
  std::chrono::milliseconds warmup{200};
  std::chrono::milliseconds duration{2000};  // measured time, when messages == 0
  long messages = 0;                         // > 0: measure this many echoes instead
  int cpu = 0;
};

struct echo_load_result {
  double msgs_per_s = 0;   // echoes completed in the measured window / its length
  double mean_us = 0;      // per-message round trip, over the measured window
  double p50_us = 0;
  double p99_us = 0;
  long messages = 0;       // echoes completed in the measured window
  double seconds = 0;      // length of the measured window
  double client_cpu = 0;   // client thread CPU time / window length (near 1: client-bound)
  double server_cpu = 0;   // the other threads of this process (the server) CPU time / window length
};

// tcp_echo: opens `connections` TCP connections to 127.0.0.1:port (blocking
// connects, TCP_NODELAY), then runs one liburing loop on one thread pinned
// to `cpu` (same ring flags as the servers).  Each connection keeps `depth`
// messages in flight: whenever echoes come back, the freed slots are refilled
// with new messages written as ONE send (one send in flight per connection,
// partial sends resent), and one recv per connection is always armed.
// Message k of connection c carries k, c and a pattern derived from both;
// every echoed byte is compared (bench::fail on a mismatch, on EOF or on an
// error).  A message's round trip runs from the loop iteration that queued
// its send to the one that reaped the recv completing it (one clock read per
// iteration).  After `warmup`, the window runs for `duration` (or until
// `messages` echoes); then no new messages are sent, the in-flight ones are
// drained and checked, and each connection is half-closed (shutdown
// SHUT_WR) and must then see the server's EOF.  It is a closed loop: with
// connections * depth messages in flight the mean round trip is about
// connections * depth / msgs_per_s (Little's law); p99 shows the tail.
// Measured behaviour: a connection's window settles into travelling as one
// write of depth * message_size bytes (1 KiB by default) that comes back in
// one read, so a server sees about one recv and one send per `depth`
// messages.  On loopback the sending CPU also runs the receiving side's TCP
// processing, so the client costs about as much CPU per message as a fast
// server: `client_cpu` near 1 means the figure is the client's ceiling.
echo_load_result run_echo_load(std::uint16_t port, const echo_load_options& options);

enum class stream_mode {
  sink,  // write `bytes`, shut down writing, read the server's byte count
  echo,  // write `bytes` while reading them back; every byte checked
};

struct stream_options {
  std::uint64_t bytes = std::uint64_t(1) << 30;
  std::size_t write_size = 64 * 1024;
  stream_mode mode = stream_mode::sink;
  int cpu = 0;
};

struct stream_result {
  double gib_per_s = 0;  // `bytes` / seconds
  double seconds = 0;    // first send to the last byte back (echo) or to the count (sink)
  double client_cpu = 0; // client thread CPU time / seconds
};

// tcp_stream: ONE connection, one liburing loop on one thread pinned to
// `cpu`, one send of `write_size` bytes in flight (from a patterned buffer).
// sink: after the last send, shutdown(SHUT_WR); the server's 8-byte count
// must equal `bytes` and be followed by EOF.  The bytes themselves are not
// checked (the sink discards them).  echo: one recv of `write_size` bytes
// always armed; every byte read back is compared with what was written.
// Choice for tcp_stream: sink is the classic one-way stream figure; echo
// doubles the traffic (each byte crosses loopback twice) but checks content
// and needs only the echo server.  The selftest reports both.  With a sink
// the client is the busy side (it runs the loopback receive processing
// too), so a sink figure mostly shows how promptly the server drains its
// socket.
stream_result run_stream_load(std::uint16_t port, const stream_options& options);

struct udp_options {
  long round_trips = 100'000;  // measured
  long warmup = 1'000;         // round trips before measuring
  std::size_t payload = 64;    // bytes, at least 16
  int cpu = 0;
};

struct udp_result {
  double mean_us = 0;
  double p50_us = 0;
  double p99_us = 0;
};

// udp_pingpong: one UDP socket connected to 127.0.0.1:port on one thread
// pinned to `cpu`; one datagram in flight: blocking send, blocking recv
// (SO_RCVTIMEO 2 s: a lost datagram fails the run), payload checked, round
// trip timed with steady_clock around the pair.
udp_result run_udp_pingpong(std::uint16_t port, const udp_options& options);

}  // namespace bench::peers
