// Shared by the test suites: the runtime config tests use, and the checks
// every test runs after shutdown.
#pragma once

#include <troupe/troupe.hpp>

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstring>
#include <string_view>
#include <thread>

namespace troupe_test {

/// The ring setup this run of the suite uses: `-- --ring=defer` selects
/// SINGLE_ISSUER|DEFER_TASKRUN, else the default.
inline troupe::ring_setup ring_from_args() {
  auto& m = boost::unit_test::framework::master_test_suite();
  for (int i = 1; i < m.argc; ++i)
    if (std::string_view(m.argv[i]) == "--ring=defer") return troupe::ring_setup::defer_taskrun;
  return troupe::ring_setup::coop_taskrun;
}

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

}  // namespace troupe_test
