#include <troupe/actor.hpp>

#define BOOST_TEST_MODULE actor
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

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
      // No Boost.Test macros here: they are not thread-safe. A wrong shard
      // or an error shows up as a wrong final value.
      if (!r.has_value() || this_shard() != 0u) {
        done_->value = -2;
        done_->set = true;
        return;
      }
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

// ---------------------------------------------------------------------------
// Failure and monitors

namespace {

struct boom {};
struct alive_q {};

class fragile : public actor<fragile> {
 public:
  void on(const boom&) { throw std::runtime_error("kaboom"); }
  int on(const alive_q&) { return 1; }
};

struct downs {
  std::atomic<int> count{0};
  std::atomic<bool> normal{false};
  std::string reason;  // written before count is raised
  std::uint64_t id = 0;
};

struct watch_this {
  any_ref dummy;
};

template <class Target>
class watcher : public actor<watcher<Target>> {
  std::shared_ptr<downs> d_;

 public:
  watcher(ref<Target> t, std::shared_ptr<downs> d) : d_(std::move(d)) { this->monitor(t); }
  void on(const down& m) {
    d_->reason = m.reason;
    d_->normal = m.normal();
    d_->id = m.actor.id();
    d_->count.fetch_add(1);
  }
};

class throws_in_constructor : public actor<throws_in_constructor> {
 public:
  throws_in_constructor() { throw std::invalid_argument("bad config"); }
  void on(const alive_q&) {}
};

class throws_in_on_start : public actor<throws_in_on_start> {
 public:
  void on_start() { throw std::runtime_error("cannot start"); }
  void on(const alive_q&) {}
};

}  // namespace

BOOST_AUTO_TEST_CASE(a_handler_that_throws_fails_its_actor_and_its_monitors_get_down) {
  runtime_stats st;
  {
    runtime rt{test_config()};
    auto d = std::make_shared<downs>();
    auto f = rt.spawn<fragile>(pinned{1});
    auto other = rt.spawn<fragile>(pinned{1});
    rt.spawn<watcher<fragile>>(pinned{0}, f, d);
    BOOST_TEST(rt.ask(f, alive_q{}).get() == 1);  // the monitor is registered by now
    f.send(boom{});
    BOOST_REQUIRE(eventually([&] { return d->count.load() == 1; }));
    BOOST_TEST(!d->normal.load());
    BOOST_TEST(d->reason.find("kaboom") != std::string::npos);
    BOOST_TEST(d->id == f.id());
    BOOST_TEST(f.stopped());
    // Every other actor keeps running; the failed one answers actor_stopped.
    BOOST_TEST(rt.ask(other, alive_q{}).get() == 1);
    auto r = rt.ask(f, alive_q{}).wait();
    BOOST_TEST((r.error() == errc::actor_stopped));
    rt.stop();
    st = rt.stats();
  }
  check_quiescent(st);
}

BOOST_AUTO_TEST_CASE(a_throwing_constructor_or_on_start_reports_down_to_monitors) {
  runtime rt{test_config()};
  auto d1 = std::make_shared<downs>();
  auto d2 = std::make_shared<downs>();
  auto a = rt.spawn<throws_in_constructor>(pinned{1});
  auto b = rt.spawn<throws_in_on_start>(pinned{0});
  rt.spawn<watcher<throws_in_constructor>>(pinned{0}, a, d1);
  rt.spawn<watcher<throws_in_on_start>>(pinned{1}, b, d2);
  BOOST_REQUIRE(eventually([&] { return d1->count.load() == 1 && d2->count.load() == 1; }));
  BOOST_TEST(d1->reason.find("constructor") != std::string::npos);
  BOOST_TEST(d1->reason.find("bad config") != std::string::npos);
  BOOST_TEST(d2->reason.find("on_start") != std::string::npos);
  BOOST_TEST((rt.ask(a, alive_q{}).wait().error() == errc::actor_stopped));
}

BOOST_AUTO_TEST_CASE(monitoring_an_actor_that_is_already_dead_delivers_down_at_once) {
  runtime rt{test_config()};
  auto d = std::make_shared<downs>();
  auto f = rt.spawn<fragile>(pinned{1});
  f.send(boom{});
  BOOST_REQUIRE(eventually([&] { return f.stopped(); }));
  rt.spawn<watcher<fragile>>(pinned{0}, f, d);
  BOOST_REQUIRE(eventually([&] { return d->count.load() == 1; }));
  BOOST_TEST(d->reason.find("kaboom") != std::string::npos);
}

