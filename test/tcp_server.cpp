// actors/tcp_server and tcp_connection: echo through listeners on every
// shard, the connection limit, idle timeouts, a malformed frame closing its
// one connection while another keeps working, the send-queue cap, and a
// stop with connections open that leaves no descriptor behind. The clients
// are plain blocking sockets on the test thread (with receive timeouts).
#include <actors/tcp_server.hpp>

#define BOOST_TEST_MODULE tcp_server
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"
#include "io_fixture.hpp"

#include <troupe/runtime.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <thread>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <vector>

using namespace troupe;
using namespace troupe_test;
using troupe::actors::tcp_accepted;

namespace {

/// A blocking client socket on the test thread; reads time out after 5 s.
class client {
 public:
  explicit client(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    auto at = net::address::loopback(port);
    ok_ = ::connect(fd_, at.data(), at.size()) == 0;
  }
  ~client() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return ok_; }
  void send(const std::string& s) { (void)!::send(fd_, s.data(), s.size(), MSG_NOSIGNAL); }
  /// Reads until `n` bytes, end of stream or the timeout.
  std::string read(std::size_t n) {
    std::string out;
    char buf[65536];
    while (out.size() < n) {
      ssize_t r = ::recv(fd_, buf, std::min(sizeof buf, n - out.size()), 0);
      if (r <= 0) break;
      out.append(buf, std::size_t(r));
    }
    return out;
  }
  /// True when the server closed the connection (end of stream or reset)
  /// within the read timeout.
  bool closed_by_server() {
    char c;
    ssize_t r = ::recv(fd_, &c, 1, 0);
    return r == 0 || (r < 0 && errno == ECONNRESET);
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

struct seen {
  std::mutex m;
  std::set<shard_id> shards;
  std::vector<std::string> closed_reasons;
};

class echo : public actors::tcp_connection<echo> {
  std::shared_ptr<seen> seen_;

 public:
  echo(tcp_accepted a, std::shared_ptr<seen> s) : tcp_connection(std::move(a)), seen_(std::move(s)) {
    std::lock_guard g(seen_->m);
    seen_->shards.insert(troupe::this_shard());
  }
  void on_data(std::span<const std::byte> d) { write(io::bytes(d.begin(), d.end())); }
  void on_closed(std::string_view reason) {
    std::lock_guard g(seen_->m);
    seen_->closed_reasons.emplace_back(reason);
  }
};

// A line protocol: "flood" answers 1 MiB ten times; any other line is
// echoed upper-cased. Lines are at most 16 bytes.
class shouter : public actors::tcp_connection<shouter> {
  std::shared_ptr<seen> seen_;
  net::line_framer framer_{16};

 public:
  shouter(tcp_accepted a, std::shared_ptr<seen> s)
      : tcp_connection(std::move(a), {.max_queued_bytes = 2 * 1024 * 1024}), seen_(std::move(s)) {}
  void on_data(std::span<const std::byte> d) {
    auto ok = framer_.feed(d, [this](std::string_view line) {
      if (line == "flood") {
        for (int i = 0; i < 10; ++i) write(io::bytes(1 << 20, std::byte{'x'}));
        return;
      }
      std::string up(line);
      for (char& c : up) c = char(std::toupper(static_cast<unsigned char>(c)));
      write(up + "\n");
    });
    if (!ok) close("malformed frame: " + ok.error().message());
  }
  void on_closed(std::string_view reason) {
    std::lock_guard g(seen_->m);
    seen_->closed_reasons.emplace_back(reason);
  }
};

// "stream N\n" answers N chunks of 64 KiB (chunk i filled with byte i % 251)
// through try_write, pausing at would_overflow until on_writable.
class producer : public actors::tcp_connection<producer> {
  std::shared_ptr<seen> seen_;
  net::line_framer framer_{64};
  int next_ = 0, total_ = 0;

 public:
  static constexpr std::size_t chunk = 64 * 1024;
  producer(tcp_accepted a, std::shared_ptr<seen> s)
      : tcp_connection(std::move(a), {.max_queued_bytes = 1024 * 1024}), seen_(std::move(s)) {}
  void on_data(std::span<const std::byte> d) {
    (void)framer_.feed(d, [this](std::string_view line) {
      if (line.substr(0, 7) == "stream ") total_ = std::stoi(std::string(line.substr(7)));
      produce();
    });
  }
  void on_writable() { produce(); }
  void on_closed(std::string_view reason) {
    std::lock_guard g(seen_->m);
    seen_->closed_reasons.emplace_back(reason);
  }

 private:
  void produce() {
    while (next_ < total_) {
      io::bytes b(chunk, std::byte(next_ % 251));
      if (!try_write(b)) {
        std::lock_guard g(seen_->m);
        seen_->closed_reasons.emplace_back("paused");  // counted by the test
        return;
      }
      ++next_;
    }
  }
};

/// FNV-1a over what a test sends and what a connection receives.
struct fnv1a {
  std::uint64_t value = 1469598103934665603ull;
  void add(std::span<const std::byte> d) {
    for (std::byte b : d) value = (value ^ std::uint64_t(b)) * 1099511628211ull;
  }
  void add(const std::string& s) { add(std::as_bytes(std::span(s.data(), s.size()))); }
};

/// Fills `out` with the next bytes of the xorshift64 stream whose state is `x`.
void fill_pseudo_random(std::string& out, std::uint64_t& x) {
  for (char& ch : out) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    ch = char(x);
  }
}

bool has_reason(seen& s, std::string_view part) {
  std::lock_guard g(s.m);
  for (auto& r : s.closed_reasons)
    if (r.find(part) != std::string::npos) return true;
  return false;
}

}  // namespace

