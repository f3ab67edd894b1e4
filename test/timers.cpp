// Timers at the limits: ask timeouts, delayed_send, every, io::sleep and
// linked timeouts given durations whose deadline does not fit (the usual
// "never", hours::max(), centuries) never fire, never overflow, let their
// shard park and do not hold up stop(); negative delays mean "now"; a
// period of zero or less is refused.
#include <troupe/actor.hpp>

#define BOOST_TEST_MODULE timers
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"
#include "io_fixture.hpp"

#include <troupe/fs.hpp>
#include <troupe/runtime.hpp>

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

using namespace troupe;
using namespace troupe_test;
using namespace std::chrono_literals;

namespace {

using std::chrono::hours;
using std::chrono::nanoseconds;
using std::chrono::years;

/// Calls f with each duration whose deadline from now does not fit in
/// nanoseconds since the clock's epoch.
template <class F>
void for_each_endless(F f) {
  f(nanoseconds::max());
  f(nanoseconds::max() - 1ns);
  f(hours::max());
  f(years(1000));
}
constexpr int endless_kinds = 4;

double cpu_ms() {
  timespec ts;
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) / 1e6;
}

/// The process's CPU time over a window in which nothing should happen.
/// The sleep is the observation window, not a synchronisation.
double cpu_ms_over_quiet_window(std::chrono::milliseconds window = 200ms) {
  double before = cpu_ms();
  std::this_thread::sleep_for(window);
  return cpu_ms() - before;
}

/// An idle process stays far below this; a shard spinning in its timer loop
/// burns about the whole window.
constexpr double idle_cpu_ms = 60;

/// stop() must return: a hang fails the suite within `limit`, not never.
void stop_within(runtime& rt, std::chrono::seconds limit = 5s) {
  auto stopped = std::async(std::launch::async, [&rt] { rt.stop(); });
  if (stopped.wait_for(limit) != std::future_status::ready) {
    std::fprintf(stderr, "timers: runtime::stop() did not return within %llds\n", (long long)limit.count());
    std::fflush(stderr);
    std::_Exit(2);
  }
  stopped.get();
}

/// Runs on the worker after everything sent to it before: the jobs have run.
void settle(ref<worker>& w) {
  auto done = std::make_shared<std::promise<void>>();
  auto f = done->get_future();
  w.send(job{[done](worker&) { done->set_value(); }});
  BOOST_REQUIRE(f.wait_for(10s) == std::future_status::ready);
}

struct q {};
struct answer {};
struct tick {};

/// Takes every ask and never answers (the promises go at stop).
class silent : public actor<silent> {
  std::vector<promise<int>> held_;

 public:
  deferred<int> on(const q&) {
    held_.push_back(reply_later<int>());
    return {};
  }
};

/// Answers each ask with 7, 30 ms later.
class slow : public actor<slow> {
  std::vector<promise<int>> held_;

 public:
  deferred<int> on(const q&) {
    held_.push_back(reply_later<int>());
    delayed_send(30ms, self(), answer{});
    return {};
  }
  void on(const answer&) {
    for (auto& p : held_) p.deliver(7);
    held_.clear();
  }
};

class tick_counter : public actor<tick_counter> {
  std::shared_ptr<std::atomic<int>> n_;

 public:
  explicit tick_counter(std::shared_ptr<std::atomic<int>> n) : n_(std::move(n)) {}
  void on(const tick&) { ++*n_; }
};

}  // namespace

