#include <troupe/log.hpp>

#define BOOST_TEST_MODULE log
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

using namespace troupe;
using namespace troupe_test;
using namespace std::chrono_literals;

namespace {

// Every line reaches the sink, so that a test sees at which level each was
// written; set before the logger's first line (it reads TROUPE_LOG once).
struct log_everything {
  log_everything() { ::setenv("TROUPE_LOG", "debug", 1); }
};

struct note {
  int n;
};
struct ask_back {};
struct quit {};

class sink_actor : public actor<sink_actor> {
 public:
  void on(const note&) {}
  int on(const ask_back&) { return 1; }
  void on(const quit&) { stop(); }
};

struct forward {
  ref<sink_actor> to;
};
class relay_actor : public actor<relay_actor> {
 public:
  int on(const forward& f) {
    f.to.send(note{1});
    return 1;
  }
};

// At shutdown, sends to its peer (stopped already, or stopping) and to a
// peer that will only be stopped after it: all of it becomes dead letters.
class noisy_at_stop : public actor<noisy_at_stop> {
  std::vector<ref<sink_actor>> peers_;

 public:
  explicit noisy_at_stop(std::vector<ref<sink_actor>> peers) : peers_(std::move(peers)) {}
  void on_start() {
    for (auto& p : peers_) delayed_send(1h, p, note{0});  // pending at stop
  }
  void on_stop() {
    for (auto& p : peers_) {
      for (int i = 0; i < 10; ++i) p.send(note{i});
      ask(p, ask_back{}).then([](result<int>) {});
    }
  }
  void on(const note&) {}
};

}  // namespace

BOOST_TEST_GLOBAL_FIXTURE(log_everything);

BOOST_AUTO_TEST_CASE(a_sink_receives_the_lines_with_their_level_and_stderr_gets_them_back_after) {
  {
    log_capture cap;
    log(log_level::warn, "a line for the sink");
    log(log_level::debug, "a debug line");
    auto got = cap.find("a line for the sink");
    BOOST_REQUIRE(got.size() == 1u);
    BOOST_TEST((got[0].level == log_level::warn));
    BOOST_TEST(got[0].text == "a line for the sink");  // no time stamp, name or newline
    BOOST_TEST(cap.find("a debug line").size() == 1u);
  }
  log_capture later;  // the first capture is gone: nothing of its lines here
  BOOST_TEST(later.lines().empty());
}

BOOST_AUTO_TEST_CASE(dead_letters_of_a_normal_stop_are_counted_but_not_logged_as_warnings_or_errors) {
  log_capture cap;
  runtime_stats st;
  {
    runtime rt{test_config()};
    std::vector<ref<sink_actor>> peers{rt.spawn<sink_actor>(pinned{0}), rt.spawn<sink_actor>(pinned{1})};
    std::vector<ref<noisy_at_stop>> noisy;
    for (shard_id s = 0; s < 2; ++s) noisy.push_back(rt.spawn<noisy_at_stop>(pinned{s}, peers));
    for (auto& p : peers) BOOST_TEST(rt.ask(p, ask_back{}).get() == 1);  // all started
    rt.stop();
    peers[0].send(note{99});  // after the stop: a dead letter too
    st = rt.stats();
  }
  check_quiescent(st);
  BOOST_TEST(st.dead_letters() >= 2u * 2u * 10u);
  for (const auto& l : cap.lines())
    BOOST_TEST((l.level < log_level::warn), "logged at warn or above during stop: " << l.text);
  // They are still there for whoever asks for debug.
  BOOST_TEST(!cap.find("dead letter", log_level::debug).empty());
}

BOOST_AUTO_TEST_CASE(a_dead_letter_to_an_actor_stopped_long_before_keeps_its_debug_line) {
  log_capture cap;
  runtime rt{test_config()};
  auto a = rt.spawn<sink_actor>(pinned{1});
  auto relay = rt.spawn<relay_actor>(pinned{0});
  a.send(quit{});
  BOOST_REQUIRE(eventually([&] { return a.stopped(); }));
  BOOST_TEST(rt.ask(relay, forward{a}).get() == 1);  // sent from shard 0, while running
  auto got = cap.find("dead letter to " + to_string(a));
  BOOST_REQUIRE(got.size() == 1u);
  BOOST_TEST((got[0].level == log_level::debug));
  rt.stop();
  check_quiescent(rt.stats());
}
