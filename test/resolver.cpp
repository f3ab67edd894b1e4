// actors/resolver against a DNS stub this test runs on 127.0.0.1 (no
// outside network): answers, NXDOMAIN, a server that never answers
// (timeout), IP literals, many queries at once from two shards, no thread
// started, and a stop with queries in flight.
#include <actors/resolver.hpp>

#define BOOST_TEST_MODULE resolver
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"
#include "io_fixture.hpp"

#include <troupe/runtime.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace troupe;
using namespace troupe_test;
using troupe::actors::resolver;

namespace {

/// A UDP DNS server on 127.0.0.1: "known.test" and "a<N>.test" have an A
/// record (10.1.2.3, 10.9.0.N), "slow.test" is never answered, every other
/// name is NXDOMAIN; AAAA questions get an empty answer.
class dns_stub {
 public:
  dns_stub() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    auto at = net::address::loopback(0);
    BOOST_REQUIRE(::bind(fd_, at.data(), at.size()) == 0);
    sockaddr_in bound{};
    socklen_t len = sizeof bound;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&bound), &len);
    port_ = ntohs(bound.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~dns_stub() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::uint16_t port() const { return port_; }
  int queries() const { return queries_.load(); }

 private:
  void serve() {
    unsigned char q[512];
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      sockaddr_storage from{};
      socklen_t flen = sizeof from;
      ssize_t n = ::recvfrom(fd_, q, sizeof q, 0, reinterpret_cast<sockaddr*>(&from), &flen);
      if (n < 12) continue;
      ++queries_;
      // The question: labels from byte 12, then QTYPE and QCLASS.
      std::size_t i = 12;
      std::string name;
      while (i < std::size_t(n) && q[i] != 0) {
        std::size_t l = q[i];
        if (!name.empty()) name += '.';
        name.append(reinterpret_cast<const char*>(q + i + 1), l);
        i += l + 1;
      }
      const std::size_t qend = i + 5;  // the zero label, QTYPE, QCLASS
      if (qend > std::size_t(n)) continue;
      const unsigned qtype = unsigned(q[i + 1]) << 8 | q[i + 2];
      if (name == "slow.test") continue;
      std::uint32_t ip = 0;
      if (name == "known.test") ip = 0x0A010203;
      else if (name.size() > 6 && name[0] == 'a' && name.substr(name.size() - 5) == ".test")
        ip = 0x0A090000 | std::uint32_t(std::stoi(name.substr(1, name.size() - 6)));
      unsigned char r[512];
      std::memcpy(r, q, qend);
      const bool answer = ip != 0 && qtype == 1;
      r[2] = 0x81;                                // QR, RD
      r[3] = ip != 0 ? 0x80 : 0x83;               // RA; NXDOMAIN for unknown names
      r[6] = 0, r[7] = answer ? 1 : 0;            // ANCOUNT
      r[8] = r[9] = r[10] = r[11] = 0;            // NSCOUNT, ARCOUNT
      std::size_t len = qend;
      if (answer) {
        const unsigned char rr[] = {0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4,
                                    (unsigned char)(ip >> 24), (unsigned char)(ip >> 16),
                                    (unsigned char)(ip >> 8), (unsigned char)ip};
        std::memcpy(r + len, rr, sizeof rr);
        len += sizeof rr;
      }
      ::sendto(fd_, r, len, 0, reinterpret_cast<sockaddr*>(&from), flen);
    }
  }

  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> queries_{0};
  std::thread thread_;
};

resolver::options stub_options(const dns_stub& s, std::chrono::milliseconds timeout = 2000ms, int tries = 2) {
  resolver::options o;
  o.servers = "127.0.0.1:" + std::to_string(s.port());
  o.timeout = timeout;
  o.tries = tries;
  return o;
}

int threads_now() {
  int n = 0;
  for (auto& e : stdfs::directory_iterator("/proc/self/task")) {
    (void)e;
    ++n;
  }
  return n;
}

struct lookups { int count; };
struct tally {
  std::atomic<int> right{0}, wrong{0};
};
class asker : public actor<asker> {
  ref<resolver> dns_;
  std::shared_ptr<tally> t_;

