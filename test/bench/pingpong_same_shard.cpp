// pingpong_same_shard: ns per round trip between two actors on the same
// shard of a 1-shard runtime (shard pinned to CPU 0), against CAF with one
// scheduler thread and the intrusive-queue floor (the same hand-over with no
// framework around it).
//
// The troupe ping-pong: two `player` actors bounce a `ball` with `send`.
// Main sends the first ball; the warm-up and the timed part run back to back
// in one rally. Player 0 takes the start time when it receives ball 2*warm
// and the end time when it receives ball 2*(warm+n); main waits on a futex
// with a deadline, then checks every player's receive count exactly.
// `troupe_unbound` is the same with stealable players (doc/placement.md:
// what being unbound costs when there is nothing to steal).
#include <troupe/troupe.hpp>

#include "harness.hpp"
#include "peers.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

namespace {

constexpr const char* kBench = "pingpong_same_shard";

using bench::completion;

struct shared_state {
  long start_at = 0;
  long end_at = 0;
  bench::clock::time_point t0, t1;
  completion finished;
};

struct ball {
  long n;
};
struct get_count {};
class player;
struct meet {
  troupe::ref<player> peer;
};

class player : public troupe::actor<player> {
  shared_state* st_;
  troupe::ref<player> peer_;
  long received_ = 0;

 public:
  explicit player(shared_state* st) : st_(st) {}
  void on(const meet& m) { peer_ = m.peer; }
  void on(const ball& b) {
    ++received_;
    if (b.n == st_->start_at) {
      st_->t0 = bench::clock::now();
    } else if (b.n == st_->end_at) {
      st_->t1 = bench::clock::now();
      st_->finished.signal();
      return;
    }
    peer_.send(ball{b.n + 1});
  }
  long on(const get_count&) { return received_; }
};

double troupe_pingpong(long n, long warm, const troupe::placement& where, const std::string& what,
                       troupe::shard_id shards = 1) {
  troupe::config cfg;
  cfg.shards = shards;
  cfg.pinning = troupe::thread_pinning::cpu;
  shared_state st;
  st.start_at = 2 * warm;
  st.end_at = 2 * (warm + n);
  {
    troupe::runtime rt{cfg};
    auto a = rt.spawn<player>(where, &st);
    auto b = rt.spawn<player>(where, &st);
    a.send(meet{b});
    b.send(meet{a});
    bench::check(rt.ask(a, get_count{}).get() == 0 && rt.ask(b, get_count{}).get() == 0,
                 what + ": fresh players have counts");
    a.send(ball{0});
    bench::check(st.finished.wait_for(std::chrono::seconds(60)), what + ": timed out");
    long got_a = rt.ask(a, get_count{}).get(), got_b = rt.ask(b, get_count{}).get();
    bench::check(got_a == warm + n + 1 && got_b == warm + n,
                 what + ": receive counts " + std::to_string(got_a) + "/" + std::to_string(got_b) +
                     ", expected " + std::to_string(warm + n + 1) + "/" + std::to_string(warm + n));
    rt.stop();
    auto end = rt.stats();
    bench::check(end.sent() == end.processed() + end.dead_letters(), what + ": sent != processed + dead");
    bench::check(end.envelopes_live() == 0, what + ": envelopes leaked");
  }
  return std::chrono::duration<double, std::nano>(st.t1 - st.t0).count() / double(n);
}

}  // namespace

int main(int argc, char** argv) {
  namespace p = bench::peers;
  auto o = bench::parse(argc, argv);
  const long n = o.quick ? 20'000 : 5'000'000;
  const long warm = o.quick ? 2'000 : 100'000;
  const long floor_n = o.quick ? 100'000 : 20'000'000;
  const long caf = o.quick ? 5'000 : 500'000;
  bench::run_interleaved(o, kBench, "ns/op",
                         {
                             {"troupe", [&] { return troupe_pingpong(n, warm, troupe::pinned{0}, "troupe"); }},
                             // Unbound players on the one shard: the mailbox
                             // path every message to an unbound actor takes.
                             {"troupe_unbound",
                              [&] {
                                return troupe_pingpong(n, warm, troupe::stealable_preferred{0},
                                                       "troupe_unbound");
                              }},
                             // The same two in a 2-shard runtime: the idle
                             // shard steals whichever player waits, and the
                             // rally turns into a cross-shard one.
                             {"troupe_unbound_2shards",
                              [&] {
                                return troupe_pingpong(n / 10, warm / 10, troupe::stealable_preferred{0},
                                                       "troupe_unbound_2shards", 2);
                              }},
                             {"caf_1thread", [&] { return p::caf_pingpong(caf, 1, false); }},
                             {"intrusive_queue_floor", [&] { return p::intrusive_queue_floor(floor_n); }},
                         });
  return 0;
}
