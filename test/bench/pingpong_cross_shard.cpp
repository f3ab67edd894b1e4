// pingpong_cross_shard: ns per round trip between two actors pinned to
// different shards of a 2-shard runtime (shards pinned to CPU 0 and CPU 1),
// against raw io_uring msg_ring peers, the SPSC spin floor and CAF.
//
// The troupe ping-pong: two `player` actors bounce a `ball` with `send` (not
// ask). Main sends the first ball from outside the runtime; the warm-up
// (`warm` round trips) and the timed part run back to back in one rally, so
// the shards are in their steady state when the clock starts. Player 0 takes
// the start time (and a stats snapshot) when it receives ball 2*warm and the
// end time when it receives ball 2*(warm+n); main waits on a futex with a
// deadline and then checks every player's receive count exactly.
//
//   troupe_hot            spin_before_park = 1 ms: shards never park in a rally
//   troupe_parking        spin_before_park = 0: each side parks between balls
//   troupe_parking_defer  the same with ring_setup::defer_taskrun
//
// Extra lines for each troupe variant: doorbells/op and parks/op (from
// runtime::stats(), deltas over the timed part, summed over both shards), and
// syscalls/op: every system call the two shard threads enter, counted by the
// kernel (perf_event_open on the raw_syscalls:sys_enter tracepoint, one
// counter per shard thread) from just before main's first ball until main has
// seen the end of the rally, divided by the round trips of the whole rally
// (warm-up + timed). The window also holds the wake-up by main's first ball
// and the final futex wake; "syscalls/run" gives the raw count.
// Without permission for the tracepoint the lines are left out (stderr says so).
#include <troupe/troupe.hpp>

#include "harness.hpp"
#include "peers.hpp"

#include <linux/futex.h>
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

namespace {

constexpr const char* kBench = "pingpong_cross_shard";

using bench::completion;

// Counts the system calls one thread enters (raw_syscalls:sys_enter).
class syscall_counter {
 public:
  syscall_counter() = default;
  syscall_counter(const syscall_counter&) = delete;
  syscall_counter& operator=(const syscall_counter&) = delete;
  ~syscall_counter() {
    if (fd_ >= 0) close(fd_);
  }
  // False (with the reason in `why`) when the kernel does not let us count.
  bool open(pid_t tid, std::string& why) {
    long id = tracepoint_id();
    if (id < 0) {
      why = "raw_syscalls/sys_enter tracepoint id not readable";
      return false;
    }
    perf_event_attr a{};
    a.size = sizeof a;
    a.type = PERF_TYPE_TRACEPOINT;
    a.config = std::uint64_t(id);
    a.disabled = 1;
    fd_ = int(syscall(SYS_perf_event_open, &a, tid, -1, -1, 0));
    if (fd_ < 0) {
      why = std::string("perf_event_open: ") + std::strerror(errno);
      return false;
    }
    return true;
  }
  void start() {
    ioctl(fd_, PERF_EVENT_IOC_RESET, 0);
    ioctl(fd_, PERF_EVENT_IOC_ENABLE, 0);
  }
  long read_count() {
    ioctl(fd_, PERF_EVENT_IOC_DISABLE, 0);
    std::uint64_t v = 0;
    if (::read(fd_, &v, sizeof v) != ssize_t(sizeof v)) return -1;
    return long(v);
  }

