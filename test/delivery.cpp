// Delivery guarantees: per-pair order, no loss or duplication (with injected
// doorbell failures), one doorbell per burst, the foreign path, dead letters.
#include <troupe/runtime.hpp>

#define BOOST_TEST_MODULE delivery
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"

#include <troupe/actor.hpp>

#include <algorithm>
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

using namespace troupe;
using namespace troupe_test;
using namespace std::chrono_literals;

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr long total_messages = 100'000;
#else
constexpr long total_messages = 1'000'000;
#endif

constexpr int max_senders = 16;

struct item {
  int sender;
  long seq;
};

struct tally {
  std::atomic<long> received{0};
  std::atomic<long> out_of_order{0};
};

struct sync {};

class receiver : public actor<receiver> {
  std::shared_ptr<tally> tally_;
  long next_[max_senders] = {};

 public:
  explicit receiver(std::shared_ptr<tally> t) : tally_(std::move(t)) {}
  void on(const item& m) {
    if (m.seq != next_[m.sender]) tally_->out_of_order.fetch_add(1, std::memory_order_relaxed);
    next_[m.sender] = m.seq + 1;
    tally_->received.fetch_add(1, std::memory_order_relaxed);
  }
  long on(const sync&) { return tally_->received.load(); }
};

struct produce {
  std::vector<ref<receiver>> to;
  int sender;
  long count;
};
struct more {};

// Sends `count` items to every receiver in windows of `window`; after each
// window it asks every receiver to sync and waits for the answers, so the
// shards go idle and park between windows and the doorbells are exercised.
class producer : public actor<producer> {
  produce job_;
  long sent_ = 0;
  std::size_t waiting_ = 0;
  static constexpr long window = 256;

 public:
  void on(produce p) {
    job_ = std::move(p);
    on(more{});
  }
  void on(const more&) {
    long end = std::min(job_.count, sent_ + window);
    for (; sent_ < end; ++sent_)
      for (auto& r : job_.to) r.send(item{job_.sender, sent_});
    if (sent_ == job_.count) return;
    waiting_ = job_.to.size();
    for (auto& r : job_.to)
      ask(r, sync{}, 60s).then([this](result<long> n) {
        // Only while the runtime stops can a receiver be gone already.
        if (!n.has_value()) return;
        if (--waiting_ == 0) on(more{});
      });
  }
};