 public:
  asker(ref<resolver> d, std::shared_ptr<tally> t) : dns_(std::move(d)), t_(std::move(t)) {}
  void on(const lookups& l) {
    for (int i = 1; i <= l.count; ++i)
      ask(dns_, resolver::resolve{"a" + std::to_string(i) + ".test", 80, AF_INET})
          .then([this, i](result<std::vector<net::address>> r) {
            bool ok = r && r->size() == 1 && (*r)[0].to_string() == "10.9.0." + std::to_string(i) + ":80";
            (ok ? t_->right : t_->wrong) += 1;
          });
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(answers_nxdomain_and_literals_without_a_thread) {
  dns_stub stub;
  runtime rt{test_config(2)};
  auto dns = rt.spawn<resolver>(pinned{0}, stub_options(stub));
  // The runtime's threads are up once the resolver answers a literal.
  auto lit = rt.ask(dns, resolver::resolve{"::1", 443}).get();
  BOOST_REQUIRE(lit.size() == 1u);
  BOOST_TEST(lit[0].to_string() == "[::1]:443");
  const int threads = threads_now();
  BOOST_TEST(stub.queries() == 0);

  auto known = rt.ask(dns, resolver::resolve{"known.test", 8080}).get();
  BOOST_REQUIRE(known.size() == 1u);
  BOOST_TEST(known[0].to_string() == "10.1.2.3:8080");

  auto missing = rt.ask(dns, resolver::resolve{"missing.test", 80}).wait();
  BOOST_REQUIRE(!missing.has_value());
  BOOST_TEST(missing.error().value() == actors::resolver_error::not_found);
  BOOST_TEST(missing.error().category().name() == std::string("c-ares"));

  BOOST_TEST(threads_now() == threads);  // no resolver thread
  BOOST_TEST(rt.stats().blocking_ops == 0u);
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(a_server_that_never_answers_times_out) {
  dns_stub stub;
  runtime rt{test_config(1)};
  auto dns = rt.spawn<resolver>(pinned{0}, stub_options(stub, 100ms, 2));
  auto t0 = std::chrono::steady_clock::now();
  auto slow = rt.ask(dns, resolver::resolve{"slow.test", 80}).wait();
  auto took = std::chrono::steady_clock::now() - t0;
  BOOST_REQUIRE(!slow.has_value());
  BOOST_TEST((slow.error() == std::errc::timed_out));
  BOOST_TEST(stub.queries() >= 2);   // retried
  BOOST_TEST(took < 5s);
  // And the resolver still answers afterwards.
  BOOST_TEST(rt.ask(dns, resolver::resolve{"known.test", 1}).get().size() == 1u);
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(many_queries_at_once_from_two_shards) {
  dns_stub stub;
  runtime rt{test_config(2)};
  auto dns = rt.spawn<resolver>(pinned{1}, stub_options(stub));
  auto t = std::make_shared<tally>();
  auto a = rt.spawn<asker>(pinned{0}, dns, t);
  auto b = rt.spawn<asker>(pinned{1}, dns, t);
  a.send(lookups{100});
  b.send(lookups{100});
  BOOST_REQUIRE(eventually([&] { return t->right.load() + t->wrong.load() == 200; }, 30s));
  BOOST_TEST(t->wrong.load() == 0);
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(stopping_with_queries_in_flight_answers_and_leaks_nothing) {
  dns_stub stub;
  const int before = open_fds();
  {
    runtime rt{test_config(1)};
    auto dns = rt.spawn<resolver>(pinned{0}, stub_options(stub, 5000ms, 1));
    std::vector<blocking_reply<std::vector<net::address>>> waiting;
    for (int i = 0; i < 10; ++i) waiting.push_back(rt.ask(dns, resolver::resolve{"slow.test", 80}));
    BOOST_REQUIRE(eventually([&] { return rt.ask(dns, resolver::in_flight_q{}).get() == 10u; }));
    rt.stop();
    for (auto& w : waiting) {
      auto r = w.wait();
      BOOST_TEST(!r.has_value());
      BOOST_TEST((r.error() == errc::actor_stopped));
    }
    check_quiescent(rt.stats());
  }
  BOOST_TEST(open_fds() == before);
}
