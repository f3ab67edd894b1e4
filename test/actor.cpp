#include <troupe/actor.hpp>

#define BOOST_TEST_MODULE actor
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>

using namespace troupe;
using namespace troupe_test;
using namespace std::chrono_literals;

namespace {

struct ping { int n; };
struct pong { int n; };
struct start { int rounds; };
struct get {};

class ponger : public actor<ponger> {
 public:
  int on(const ping& p) { return p.n + 1; }
  void on(const start&) {}
};

struct done_flag {
  std::atomic<int> value{-1};
  std::atomic<bool> set{false};
};

// Asks its ponger `rounds` times in sequence; each reply runs as a message
// of this actor.
class pinger : public actor<pinger> {
  ref<ponger> peer_;
  std::shared_ptr<done_flag> done_;
  int left_ = 0;
  int last_ = 0;

 public:
  pinger(ref<ponger> peer, std::shared_ptr<done_flag> done) : peer_(std::move(peer)), done_(std::move(done)) {}
  void on(const start& s) {
    left_ = s.rounds;
    next();
  }
  void next() {
    ask(peer_, ping{last_}).then([this](result<int> r) {
      BOOST_REQUIRE(r.has_value());
      BOOST_REQUIRE(this_shard() == 0u);
      last_ = *r;
      if (--left_ > 0) return next();
      done_->value = last_;
      done_->set = true;
    });
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(ask_then_runs_the_continuation_on_the_asking_actor_across_shards) {
  runtime_stats st;
  {
    runtime rt{test_config()};
    auto done = std::make_shared<done_flag>();
    auto po = rt.spawn<ponger>(pinned{1});
    auto pi = rt.spawn<pinger>(pinned{0}, po, done);
    pi.send(start{10000});
    BOOST_REQUIRE(eventually([&] { return done->set.load(); }));
    BOOST_TEST(done->value.load() == 10000);
    rt.stop();
    st = rt.stats();
  }
  check_quiescent(st);
}