// Shard senders and foreign threads all send to receivers on both shards.
void run_mixed_traffic(config cfg) {
  auto t = std::make_shared<tally>();
  runtime_stats st;
  const int shard_senders = 4, foreign_senders = 2, receivers = 2;
  const long per_pair = total_messages / ((shard_senders + foreign_senders) * receivers);
  {
    runtime rt{cfg};
    std::vector<ref<receiver>> rs;
    for (int i = 0; i < receivers; ++i) rs.push_back(rt.spawn<receiver>(pinned{shard_id(i % 2)}, t));
    for (int s = 0; s < shard_senders; ++s)
      rt.spawn<producer>(pinned{shard_id(s % 2)}).send(produce{rs, s, per_pair});
    std::vector<std::thread> threads;
    std::atomic<int> failed_syncs{0};  // Boost.Test macros are for the main thread only
    for (int f = 0; f < foreign_senders; ++f)
      threads.emplace_back([&, f] {
        for (long i = 0; i < per_pair; ++i) {
          for (auto& r : rs) r.send(item{shard_senders + f, i});
          if (i % 1024 == 1023)
            for (auto& r : rs)
              if (!rt.ask(r, sync{}, 60s).wait().has_value()) failed_syncs.fetch_add(1);
        }
      });
    for (auto& th : threads) th.join();
    BOOST_TEST(failed_syncs.load() == 0);
    const long expected = per_pair * (shard_senders + foreign_senders) * receivers;
    BOOST_REQUIRE_MESSAGE(eventually([&] { return t->received.load() >= expected; }, 120s),
                          "received " << t->received.load() << " of " << expected);
    BOOST_TEST(t->received.load() == expected);
    BOOST_TEST(t->out_of_order.load() == 0);
    rt.stop();
    st = rt.stats();
  }
  check_quiescent(st);
  BOOST_TEST(st.dead_letters() == 0u);
  std::uint64_t faults = st.foreign_doorbell_faults_injected, retried = 0, doorbells = 0;
  for (auto& s : st.shards) {
    faults += s.doorbell_faults_injected;
    retried += s.doorbells_retried;
    doorbells += s.doorbells_sent;
  }
  BOOST_TEST_MESSAGE("doorbells " << doorbells << " (+" << st.foreign_doorbells
                                  << " foreign), injected faults " << faults);
  if (cfg.fault_injection.fail_every_kth_doorbell != 0) {
    // How many doorbells ring depends on how often shards park (fewer under
    // tsan); every k-th one fails.
    const unsigned k = std::max(2u, cfg.fault_injection.fail_every_kth_doorbell);
    BOOST_TEST(faults > 0u);
    BOOST_TEST(faults + st.shards.size() + 1 >= (doorbells + st.foreign_doorbells) / k);
    BOOST_TEST(retried + st.foreign_doorbell_faults_injected >= faults);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(messages_from_one_sender_arrive_in_send_order_and_none_is_lost) {
  run_mixed_traffic(test_config());
}

BOOST_AUTO_TEST_CASE(failed_doorbells_are_retried_and_lose_nothing) {
  config cfg = test_config();
  cfg.fault_injection.fail_every_kth_doorbell = 3;
  run_mixed_traffic(cfg);
}

BOOST_AUTO_TEST_CASE(the_alien_ring_path_delivers_when_the_registered_doorbell_is_forced_off) {
  config cfg = test_config();
  cfg.foreign = foreign_doorbell::alien_ring;
  cfg.fault_injection.fail_every_kth_doorbell = 5;
  {
    runtime rt{cfg};
    BOOST_TEST(!rt.foreign_doorbell_registered());
  }
  run_mixed_traffic(cfg);
}

namespace {

struct burst {
  ref<receiver> to;
  int n;
};

class burster : public actor<burster> {
 public:
  void on(const burst& b) {
    for (int i = 0; i < b.n; ++i) b.to.send(item{0, i});
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(a_burst_sent_in_one_turn_to_a_parked_shard_rings_at_most_one_doorbell) {
  runtime rt{test_config()};
  auto t = std::make_shared<tally>();
  auto b = rt.spawn<burster>(pinned{0});
  const int bursts = 20, per_burst = 1000;
  long expected = 0;
  std::uint64_t before = rt.stats().shards[0].doorbells_sent;
  for (int i = 0; i < bursts; ++i) {
    auto r = rt.spawn<receiver>(pinned{1}, t);  // fresh receiver: order restarts at 0
    b.send(burst{r, per_burst});
    expected += per_burst;
    BOOST_REQUIRE(eventually([&] { return t->received.load() == expected; }));
  }
  std::uint64_t rung = rt.stats().shards[0].doorbells_sent - before;
  BOOST_TEST_MESSAGE("doorbells for " << bursts << " bursts: " << rung);
  BOOST_TEST(rung <= std::uint64_t(bursts));
  BOOST_TEST(t->out_of_order.load() == 0);
}

namespace {

struct probe {
  std::shared_ptr<std::atomic<int>> seen;
};

class recorder : public actor<recorder> {
 public:
  void on(const probe& p) { p.seen->fetch_add(1); }
};

struct poke {
  ref<recorder> target;
  std::shared_ptr<std::atomic<int>> seen;
  std::shared_ptr<std::atomic<int>> seen_inline;
};

class poker : public actor<poker> {
 public:
  void on(const poke& p) {
    p.target.send(probe{p.seen});
    p.seen_inline->store(p.seen->load());  // the handler must not have run yet
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(send_to_an_actor_on_the_same_shard_never_runs_its_handler_inline) {
  runtime rt{test_config()};
  auto seen = std::make_shared<std::atomic<int>>(0);
  auto inline_seen = std::make_shared<std::atomic<int>>(-1);
  auto r = rt.spawn<recorder>(pinned{0});
  auto p = rt.spawn<poker>(pinned{0});
  p.send(poke{r, seen, inline_seen});
  BOOST_REQUIRE(eventually([&] { return seen->load() == 1; }));
  BOOST_TEST(inline_seen->load() == 0);
  auto st = rt.stats();
  BOOST_TEST(st.shards[0].sends_local >= 1u);
}

namespace {
struct stop_now {};
class stoppable : public actor<stoppable> {
 public:
  void on(const stop_now&) { stop(); }
  void on(const item&) {}
};
struct hit {
  ref<stoppable> target;
  int n;
};
class hitter : public actor<hitter> {
 public:
  void on(const hit& h) {
    for (int i = 0; i < h.n; ++i) h.target.send(item{0, i});
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(messages_to_a_stopped_actor_are_counted_as_dead_letters) {
  runtime_stats st;
  {
    runtime rt{test_config()};
    auto s = rt.spawn<stoppable>(pinned{1});
    s.send(stop_now{});
    BOOST_REQUIRE(eventually([&] { return s.stopped(); }));
    auto local = rt.spawn<hitter>(pinned{1});
    auto remote = rt.spawn<hitter>(pinned{0});
    local.send(hit{s, 100});
    remote.send(hit{s, 100});
    for (int i = 0; i < 100; ++i) s.send(item{0, i});
    BOOST_REQUIRE(eventually([&] { return rt.stats().dead_letters() >= 300u; }));
    rt.stop();
    st = rt.stats();
  }
  BOOST_TEST(st.dead_letters() == 300u);
  check_quiescent(st);
}

BOOST_AUTO_TEST_CASE(stopping_the_runtime_under_load_loses_nothing_and_leaks_nothing) {
  for (int round = 0; round < 5; ++round) {
    runtime_stats st;
    auto t = std::make_shared<tally>();
    {
      runtime rt{test_config()};
      std::vector<ref<receiver>> rs{rt.spawn<receiver>(pinned{0}, t), rt.spawn<receiver>(pinned{1}, t)};
      for (int s = 0; s < 2; ++s) rt.spawn<producer>(pinned{shard_id(s)}).send(produce{rs, s, 1'000'000});
      std::atomic<bool> go_on{true};
      std::thread foreign([&] {
        for (long i = 0; go_on.load() && i < 400'000; ++i) rs[i % 2].send(item{2 + int(i % 2), i / 2});
      });
      eventually([&] { return t->received.load() > 20'000; });
      rt.stop();  // from main while everything is busy
      go_on = false;
      foreign.join();
      st = rt.stats();
    }
    check_quiescent(st);
    BOOST_TEST(t->out_of_order.load() == 0);
  }
}
