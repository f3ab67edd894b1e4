// troupe's side of the network benchmarks: the echo, sink and UDP echo
// servers that the one load client (peers_net.hpp) drives, each a 1-shard
// runtime pinned to a given CPU (config::cpus), the same place the peer
// servers run. They speak the protocols peers_net.hpp describes.
#pragma once

#include <actors/tcp_server.hpp>
#include <troupe/troupe.hpp>

#include "harness.hpp"

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

namespace bench::troupe_net {

namespace net = troupe::net;
namespace io = troupe::io;

/// Echo: every byte back, in order (tcp_connection: ordered writes; the
/// received buffer itself is sent back).
class echo : public troupe::actors::tcp_connection<echo> {
 public:
  explicit echo(troupe::actors::tcp_accepted a) : tcp_connection(std::move(a), {.max_queued_bytes = 0}) {
    (void)socket().set(net::no_delay{});
  }
  void on_data(io::bytes&& d) { write(std::move(d)); }  // the received buffer goes back out, no copy
};

/// Echo reading into the shard's provided-buffer ring: one recv per
/// arrival, each taking one ring buffer (connection_limits::max_held_buffers,
/// the default), or with `multishot` one multishot recv for all arrivals.
/// The ring buffer is copied into the write (it must go back to the ring).
template <bool multishot>
class echo_provided : public troupe::actors::tcp_connection<echo_provided<multishot>> {
  using base = troupe::actors::tcp_connection<echo_provided<multishot>>;

 public:
  explicit echo_provided(troupe::actors::tcp_accepted a)
      : base(std::move(a), {.max_queued_bytes = 0, .provided_buffers = true, .max_held_buffers = multishot ? 0u : 32u}) {
    (void)this->socket().set(net::no_delay{});
  }
  void on_data(std::span<const std::byte> d) { this->write(io::bytes(d.begin(), d.end())); }
};

/// Echo whose writes of 16 KiB or more go out with SEND_ZC.
class echo_zc : public troupe::actors::tcp_connection<echo_zc> {
 public:
  explicit echo_zc(troupe::actors::tcp_accepted a)
      : tcp_connection(std::move(a), {.max_queued_bytes = 0, .zero_copy_from = 16 * 1024}) {
    (void)socket().set(net::no_delay{});
  }
  void on_data(io::bytes&& d) { write(std::move(d)); }
};

/// Sink: counts, and at end of stream answers the count (8 bytes, native
/// order) and closes. Its own read loop: tcp_connection closes at EOF.
class sink : public troupe::actor<sink> {
  net::socket s_;
  std::uint64_t count_ = 0;
  io::bytes buffer_;

 public:
  explicit sink(troupe::actors::tcp_accepted a) : s_(std::move(a.socket)), buffer_(256 * 1024) {
    (void)s_.set(net::no_delay{});
  }
  void on_start() { read(); }

 private:
  void read() {
    submit(net::recv{s_, std::move(buffer_)}).then([this](io::result<io::bytes> b) {
      if (!b) return stop();
      if (b->empty()) {
        io::bytes answer(sizeof count_);
        std::memcpy(answer.data(), &count_, sizeof count_);
        submit(net::send{s_, std::move(answer)}).then([this](io::result<net::sent>) { stop(); });
        return;
      }
      count_ += b->size();
      buffer_ = std::move(*b);
      buffer_.resize(256 * 1024);
      read();
    });
  }
};

/// UDP echo: one recvmsg in flight (several armed on one socket are all
/// woken by each datagram: measured slower by the peers' author), answering
/// each datagram to its source.
class udp_echo : public troupe::actor<udp_echo> {
  std::shared_ptr<net::socket> s_;

 public:
  explicit udp_echo(std::shared_ptr<net::socket> s) : s_(std::move(s)) {}
  void on_start() { slot(); }

 private:
  void slot() {
    submit(net::recv_from{*s_, 64 * 1024}).then([this](io::result<net::datagram> d) {
      if (!d) return;
      submit(net::send_to{*s_, d->peer, std::move(d->data)}).then([this](io::result<net::sent>) { slot(); });
    });
  }
};

/// UDP echo by one multishot recvmsg into the provided-buffer ring (re-armed
/// when the kernel ends it); the payload is copied into the answer.
class udp_echo_multishot : public troupe::actor<udp_echo_multishot> {
  std::shared_ptr<net::socket> s_;

 public:
  explicit udp_echo_multishot(std::shared_ptr<net::socket> s) : s_(std::move(s)) {}
  void on_start() { arm(); }

 private:
  void arm() {
    submit(net::recv_from_multishot{*s_}).then([this](io::result<net::ring_datagram> d, bool more) {
      if (d)
        submit(net::send_to{*s_, d->peer, io::bytes(d->data.bytes().begin(), d->data.bytes().end())})
            .then([](io::result<net::sent>) {});
      if (!more) arm();
    });
  }
};

/// `spin`: the default spin_before_park (the shard polls a little before
/// it sleeps); false: it sleeps at once, as the peer servers do.
inline troupe::config server_config(int cpu, bool spin = true) {
  troupe::config c;
  c.shards = 1;
  c.cpus = {cpu};
  if (!spin) c.spin_before_park = std::chrono::microseconds(0);
  return c;
}

/// A troupe TCP server (echo or sink) on one shard pinned to `cpu`.
template <class Connection>
class tcp_server {
 public:
  explicit tcp_server(int cpu, bool spin = true) : rt_(server_config(cpu, spin)) {
    auto s = troupe::actors::serve_tcp<Connection>(rt_, {.at = net::address::loopback(0), .idle_timeout = {}});
    if (!s) bench::fail("troupe server: " + s.error().message());
    port_ = s->port();
  }
  ~tcp_server() { rt_.stop(); }
  std::uint16_t port() const { return port_; }

 private:
  troupe::runtime rt_;
  std::uint16_t port_ = 0;
};

template <class Echo = udp_echo>
class udp_server {
 public:
  explicit udp_server(int cpu, bool spin = true) : rt_(server_config(cpu, spin)) {
    auto s = net::bind_datagram(net::address::loopback(0));
    if (!s) bench::fail("troupe udp server: " + s.error().message());
    port_ = s->local_address().value().port();
    rt_.spawn<Echo>(troupe::pinned{0}, std::make_shared<net::socket>(std::move(*s)));
  }
  ~udp_server() { rt_.stop(); }
  std::uint16_t port() const { return port_; }

 private:
  troupe::runtime rt_;
  std::uint16_t port_ = 0;
};

}  // namespace bench::troupe_net
