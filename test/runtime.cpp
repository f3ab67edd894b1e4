#include <troupe/runtime.hpp>

#define BOOST_TEST_MODULE runtime
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"

#include <atomic>

using namespace troupe;
using namespace troupe_test;

namespace {

struct add { int n; };
struct get {};

class counter : public actor<counter> {
  long total_ = 0;

 public:
  void on(const add& m) { total_ += m.n; }
  long on(const get&) { return total_; }
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
