// Network peers (no troupe code).  See peers_net.hpp.
//
// Design.  Every server is an `echo_server_handle::impl` owning one thread.
// The liburing servers share `uring_server`: one ring, an eventfd read that
// the destructor completes to stop the loop, and an in-flight count (every
// SQE that will post a CQE counts until its last CQE).  Stopping cancels
// every outstanding operation by user_data and keeps reaping until the count
// is zero, so no kernel write can land in a buffer after it is freed.  The
// user_data of an operation is the address of the object it works on (8-byte
// aligned) ORed with a 3-bit kind.  A connection has at most one operation in
// flight, so its object can be freed as soon as that operation's CQE is
// reaped.
//
// The load client follows the same rules: one ring, one thread, every byte
// checked, nothing left in flight when it returns.
//
// This file: the one load client.
#include "peers_net_common.hpp"

namespace bench::peers {

using namespace net_detail;

// --- the load client ----------------------------------------------------------------

namespace {

// Runs body() on one thread pinned to `cpu` under a watchdog.
template <class Body>
void run_pinned(const std::string& what, int cpu, std::chrono::seconds limit, Body body) {
  watchdog w(what, limit);
  std::thread t([&] {
    pin(cpu);
    body();
  });
  t.join();
}

struct ring_guard {
  io_uring* ring;
  ~ring_guard() { io_uring_queue_exit(ring); }
};

// Message `seq` of connection `id`: seq, id, a magic word, then a pattern
// derived from both.
void fill_message(std::byte* p, std::size_t size, std::uint32_t id, std::uint64_t seq) {
  constexpr std::uint32_t kMagic = 0x7e40ec40;
  std::memcpy(p, &seq, 8);
  std::memcpy(p + 8, &id, 4);
  std::memcpy(p + 12, &kMagic, 4);
  std::uint64_t h = splitmix64(seq ^ (std::uint64_t(id) << 40));
  for (std::size_t j = 16; j < size; j += 8, h += 0x9e3779b97f4a7c15ull)
    std::memcpy(p + j, &h, std::min<std::size_t>(8, size - j));
}

// Percentile `q` (0..1) of `v` (reordered), in microseconds.
double percentile_us(std::vector<std::uint32_t>& v, double q) {
  if (v.empty()) return 0;
  auto k = std::size_t(q * double(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + long(k), v.end());
  return double(v[k]) / 1000.0;
}

double mean_us(const std::vector<std::uint32_t>& v) {
  if (v.empty()) return 0;
  return double(std::accumulate(v.begin(), v.end(), std::uint64_t(0))) / double(v.size()) / 1000.0;
}

std::uint32_t ns_between(clock::time_point a, clock::time_point b) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count();
  return std::uint32_t(std::clamp<std::int64_t>(ns, 0, UINT32_MAX));
}

class echo_client {
 public:
  echo_client(std::uint16_t port, const echo_load_options& o) : o_(o), msg_(o.message_size) {
    make_ring(&ring_, 4 * unsigned(o.connections) + 8);
    for (int i = 0; i < o.connections; ++i) {
      auto c = std::make_unique<conn>();
      c->fd = connect_tcp(port);
      c->id = std::uint32_t(i);
      const std::size_t window = std::size_t(o.depth) * msg_;
      c->sbuf.reset(new std::byte[window]);
      c->rbuf_len = std::max<std::size_t>(window, 4096);
      c->rbuf.reset(new std::byte[c->rbuf_len]);
      c->expect.reset(new std::byte[msg_]);
      c->sent_at.resize(std::size_t(o.depth));
      conns_.push_back(std::move(c));
    }
  }
  ~echo_client() {
    for (auto& c : conns_) close_fd(c->fd);
    io_uring_queue_exit(&ring_);
  }