BOOST_AUTO_TEST_CASE(an_ask_whose_timeout_does_not_fit_never_times_out) {
  auto outcomes = std::make_shared<std::atomic<int>>(0);
  runtime rt{test_config(1)};
  auto s = rt.spawn<silent>(pinned{0});
  auto w = rt.spawn<worker>(pinned{0});
  for_each_endless([&](auto d) {
    w.send(job{[s, d, outcomes](worker& self) {
      self.ask(s, q{}, d).then([outcomes](result<int>) { ++*outcomes; });
    }});
  });
  settle(w);
  double cpu = cpu_ms_over_quiet_window();
  BOOST_TEST(outcomes->load() == 0);  // no errc::timeout, at once or ever
  BOOST_TEST(cpu < idle_cpu_ms);
  stop_within(rt);
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(a_blocking_ask_whose_timeout_does_not_fit_waits_for_the_reply) {
  runtime rt{test_config(1)};
  auto s = rt.spawn<slow>(pinned{0});
  for_each_endless([&](auto d) { BOOST_TEST(rt.ask(s, q{}, d).get() == 7); });
  stop_within(rt);
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(a_delayed_send_whose_delay_does_not_fit_is_never_delivered) {
  auto delivered = std::make_shared<std::atomic<int>>(0);
  runtime rt{test_config(1)};
  auto target = rt.spawn<tick_counter>(pinned{0}, delivered);
  auto w = rt.spawn<worker>(pinned{0});
  for_each_endless([&](auto d) {
    w.send(job{[target, d](worker& self) { self.delayed_send(d, target, tick{}); }});
  });
  settle(w);
  double cpu = cpu_ms_over_quiet_window();
  BOOST_TEST(delivered->load() == 0);
  BOOST_TEST(cpu < idle_cpu_ms);
  stop_within(rt);
  auto st = rt.stats();
  BOOST_TEST(st.dead_letters() >= std::uint64_t(endless_kinds));  // dropped at stop, counted
  check_quiescent(st);
}

BOOST_AUTO_TEST_CASE(a_negative_delay_delivers_at_once) {
  auto delivered = std::make_shared<std::atomic<int>>(0);
  runtime rt{test_config(1)};
  auto target = rt.spawn<tick_counter>(pinned{0}, delivered);
  auto w = rt.spawn<worker>(pinned{0});
  w.send(job{[target](worker& self) {
    self.delayed_send(-1ns, target, tick{});
    self.delayed_send(-hours(1), target, tick{});
    self.delayed_send(nanoseconds::min(), target, tick{});
    self.delayed_send(hours::min(), target, tick{});
  }});
  BOOST_TEST(eventually([&] { return delivered->load() == 4; }, 2000ms));
  stop_within(rt);
  check_quiescent(rt.stats());
}

namespace {
class periodic_host;
struct on_host {
  std::function<void(periodic_host&)> run;
};

/// Counts its ticks; starts and cancels periodic timers in on_host jobs.
class periodic_host : public actor<periodic_host> {
  std::shared_ptr<std::atomic<int>> ticks_;

 public:
  explicit periodic_host(std::shared_ptr<std::atomic<int>> t) : ticks_(std::move(t)) {}
  void on(const tick&) { ++*ticks_; }
  void on(const on_host& j) { j.run(*this); }
  template <class D>
  timer_id start(D d) {
    return every(d, tick{});
  }
  using actor<periodic_host>::cancel;
};
}  // namespace

BOOST_AUTO_TEST_CASE(every_with_a_period_that_does_not_fit_never_ticks_and_lets_the_shard_park) {
  auto ticks = std::make_shared<std::atomic<int>>(0);
  auto armed = std::make_shared<std::promise<std::vector<timer_id>>>();
  auto ids_f = armed->get_future();
  runtime rt{test_config(1)};
  auto h = rt.spawn<periodic_host>(pinned{0}, ticks);
  h.send(on_host{[armed](periodic_host& self) {
    std::vector<timer_id> ids;
    for_each_endless([&](auto d) {
      try {
        ids.push_back(self.start(d));
      } catch (const troupe::error&) {
      }  // counted below: every one must be accepted
    });
    armed->set_value(ids);
  }});
  BOOST_REQUIRE(ids_f.wait_for(10s) == std::future_status::ready);
  auto ids = ids_f.get();
  double cpu = cpu_ms_over_quiet_window();
  BOOST_TEST(ticks->load() == 0);
  BOOST_TEST(cpu < idle_cpu_ms);  // the shard parked; it did not fire timers in a loop
  BOOST_REQUIRE(ids.size() == std::size_t(endless_kinds));
  // Cancelling works as for any timer; the others go with the runtime.
  auto cancelled = std::make_shared<std::promise<void>>();
  auto cancelled_f = cancelled->get_future();
  h.send(on_host{[cancelled, first = ids.front()](periodic_host& self) {
    self.cancel(first);
    cancelled->set_value();
  }});
  BOOST_REQUIRE(cancelled_f.wait_for(10s) == std::future_status::ready);
  stop_within(rt);
  BOOST_TEST(ticks->load() == 0);
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(every_refuses_a_period_of_zero_or_below) {
  auto verdict = std::make_shared<std::promise<std::string>>();
  auto f = verdict->get_future();
  auto ticks = std::make_shared<std::atomic<int>>(0);
  runtime rt{test_config(1)};
  auto h = rt.spawn<periodic_host>(pinned{0}, ticks);
  h.send(on_host{[verdict](periodic_host& self) {
    std::string seen;
    auto attempt = [&](auto d) {
      try {
        self.start(d);
        seen += "accepted;";
      } catch (const troupe::error& e) {
        seen += std::string(e.what()).find("period must be positive") != std::string::npos ? "refused;" : e.what();
      }
    };
    attempt(0ns);
    attempt(-1ns);
    attempt(nanoseconds::min());
    attempt(hours::min());
    verdict->set_value(seen);
  }});
  BOOST_REQUIRE(f.wait_for(10s) == std::future_status::ready);
  BOOST_TEST(f.get() == "refused;refused;refused;refused;");
  stop_within(rt);
  BOOST_TEST(ticks->load() == 0);
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(io_sleeps_and_linked_timeouts_that_do_not_fit_never_complete) {
  int p[2];
  BOOST_REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  auto reader = std::make_shared<fs::file>(p[0]);
  fs::file writer(p[1]);
  auto completed = std::make_shared<std::atomic<int>>(0);
  auto refused = std::make_shared<std::atomic<int>>(0);
  runtime rt{test_config(1)};
  auto w = rt.spawn<worker>(pinned{0});
  for_each_endless([&](auto d) {
    w.send(job{[d, reader, completed, refused](worker& self) {
      try {
        self.submit(io::sleep{d}).then([completed](io::result<void>) { ++*completed; });
        // Nothing is ever written: only the timeout could end the read.
        self.submit(fs::read(*reader, 0, 16)).timeout(d).then([completed](io::result<io::bytes>) { ++*completed; });
      } catch (const troupe::error&) {
        ++*refused;
      }
    }});
  });
  settle(w);
  double cpu = cpu_ms_over_quiet_window(100ms);
  BOOST_TEST(completed->load() == 0);
  BOOST_TEST(refused->load() == 0);
  BOOST_TEST(cpu < idle_cpu_ms);
  stop_within(rt);  // cancels them; their continuations never run
  BOOST_TEST(completed->load() == 0);
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(a_negative_io_sleep_completes_at_once) {
  auto done = std::make_shared<std::promise<std::string>>();
  auto verdict = done->get_future();
  runtime rt{test_config(1)};
  auto w = rt.spawn<worker>(pinned{0});
  w.send(job{[done](worker& self) {
    self.submit(io::sleep{-1s}).then([done, &self](io::result<void> r) {
      std::string first = r ? "ok" : r.error().message();
      self.submit(io::sleep{hours::min()}).then([done, first](io::result<void> r2) {
        done->set_value(first + ", " + (r2 ? "ok" : r2.error().message()));
      });
    });
  }});
  BOOST_TEST(await(verdict) == "ok, ok");
  stop_within(rt);
  check_quiescent(rt.stats());
}