namespace app {
struct config_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
}  // namespace app

namespace {
struct boom_typed {};
struct boom_int {};
class brittle : public actor<brittle> {
 public:
  void on(const boom_typed&) { throw app::config_error("port out of range"); }
  void on(const boom_int&) { throw 42; }
  int on(const alive_q&) { return 1; }
};
}  // namespace

BOOST_AUTO_TEST_CASE(a_failure_reason_names_the_exception_type_its_text_and_the_actor_type) {
  log_capture cap;
  runtime rt{test_config()};
  auto typed = rt.spawn<brittle>(pinned{1});
  auto odd = rt.spawn<brittle>(pinned{0});
  auto d1 = std::make_shared<downs>();
  auto d2 = std::make_shared<downs>();
  rt.spawn<watcher<brittle>>(pinned{0}, typed, d1);
  rt.spawn<watcher<brittle>>(pinned{1}, odd, d2);
  BOOST_TEST(rt.ask(typed, alive_q{}).get() == 1);  // the monitors are registered by now
  BOOST_TEST(rt.ask(odd, alive_q{}).get() == 1);
  typed.send(boom_typed{});
  odd.send(boom_int{});
  BOOST_REQUIRE(eventually([&] { return d1->count.load() == 1 && d2->count.load() == 1; }));
  BOOST_TEST_INFO("reason: " << d1->reason);
  BOOST_TEST(d1->reason.find("app::config_error") != std::string::npos);  // demangled, namespace kept
  BOOST_TEST(d1->reason.find("port out of range") != std::string::npos);
  BOOST_TEST(d1->reason.find("brittle") != std::string::npos);
  BOOST_TEST_INFO("reason: " << d2->reason);
  BOOST_TEST(d2->reason.find("unknown exception") != std::string::npos);
  BOOST_TEST(d2->reason.find("int") != std::string::npos);  // what was thrown, when the runtime can tell
  BOOST_TEST(d2->reason.find("brittle") != std::string::npos);
  // The default log line (error) says the same.
  auto line = cap.find("app::config_error", log_level::error);
  BOOST_REQUIRE(line.size() == 1u);
  BOOST_TEST(line[0].text.find("port out of range") != std::string::npos);
  BOOST_TEST(line[0].text.find(to_string(typed)) != std::string::npos);
  BOOST_TEST(cap.find("unknown exception", log_level::error).size() == 1u);
}

// ---------------------------------------------------------------------------
// Messages whose destructor throws

namespace {

// Throws from its destructor while it is "armed"; a move disarms the
// source, so only the copy in the envelope throws, not the sender's.
struct fussy {
  bool armed = true;
  fussy() = default;
  fussy(fussy&& o) noexcept : armed(std::exchange(o.armed, false)) {}
  fussy(const fussy& o) noexcept : armed(o.armed) {}
  fussy& operator=(const fussy&) = delete;
  ~fussy() noexcept(false) {
    if (armed) throw std::runtime_error("fussy destructor");
  }
};

struct leave {};

class picky : public actor<picky> {
 public:
  void on(const fussy&) {}
  int on(const alive_q&) { return 1; }
  void on(const leave&) { stop(); }
};

// From its own shard: sends a fussy to `to`, and at shutdown one to each
// of `at_stop` and a delayed one that is still pending then.
struct send_fussy {
  ref<picky> to;
};
class fussy_sender : public actor<fussy_sender> {
  std::vector<ref<picky>> at_stop_;

 public:
  explicit fussy_sender(std::vector<ref<picky>> at_stop) : at_stop_(std::move(at_stop)) {}
  void on_start() {
    for (auto& p : at_stop_) delayed_send(1h, p, fussy{});
    every(1h, fussy_tick{});  // the timer's own copy goes when it is cancelled
  }
  void on_stop() {
    for (auto& p : at_stop_) p.send(fussy{});
  }
  int on(const send_fussy& s) {
    s.to.send(fussy{});
    return 1;
  }
  struct fussy_tick : fussy {};
  void on(const fussy_tick&) {}
};

}  // namespace