  echo_load_result run() {
    auto now = clock::now();
    const auto warm_end = now + o_.warmup;
    clock::time_point t0, t1;
    double cpu0 = 0, cpu1 = 0, all0 = 0, all1 = 0;
    enum { warming, measuring, draining } phase = warming;
    lat_.reserve(1 << 20);
    for (auto& c : conns_) {
      arm_recv(c.get());
      refill(c.get(), now);
    }
    long busy = long(conns_.size());  // connections with messages in flight or a send busy
    while (phase != draining || busy > 0) {
      submit_and_wait(&ring_, 1);
      now = clock::now();
      if (phase == warming && now >= warm_end) {
        phase = measuring;
        t0 = now;
        cpu0 = this_thread_cpu_seconds();
        all0 = process_cpu_seconds();
      }
      unsigned head, seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        conn* c = tag_ptr<conn>(cqe->user_data);
        const bool was_busy = c->busy();
        if ((cqe->user_data & kKindMask) == kRecv) {
          if (cqe->res <= 0)
            fail("tcp echo load: recv: " + (cqe->res == 0 ? std::string("EOF before all echoes") : errno_text(-cqe->res)));
          consume(c, std::size_t(cqe->res), now, phase == measuring);
          arm_recv(c);
        } else {
          if (cqe->res <= 0) fail("tcp echo load: send: " + errno_text(cqe->res == 0 ? EIO : -cqe->res));
          c->soff += std::size_t(cqe->res);
          if (c->soff < c->slen)
            arm_send(c);
          else
            c->send_busy = false;
        }
        if (phase != draining) refill(c, now);
        if (was_busy && !c->busy()) --busy;
      }
      io_uring_cq_advance(&ring_, seen);
      if (phase == measuring &&
          ((o_.messages > 0 && long(lat_.size()) >= o_.messages) || (o_.messages <= 0 && now - t0 >= o_.duration))) {
        phase = draining;
        t1 = now;
        cpu1 = this_thread_cpu_seconds();
        all1 = process_cpu_seconds();
      }
    }
    finish();
    echo_load_result r;
    r.seconds = std::chrono::duration<double>(t1 - t0).count();
    r.messages = long(lat_.size());
    check(r.messages > 0 && r.seconds > 0, "tcp echo load: no message completed in the measured window");
    r.msgs_per_s = double(r.messages) / r.seconds;
    r.client_cpu = (cpu1 - cpu0) / r.seconds;
    r.server_cpu = (all1 - all0 - (cpu1 - cpu0)) / r.seconds;
    r.mean_us = mean_us(lat_);
    r.p50_us = percentile_us(lat_, 0.50);
    r.p99_us = percentile_us(lat_, 0.99);
    return r;
  }

 private:
  static constexpr unsigned kRecv = 0, kSend = 1;

  struct conn {
    int fd = -1;
    std::uint32_t id = 0;
    std::uint64_t sent = 0;    // messages handed to send so far
    std::uint64_t echoed = 0;  // messages echoed completely
    std::size_t rpos = 0;      // bytes of message `echoed` received
    bool send_busy = false;
    std::size_t soff = 0, slen = 0;
    std::size_t rbuf_len = 0;
    std::unique_ptr<std::byte[]> sbuf, rbuf, expect;
    std::vector<clock::time_point> sent_at;  // by seq % depth
    bool busy() const { return send_busy || echoed != sent; }
  };

  void arm_recv(conn* c) {
    io_uring_sqe* s = get_sqe(&ring_);
    io_uring_prep_recv(s, c->fd, c->rbuf.get(), c->rbuf_len, 0);
    io_uring_sqe_set_data64(s, tag(c, kRecv));
  }
  void arm_send(conn* c) {
    io_uring_sqe* s = get_sqe(&ring_);
    io_uring_prep_send(s, c->fd, c->sbuf.get() + c->soff, c->slen - c->soff, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, tag(c, kSend));
  }

  // Sends new messages for the free slots of `c`'s window, as one send.
  void refill(conn* c, clock::time_point now) {
    if (c->send_busy) return;
    const std::uint64_t k = std::uint64_t(o_.depth) - (c->sent - c->echoed);
    if (k == 0) return;
    for (std::uint64_t i = 0; i < k; ++i) {
      fill_message(c->sbuf.get() + i * msg_, msg_, c->id, c->sent + i);
      c->sent_at[(c->sent + i) % std::uint64_t(o_.depth)] = now;
    }
    c->sent += k;
    c->soff = 0;
    c->slen = std::size_t(k) * msg_;
    c->send_busy = true;
    arm_send(c);
  }

  // Checks `n` received bytes of `c` and completes the messages they end.
  void consume(conn* c, std::size_t n, clock::time_point now, bool record) {
    const std::byte* p = c->rbuf.get();
    while (n > 0) {
      if (c->echoed == c->sent) fail("tcp echo load: more bytes echoed than sent on connection " + std::to_string(c->id));
      if (c->rpos == 0) fill_message(c->expect.get(), msg_, c->id, c->echoed);
      const std::size_t take = std::min(n, msg_ - c->rpos);
      if (std::memcmp(p, c->expect.get() + c->rpos, take) != 0)
        fail("tcp echo load: wrong bytes in echo of message " + std::to_string(c->echoed) + " on connection " +
             std::to_string(c->id));
      c->rpos += take;
      p += take;
      n -= take;
      if (c->rpos == msg_) {
        if (record) lat_.push_back(ns_between(c->sent_at[c->echoed % std::uint64_t(o_.depth)], now));
        ++c->echoed;
        c->rpos = 0;
      }
    }
  }

