// The life of an I/O operation record (include/troupe/io.hpp): a multishot
// operation whose results are already queued as messages when its actor or
// the runtime stops. Every queued result is dropped (its buffer goes back)
// without touching a freed record, whichever way the actor goes.
#include <troupe/io.hpp>

#define BOOST_TEST_MODULE io
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"
#include "io_fixture.hpp"

#include <troupe/net.hpp>
#include <troupe/runtime.hpp>

#include <sys/socket.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

using namespace troupe;
using namespace troupe_test;

namespace {

// Small ring buffers, so that each chunk the peer writes is one CQE, and a
// budget of one message per run, so that a batch of results outlasts the
// turn in which the actor (or the runtime) is told to stop.
config multishot_config() {
  config c = test_config(1);
  c.message_budget = 1;
  c.recv_buffers.count = 1024;
  c.recv_buffers.size = 64;
  return c;
}

// Fits a socket pair's default send buffer (about 270 such chunks) unread:
// with DEFER_TASKRUN the ring takes nothing in while a handler holds the
// shard, and a blocking write would wait on it for ever.
constexpr int chunks = 150;

void write_chunks(int fd, int n) {
  char chunk[64];
  std::memset(chunk, 'x', sizeof chunk);
  int sent = 0;
  for (int i = 0; i < n; ++i) sent += ::send(fd, chunk, sizeof chunk, MSG_NOSIGNAL | MSG_DONTWAIT) == sizeof chunk;
  BOOST_REQUIRE_EQUAL(sent, n);
}

// Both shards' I/O records have completed (their last CQE was reaped).
bool io_settled(const runtime& rt) {
  auto s = rt.stats();
  for (auto& sh : s.shards)
    if (sh.io_completed != sh.io_submitted) return false;
  return true;
}

enum class how_it_stops { runtime_stop, actor_stop };

// An actor that always has one more message: keeps the ready queue long, so
// a turn runs the worker only once or twice (src/shard.cpp, run_ready) and
// results reaped in the turn that stops the runtime are still queued when
// it ends. Without it a turn may run all of a batch first: with
// DEFER_TASKRUN the kernel hands multishot results over 32 at a time.
struct spin {
  void operator()(worker& me) const { me.send(me.self(), job{spin{}}); }
};
constexpr int spinners = 64;

// The first result arrives alone; its handler holds the shard until the
// peer has written `chunks` more, so that they come back as one batch of
// CQEs. The tenth result stops the runtime or the actor while most of the
// batch still waits in the mailbox.
void stop_with_results_queued(how_it_stops how) {
  auto pair = net::socket_pair(SOCK_STREAM);
  BOOST_REQUIRE(pair.has_value());
  auto a = std::make_shared<net::socket>(std::move(pair->first));
  net::socket b = std::move(pair->second);
  auto first = std::make_shared<std::atomic<bool>>(false);
  auto written = std::make_shared<std::atomic<bool>>(false);
  auto seen = std::make_shared<std::atomic<int>>(0);
  runtime rt{multishot_config()};
  auto w = rt.spawn<worker>(pinned{0});
  if (how == how_it_stops::runtime_stop)
    for (int i = 0; i < spinners; ++i) rt.spawn<worker>(pinned{0}).send(job{spin{}});
  w.send(job{[a, first, written, seen, how](worker& self) {
    self.submit(net::recv_multishot{*a}).then([&self, a, first, written, seen, how](io::result<net::buffer> r, bool) {
      if (!r || r->empty()) return;
      int n = ++*seen;
      if (n == 1) {
        first->store(true);
        eventually([&] { return written->load(); }, std::chrono::seconds(5));
      } else if (n == 10) {
        if (how == how_it_stops::runtime_stop) self.system().stop();
        else self.stop();
      }
    });
  }});
  write_chunks(b.fd(), 1);
  BOOST_REQUIRE(eventually([&] { return first->load(); }));
  write_chunks(b.fd(), chunks);
  written->store(true);
  if (how == how_it_stops::actor_stop) {
    BOOST_REQUIRE(eventually([&] { return w.stopped(); }));
    BOOST_REQUIRE(eventually([&] { return io_settled(rt); }));
    rt.stop();
  } else {
    rt.wait();
  }
  auto s = rt.stats();
  BOOST_TEST_MESSAGE("results handled " << seen->load() << ", dropped as dead letters " << s.dead_letters());
  // Not vacuous: results were still queued when the stop came. Besides
  // them the dead letters are the record's own final message and at most
  // one message per spinner.
  const std::uint64_t others = 1 + (how == how_it_stops::runtime_stop ? spinners : 0);
  BOOST_TEST(s.dead_letters() > others);
  check_quiescent(s);
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_runtime_stop_with_multishot_results_queued_drops_them_safely) {
  stop_with_results_queued(how_it_stops::runtime_stop);
}

BOOST_AUTO_TEST_CASE(an_actor_that_stops_with_multishot_results_queued_drops_them_safely) {
  stop_with_results_queued(how_it_stops::actor_stop);
}

BOOST_AUTO_TEST_CASE(results_queued_behind_a_message_still_being_linked_outlive_the_stop) {
  // A foreign sender that was preempted between taking the mailbox's tail
  // and linking its message leaves a gap: the shard sees "busy" and keeps
  // what follows for later. Multishot results queue behind that gap, the
  // actor stops (its operation is cancelled and completes), and only then
  // does the sender link its message and the results get dropped.
  auto pair = net::socket_pair(SOCK_STREAM);
  BOOST_REQUIRE(pair.has_value());
  auto a = std::make_shared<net::socket>(std::move(pair->first));
  net::socket b = std::move(pair->second);
  auto first = std::make_shared<std::atomic<bool>>(false);
  auto fillers_sent = std::make_shared<std::atomic<bool>>(false);
  auto gap_made = std::make_shared<std::atomic<bool>>(false);
  auto fillers_run = std::make_shared<std::atomic<int>>(0);
  constexpr int fillers = 2000;
  runtime rt{multishot_config()};
  auto w = rt.spawn<worker>(pinned{0});
  w.send(job{[a, first, fillers_sent, gap_made, fillers_run](worker& self) {
    self.submit(net::recv_multishot{*a}).then([&self, a, first, fillers_sent, gap_made, fillers_run](io::result<net::buffer> r, bool) {
      if (!r || r->empty() || first->exchange(true)) return;
      // Queued locally ahead of the gap; the last one stops the actor after
      // the batch of results has been queued behind the gap.
      for (int i = 0; i < fillers; ++i)
        self.send(self.self(), job{[fillers_run](worker& me) {
          if (++*fillers_run == fillers) me.stop();
        }});
      fillers_sent->store(true);
      eventually([&] { return gap_made->load(); }, std::chrono::seconds(5));
    });
  }});
  write_chunks(b.fd(), 1);
  BOOST_REQUIRE(eventually([&] { return fillers_sent->load(); }));
  // The preempted sender's first half: the tail is taken, the link is not.
  detail::control_block* cb = w.control();
  auto* e = detail::make_envelope<detail::message_envelope<worker, job>>(cb, job{[](worker&) {}});
  e->next.store(nullptr, std::memory_order_relaxed);
  detail::mpsc_node* prev = cb->mailbox_tail_.exchange(e, std::memory_order_seq_cst);
  write_chunks(b.fd(), chunks);
  gap_made->store(true);
  BOOST_REQUIRE(eventually([&] { return w.stopped(); }));
  BOOST_REQUIRE(eventually([&] { return io_settled(rt); }));
  prev->next.store(e, std::memory_order_release);  // the sender goes on
  rt.stop();
  auto s = rt.stats();
  BOOST_TEST(fillers_run->load() == fillers);
  BOOST_TEST(s.dead_letters() > 1u);
  BOOST_TEST(s.envelopes_live() == 0u);
}

namespace {

struct anchor_tally {
  std::atomic<int> cycles{0};
  std::atomic<int> probes{0};
  std::atomic<int> shards_after{0};  // bit per shard the actor ran on after the cycles
};

// Writes a chunk into the socket pair, arms a multishot recv on the other
// end (a result is on the way at once) and cancels it in the same handler,
// `left` times.
void arm_and_cancel(worker& self, std::shared_ptr<net::socket> s, int peer, std::shared_ptr<anchor_tally> t,
                    int left) {
  if (left == 0) return;
  char chunk[64] = {};
  (void)!::send(peer, chunk, sizeof chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
  io::handle h = self.submit(net::recv_multishot{*s}).then([](io::result<net::buffer>, bool) {});
  self.cancel(h);
  t->cycles.fetch_add(1);
  self.send(self.self(), job{[s, peer, t, left](worker& me) { arm_and_cancel(me, s, peer, t, left - 1); }});
}

}  // namespace

// A cancelled multishot record keeps its unbound actor anchored until its
// last CQE, and then lets go of it exactly once: after many cancels the
// actor still moves between shards (an anchor dropped at the cancel and
// again at the CQE would wrap the count and pin the actor for ever).
BOOST_AUTO_TEST_CASE(a_cancelled_multishot_lets_go_of_its_anchor_once_at_its_last_completion) {
  auto pair = net::socket_pair(SOCK_STREAM);
  BOOST_REQUIRE(pair.has_value());
  auto a = std::make_shared<net::socket>(std::move(pair->first));
  net::socket b = std::move(pair->second);
  auto t = std::make_shared<anchor_tally>();
  config c = test_config(2);
  c.message_budget = 1;
  c.stealing.steal_batch = 1;
  c.stealing.wake_threshold = 0;
  c.fault_injection.steal_every_turn = true;
  c.recv_buffers.count = 64;
  c.recv_buffers.size = 64;
  runtime rt{c};
  auto w = rt.spawn<worker>(stealable{});
  w.send(job{[a, peer = b.fd(), t](worker& me) { arm_and_cancel(me, a, peer, t, 200); }});
  BOOST_REQUIRE(eventually([&] { return t->cycles.load() == 200; }, std::chrono::seconds(30)));
  BOOST_REQUIRE(eventually([&] { return io_settled(rt); }));
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (int round = 0; std::chrono::steady_clock::now() < give_up && t->shards_after.load() != 3; ++round) {
    for (int i = 0; i < 50; ++i)
      w.send(job{[t](worker& me) {
        t->shards_after.fetch_or(1 << me.this_shard());
        t->probes.fetch_add(1);
      }});
    const int want = (round + 1) * 50;
    BOOST_REQUIRE(eventually([&] { return t->probes.load() >= want; }));
  }
  BOOST_TEST(t->shards_after.load() == 3);
  rt.stop();
  check_quiescent(rt.stats());
}