BOOST_AUTO_TEST_CASE(a_delivered_message_whose_destructor_throws_fails_only_its_actor) {
  runtime_stats st;
  {
    runtime rt{test_config()};
    auto d = std::make_shared<downs>();
    auto p = rt.spawn<picky>(pinned{1});
    auto neighbour = rt.spawn<picky>(pinned{1});
    rt.spawn<watcher<picky>>(pinned{0}, p, d);
    BOOST_TEST(rt.ask(p, alive_q{}).get() == 1);  // the monitor is registered by now
    p.send(fussy{});
    BOOST_REQUIRE(eventually([&] { return d->count.load() == 1; }));
    BOOST_TEST_INFO("reason: " << d->reason);
    BOOST_TEST(!d->normal.load());
    BOOST_TEST(d->reason.find("message destructor threw") != std::string::npos);
    BOOST_TEST(d->reason.find("fussy") != std::string::npos);
    BOOST_TEST(d->reason.find("fussy destructor") != std::string::npos);
    BOOST_TEST(p.stopped());
    // The shard goes on: its other actor answers.
    BOOST_TEST(rt.ask(neighbour, alive_q{}).get() == 1);
    rt.stop();
    st = rt.stats();
  }
  check_quiescent(st);
  BOOST_TEST(st.drop_failures() == 0u);
}

BOOST_AUTO_TEST_CASE(dead_letters_whose_destructor_throws_are_counted_and_logged_once) {
  log_capture cap;
  runtime_stats st;
  {
    runtime rt{test_config()};
    auto gone = rt.spawn<picky>(pinned{1});
    gone.send(leave{});
    BOOST_REQUIRE(eventually([&] { return gone.stopped(); }));
    std::vector<ref<picky>> at_stop{rt.spawn<picky>(pinned{0}), rt.spawn<picky>(pinned{1})};
    auto sender = rt.spawn<fussy_sender>(pinned{0}, at_stop);
    gone.send(fussy{});                                         // from a foreign thread
    BOOST_TEST(rt.ask(sender, send_fussy{gone}).get() == 1);  // from a shard
    BOOST_TEST(rt.ask(at_stop[1], alive_q{}).get() == 1);
    rt.stop();  // on_stop's sends, the pending delayed sends and the tick's copy: dropped
    st = rt.stats();
  }
  check_quiescent(st);
  BOOST_TEST(st.foreign_drop_failures >= 1u);
  // 1 foreign + 1 from a shard + 2 sent at stop + 2 delayed + the tick's copy.
  BOOST_TEST(st.drop_failures() == 7u);
  // Once per message type at warn (the tick is a type of its own).
  BOOST_TEST(cap.find("threw: fussy: std::runtime_error: fussy destructor", log_level::warn).size() == 1u);
  BOOST_TEST(cap.find("threw: fussy_tick: ", log_level::warn).size() == 1u);
  BOOST_TEST(cap.find("fussy destructor", log_level::warn).size() == 2u);
}


// ---------------------------------------------------------------------------
// Timers

namespace {
struct fire {};
struct arm {
  std::chrono::milliseconds delay;
};
struct timing {
  std::atomic<int> ticks{0};
  std::atomic<long> first_ns{0};
  std::atomic<long> delayed_ns{-1};
  std::atomic<int> ticks_after_cancel{0};
};
class timed : public actor<timed> {
  std::shared_ptr<timing> t_;
  std::chrono::steady_clock::time_point armed_;
  timer_id periodic_ = 0;

 public:
  explicit timed(std::shared_ptr<timing> t) : t_(std::move(t)) {}
  void on(const arm& a) {
    armed_ = std::chrono::steady_clock::now();
    delayed_send(a.delay, self(), fire{});
  }
  void on(const fire&) {
    t_->delayed_ns = (std::chrono::steady_clock::now() - armed_).count();
  }
  struct start_ticking {
    std::chrono::nanoseconds period;
  };
  struct tick {};
  struct stop_ticking {};
  void on(const start_ticking& s) {
    armed_ = std::chrono::steady_clock::now();
    periodic_ = every(s.period, tick{});
    cancelled_ = false;
  }
  void on(const tick&) {
    if (cancelled_) t_->ticks_after_cancel.fetch_add(1);
    if (t_->ticks.fetch_add(1) == 0) t_->first_ns = (std::chrono::steady_clock::now() - armed_).count();
  }
  void on(const stop_ticking&) {
    cancel(periodic_);
    cancelled_ = true;
  }
  void on(const alive_q&) {}

 private:
  bool cancelled_ = false;
};
}  // namespace

