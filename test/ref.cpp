#include <troupe/ref.hpp>

#define BOOST_TEST_MODULE ref
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"

#include <troupe/actor.hpp>
#include <troupe/log.hpp>

#include <fmt/format.h>

#include <sstream>
#include <unordered_set>

using namespace troupe;
using namespace troupe_test;

namespace app {
struct add { int n; };
struct get {};
struct unknown {};
class counter : public actor<counter> {
  long total_ = 0;

 public:
  using accepts = std::tuple<add, get>;  // what any_ref may send it
  void on(const add& m) { total_ += m.n; }
  long on(const get&) { return total_; }
};
}  // namespace app

BOOST_AUTO_TEST_CASE(refs_format_as_type_id_and_shard) {
  runtime rt{test_config()};
  auto c = rt.spawn<app::counter>(pinned{1});
  std::string expected = "counter#" + std::to_string(c.id()) + "@1";
  BOOST_TEST(to_string(c) == expected);
  BOOST_TEST(fmt::format("{}", c) == expected);
  std::ostringstream os;
  os << c;
  BOOST_TEST(os.str() == expected);
  BOOST_TEST(to_string(ref<app::counter>{}) == "<empty ref>");
  BOOST_TEST(c.type_name() == "counter");
}

BOOST_AUTO_TEST_CASE(refs_compare_and_hash_by_their_never_reused_id) {
  runtime rt{test_config()};
  auto a = rt.spawn<app::counter>(pinned{0});
  auto b = rt.spawn<app::counter>(pinned{0});
  auto a2 = a;
  BOOST_TEST((a == a2));
  BOOST_TEST((a != b));
  BOOST_TEST((a < b || b < a));
  std::unordered_set<ref<app::counter>> set{a, a2, b};
  BOOST_TEST(set.size() == 2u);
  any_ref any = a;
  BOOST_TEST((any == a));
  BOOST_TEST(std::hash<any_ref>{}(any) == std::hash<ref<app::counter>>{}(a));
  BOOST_TEST(b.id() > a.id());
}

BOOST_AUTO_TEST_CASE(any_ref_dispatches_at_run_time_and_counts_what_the_actor_does_not_accept) {
  runtime rt{test_config()};
  auto c = rt.spawn<app::counter>(pinned{1});
  any_ref any = c;
  any.send(app::add{40});
  any.send(app::add{2});
  any.send(app::unknown{});
  BOOST_TEST(rt.ask(c, app::get{}).get() == 42);
  BOOST_REQUIRE(eventually([&] { return rt.stats().shards[1].unhandled == 1u; }));
  auto typed = any.as<app::counter>();
  BOOST_REQUIRE(typed.has_value());
  BOOST_TEST((*typed == c));
  struct other : actor<other> {
    void on(const app::get&) {}
  };
  BOOST_TEST(!any.as<other>().has_value());
}

BOOST_AUTO_TEST_CASE(sending_through_an_empty_ref_is_misuse_and_throws) {
  ref<app::counter> empty;
  BOOST_CHECK_THROW(empty.send(app::add{1}), troupe::error);
}

BOOST_AUTO_TEST_CASE(a_ref_outliving_its_runtime_sends_into_the_dead_letter_count) {
  ref<app::counter> c;
  {
    runtime rt{test_config()};
    c = rt.spawn<app::counter>(pinned{0});
  }
  BOOST_TEST(c.stopped());
  c.send(app::add{1});  // no crash, no leak (asan)
}