  // Half-closes every connection and waits for the server's EOF on each (the
  // recv armed on each connection must complete with 0 bytes).
  void finish() {
    for (auto& c : conns_)
      if (::shutdown(c->fd, SHUT_WR) != 0) fail_errno("tcp echo load: shutdown", errno);
    std::size_t eofs = 0;
    while (eofs < conns_.size()) {
      submit_and_wait(&ring_, 1);
      unsigned head, seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        if (cqe->res != 0) fail("tcp echo load: expected EOF after the last echo, got " + std::to_string(cqe->res));
        ++eofs;
      }
      io_uring_cq_advance(&ring_, seen);
    }
  }

  echo_load_options o_;
  std::size_t msg_;
  io_uring ring_{};
  std::vector<std::unique_ptr<conn>> conns_;
  std::vector<std::uint32_t> lat_;
};

// The tcp_stream pattern: byte i of the stream is byte i % 8 of
// splitmix64(i / 8), with period kPeriod (not a multiple of a write).
constexpr std::size_t kPeriod = (std::size_t(1) << 20) + 104;
constexpr std::size_t kMaxWrite = std::size_t(1) << 24;

std::unique_ptr<std::byte[]> make_pattern(std::size_t extra) {
  std::unique_ptr<std::byte[]> p(new std::byte[kPeriod + extra]);
  for (std::size_t i = 0; i < kPeriod + extra; i += 8) {
    std::uint64_t w = splitmix64((i % kPeriod) / 8);
    std::memcpy(p.get() + i, &w, std::min<std::size_t>(8, kPeriod + extra - i));
  }
  return p;
}

stream_result stream_load(std::uint16_t port, const stream_options& o) {
  const std::size_t ws = std::clamp<std::size_t>(o.write_size, 1, kMaxWrite);  // checked by the caller
  auto pattern = make_pattern(ws);
  std::unique_ptr<std::byte[]> rbuf(new std::byte[ws]);
  io_uring ring;
  make_ring(&ring, 8);
  ring_guard g{&ring};
  const int fd = connect_tcp(port);
  constexpr unsigned kRecv = 0, kSend = 1;
  std::uint64_t sent = 0, got = 0;
  std::size_t in_send = 0;  // bytes of the send in flight
  std::uint64_t count = 0;  // sink: the server's count
  std::size_t count_got = 0;
  auto send_next = [&] {
    in_send = std::size_t(std::min<std::uint64_t>(ws, o.bytes - sent));
    io_uring_sqe* s = get_sqe(&ring);
    io_uring_prep_send(s, fd, pattern.get() + sent % kPeriod, in_send, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, kSend);
  };
  auto recv_next = [&] {
    io_uring_sqe* s = get_sqe(&ring);
    if (o.mode == stream_mode::echo)
      io_uring_prep_recv(s, fd, rbuf.get(), ws, 0);
    else
      io_uring_prep_recv(s, fd, reinterpret_cast<std::byte*>(&count) + count_got, sizeof count - count_got, 0);
    io_uring_sqe_set_data64(s, kRecv);
  };
  const auto t0 = clock::now();
  const double cpu0 = this_thread_cpu_seconds();
  send_next();
  if (o.mode == stream_mode::echo) recv_next();
  bool sending = true, receiving = o.mode == stream_mode::echo;
  while (sending || receiving) {
    submit_and_wait(&ring, 1);
    unsigned head, seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++seen;
      const int res = cqe->res;
      if (cqe->user_data == kSend) {
        if (res <= 0) fail("tcp stream load: send: " + errno_text(res == 0 ? EIO : -res));
        sent += std::uint64_t(res);
        if (std::size_t(res) < in_send) {  // partial: send the rest
          in_send -= std::size_t(res);
          io_uring_sqe* s = get_sqe(&ring);
          io_uring_prep_send(s, fd, pattern.get() + sent % kPeriod, in_send, MSG_NOSIGNAL);
          io_uring_sqe_set_data64(s, kSend);
        } else if (sent < o.bytes) {
          send_next();
        } else {
          sending = false;
          if (::shutdown(fd, SHUT_WR) != 0) fail_errno("tcp stream load: shutdown", errno);
          if (o.mode == stream_mode::sink) {
            receiving = true;
            recv_next();
          }
        }
        continue;
      }
      if (res < 0) fail("tcp stream load: recv: " + errno_text(-res));
      if (o.mode == stream_mode::echo) {
        if (res == 0) fail("tcp stream load: EOF after " + std::to_string(got) + " of " + std::to_string(o.bytes) + " bytes");
        if (got + std::uint64_t(res) > o.bytes) fail("tcp stream load: more bytes echoed than sent");
        if (std::memcmp(rbuf.get(), pattern.get() + got % kPeriod, std::size_t(res)) != 0)
          fail("tcp stream load: wrong bytes echoed at offset " + std::to_string(got));
        got += std::uint64_t(res);
        if (got < o.bytes)
          recv_next();
        else
          receiving = false;
      } else {
        if (res == 0) fail("tcp stream load: EOF before the sink's byte count");
        count_got += std::size_t(res);
        if (count_got < sizeof count)
          recv_next();
        else
          receiving = false;
      }
    }
    io_uring_cq_advance(&ring, seen);
  }
  const auto t1 = clock::now();
  const double cpu1 = this_thread_cpu_seconds();
  if (o.mode == stream_mode::sink)
    check(count == o.bytes, "tcp stream load: the sink counted " + std::to_string(count) + " bytes, sent " +
                                std::to_string(o.bytes));
  // The server closes after its last byte: expect EOF (echo: after shutdown above).
  for (;;) {
    std::byte b[1];
    ssize_t r = ::recv(fd, b, 1, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail_errno("tcp stream load: recv at the end", errno);
    check(r == 0, "tcp stream load: bytes after the end of the stream");
    break;
  }
  close_fd(fd);
  stream_result r;
  r.seconds = std::chrono::duration<double>(t1 - t0).count();
  r.gib_per_s = double(o.bytes) / r.seconds / (1024.0 * 1024.0 * 1024.0);
  r.client_cpu = (cpu1 - cpu0) / r.seconds;
  return r;
}