 private:
  static long tracepoint_id() {
    for (const char* p : {"/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
                          "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id"}) {
      std::ifstream f(p);
      long id = -1;
      if (f >> id) return id;
    }
    return -1;
  }
  int fd_ = -1;
};

struct shared_state {
  troupe::runtime* rt = nullptr;
  std::atomic<pid_t> tid[2] = {0, 0};  // the shard threads, for the syscall counters
  long start_at = 0;  // ball number at which the clock starts
  long end_at = 0;    // ball number at which the rally ends
  bench::clock::time_point t0, t1;
  troupe::runtime_stats s0, s1;
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
  void on(const meet& m) {
    peer_ = m.peer;
    st_->tid[this_shard()].store(pid_t(syscall(SYS_gettid)));
  }
  void on(const ball& b) {
    ++received_;
    if (b.n == st_->start_at) {
      st_->s0 = st_->rt->stats();
      st_->t0 = bench::clock::now();
    } else if (b.n == st_->end_at) {
      st_->t1 = bench::clock::now();
      st_->s1 = st_->rt->stats();
      st_->finished.signal();
      return;
    }
    peer_.send(ball{b.n + 1});
  }
  long on(const get_count&) { return received_; }
};

std::uint64_t sum(const troupe::runtime_stats& s, std::uint64_t troupe::shard_stats::*field) {
  std::uint64_t n = 0;
  for (auto& sh : s.shards) n += sh.*field;
  return n;
}

struct troupe_figures {
  double ns_per_rt = 0;
  long syscalls = -1;  // -1: not measured
  double syscalls_per_rt = 0;
  double doorbells_per_rt = 0;
  double parks_per_rt = 0;
};

troupe_figures troupe_pingpong(long n, long warm, std::chrono::microseconds spin, troupe::ring_setup ring,
                               const std::string& what) {
  troupe::config cfg;
  cfg.shards = 2;
  cfg.ring = ring;
  cfg.spin_before_park = spin;
  cfg.pinning = troupe::thread_pinning::cpu;
  troupe_figures f;
  shared_state st;
  {
    troupe::runtime rt{cfg};
    bench::check(rt.ring_of(0) == ring && rt.ring_of(1) == ring,
                 what + ": the kernel refused the requested ring setup");
    st.rt = &rt;
    st.start_at = 2 * warm;
    st.end_at = 2 * (warm + n);
    auto a = rt.spawn<player>(troupe::pinned{0}, &st);
    auto b = rt.spawn<player>(troupe::pinned{1}, &st);
    a.send(meet{b});
    b.send(meet{a});
    // Both have met their peer before the first ball: a reply to an ask
    // comes after the meet (per-pair order from this thread).
    bench::check(rt.ask(a, get_count{}).get() == 0 && rt.ask(b, get_count{}).get() == 0,
                 what + ": fresh players have counts");
    syscall_counter counters[2];
    std::string why;
    bool counting = counters[0].open(st.tid[0].load(), why) && counters[1].open(st.tid[1].load(), why);
    if (!counting) {
      static bool told = false;
      if (!told) std::fprintf(stderr, "%s: syscalls not counted (%s)\n", kBench, why.c_str());
      told = true;
    } else {
      counters[0].start();
      counters[1].start();
    }
    a.send(ball{0});
    bench::check(st.finished.wait_for(std::chrono::seconds(60)), what + ": timed out");
    if (counting) {
      long c0 = counters[0].read_count(), c1 = counters[1].read_count();
      if (c0 >= 0 && c1 >= 0) f.syscalls = c0 + c1;
    }
    // Player 0 receives the even balls 0, 2, ..., end_at; player 1 the odd ones.
    long got_a = rt.ask(a, get_count{}).get(), got_b = rt.ask(b, get_count{}).get();
    bench::check(got_a == warm + n + 1 && got_b == warm + n,
                 what + ": receive counts " + std::to_string(got_a) + "/" + std::to_string(got_b) +
                     ", expected " + std::to_string(warm + n + 1) + "/" + std::to_string(warm + n));
    rt.stop();
    auto end = rt.stats();
    bench::check(end.sent() == end.processed() + end.dead_letters(), what + ": sent != processed + dead");
    bench::check(end.envelopes_live() == 0, what + ": envelopes leaked");
  }
  double rts = double(n);
  f.ns_per_rt = std::chrono::duration<double, std::nano>(st.t1 - st.t0).count() / rts;
  f.doorbells_per_rt = double(sum(st.s1, &troupe::shard_stats::doorbells_sent) -
                              sum(st.s0, &troupe::shard_stats::doorbells_sent)) /
                       rts;
  if (f.syscalls >= 0) f.syscalls_per_rt = double(f.syscalls) / double(warm + n);
  f.parks_per_rt =
      double(sum(st.s1, &troupe::shard_stats::parks) - sum(st.s0, &troupe::shard_stats::parks)) / rts;
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  namespace p = bench::peers;
  auto o = bench::parse(argc, argv);
  // Spinning variants: many round trips; parking ones cost ~20-50 us each.
  const long hot = o.quick ? 2'000 : 200'000;
  const long parked = o.quick ? 200 : 20'000;
  const long caf = o.quick ? 2'000 : 200'000;
  const long warm_hot = o.quick ? 200 : 20'000;
  const long warm_parked = o.quick ? 20 : 1'000;
  using namespace std::chrono_literals;

  struct variant {
    std::string impl;
    long n, warm;
    std::chrono::microseconds spin;
    troupe::ring_setup ring;
    std::vector<double> doorbells, parks, syscalls, syscalls_per_rt;
  };
  std::vector<variant> vs = {
      {"troupe_hot", hot, warm_hot, 1000us, troupe::ring_setup::coop_taskrun, {}, {}, {}, {}},
      {"troupe_hot_defer", hot, warm_hot, 1000us, troupe::ring_setup::defer_taskrun, {}, {}, {}, {}},
      {"troupe_parking", parked, warm_parked, 0us, troupe::ring_setup::coop_taskrun, {}, {}, {}, {}},
      {"troupe_parking_defer", parked, warm_parked, 0us, troupe::ring_setup::defer_taskrun, {}, {}, {}, {}},
  };
  std::vector<bench::contender> cs;
  for (auto& v : vs)
    cs.push_back({v.impl, [&v] {
                    auto f = troupe_pingpong(v.n, v.warm, v.spin, v.ring, v.impl);
                    v.doorbells.push_back(f.doorbells_per_rt);
                    v.parks.push_back(f.parks_per_rt);
                    if (f.syscalls >= 0) {
                      v.syscalls.push_back(double(f.syscalls));
                      v.syscalls_per_rt.push_back(f.syscalls_per_rt);
                    }
                    return f.ns_per_rt;
                  }});
  cs.push_back({"uring_msgring_blocking", [&] { return p::uring_msgring_blocking(parked, false); }});
  cs.push_back({"uring_msgring_blocking_defer", [&] { return p::uring_msgring_blocking(parked, true); }});
  cs.push_back({"uring_msgring_busypoll", [&] { return p::uring_msgring_busypoll(hot, false); }});
  cs.push_back({"uring_msgring_busypoll_defer", [&] { return p::uring_msgring_busypoll(hot, true); }});
  cs.push_back({"uring_payload_in_cqe", [&] { return p::uring_payload_in_cqe(hot); }});
  cs.push_back({"spsc_spin_floor", [&] { return p::spsc_spin_floor(hot * 5); }});
  cs.push_back({"caf_2threads", [&] { return p::caf_pingpong(caf, 2, false); }});
  cs.push_back({"caf_detached", [&] { return p::caf_pingpong(caf / 4, 2, true); }});

  bench::run_interleaved(o, kBench, "ns/op", cs);
  for (auto& v : vs) {
    if (v.doorbells.empty()) continue;
    // emit() prints one decimal: the per-1000 lines show what rounds to 0.0.
    bench::emit(kBench, v.impl, "doorbells/op", bench::median(v.doorbells));
    bench::emit(kBench, v.impl, "doorbells/1000op", 1000 * bench::median(v.doorbells));
    bench::emit(kBench, v.impl, "parks/op", bench::median(v.parks));
    bench::emit(kBench, v.impl, "parks/1000op", 1000 * bench::median(v.parks));
    if (v.syscalls.empty()) continue;
    bench::emit(kBench, v.impl, "syscalls/op", bench::median(v.syscalls_per_rt));
    bench::emit(kBench, v.impl, "syscalls/run", bench::median(v.syscalls));
  }
  return 0;
}