BOOST_AUTO_TEST_CASE(delayed_send_arrives_no_earlier_than_its_delay) {
  runtime rt{test_config()};
  auto t = std::make_shared<timing>();
  auto a = rt.spawn<timed>(pinned{1}, t);
  a.send(arm{50ms});
  BOOST_REQUIRE(eventually([&] { return t->delayed_ns.load() >= 0; }));
  BOOST_TEST(t->delayed_ns.load() >= std::chrono::nanoseconds(50ms).count());
}

BOOST_AUTO_TEST_CASE(a_periodic_timer_ticks_until_cancelled) {
  runtime_stats st;
  {
    runtime rt{test_config()};
    auto t = std::make_shared<timing>();
    auto a = rt.spawn<timed>(pinned{0}, t);
    a.send(timed::start_ticking{5ms});
    BOOST_REQUIRE(eventually([&] { return t->ticks.load() >= 5; }));
    BOOST_TEST(t->first_ns.load() >= std::chrono::nanoseconds(5ms).count());
    a.send(timed::stop_ticking{});
    // Once the cancel is processed no tick arrives, not even one queued.
    BOOST_TEST(rt.ask(a, timed::stop_ticking{}).wait().has_value());
    int after = t->ticks.load();
    auto until = std::chrono::steady_clock::now() + 50ms;
    while (std::chrono::steady_clock::now() < until) std::this_thread::yield();
    BOOST_TEST(t->ticks.load() == after);
    BOOST_TEST(t->ticks_after_cancel.load() == 0);
    rt.stop();
    st = rt.stats();
  }
  check_quiescent(st);
}

BOOST_AUTO_TEST_CASE(a_tick_already_queued_when_its_timer_is_cancelled_is_not_handled) {
  // A budget of 4 messages per turn leaves most of a burst queued for the
  // next turns, and a 2 µs period posts a tick behind it every turn: when
  // the cancel at the burst's end runs, ticks wait behind it.
  config c = test_config();
  c.message_budget = 4;
  runtime rt{c};
  auto t = std::make_shared<timing>();
  auto a = rt.spawn<timed>(pinned{0}, t);
  for (int round = 0; round < 50; ++round) {
    int before = t->ticks.load();
    a.send(timed::start_ticking{2us});
    BOOST_REQUIRE(eventually([&] { return t->ticks.load() >= before + 3; }));
    for (int i = 0; i < 256; ++i) a.send(alive_q{});
    a.send(timed::stop_ticking{});
  }
  BOOST_TEST(rt.ask(a, timed::stop_ticking{}).wait().has_value());
  BOOST_TEST(t->ticks_after_cancel.load() == 0);
  rt.stop();
  check_quiescent(rt.stats());
}

// ---------------------------------------------------------------------------
// Lifecycle, spawn, backpressure

namespace {
struct lifecycle {
  std::atomic<int> started{0}, stopped{0};
  std::atomic<unsigned> start_shard{99};
};
struct shutdown_all {};
class lifecycled : public actor<lifecycled> {
  std::shared_ptr<lifecycle> l_;