udp_result udp_load(std::uint16_t port, const udp_options& o) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail_errno("socket(udp)", errno);
  timeval tv{2, 0};
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) fail_errno("setsockopt(SO_RCVTIMEO)", errno);
  sockaddr_in a = loopback(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fail_errno("connect(udp)", errno);
  std::vector<std::byte> out(o.payload), in(o.payload + 1);
  std::vector<std::uint32_t> lat;
  lat.reserve(std::size_t(o.round_trips));
  for (long i = 0; i < o.warmup + o.round_trips; ++i) {
    fill_message(out.data(), o.payload, 0xffffffffu, std::uint64_t(i));
    const auto t0 = clock::now();
    ssize_t r;
    while ((r = ::send(fd, out.data(), out.size(), 0)) < 0 && errno == EINTR) {
    }
    if (r < 0) fail_errno("udp pingpong: send", errno);
    check(std::size_t(r) == out.size(), "udp pingpong: short send");
    while ((r = ::recv(fd, in.data(), in.size(), 0)) < 0 && errno == EINTR) {
    }
    const auto t1 = clock::now();
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      fail("udp pingpong: no reply within 2 s to datagram " + std::to_string(i));
    if (r < 0) fail_errno("udp pingpong: recv", errno);
    if (std::size_t(r) != out.size() || std::memcmp(in.data(), out.data(), out.size()) != 0)
      fail("udp pingpong: wrong reply to datagram " + std::to_string(i));
    if (i >= o.warmup) lat.push_back(ns_between(t0, t1));
  }
  close_fd(fd);
  udp_result r;
  r.mean_us = mean_us(lat);
  r.p50_us = percentile_us(lat, 0.50);
  r.p99_us = percentile_us(lat, 0.99);
  return r;
}

}  // namespace

echo_load_result run_echo_load(std::uint16_t port, const echo_load_options& o) {
  check(o.connections > 0 && o.depth > 0 && o.message_size >= 16, "tcp echo load: bad options");
  const auto limit = std::chrono::duration_cast<std::chrono::seconds>(o.warmup + o.duration) +
                     std::chrono::seconds(o.messages > 0 ? 120 : 30);
  echo_load_result r;
  run_pinned("tcp echo load", o.cpu, limit, [&] { r = echo_client(port, o).run(); });
  return r;
}

stream_result run_stream_load(std::uint16_t port, const stream_options& o) {
  check(o.bytes > 0 && o.write_size > 0 && o.write_size <= kMaxWrite, "tcp stream load: bad options");
  stream_result r;
  run_pinned("tcp stream load", o.cpu, std::chrono::seconds(120), [&] { r = stream_load(port, o); });
  return r;
}

udp_result run_udp_pingpong(std::uint16_t port, const udp_options& o) {
  check(o.round_trips > 0 && o.warmup >= 0 && o.payload >= 16 && o.payload <= 65000, "udp pingpong: bad options");
  udp_result r;
  run_pinned("udp pingpong", o.cpu, std::chrono::seconds(120), [&] { r = udp_load(port, o); });
  return r;
}

}  // namespace bench::peers
