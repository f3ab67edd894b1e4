// ask: replies, timeouts, dead targets and askers, blocking asks on a
// shard; answering later (deferred<R>, promise<R>, expect); and what an ask
// request owns.
#include <troupe/actor.hpp>

#define BOOST_TEST_MODULE ask
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"

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
struct alive_q {};
}  // namespace
// ---------------------------------------------------------------------------
// ask semantics

namespace {

struct slow_q {
  std::chrono::milliseconds busy;
};

struct quit {};

class slow : public actor<slow> {
 public:
  void on(const quit&) { stop(); }
  int on(const slow_q& q) {
    auto until = std::chrono::steady_clock::now() + q.busy;
    while (std::chrono::steady_clock::now() < until) {
    }
    return 7;
  }
  int on(const alive_q&) { return 1; }
};

struct outcome {
  std::atomic<int> state{0};  // 0 pending, 1 value, 2 error
  std::error_code ec;
  std::atomic<bool> ran{false};
  std::chrono::steady_clock::duration took{};
};

struct ask_it {
  ref<slow> target;
  slow_q q;
  std::chrono::milliseconds timeout;
  bool stop_after = false;
};

class asker : public actor<asker> {
  std::shared_ptr<outcome> out_;

 public:
  explicit asker(std::shared_ptr<outcome> o) : out_(std::move(o)) {}
  void on(const ask_it& a) {
    auto t0 = std::chrono::steady_clock::now();
    ask(a.target, a.q, a.timeout).then([this, t0](result<int> r) {
      out_->ran = true;
      out_->took = std::chrono::steady_clock::now() - t0;
      out_->ec = r.error();
      out_->state = r ? 1 : 2;
    });
    if (a.stop_after) stop();
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(an_ask_to_a_dead_target_answers_actor_stopped_at_once) {
  runtime rt{test_config()};
  auto target = rt.spawn<slow>(pinned{1});
  target.send(quit{});
  BOOST_REQUIRE(eventually([&] { return target.stopped(); }));
  auto out = std::make_shared<outcome>();
  auto a = rt.spawn<asker>(pinned{0}, out);
  a.send(ask_it{target, {0ms}, 30s});
  BOOST_REQUIRE(eventually([&] { return out->state.load() != 0; }, 10s));
  BOOST_TEST((out->ec == errc::actor_stopped));
  BOOST_TEST((out->took < std::chrono::steady_clock::duration(5s)));
  // From a foreign thread too.
  auto t0 = std::chrono::steady_clock::now();
  BOOST_TEST((rt.ask(target, alive_q{}, 30s).wait().error() == errc::actor_stopped));
  BOOST_TEST((std::chrono::steady_clock::now() - t0 < std::chrono::steady_clock::duration(5s)));
}

BOOST_AUTO_TEST_CASE(an_ask_times_out_and_its_late_reply_is_counted_and_dropped) {
  runtime rt{test_config()};
  auto target = rt.spawn<slow>(pinned{1});
  auto out = std::make_shared<outcome>();
  auto a = rt.spawn<asker>(pinned{0}, out);
  a.send(ask_it{target, {300ms}, 20ms});
  BOOST_REQUIRE(eventually([&] { return out->state.load() != 0; }, 10s));
  BOOST_TEST((out->ec == errc::timeout));
  BOOST_TEST((out->took >= std::chrono::steady_clock::duration(20ms)));  // lower bound only
  BOOST_REQUIRE(eventually([&] { return rt.stats().late_replies() == 1u; }, 10s));
  // A foreign ask that times out: the late reply is counted as well.
  auto r = rt.ask(target, slow_q{300ms}, 20ms).wait();
  BOOST_TEST((r.error() == errc::timeout));
  BOOST_REQUIRE(eventually([&] { return rt.stats().late_replies() == 2u; }, 10s));
}

BOOST_AUTO_TEST_CASE(a_stopped_askers_continuation_never_runs) {
  runtime_stats st;
  auto out = std::make_shared<outcome>();
  {
    runtime rt{test_config()};
    auto target = rt.spawn<slow>(pinned{1});
    auto a = rt.spawn<asker>(pinned{0}, out);
    a.send(ask_it{target, {100ms}, 10s, /*stop_after=*/true});
    BOOST_REQUIRE(eventually([&] { return a.stopped(); }));
    // The reply arrives after the asker is gone: a dead letter, not a call.
    BOOST_REQUIRE(eventually([&] { return rt.stats().dead_letters() >= 1u; }, 10s));
    BOOST_TEST(!out->ran.load());
    rt.stop();
    st = rt.stats();
  }
  BOOST_TEST(!out->ran.load());
  check_quiescent(st);
}

namespace {
struct block_me {
  runtime* rt;
  ref<slow> target;
};
class blocker : public actor<blocker> {
 public:
  std::string on(const block_me& b) {
    try {
      (void)b.rt->ask(b.target, alive_q{}).get();
      return "no exception";
    } catch (const troupe::error& e) {
      return e.what();
    }
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(a_blocking_get_on_a_shard_thread_throws_instead_of_deadlocking) {
  runtime rt{test_config()};
  auto target = rt.spawn<slow>(pinned{1});
  auto b = rt.spawn<blocker>(pinned{1});
  std::string what = rt.ask(b, block_me{&rt, target}).get();
  BOOST_TEST(what.find("deadlock") != std::string::npos);
}


// ---------------------------------------------------------------------------
// Answering later: deferred<R> and promise<R>

namespace {

struct lookup { int key; };
struct answer_from_backend { int key; int value; };
struct keep_pending { int key; };
struct release_held {};
struct count_q {};
struct drop_it {};
struct wrong_type {};

class backend : public actor<backend> {
 public:
  int on(const lookup& l) { return l.key * 2; }
};

// Answers each lookup only once its backend (on another shard) has, and
// takes other messages meanwhile.
class relay : public actor<relay> {
  ref<backend> backend_;
  std::vector<promise<int>> held_;
  int handled_ = 0;

 public:
  explicit relay(ref<backend> b) : backend_(std::move(b)) {}
  deferred<int> on(const lookup& l) {
    ++handled_;
    ask(backend_, l).then([reply = reply_later<int>()](result<int> r) mutable { reply.deliver(r); });
    return {};
  }
  deferred<int> on(const keep_pending&) {
    held_.push_back(reply_later<int>());
    return {};
  }
  void on(const release_held&) {
    for (auto& p : held_) p.deliver(7);
    held_.clear();
  }
  int on(const count_q&) { return handled_; }
  deferred<int> on(const drop_it&) {
    (void)reply_later<int>();  // taken and let go: broken_promise
    return {};
  }
  deferred<int> on(const wrong_type&) {
    (void)reply_later<long>();  // misuse: throws, the actor fails
    return {};
  }
};

struct lookups { int count; };

class many_asker : public actor<many_asker> {
  ref<relay> relay_;
  std::shared_ptr<std::atomic<int>> ok_, bad_;

 public:
  many_asker(ref<relay> r, std::shared_ptr<std::atomic<int>> ok, std::shared_ptr<std::atomic<int>> bad)
      : relay_(std::move(r)), ok_(std::move(ok)), bad_(std::move(bad)) {}
  void on(const lookups& m) {
    for (int i = 0; i < m.count; ++i)
      ask(relay_, lookup{i}).then([this, i](result<int> r) { (r && *r == 2 * i ? *ok_ : *bad_) += 1; });
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(a_deferred_handler_answers_each_ask_later_through_its_promise) {
  runtime rt{test_config()};
  auto b = rt.spawn<backend>(pinned{1});
  auto r = rt.spawn<relay>(pinned{0}, b);
  // From a foreign thread: an ordinary ask of reply type int.
  BOOST_TEST(rt.ask(r, lookup{21}).get() == 42);
  // From an actor, 5000 at once, each answered with its own value.
  auto ok = std::make_shared<std::atomic<int>>(0), bad = std::make_shared<std::atomic<int>>(0);
  auto a = rt.spawn<many_asker>(pinned{1}, r, ok, bad);
  a.send(lookups{5000});
  BOOST_REQUIRE(eventually([&] { return ok->load() + bad->load() == 5000; }));
  BOOST_TEST(bad->load() == 0);
  BOOST_TEST(rt.ask(r, count_q{}).get() == 5001);
  // A plain send to a deferred handler: the promise is empty, nobody waits.
  r.send(lookup{1});
  BOOST_TEST(rt.ask(r, count_q{}).get() == 5002);
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(a_promise_kept_across_messages_is_answered_when_delivered) {
  runtime rt{test_config()};
  auto r = rt.spawn<relay>(pinned{0}, rt.spawn<backend>(pinned{1}));
  auto first = rt.ask(r, keep_pending{1});
  auto second = rt.ask(r, keep_pending{2});
  BOOST_TEST(rt.ask(r, count_q{}).get() == 0);  // the relay is not blocked by what it holds
  r.send(release_held{});
  BOOST_TEST(first.get() == 7);
  BOOST_TEST(second.get() == 7);
  rt.stop();
}

BOOST_AUTO_TEST_CASE(a_promise_dropped_or_held_by_a_stopping_actor_still_answers) {
  runtime rt{test_config()};
  auto r = rt.spawn<relay>(pinned{0}, rt.spawn<backend>(pinned{1}));
  auto dropped = rt.ask(r, drop_it{}).wait();
  BOOST_TEST(!dropped.has_value());
  BOOST_TEST((dropped.error() == errc::broken_promise));
  auto held = rt.ask(r, keep_pending{3});
  BOOST_TEST(rt.ask(r, count_q{}).get() == 0);
  auto failed = rt.ask(r, wrong_type{}).wait();  // reply_later<long> for deferred<int>: the relay fails
  BOOST_TEST((failed.error() == errc::actor_failed));
  auto stopped = held.wait();  // its promise died with the relay
  BOOST_TEST(!stopped.has_value());
  BOOST_TEST((stopped.error() == errc::actor_stopped));
  rt.stop();
  check_quiescent(rt.stats());
}

// A promise an actor makes itself: actor::expect<R>(fn)

namespace {

struct expect_log {
  std::mutex m;
  std::vector<std::pair<int, shard_id>> got;
  std::vector<std::error_code> errors;
  std::thread foreign;
  promise<int> late;
};
struct deliver_this {
  promise<int> p;
  int value;
};
class deliverer : public actor<deliverer> {
 public:
  void on(deliver_this&& d) { d.p.deliver(d.value); }
};
enum class kept_by { foreign_thread, other_shard, nobody, test_after_stop };
struct expect_one {
  kept_by how;
};
struct stop_now {};

class expecter : public actor<expecter> {
  std::shared_ptr<expect_log> log_;
  ref<deliverer> deliverer_;

 public:
  expecter(std::shared_ptr<expect_log> l, ref<deliverer> d) : log_(std::move(l)), deliverer_(std::move(d)) {}
  void on(const expect_one& m) {
    promise<int> p = expect<int>([this](result<int> r) {
      std::lock_guard g(log_->m);
      if (r) log_->got.emplace_back(*r, this_shard());
      else log_->errors.push_back(r.error());
    });
    std::lock_guard g(log_->m);
    switch (m.how) {
      case kept_by::foreign_thread: log_->foreign = std::thread([p = std::move(p)]() mutable { p.deliver(5); }); break;
      case kept_by::other_shard: deliverer_.send(deliver_this{std::move(p), 6}); break;
      case kept_by::nobody: break;  // destroyed here: broken_promise
      case kept_by::test_after_stop: log_->late = std::move(p); break;
    }
  }
  void on(const stop_now&) { stop(); }
};

}  // namespace

BOOST_AUTO_TEST_CASE(a_promise_an_actor_expects_runs_its_continuation_on_the_actor_whoever_keeps_it) {
  runtime rt{test_config()};
  auto log = std::make_shared<expect_log>();
  auto e = rt.spawn<expecter>(pinned{0}, log, rt.spawn<deliverer>(pinned{1}));
  e.send(expect_one{kept_by::foreign_thread});
  e.send(expect_one{kept_by::other_shard});
  e.send(expect_one{kept_by::nobody});
  BOOST_REQUIRE(eventually([&] {
    std::lock_guard g(log->m);
    return log->got.size() == 2 && log->errors.size() == 1;
  }));
  {
    std::lock_guard g(log->m);
    std::sort(log->got.begin(), log->got.end());
    BOOST_TEST((log->got == std::vector<std::pair<int, shard_id>>{{5, 0}, {6, 0}}));  // on the expecter's shard
    BOOST_TEST((log->errors[0] == errc::broken_promise));
  }
  log->foreign.join();
  // The expecter stops before its promise is kept: the continuation never
  // runs, and keeping it later is harmless.
  e.send(expect_one{kept_by::test_after_stop});
  e.send(stop_now{});
  BOOST_REQUIRE(eventually([&] { return e.stopped(); }));
  {
    std::lock_guard g(log->m);
    log->late.deliver(9);
  }
  rt.stop();
  std::lock_guard g(log->m);
  BOOST_TEST(log->got.size() == 2u);
  BOOST_TEST(log->errors.size() == 1u);
}

// ---------------------------------------------------------------------------
// What an ask request owns: its target and its message, by value. A request
// built in one frame and sent from another must not read either through a
// reference to a temporary that has gone (ASan: stack-use-after-scope).

namespace {

struct shout {
  std::string text;
};

class echo : public actor<echo> {
 public:
  std::string on(const shout& s) { return s.text; }
};

struct go_ask {
  ref<echo> target;
};

struct asked {
  std::mutex m;
  std::vector<std::string> replies;
};

class late_asker : public actor<late_asker> {
  std::shared_ptr<asked> out_;

  // The request outlives this frame, the temporary message and the
  // temporary ref it was made from.
  ask_request<echo, shout> build(const go_ask& g, int i) {
    return ask(ref<echo>(g.target), shout{std::string(64, char('a' + i)) + std::to_string(i)});
  }

 public:
  explicit late_asker(std::shared_ptr<asked> o) : out_(std::move(o)) {}
  void on(const go_ask& g) {
    for (int i = 0; i < 8; ++i) {
      auto req = build(g, i);
      std::string noise(128, '#');  // reuses the stack the temporaries had
      std::move(req).then([out = out_](result<std::string> r) {
        std::lock_guard lock(out->m);
        out->replies.push_back(r ? *r : "error: " + r.error().message());
      });
    }
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(an_ask_request_owns_its_target_and_message_until_it_is_sent) {
  auto out = std::make_shared<asked>();
  runtime_stats st;
  {
    runtime rt{test_config()};
    auto target = rt.spawn<echo>(pinned{1});
    auto a = rt.spawn<late_asker>(pinned{0}, out);
    a.send(go_ask{target});
    BOOST_REQUIRE(eventually([&] {
      std::lock_guard lock(out->m);
      return out->replies.size() == 8u;
    }));
    rt.stop();
    st = rt.stats();
  }
  std::lock_guard lock(out->m);
  for (int i = 0; i < 8; ++i)
    BOOST_TEST(out->replies[i] == std::string(64, char('a' + i)) + std::to_string(i));
  check_quiescent(st);
}
