#include <troupe/runtime.hpp>

#define BOOST_TEST_MODULE runtime
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <thread>

using namespace troupe;
using namespace troupe_test;
using namespace std::chrono_literals;

namespace {

struct add { int n; };
struct get {};

class counter : public actor<counter> {
  long total_ = 0;

 public:
  void on(const add& m) { total_ += m.n; }
  long on(const get&) { return total_; }
};

struct where_q {};
class cpu_reporter : public actor<cpu_reporter> {
 public:
  int on(const where_q&) { return sched_getcpu(); }
};

}  // namespace

BOOST_AUTO_TEST_CASE(a_counter_on_another_shard_sums_what_main_sends) {
  runtime_stats st;
  {
    runtime rt{test_config()};
    auto c = rt.spawn<counter>(pinned{1});
    for (int i = 1; i <= 100; ++i) c.send(add{i});
    BOOST_TEST(rt.ask(c, get{}).get() == 5050);
    rt.stop();
    st = rt.stats();
  }
  check_quiescent(st);
}

namespace {
int open_fds() {
  int n = 0;
  for (auto& e : std::filesystem::directory_iterator("/proc/self/fd")) (void)e, ++n;
  return n;
}
}  // namespace

BOOST_AUTO_TEST_CASE(runtimes_come_and_go_without_leaking_descriptors_or_threads) {
  { runtime warm{test_config()}; }  // the logger and other one-time state
  int before = open_fds();
  for (int i = 0; i < 20; ++i) {
    runtime rt{test_config()};
    auto c = rt.spawn<counter>(round_robin{});
    c.send(add{1});
    if (i % 2) rt.stop();  // and the others stop in the destructor
  }
  BOOST_TEST(open_fds() == before);
}

BOOST_AUTO_TEST_CASE(each_shard_reports_the_ring_setup_it_got) {
  runtime rt{test_config()};
  for (shard_id s = 0; s < rt.shards(); ++s) BOOST_TEST((rt.ring_of(s) == ring_from_args()));
  BOOST_CHECK_THROW(rt.ring_of(rt.shards()), troupe::error);
}