 public:
  explicit lifecycled(std::shared_ptr<lifecycle> l) : l_(std::move(l)) {}
  void on_start() {
    l_->start_shard = this_shard();
    l_->started.fetch_add(1);
  }
  void on_stop() { l_->stopped.fetch_add(1); }
  void on(const shutdown_all&) { system().stop(); }
  void on(const alive_q&) {}
};

struct spawn_child {
  shard_id where;
  std::shared_ptr<lifecycle> l;
};
class spawner : public actor<spawner> {
 public:
  std::string on(const spawn_child& s) {
    try {
      auto child = spawn<lifecycled>(pinned{s.where}, s.l);
      return "spawned " + to_string(child);
    } catch (const troupe::error& e) {
      return e.what();
    }
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(on_start_runs_on_the_target_shard_and_on_stop_runs_at_shutdown) {
  auto l = std::make_shared<lifecycle>();
  runtime_stats st;
  {
    runtime rt{test_config()};
    for (int i = 0; i < 10; ++i) rt.spawn<lifecycled>(pinned{1}, l);
    BOOST_REQUIRE(eventually([&] { return l->started.load() == 10; }));
    BOOST_TEST(l->start_shard.load() == 1u);
    rt.stop();
    st = rt.stats();
  }
  BOOST_TEST(l->stopped.load() == 10);
  check_quiescent(st);
}

BOOST_AUTO_TEST_CASE(stop_from_a_handler_stops_the_runtime_and_wait_returns) {
  auto l = std::make_shared<lifecycle>();
  runtime rt{test_config()};
  auto a = rt.spawn<lifecycled>(pinned{1}, l);
  a.send(shutdown_all{});
  rt.wait();
  BOOST_TEST(l->stopped.load() == 1);
  check_quiescent(rt.stats());
  a.send(alive_q{});  // after the runtime stopped: a dead letter, no crash
}

BOOST_AUTO_TEST_CASE(spawn_works_from_handlers_and_rejects_a_shard_that_does_not_exist) {
  runtime rt{test_config()};
  auto l = std::make_shared<lifecycle>();
  auto s = rt.spawn<spawner>(pinned{0});
  std::string ok = rt.ask(s, spawn_child{1, l}).get();
  BOOST_TEST(ok.find("spawned lifecycled#") == 0u);
  BOOST_REQUIRE(eventually([&] { return l->started.load() == 1; }));
  BOOST_TEST(l->start_shard.load() == 1u);
  std::string bad = rt.ask(s, spawn_child{7, l}).get();
  BOOST_TEST(bad.find("pinned{7}") != std::string::npos);
  BOOST_TEST(bad.find("2 shards") != std::string::npos);
  BOOST_CHECK_THROW(rt.spawn<lifecycled>(pinned{2}, l), troupe::error);
}

namespace {
struct hold {
  std::shared_ptr<std::atomic<bool>> release;
  std::shared_ptr<std::atomic<bool>> holding;
};
struct payload {
  int n;
};
class gated : public actor<gated> {
  std::shared_ptr<std::atomic<int>> got_;

 public:
  explicit gated(std::shared_ptr<std::atomic<int>> g) : got_(std::move(g)) {}
  void on(const hold& h) {
    h.holding->store(true);
    auto until = std::chrono::steady_clock::now() + 20s;
    while (!h.release->load() && std::chrono::steady_clock::now() < until) std::this_thread::yield();
  }
  void on(const payload&) { got_->fetch_add(1); }
};
}  // namespace

BOOST_AUTO_TEST_CASE(try_send_hands_the_message_back_when_the_mailbox_is_full) {
  runtime_stats st;
  {
    runtime rt{test_config()};
    auto got = std::make_shared<std::atomic<int>>(0);
    auto release = std::make_shared<std::atomic<bool>>(false);
    auto g = rt.spawn<gated>(pinned{1}, mailbox_capacity{4}, got);
    auto holding = std::make_shared<std::atomic<bool>>(false);
    g.send(hold{release, holding});
    BOOST_REQUIRE(eventually([&] { return holding->load(); }));  // the actor is busy now
    int accepted = 0;
    std::optional<payload> back;
    for (int i = 0; i < 10 && !back; ++i) {
      back = g.try_send(payload{i});
      if (!back) ++accepted;
    }
    BOOST_TEST(accepted == 4);
    BOOST_REQUIRE(back.has_value());
    BOOST_TEST(back->n == 4);  // the refused message, handed back intact
    g.send(payload{100});      // plain send is never refused
    release->store(true);
    BOOST_REQUIRE(eventually([&] { return got->load() == 5; }));
    BOOST_TEST(!g.try_send(payload{5}).has_value());
    BOOST_REQUIRE(eventually([&] { return got->load() == 6; }));
    rt.stop();
    st = rt.stats();
  }
  check_quiescent(st);
}

namespace {
struct beat {};
class ticking_gate : public actor<ticking_gate> {
 public:
  void on_start() { every(std::chrono::milliseconds(1), beat{}); }
  void on(const beat&) { ++beats; }
  void on(const payload&) {}
  int on(const alive_q&) { return beats; }
  int beats = 0;
};
}  // namespace

BOOST_AUTO_TEST_CASE(timer_ticks_do_not_break_the_mailbox_capacity_count) {
  runtime rt{test_config()};
  auto g = rt.spawn<ticking_gate>(pinned{1}, mailbox_capacity{8});
  BOOST_REQUIRE(eventually([&] { return rt.ask(g, alive_q{}).get() >= 5; }));
  for (int i = 0; i < 100; ++i) {
    BOOST_TEST(!g.try_send(payload{i}).has_value());  // never full: it keeps up
    BOOST_TEST(rt.ask(g, alive_q{}).wait().has_value());
  }
}
