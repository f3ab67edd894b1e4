#include <troupe/placement.hpp>

#define BOOST_TEST_MODULE placement
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"

#include <troupe/actor.hpp>

#include <map>

using namespace troupe;
using namespace troupe_test;

namespace {
struct where {};
class located : public actor<located> {
 public:
  shard_id on(const where&) { return this_shard(); }
};
}  // namespace

BOOST_AUTO_TEST_CASE(pinned_actors_run_on_their_shard) {
  runtime rt{test_config(3)};
  for (shard_id s = 0; s < 3; ++s) {
    auto a = rt.spawn<located>(pinned{s});
    BOOST_TEST(a.shard() == s);
    BOOST_TEST(rt.ask(a, where{}).get() == s);
  }
}

BOOST_AUTO_TEST_CASE(a_shard_that_does_not_exist_is_refused_with_a_clear_error) {
  runtime rt{test_config(2)};
  try {
    rt.spawn<located>(pinned{7});
    BOOST_FAIL("no exception");
  } catch (const troupe::error& e) {
    std::string what = e.what();
    BOOST_TEST(what.find("pinned{7}") != std::string::npos);
    BOOST_TEST(what.find("2 shards") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(round_robin_spreads_actors_over_every_shard) {
  runtime rt{test_config(3)};
  std::map<shard_id, int> count;
  for (int i = 0; i < 30; ++i) ++count[rt.spawn<located>(round_robin{}).shard()];
  BOOST_TEST(count.size() == 3u);
  for (auto& [s, n] : count) BOOST_TEST(n == 10);
}

BOOST_AUTO_TEST_CASE(sticky_keys_map_to_the_same_shard_in_every_runtime) {
  std::map<std::string, shard_id> first;
  std::map<shard_id, int> spread;
  for (int run = 0; run < 2; ++run) {
    runtime rt{test_config(2)};
    for (int k = 0; k < 64; ++k) {
      std::string key = "symbol-" + std::to_string(k);
      auto a = rt.spawn<located>(sticky{key});
      if (run == 0) {
        first[key] = a.shard();
        ++spread[a.shard()];
      } else {
        BOOST_TEST(first[key] == a.shard());
      }
      BOOST_TEST(rt.ask(a, where{}).get() == a.shard());
    }
  }
  BOOST_TEST(spread.size() == 2u);  // both shards are used
  // The hash is FNV-1a: stable across runs, compilers and libraries.
  BOOST_TEST(sticky::hash("") == 0xcbf29ce484222325ull);
  BOOST_TEST(sticky::hash("a") == 0xaf63dc4c8601ec8cull);
}

BOOST_AUTO_TEST_CASE(the_default_shard_count_is_the_number_of_cpus_we_may_run_on) {
  config c = test_config(0);
  runtime rt{c};
  cpu_set_t set;
  BOOST_REQUIRE(sched_getaffinity(0, sizeof set, &set) == 0);
  BOOST_TEST(rt.shards() == shard_id(CPU_COUNT(&set)));
}
