// runtime::stop() and ~runtime from every kind of thread (include/troupe/
// runtime.hpp): the owner, a handler, a blocking-pool job, a foreign thread.
// A scenario that could hang or abort runs in a child process, so a hang is
// a bounded failure here and not a hung suite.
#include <troupe/runtime.hpp>

#define BOOST_TEST_MODULE shutdown
#include <boost/test/unit_test.hpp>

#include "child.hpp"
#include "fixture.hpp"
#include "io_fixture.hpp"

#include <troupe/actor.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <functional>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace troupe;
using namespace troupe_test;

namespace {

// A user's blocking job that decides to stop the whole runtime.
struct stop_the_runtime {
  runtime* rt;
  using blocking_tag = void;
  using output = int;
  io::result<int> run() {
    rt->stop();
    return 0;
  }
};

// A user's blocking job that destroys the runtime it runs on.
struct destroy_the_runtime {
  runtime* rt;
  using blocking_tag = void;
  using output = int;
  io::result<int> run() {
    delete rt;
    return 0;
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(stop_from_a_blocking_pool_job_returns_and_the_owner_joins) {
  auto r = run_in_child([] {
    runtime rt{test_config()};
    auto w = rt.spawn<worker>(pinned{1});
    w.send(job{[&rt](worker& self) { self.submit(stop_the_runtime{&rt}).then([](io::result<int>) {}); }});
    rt.wait();  // woken by the job's stop(), joins everything
    auto s = rt.stats();
    if (s.envelopes_live() != 0) std::abort();
  });
  BOOST_TEST_INFO("child output: " << r.output);
  BOOST_TEST(r.finished);
  BOOST_TEST((r.finished && WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0));
}

BOOST_AUTO_TEST_CASE(wait_from_a_blocking_pool_job_is_refused) {
  runtime rt{test_config()};
  std::promise<std::string> refusal;
  auto f = refusal.get_future();
  struct wait_for_the_runtime {
    runtime* rt;
    std::promise<std::string>* out;
    using blocking_tag = void;
    using output = int;
    io::result<int> run() {
      try {
        rt->wait();
        out->set_value("");
      } catch (const error& e) {
        out->set_value(e.what());
      }
      return 0;
    }
  };
  auto w = rt.spawn<worker>(pinned{0});
  w.send(job{[&](worker& self) { self.submit(wait_for_the_runtime{&rt, &refusal}).then([](io::result<int>) {}); }});
  std::string what = await(f);
  BOOST_TEST(what.find("blocking-pool thread") != std::string::npos, what);
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(destroying_the_runtime_on_its_blocking_pool_is_reported_as_misuse) {
  auto r = run_in_child([] {
    auto* rt = new runtime{test_config()};
    auto w = rt->spawn<worker>(pinned{0});
    w.send(job{[rt](worker& self) { self.submit(destroy_the_runtime{rt}).then([](io::result<int>) {}); }});
    ::pause();  // the job aborts the process
  });
  BOOST_TEST_INFO("child output: " << r.output);
  BOOST_TEST(r.finished);
  BOOST_TEST((r.finished && WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT));
  BOOST_TEST(r.output.find("runtime destroyed on one of its own blocking-pool threads") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(destroying_the_runtime_in_a_handler_is_reported_as_misuse) {
  auto r = run_in_child([] {
    auto* rt = new runtime{test_config()};
    rt->spawn<worker>(pinned{1}).send(job{[rt](worker&) { delete rt; }});
    ::pause();
  });
  BOOST_TEST_INFO("child output: " << r.output);
  BOOST_TEST((r.finished && WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT));
  BOOST_TEST(r.output.find("runtime destroyed on one of its own shard threads") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(stop_from_a_handler_and_from_the_owner_at_once) {
  for (int round = 0; round < 20; ++round) {
    runtime rt{test_config()};
    auto w = rt.spawn<worker>(pinned{static_cast<shard_id>(round % 2)});
    w.send(job{[](worker& self) { self.system().stop(); }});
    rt.stop();
    check_quiescent(rt.stats());
  }
}

namespace {

// Wakes its shard every few milliseconds, so the shard sees a stop request
// without being rung.
class ticker : public actor<ticker> {
 public:
  struct tick {};
  void on_start() { every(std::chrono::milliseconds(2), tick{}); }
  void on(tick) {}
};

}  // namespace

// stop() finds a shard parked and is about to ring it; meanwhile every shard
// wakes on its own timer, sees the request and shuts down. The late ring
// must not reach a closed ring (it failed with EBADF and was retried
// forever), and a second stop() that joins and closes the alien ring must
// not pull it from under the first.
BOOST_AUTO_TEST_CASE(a_stop_ringing_shards_that_shut_down_on_their_own_neither_hangs_nor_crashes) {
  for (auto doorbell : {foreign_doorbell::automatic, foreign_doorbell::alien_ring}) {
    BOOST_TEST_INFO("foreign doorbell " << (doorbell == foreign_doorbell::automatic ? "automatic" : "alien ring"));
    auto r = run_in_child([doorbell] {
      for (int round = 0; round < 3; ++round) {
        config c = test_config(2);
        c.foreign = doorbell;
        c.fault_injection.stop_wake_delay = std::chrono::milliseconds(100);
        runtime rt{c};
        rt.spawn<ticker>(pinned{0});
        rt.spawn<ticker>(pinned{1});
        std::atomic<bool> asked{false};
        std::thread stopper([&] {
          asked.store(true);
          rt.stop();
        });
        while (!asked.load()) std::this_thread::yield();
        rt.stop();  // the owner's stop joins, maybe while the other still rings
        stopper.join();
        runtime_stats st = rt.stats();
        if (st.sent() != st.processed() + st.dead_letters() || st.envelopes_live() != 0) std::_Exit(3);
      }
    });
    BOOST_TEST_INFO("child stderr: " << r.output);
    BOOST_TEST(r.finished, "the child hung: a stop rang a shard that had shut down");
    BOOST_TEST_INFO("child stderr: " << r.output);
    BOOST_TEST((WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0));
  }
}

namespace {

struct flood_tally {
  std::atomic<long> received{0};
};

class flood_sink : public actor<flood_sink> {
  std::shared_ptr<flood_tally> t_;

 public:
  explicit flood_sink(std::shared_ptr<flood_tally> t) : t_(std::move(t)) {}
  void on(long) { t_->received.fetch_add(1, std::memory_order_relaxed); }
};

// Sends to every sink, then asks itself to go on: busy until the stop.
class flooder : public actor<flooder> {
  std::vector<ref<flood_sink>> to_;

 public:
  struct go {};
  explicit flooder(std::vector<ref<flood_sink>> to) : to_(std::move(to)) {}
  void on(go) {
    for (long i = 0; i < 16; ++i)
      for (auto& s : to_) s.send(i);
    self().send(go{});
  }
};

// Stops the runtime from a handler.
class stopper : public actor<stopper> {
 public:
  struct now {};
  void on(now) { system().stop(); }
};

}  // namespace

// stop() while every shard and a foreign thread send as fast as they can:
// from the owner, from the foreign thread, or from a handler, after a
// random delay. No crash, no hang, nothing lost or leaked; the sanitizer
// builds (asan, tsan) run it too.
BOOST_AUTO_TEST_CASE(stop_races_senders_on_every_shard_and_a_foreign_thread) {
  const unsigned seed = std::random_device{}();
  BOOST_TEST_MESSAGE("seed " << seed);
  auto r = run_in_child([seed] {
    std::mt19937 rng(seed);
    for (int round = 0; round < 24; ++round) {
      const shard_id shards = 2 + rng() % 2;
      const int who = int(rng() % 3);  // 0 owner, 1 foreign thread, 2 handler
      const auto delay = std::chrono::microseconds(rng() % 3000);
      auto t = std::make_shared<flood_tally>();
      runtime_stats st;
      {
        config c = test_config(shards);
        runtime rt{c};
        std::vector<ref<flood_sink>> sinks;
        for (shard_id s = 0; s < shards; ++s) sinks.push_back(rt.spawn<flood_sink>(pinned{s}, t));
        sinks.push_back(rt.spawn<flood_sink>(stealable{}, t));
        for (shard_id s = 0; s < shards; ++s) rt.spawn<flooder>(pinned{s}, sinks).send(flooder::go{});
        rt.spawn<flooder>(stealable{}, sinks).send(flooder::go{});
        auto stop_actor = rt.spawn<stopper>(pinned{shard_id(rng() % shards)});
        std::atomic<bool> foreign_go{true};
        std::atomic<bool> foreign_stop{false};
        std::thread foreign([&] {
          long i = 0;
          // Goes on sending after the stop: those are dead letters.
          for (int after = 0; after < 1000; ++i) {
            sinks[std::size_t(i) % sinks.size()].send(i);
            if (foreign_stop.exchange(false)) rt.stop();
            if (!foreign_go.load(std::memory_order_relaxed)) ++after;
          }
        });
        std::this_thread::sleep_for(delay);  // a random moment, not a synchronisation
        if (who == 0) rt.stop();
        else if (who == 1) foreign_stop.store(true);
        else stop_actor.send(stopper::now{});
        rt.wait();
        foreign_go.store(false);
        foreign.join();
        st = rt.stats();
      }
      if (st.sent() != st.processed() + st.dead_letters() || st.envelopes_live() != 0) {
        std::fprintf(stderr, "round %d (%u shards, stop by %d after %lld us): sent %llu, processed %llu, "
                     "dead letters %llu, envelopes live %llu\n", round, unsigned(shards), who,
                     static_cast<long long>(delay.count()), (unsigned long long)st.sent(),
                     (unsigned long long)st.processed(), (unsigned long long)st.dead_letters(),
                     (unsigned long long)st.envelopes_live());
        std::_Exit(3);
      }
    }
  }, std::chrono::seconds(120));
  BOOST_TEST_INFO("seed " << seed << ", child stderr: " << r.output);
  BOOST_TEST(r.finished, "the child hung");
  BOOST_TEST_INFO("seed " << seed << ", child stderr: " << r.output);
  BOOST_TEST((WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0));
  BOOST_TEST_INFO("seed " << seed << ", child stderr: " << r.output);
  BOOST_TEST(r.output.find("Sanitizer") == std::string::npos);
}