BOOST_AUTO_TEST_CASE(stop_is_idempotent_and_wait_returns_after_it) {
  runtime rt{test_config()};
  auto c = rt.spawn<counter>(pinned{0});
  c.send(add{1});
  rt.stop();
  rt.stop();
  rt.wait();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(stats_are_readable_as_text_with_one_line_per_shard) {
  runtime rt{test_config()};
  auto c = rt.spawn<counter>(pinned{1});
  BOOST_TEST(rt.ask(c, get{}).get() == 0);
  std::string text = rt.stats().text();
  BOOST_TEST(text.find("shard") != std::string::npos);
  BOOST_TEST(std::count(text.begin(), text.end(), '\n') == 4);  // header, 2 shards, foreign
}

namespace {
struct stop_all {};
class stopper : public actor<stopper> {
 public:
  void on(const stop_all&) { system().stop(); }
  void on(const add&) {}
};
}  // namespace

BOOST_AUTO_TEST_CASE(stop_from_a_handler_wakes_parked_shards_even_when_doorbells_fail) {
  for (unsigned k : {2u, 3u}) {
    config cfg = test_config();
    cfg.fault_injection.fail_every_kth_doorbell = k;
    runtime rt{cfg};
    auto far = rt.spawn<stopper>(pinned{1});
    auto near = rt.spawn<stopper>(pinned{0});
    BOOST_TEST(rt.ask(far, add{1}).wait().has_value());
    // Shard 1 has nothing to do and parks; the stop comes from shard 0.
    BOOST_REQUIRE(eventually([&] { return rt.stats().shards[1].parks > 0; }));
    std::atomic<bool> returned{false};
    std::thread waiter([&] {
      rt.wait();
      returned = true;
    });
    near.send(stop_all{});
    bool ok = eventually([&] { return returned.load(); }, std::chrono::seconds(20));
    if (!ok) {
      BOOST_ERROR("runtime::wait() did not return: a shard never woke for the stop");
      std::quick_exit(1);  // a hung join cannot be unwound
    }
    waiter.join();
    check_quiescent(rt.stats());
  }
}

namespace {
bool says_stopped(const troupe::error& e) {
  return std::string(e.what()).find("runtime is stopping or stopped") != std::string::npos;
}

/// Spawns into another runtime from its handler.
struct spawn_there {
  runtime* other;
  std::shared_ptr<std::promise<std::string>> done;
};
class foreign_spawner : public actor<foreign_spawner> {
 public:
  void on(const spawn_there& m) {
    try {
      (void)m.other->spawn<counter>(pinned{0});
      m.done->set_value("spawned");
    } catch (const troupe::error& e) {
      m.done->set_value(says_stopped(e) ? "refused" : e.what());
    }
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(spawn_on_a_stopped_runtime_throws_and_leaks_nothing) {
  runtime rt{test_config()};
  auto before = rt.spawn<counter>(pinned{0});
  rt.stop();
  BOOST_CHECK_EXCEPTION(rt.spawn<counter>(pinned{0}), troupe::error, says_stopped);
  BOOST_CHECK_EXCEPTION(rt.spawn<counter>(round_robin{}, mailbox_capacity{4}), troupe::error, says_stopped);
  BOOST_CHECK_EXCEPTION(rt.spawn<counter>(stealable{}), troupe::error, says_stopped);
  // From a handler of another runtime: that is a foreign thread to rt.
  runtime other{test_config(1)};
  auto done = std::make_shared<std::promise<std::string>>();
  auto verdict = done->get_future();
  other.spawn<foreign_spawner>(pinned{0}).send(spawn_there{&rt, done});
  BOOST_REQUIRE(verdict.wait_for(10s) == std::future_status::ready);
  BOOST_TEST(verdict.get() == "refused");
  // Refs taken before the stop still behave: sends are dead letters.
  BOOST_TEST(before.stopped());
  before.send(add{1});
  BOOST_TEST((rt.ask(before, get{}).wait().error() == errc::actor_stopped));
  other.stop();
  check_quiescent(rt.stats());
  check_quiescent(other.stats());
}

namespace {
std::atomic<int> children_constructed{0};
class child : public actor<child> {
 public:
  child() { ++children_constructed; }
  void on(const add&) {}
};

struct breed {};
/// Spawns a child per message and sends itself the next one; at on_stop it
/// spawns once more and keeps that ref.
class breeder : public actor<breeder> {
  std::shared_ptr<ref<child>> last_;
  std::shared_ptr<std::atomic<int>> threw_;

 public:
  breeder(std::shared_ptr<ref<child>> last, std::shared_ptr<std::atomic<int>> threw)
      : last_(std::move(last)), threw_(std::move(threw)) {}
  void on(const breed&) {
    spawn<child>(round_robin{}).send(add{1});
    self().send(breed{});
  }
  void on_stop() {
    try {
      *last_ = spawn<child>(pinned{0});
    } catch (...) {
      ++*threw_;
    }
  }
};
}  // namespace

// Inside the runtime, a spawn that races with stop() (a handler still
// running, an on_stop) is well defined rather than an error: the actor never
// starts, sends to it are dead letters, and stop() is not disturbed.
BOOST_AUTO_TEST_CASE(spawn_from_a_handler_while_stop_is_under_way_gives_an_actor_that_never_starts) {
  runtime_stats st;
  auto last = std::make_shared<ref<child>>();
  auto threw = std::make_shared<std::atomic<int>>(0);
  {
    runtime rt{test_config()};
    for (shard_id s = 0; s < 2; ++s) rt.spawn<breeder>(pinned{s}, last, threw).send(breed{});
    BOOST_REQUIRE(eventually([] { return children_constructed.load() > 50; }, 10s));
    auto stopper = std::async(std::launch::async, [&rt] { rt.stop(); });
    BOOST_REQUIRE(stopper.wait_for(10s) == std::future_status::ready);
    stopper.get();
    st = rt.stats();
  }
  BOOST_TEST(threw->load() == 0);
  BOOST_REQUIRE(bool(*last));  // the spawn in on_stop returned a ref
  BOOST_TEST(last->stopped());
  const int constructed = children_constructed.load();
  BOOST_TEST(constructed > 50);
  check_quiescent(st);
}

BOOST_AUTO_TEST_CASE(config_cpus_pins_each_shard_to_the_cpu_named) {
  if (std::thread::hardware_concurrency() < 2) return;  // nothing to choose from
  config c = test_config(2);
  c.pinning = thread_pinning::cpu;
  c.cpus = {1, 0};  // shard 0 on CPU 1, shard 1 on CPU 0
  runtime rt{c};
  auto a = rt.spawn<cpu_reporter>(pinned{0});
  auto b = rt.spawn<cpu_reporter>(pinned{1});
  BOOST_TEST(rt.ask(a, where_q{}).get() == 1);
  BOOST_TEST(rt.ask(b, where_q{}).get() == 0);
  rt.stop();
}