BOOST_AUTO_TEST_CASE(echoes_through_a_listener_on_every_shard) {
  auto s = std::make_shared<seen>();
  runtime rt{test_config(2)};
  auto server = actors::serve_tcp<echo>(rt, {.at = net::address::loopback(0)}, s);
  BOOST_REQUIRE_MESSAGE(server.has_value(), server.error().message());
  BOOST_REQUIRE(eventually([&] { return server->counters().listeners.load() == 2; }));
  std::vector<std::unique_ptr<client>> clients;
  for (int i = 0; i < 50; ++i) {
    clients.push_back(std::make_unique<client>(server->port()));
    BOOST_REQUIRE(clients.back()->ok());
  }
  for (int i = 0; i < 50; ++i) clients[std::size_t(i)]->send("message " + std::to_string(i));
  for (int i = 0; i < 50; ++i) {
    std::string want = "message " + std::to_string(i);
    BOOST_TEST(clients[std::size_t(i)]->read(want.size()) == want);
  }
  BOOST_TEST(server->counters().accepted.load() == 50u);
  BOOST_TEST(server->counters().open.load() == 50u);
  {
    std::lock_guard g(s->m);
    BOOST_TEST(s->shards.size() == 2u);  // SO_REUSEPORT spread them (50 connections)
  }
  clients.clear();  // the peers close: every connection actor goes
  BOOST_TEST(eventually([&] { return server->counters().open.load() == 0; }));
  BOOST_TEST(has_reason(*s, "closed by the peer"));
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(accepting_on_shard_zero_places_connections_on_the_shards_in_turn) {
  auto s = std::make_shared<seen>();
  runtime rt{test_config(2)};
  auto server = actors::serve_tcp<echo>(rt, {.at = net::address::loopback(0), .accept = actors::accept_on::shard_zero}, s);
  BOOST_REQUIRE_MESSAGE(server.has_value(), server.error().message());
  BOOST_REQUIRE(eventually([&] { return server->counters().listeners.load() == 1; }));
  std::vector<std::unique_ptr<client>> clients;
  for (int i = 0; i < 2; ++i) {  // two connections: one on each shard
    clients.push_back(std::make_unique<client>(server->port()));
    BOOST_REQUIRE(clients.back()->ok());
    clients.back()->send("hello " + std::to_string(i));
    BOOST_TEST(clients.back()->read(7) == "hello " + std::to_string(i));
  }
  {
    std::lock_guard g(s->m);
    BOOST_TEST(s->shards.size() == 2u);
  }
  clients.clear();
  BOOST_TEST(eventually([&] { return server->counters().open.load() == 0; }));
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(connections_beyond_the_limit_are_closed_at_once) {
  auto s = std::make_shared<seen>();
  runtime rt{test_config(1)};
  auto server = actors::serve_tcp<echo>(rt, {.at = net::address::loopback(0), .max_connections = 2}, s);
  BOOST_REQUIRE(server.has_value());
  client a(server->port()), b(server->port());
  a.send("a");
  b.send("b");
  BOOST_TEST(a.read(1) == "a");
  BOOST_TEST(b.read(1) == "b");
  client c(server->port());
  BOOST_TEST(c.closed_by_server());
  BOOST_TEST(server->counters().refused.load() == 1u);
  a.send("still");
  BOOST_TEST(a.read(5) == "still");
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(a_silent_connection_idles_out) {
  auto s = std::make_shared<seen>();
  runtime rt{test_config(1)};
  auto server = actors::serve_tcp<echo>(rt, {.at = net::address::loopback(0), .idle_timeout = 100ms}, s);
  BOOST_REQUIRE(server.has_value());
  client quiet(server->port());
  BOOST_TEST(quiet.closed_by_server());
  BOOST_TEST(eventually([&] { return has_reason(*s, "idle for 100 ms"); }));
  rt.stop();
}

BOOST_AUTO_TEST_CASE(a_malformed_frame_closes_only_its_connection) {
  auto s = std::make_shared<seen>();
  runtime rt{test_config(2)};
  auto server = actors::serve_tcp<shouter>(rt, {.at = net::address::loopback(0)}, s);
  BOOST_REQUIRE(server.has_value());
  client good(server->port()), bad(server->port());
  good.send("hello\n");
  BOOST_TEST(good.read(6) == "HELLO\n");
  bad.send("this line is much longer than sixteen bytes\n");
  BOOST_TEST(bad.closed_by_server());
  BOOST_TEST(eventually([&] { return has_reason(*s, "malformed frame: line longer"); }));
  // The other connection is unaffected.
  good.send("still ");
  good.send("here\n");
  BOOST_TEST(good.read(11) == "STILL HERE\n");
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(a_peer_that_does_not_read_hits_the_send_queue_cap) {
  auto s = std::make_shared<seen>();
  runtime rt{test_config(1)};
  auto server = actors::serve_tcp<shouter>(rt, {.at = net::address::loopback(0)}, s);
  BOOST_REQUIRE(server.has_value());
  client lazy(server->port());
  lazy.send("flood\n");  // 10 MiB answered, 2 MiB allowed in the queue, never read
  BOOST_TEST(eventually([&] { return has_reason(*s, "send queue over 2097152 bytes"); }));
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(stopping_with_connections_open_leaks_no_descriptor) {
  const int before = open_fds();
  {
    auto s = std::make_shared<seen>();
    runtime rt{test_config(2)};
    auto server = actors::serve_tcp<echo>(rt, {.at = net::address::loopback(0)}, s);
    BOOST_REQUIRE(server.has_value());
    std::vector<std::unique_ptr<client>> clients;
    for (int i = 0; i < 20; ++i) clients.push_back(std::make_unique<client>(server->port()));
    for (auto& c : clients) c->send("x");
    for (auto& c : clients) BOOST_TEST(c->read(1) == "x");
    rt.stop();
    check_quiescent(rt.stats());
    for (auto& c : clients) BOOST_TEST(c->closed_by_server());
  }
  BOOST_TEST(open_fds() == before);
}

BOOST_AUTO_TEST_CASE(a_port_in_use_is_an_error_value) {
  auto taken = net::listen(net::address::loopback(0));
  BOOST_REQUIRE(taken.has_value());
  runtime rt{test_config(1)};
  auto server = actors::serve_tcp<echo>(rt, {.at = taken->local_address().value()}, std::make_shared<seen>());
  BOOST_REQUIRE(!server.has_value());
  BOOST_TEST((server.error() == std::errc::address_in_use));
  rt.stop();
}

BOOST_AUTO_TEST_CASE(a_port_held_by_another_programs_reuseport_listener_is_refused_and_keeps_its_connections) {
  for (auto mode : {actors::accept_on::every_shard, actors::accept_on::shard_zero}) {
    foreign_listener other(true);  // SO_REUSEPORT, same user: the kernel would let us share it
    BOOST_REQUIRE(other.ok());
    runtime rt{test_config()};
    auto s = std::make_shared<seen>();
    auto server = actors::serve_tcp<echo>(rt, {.at = net::address::loopback(other.port()), .accept = mode}, s);
    BOOST_TEST(!server.has_value(), "serve_tcp started on a port another program holds");
    if (!server.has_value()) BOOST_TEST((server.error() == std::errc::address_in_use));
    // Every connection still goes to its owner, none to us.
    constexpr int n = 32;
    std::vector<std::unique_ptr<client>> clients;
    for (int i = 0; i < n; ++i) clients.push_back(std::make_unique<client>(other.port()));
    int got = 0;
    BOOST_TEST(eventually([&] { return (got += other.accept_all()) >= n; }, std::chrono::seconds(5)));
    BOOST_TEST(got == n);
    rt.stop();
  }
}

BOOST_AUTO_TEST_CASE(try_write_pauses_at_the_cap_and_resumes_when_writable) {
  auto s = std::make_shared<seen>();
  runtime rt{test_config(2)};
  auto server = actors::serve_tcp<producer>(rt, {.at = net::address::loopback(0)}, s);
  BOOST_REQUIRE(server.has_value());
  client c(server->port());
  const int chunks = 200;  // 12.5 MiB through a 1 MiB queue
  c.send("stream " + std::to_string(chunks) + "\n");
  bool all_right = true;
  for (int i = 0; i < chunks && all_right; ++i) {
    std::string got = c.read(producer::chunk);
    all_right = got.size() == producer::chunk && got.find_first_not_of(char(i % 251)) == std::string::npos;
  }
  BOOST_TEST(all_right);
  std::size_t pauses = 0;
  {
    std::lock_guard g(s->m);
    for (auto& r : s->closed_reasons) pauses += r == "paused";
    BOOST_TEST(s->closed_reasons.size() == pauses);  // paused, never closed
  }
  BOOST_TEST(pauses > 0u);
  BOOST_TEST_MESSAGE("paused " << pauses << " times");
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(a_100_mib_stream_arrives_whole_through_small_reads) {
  // The server reads 4 KiB at a time while the client pushes as fast as
  // loopback goes: TCP flow control holds the rest in the kernel, nothing
  // is lost, and the server's memory stays one read buffer.
  struct result_slot {
    std::mutex m;
    std::uint64_t bytes = 0, hash = 0;
    bool done = false;
  };
  static result_slot slot;  // the connection's last words, for the test thread
  class reporting_hasher : public actors::tcp_connection<reporting_hasher> {
    fnv1a hash_;
    std::uint64_t bytes_ = 0;

   public:
    explicit reporting_hasher(tcp_accepted a) : tcp_connection(std::move(a), {.read_size = 4096}) {}
    void on_data(std::span<const std::byte> d) {
      hash_.add(d);
      bytes_ += d.size();
    }
    void on_closed(std::string_view) {
      std::lock_guard g(slot.m);
      slot.bytes = bytes_;
      slot.hash = hash_.value;
      slot.done = true;
    }
  };
  runtime rt{test_config(2)};
  auto server = actors::serve_tcp<reporting_hasher>(rt, {.at = net::address::loopback(0)});
  BOOST_REQUIRE(server.has_value());
  const std::size_t total = 100u << 20;
  fnv1a want;
  {
    client c(server->port());
    std::string chunk(1 << 20, '\0');
    std::uint64_t x = 0x9E3779B97F4A7C15ull;
    for (std::size_t sent = 0; sent < total; sent += chunk.size()) {
      fill_pseudo_random(chunk, x);
      want.add(chunk);
      c.send(chunk);
    }
  }  // closes: the server sees end of stream
  BOOST_REQUIRE(eventually([&] {
    std::lock_guard g(slot.m);
    return slot.done;
  }, 120s));
  std::lock_guard g(slot.m);
  BOOST_TEST(slot.bytes == total);
  BOOST_TEST(slot.hash == want.value);
  rt.stop();
}

namespace {
struct get_result_q {};
struct chunk_msg {
  net::buffer data;  // travels to the hashing actor on the other shard
};
struct stream_result {
  std::mutex m;
  std::uint64_t bytes = 0, hash = 0, waits = 0;
  bool done = false;
};
stream_result ring_slot;

// Hashes what it is sent, in order, on its own shard; the buffers it drops
// go back to the receiving shard's ring from here (across shards).
class remote_hasher : public actor<remote_hasher> {
  fnv1a hash_;
  std::uint64_t bytes_ = 0;

 public:
  void on(chunk_msg&& c) {
    hash_.add(c.data.bytes());
    bytes_ += c.data.size();
  }
  std::pair<std::uint64_t, std::uint64_t> on(const get_result_q&) const { return {bytes_, hash_.value}; }
};

class ring_reader : public actors::tcp_connection<ring_reader> {
  ref<remote_hasher> hasher_;

 public:
  ring_reader(tcp_accepted a, ref<remote_hasher> h)
      : tcp_connection(std::move(a), {.provided_buffers = true, .max_held_buffers = 0}), hasher_(std::move(h)) {}  // multishot
  void on_data(net::buffer&& b) { hasher_.send(chunk_msg{std::move(b)}); }
  void on_closed(std::string_view) {
    std::lock_guard g(ring_slot.m);
    ring_slot.waits = buffer_waits();
    ring_slot.done = true;
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(a_100_mib_stream_through_a_four_buffer_ring_loses_no_byte) {
  // Four 4 KiB buffers per shard; every buffer crosses to shard 1 and is
  // given back from there, so the ring runs dry over and over: each time
  // the recv ends with ENOBUFS and is re-armed, and nothing is lost.
  config c = test_config(2);
  c.recv_buffers.count = 4;
  c.recv_buffers.size = 4096;
  runtime rt{c};
  auto h = rt.spawn<remote_hasher>(pinned{1});
  auto server = actors::serve_tcp<ring_reader>(rt, {.at = net::address::loopback(0)}, h);
  BOOST_REQUIRE(server.has_value());
  const std::size_t total = 100u << 20;
  fnv1a want;
  {
    client cl(server->port());
    std::string chunk(1 << 20, '\0');
    std::uint64_t x = 0x2545F4914F6CDD1Dull;
    for (std::size_t sent = 0; sent < total; sent += chunk.size()) {
      fill_pseudo_random(chunk, x);
      want.add(chunk);
      cl.send(chunk);
    }
  }
  BOOST_REQUIRE(eventually([&] {
    std::lock_guard g(ring_slot.m);
    return ring_slot.done;
  }, 120s));
  auto [bytes, hash] = rt.ask(h, get_result_q{}).get();
  BOOST_TEST(bytes == total);
  BOOST_TEST(hash == want.value);
  std::lock_guard g(ring_slot.m);
  BOOST_TEST(ring_slot.waits > 0u);  // the ring did run dry
  BOOST_TEST_MESSAGE("the ring ran dry " << ring_slot.waits << " times");
  rt.stop();
  check_quiescent(rt.stats());
}

namespace {
// One connection type, two behaviours by the first byte: 'H' hoards its
// buffers (a slow consumer: it lets go of two per millisecond), anything
// else is echoed.
struct quota_report {
  std::mutex m;
  std::uint64_t bytes = 0, hash = 0, pauses = 0, peak = 0;
  bool done = false;
};
quota_report quota_slot;
std::atomic<std::uint64_t> hoarder_pauses{0};
struct release_tick {};

class hoarder : public actors::tcp_connection<hoarder> {
  enum class mode { unknown, hoard, echo } mode_ = mode::unknown;
  std::deque<net::buffer> held_;
  fnv1a hash_;
  std::uint64_t bytes_ = 0, peak_ = 0;

  void hash_front() {
    hash_.add(held_.front().bytes());
    bytes_ += held_.front().size();
    held_.pop_front();
  }

 public:
  static constexpr std::uint32_t quota = 8;
  explicit hoarder(tcp_accepted a) : tcp_connection(std::move(a), {.provided_buffers = true, .max_held_buffers = quota}) {}
  void on_data(net::buffer&& b) {
    if (mode_ == mode::unknown) {
      mode_ = b.bytes()[0] == std::byte{'H'} ? mode::hoard : mode::echo;
      if (mode_ == mode::hoard) every(1ms, release_tick{});
    }
    if (mode_ == mode::echo) return write(io::bytes(b.bytes().begin(), b.bytes().end()));
    held_.push_back(std::move(b));
    peak_ = std::max<std::uint64_t>(peak_, held_buffers());
    hoarder_pauses.store(quota_pauses());
  }
  void on(release_tick) {
    for (int i = 0; i < 2 && !held_.empty(); ++i) hash_front();
  }
  void on_closed(std::string_view) {
    if (mode_ != mode::hoard) return;
    while (!held_.empty()) hash_front();
    std::lock_guard g(quota_slot.m);
    quota_slot.bytes = bytes_;
    quota_slot.hash = hash_.value;
    quota_slot.pauses = quota_pauses();
    quota_slot.peak = peak_;
    quota_slot.done = true;
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(a_connection_at_its_buffer_quota_pauses_while_another_keeps_reading) {
  // One shard, a ring of 64 buffers: the hoarding connection may hold 8.
  // At 8 it stops reading (TCP flow control holds the rest in the kernel)
  // and reads on once it is down to 4; the echo connection on the same
  // ring keeps working all the while, and the hoarded stream is whole.
  config c = test_config(1);
  c.recv_buffers.count = 64;
  c.recv_buffers.size = 4096;
  runtime rt{c};
  auto server = actors::serve_tcp<hoarder>(rt, {.at = net::address::loopback(0)});
  BOOST_REQUIRE(server.has_value());
  const std::size_t total = 8u << 20;
  std::string stream(total, '\0');
  std::uint64_t x = 0x9E3779B97F4A7C15ull;
  fill_pseudo_random(stream, x);
  stream[0] = 'H';
  fnv1a want;
  want.add(stream);
  hoarder_pauses = 0;
  std::thread pusher([&] {
    client a(server->port());
    a.send(stream);
  });
  BOOST_REQUIRE(eventually([] { return hoarder_pauses.load() > 0; }, 30s));
  {
    client b(server->port());
    BOOST_REQUIRE(b.ok());
    int answered = 0;
    for (int i = 0; i < 200; ++i) {
      std::string ping = "ping " + std::to_string(i) + std::string(50, '.');
      b.send(ping);
      answered += b.read(ping.size()) == ping;
    }
    BOOST_TEST(answered == 200);
  }
  pusher.join();
  BOOST_REQUIRE(eventually([&] {
    std::lock_guard g(quota_slot.m);
    return quota_slot.done;
  }, 60s));
  std::lock_guard g(quota_slot.m);
  BOOST_TEST(quota_slot.bytes == total);
  BOOST_TEST(quota_slot.hash == want.value);
  BOOST_TEST(quota_slot.pauses > 0u);
  BOOST_TEST(quota_slot.peak <= hoarder::quota);  // a hard cap
  BOOST_TEST_MESSAGE("paused " << quota_slot.pauses << " times, held at most " << quota_slot.peak << " buffers");
  rt.stop();
  check_quiescent(rt.stats());
}

namespace {
// Holds the buffers it is sent and lets go of two per millisecond, hashing
// them in order: a slow consumer on another shard than the connection.
class slow_holder : public actor<slow_holder> {
  std::deque<net::buffer> held_;
  fnv1a hash_;
  std::uint64_t bytes_ = 0;

 public:
  void on_start() { every(1ms, release_tick{}); }
  void on(chunk_msg&& c) { held_.push_back(std::move(c.data)); }
  void on(release_tick) {
    for (int i = 0; i < 2 && !held_.empty(); ++i) {
      hash_.add(held_.front().bytes());
      bytes_ += held_.front().size();
      held_.pop_front();  // back to the connection's shard, and off its quota, from here
    }
  }
  std::pair<std::uint64_t, std::uint64_t> on(const get_result_q&) const { return {bytes_, hash_.value}; }
};

std::atomic<std::uint64_t> handed_peak{0}, handed_pauses{0};

struct holders_by_shard {
  ref<slow_holder> h0, h1;
};

// Hands every buffer to the holder on the other shard than its own.
class hander : public actors::tcp_connection<hander> {
  ref<slow_holder> holder_;

 public:
  static constexpr std::uint32_t quota = 6;
  hander(tcp_accepted a, holders_by_shard hs)
      : tcp_connection(std::move(a), {.provided_buffers = true, .max_held_buffers = quota}),
        holder_(troupe::this_shard() == 0 ? hs.h1 : hs.h0) {}
  void on_data(net::buffer&& b) {
    holder_.send(chunk_msg{std::move(b)});
    handed_peak.store(std::max<std::uint64_t>(handed_peak.load(), held_buffers()));
    handed_pauses.store(quota_pauses());
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(a_quota_reopens_when_its_buffers_are_dropped_on_another_shard) {
  // The connection hands every buffer to an actor on the other shard that
  // drops them slowly: the wake-up that resumes reading comes from that
  // shard's thread. Held at most 6, paused, and the stream arrives whole.
  config c = test_config(2);
  c.recv_buffers.count = 32;
  c.recv_buffers.size = 4096;
  runtime rt{c};
  auto h0 = rt.spawn<slow_holder>(pinned{0}), h1 = rt.spawn<slow_holder>(pinned{1});
  handed_peak = 0;
  handed_pauses = 0;
  auto server = actors::serve_tcp<hander>(rt, {.at = net::address::loopback(0)}, holders_by_shard{h0, h1});
  BOOST_REQUIRE(server.has_value());
  const std::size_t total = 4u << 20;
  std::string stream(total, '\0');
  std::uint64_t x = 0x51ED270B2D3E9A47ull;
  fill_pseudo_random(stream, x);
  fnv1a want;
  want.add(stream);
  {
    client a(server->port());
    BOOST_REQUIRE(a.ok());
    a.send(stream);
  }
  std::pair<std::uint64_t, std::uint64_t> got{};
  BOOST_REQUIRE(eventually([&] {
    auto r0 = rt.ask(h0, get_result_q{}).get(), r1 = rt.ask(h1, get_result_q{}).get();
    got = r0.first != 0 ? r0 : r1;
    return got.first == total;
  }, 60s));
  BOOST_TEST(got.second == want.value);
  BOOST_TEST(handed_pauses.load() > 0u);
  BOOST_TEST(handed_peak.load() <= hander::quota);
  BOOST_TEST_MESSAGE("paused " << handed_pauses.load() << " times, held at most " << handed_peak.load());
  rt.stop();
  check_quiescent(rt.stats());
}
