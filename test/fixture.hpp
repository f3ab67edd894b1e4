// Shared by the test suites: the runtime config tests use, and the checks
// every test runs after shutdown.
#pragma once

#include <troupe/log.hpp>
#include <troupe/troupe.hpp>

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace troupe_test {

/// The ring setup this run of the suite uses: `-- --ring=defer` selects
/// SINGLE_ISSUER|DEFER_TASKRUN, else the default.
inline troupe::ring_setup ring_from_args() {
  auto& m = boost::unit_test::framework::master_test_suite();
  for (int i = 1; i < m.argc; ++i)
    if (std::string_view(m.argv[i]) == "--ring=defer") return troupe::ring_setup::defer_taskrun;
  return troupe::ring_setup::coop_taskrun;
}

/// A Boost.Test precondition from a probe of the machine (a kernel feature,
/// a file system, a privilege): where the probe fails the test is reported
/// as skipped, with the reason, instead of passing without testing.
///   BOOST_AUTO_TEST_CASE(t, *boost::unit_test::precondition(needs{&probe, "why"}))
struct needs {
  bool (*probe)();
  const char* missing;
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    boost::test_tools::assertion_result r(probe());
    if (!r) r.message() << missing;
    return r;
  }
};

/// Tests never spin before parking: two spinning shards per test binary
/// under `b2 -j2` would starve each other on two CPUs.
inline troupe::config test_config(troupe::shard_id shards = 2) {
  troupe::config c;
  c.shards = shards;
  c.ring = ring_from_args();
  c.spin_before_park = std::chrono::microseconds{0};
  c.pinning = troupe::thread_pinning::none;
  return c;
}

/// After a runtime has stopped: nothing lost, nothing leaked.
inline void check_quiescent(const troupe::runtime_stats& s) {
  BOOST_TEST(s.sent() == s.processed() + s.dead_letters());
  BOOST_TEST(s.envelopes_live() == 0u);
}

/// Polls `done` until it holds or `limit` passes; a bounded wait for
/// conditions that other threads make true (never a bare sleep).
template <class F>
bool eventually(F done, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

/// Captures the runtime's log lines while it lives (troupe::set_log_sink);
/// stderr gets them again afterwards. One at a time per process.
class log_capture {
 public:
  struct line {
    troupe::log_level level;
    std::string text;
  };
  log_capture() {
    troupe::set_log_sink([this](troupe::log_level l, std::string_view t) {
      std::lock_guard lock(mutex_);
      lines_.push_back({l, std::string(t)});
    });
  }
  ~log_capture() { troupe::set_log_sink({}); }
  log_capture(const log_capture&) = delete;
  log_capture& operator=(const log_capture&) = delete;

  std::vector<line> lines() const {
    std::lock_guard lock(mutex_);
    return lines_;
  }
  /// The lines at `level` or above that contain `part`.
  std::vector<line> find(std::string_view part, troupe::log_level at_least = troupe::log_level::debug) const {
    std::vector<line> out;
    for (line& l : lines())
      if (l.level >= at_least && l.text.find(part) != std::string::npos) out.push_back(std::move(l));
    return out;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<line> lines_;
};

}  // namespace troupe_test
