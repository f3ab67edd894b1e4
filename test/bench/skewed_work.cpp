// skewed_work: makespan in ms of CPU-bound work that all starts on one shard,
// troupe with and without work stealing, against CAF's work-stealing
// scheduler and the single-threaded time.
//
// The work: `actors` unbound actors, all spawned on shard 0 of a 2-shard
// runtime (troupe::stealable_preferred{0}; every other config default, so
// shards are pinned to CPU 0 and CPU 1). Main sends each one `start{items}`;
// the actor then runs its items as a chain of self-sends (`work{left}`),
// each handler burning a fixed number of splitmix64 rounds
// (bench::peers::skewed_item, shared with the CAF peer) folded into the
// actor's checksum. The last handler adds the checksum to a shared atomic
// and counts down; the last actor signals main (futex). The figure runs from
// main's first start message to the last actor's last item.
//
// Two grains, each its own bench name:
//   skewed_work_coarse  ~75 us per handler, 1000 actors x 20 items (~1.5 s of work)
//   skewed_work_fine    ~2 us per handler, 1000 actors x 750 items (~1.5 s of work)
// The rounds per handler come from a calibration at start (printed to
// stderr); --quick uses fixed tiny rounds and counts instead.
//
//   troupe          config::stealing.enabled = true (the default)
//   troupe_nosteal  config::stealing.enabled = false: everything runs on shard 0
//   caf             CAF 0.17, scheduler.max-threads = 2 (its default work stealing)
//   single_thread   the same items as a plain loop on main's thread
//   ideal           single_thread / 2 (the shard count); emitted with single_thread
//
// Correctness: the run's checksum (wrapping sum of the actors' checksums)
// must equal a single-threaded computation of the same items, made once per
// grain before the repetitions (unmeasured; it also warms the CPU). After
// each troupe run its stealing counters (runtime::stats(), per shard and
// summed) go to stderr; in full mode the stealing run must have run messages
// on both shards.
//
// `--grain=coarse|fine` runs one grain only; `--only=ideal` runs single_thread.
#include <troupe/troupe.hpp>

#include "harness.hpp"
#include "peers.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using bench::completion;

constexpr troupe::shard_id kShards = 2;

struct grain {
  const char* bench;     // the JSON "bench" name
  double handler_us;     // target time of one handler (full mode)
  long actors;
  long items;            // per actor
  std::uint32_t rounds;  // per handler (calibrated, or fixed in quick mode)
};

struct shared_state {
  std::uint32_t rounds = 0;
  std::atomic<long> actors_left{0};
  std::atomic<std::uint64_t> checksum{0};  // wrapping sum of the actors' checksums
  bench::clock::time_point t1;             // written by the last actor before `finished`
  completion finished;
};

struct start {
  std::uint32_t items;
};
struct work {
  std::uint32_t left;  // items still to run, this one included
};
struct get_checksum {};

class worker : public troupe::actor<worker> {
  shared_state* st_;
  std::uint64_t id_;
  std::uint32_t items_ = 0;
  std::uint64_t acc_ = 0;

  void finish() {
    st_->checksum.fetch_add(acc_, std::memory_order_relaxed);
    if (st_->actors_left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      st_->t1 = bench::clock::now();
      st_->finished.signal();
    }
  }

 public:
  worker(shared_state* st, std::uint64_t id) : st_(st), id_(id) {}
  void on(const start& m) {
    items_ = m.items;
    if (m.items > 0)
      send(self(), work{m.items});
    else
      finish();
  }
  void on(const work& m) {
    acc_ = bench::peers::skewed_item(acc_, id_, items_ - m.left, st_->rounds);
    if (m.left > 1)
      send(self(), work{m.left - 1});
    else
      finish();
  }
  std::uint64_t on(const get_checksum&) { return acc_; }
};

// The single-threaded computation of the same items (actor by actor).
std::uint64_t single_thread_checksum(const grain& g) {
  std::uint64_t sum = 0;
  for (long a = 0; a < g.actors; ++a) {
    std::uint64_t acc = 0;
    for (long k = 0; k < g.items; ++k)
      acc = bench::peers::skewed_item(acc, std::uint64_t(a), std::uint64_t(k), g.rounds);
    sum += acc;
  }
  return sum;
}

double single_thread(const grain& g, std::uint64_t expected) {
  auto t0 = bench::clock::now();
  std::uint64_t sum = single_thread_checksum(g);
  double ms = std::chrono::duration<double, std::milli>(bench::clock::now() - t0).count();
  bench::check(sum == expected, std::string(g.bench) + " single_thread: checksum differs between runs");
  return ms;
}

void print_stealing(const std::string& what, const troupe::runtime_stats& s) {
  troupe::shard_stats sum;
  auto line = [](const char* who, const troupe::shard_stats& x) {
    std::fprintf(stderr,
                 "  %-7s messages_run=%llu unbound_runs=%llu steal_attempts=%llu steals=%llu "
                 "actors_stolen=%llu migrated_in=%llu migrated_out=%llu peer_wakeups=%llu\n",
                 who, (unsigned long long)x.messages_run, (unsigned long long)x.unbound_runs,
                 (unsigned long long)x.steal_attempts, (unsigned long long)x.steals,
                 (unsigned long long)x.actors_stolen, (unsigned long long)x.migrated_in,
                 (unsigned long long)x.migrated_out, (unsigned long long)x.peer_wakeups);
  };
  std::fprintf(stderr, "%s: stealing stats (whole run, setup asks included)\n", what.c_str());
  for (std::size_t i = 0; i < s.shards.size(); ++i) {
    const auto& x = s.shards[i];
    line(("shard " + std::to_string(i)).c_str(), x);
    sum.messages_run += x.messages_run;
    sum.unbound_runs += x.unbound_runs;
    sum.steal_attempts += x.steal_attempts;
    sum.steals += x.steals;
    sum.actors_stolen += x.actors_stolen;
    sum.migrated_in += x.migrated_in;
    sum.migrated_out += x.migrated_out;
    sum.peer_wakeups += x.peer_wakeups;
  }
  line("sum", sum);
}

// Knob overrides from the command line (--steal-batch= --probes= --wake=
// --spin-us= --budget= --shards= --steer=0|1 --actors=N), for the sweeps behind
// doc/adr/0002-work-stealing.md; unset ones keep the defaults.
struct knobs {
  long steal_batch = -1, probes = -1, wake = -1, spin_us = -1, budget = -1, shards = -1, steer = -1;
  long actors = -1;  // fewer, longer chains (the same total work)
};
knobs knob_args;

double troupe_skewed(const grain& g, bool stealing, bool quick, std::uint64_t expected) {
  const std::string what = std::string(g.bench) + (stealing ? " troupe" : " troupe_nosteal");
  bench::watchdog w(what);
  troupe::config cfg;
  cfg.shards = kShards;
  cfg.stealing.enabled = stealing;
  if (knob_args.steal_batch > 0) cfg.stealing.steal_batch = unsigned(knob_args.steal_batch);
  if (knob_args.probes > 0) cfg.stealing.victim_probes = unsigned(knob_args.probes);
  if (knob_args.wake >= 0) cfg.stealing.wake_threshold = unsigned(knob_args.wake);
  if (knob_args.spin_us >= 0) cfg.spin_before_park = std::chrono::microseconds(knob_args.spin_us);
  if (knob_args.budget > 0) cfg.message_budget = unsigned(knob_args.budget);
  if (knob_args.steer >= 0) cfg.stealing.steer = knob_args.steer != 0;
  if (knob_args.shards > 0) {
    cfg.shards = troupe::shard_id(knob_args.shards);
    cfg.pinning = troupe::thread_pinning::none;  // more shards than CPUs
  }
  shared_state st;
  st.rounds = g.rounds;
  st.actors_left.store(g.actors);
  bench::clock::time_point t0;
  {
    troupe::runtime rt{cfg};
    std::vector<troupe::ref<worker>> ws;
    ws.reserve(std::size_t(g.actors));
    for (long a = 0; a < g.actors; ++a)
      ws.push_back(rt.spawn<worker>(troupe::stealable_preferred{0}, &st, std::uint64_t(a)));
    // Every actor is constructed before the clock starts.
    for (auto& a : ws)
      bench::check(rt.ask(a, get_checksum{}).get() == 0, what + ": fresh actor has a checksum");
    t0 = bench::clock::now();
    for (auto& a : ws) a.send(start{std::uint32_t(g.items)});
    bench::check(st.finished.wait_for(std::chrono::seconds(60)), what + ": timed out");
    bench::check(st.actors_left.load() == 0, what + ": an actor finished twice");
    bench::check(st.checksum.load() == expected,
                 what + ": checksum mismatch (a work item was lost, repeated or reordered)");
    rt.stop();
    auto end = rt.stats();
    bench::check(end.sent() == end.processed() + end.dead_letters(), what + ": sent != processed + dead");
    bench::check(end.envelopes_live() == 0, what + ": envelopes leaked");
    std::uint64_t work_messages = std::uint64_t(g.actors) * std::uint64_t(g.items + 1);
    bench::check(end.processed() >= work_messages, what + ": fewer messages run than start + work");
    print_stealing(what, end);
    const bool knobs_default = knob_args.steal_batch < 0 && knob_args.probes < 0 &&
                               knob_args.wake < 0 && knob_args.spin_us < 0 &&
                               knob_args.budget < 0 && knob_args.shards < 0 &&
                               knob_args.steer < 0 && knob_args.actors < 0;
    if (stealing && !quick && knobs_default)  // a sweep may pick knobs that do not spread
      for (std::size_t i = 0; i < end.shards.size(); ++i)
        bench::check(end.shards[i].messages_run > 0,
                     what + ": shard " + std::to_string(i) + " ran no messages (nothing was stolen)");
  }
  return std::chrono::duration<double, std::milli>(st.t1 - t0).count();
}

// ns per burn round: the fastest of several ~20 ms samples.
double calibrate_ns_per_round() {
  constexpr std::uint32_t kRounds = 1u << 22;
  double best = 1e300;
  std::uint64_t sink = 0;
  for (int i = 0; i < 7; ++i) {
    auto t0 = bench::clock::now();
    sink += bench::peers::burn(sink + std::uint64_t(i), kRounds);
    best = std::min(best, bench::ns_since(t0) / double(kRounds));
  }
  bench::check(sink != 0x5eed, "calibration");  // keeps the burns observable
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  namespace p = bench::peers;
  auto o = bench::parse(argc, argv);
  std::string only_grain;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto num = [&](const char* flag, long& to) {
      if (a.rfind(flag, 0) == 0) to = std::atol(a.c_str() + std::strlen(flag));
    };
    if (a.rfind("--grain=", 0) == 0) only_grain = a.substr(8);
    num("--steal-batch=", knob_args.steal_batch);
    num("--probes=", knob_args.probes);
    num("--wake=", knob_args.wake);
    num("--spin-us=", knob_args.spin_us);
    num("--budget=", knob_args.budget);
    num("--shards=", knob_args.shards);
    num("--steer=", knob_args.steer);
    num("--actors=", knob_args.actors);
  }
  if (!only_grain.empty() && only_grain != "coarse" && only_grain != "fine")
    bench::fail("--grain= takes coarse or fine, not " + only_grain);
  // `ideal` is derived from single_thread's repetitions.
  if (o.only == "ideal") o.only = "single_thread";

  std::vector<grain> grains = {
      {"skewed_work_coarse", 75, 1000, 20, 0},
      {"skewed_work_fine", 2, 1000, 750, 0},
  };
  if (knob_args.actors > 0)
    for (auto& g : grains) {
      g.items = std::max(1L, g.items * g.actors / knob_args.actors);
      g.actors = knob_args.actors;
    }
  if (o.quick) {
    grains[0].actors = grains[1].actors = 50;
    grains[0].items = 4;
    grains[0].rounds = 2000;
    grains[1].items = 20;
    grains[1].rounds = 50;
    std::fprintf(stderr, "skewed_work --quick: fixed rounds, coarse %u, fine %u\n", grains[0].rounds,
                 grains[1].rounds);
  } else {
    double ns = calibrate_ns_per_round();
    for (auto& g : grains) g.rounds = std::max(1u, std::uint32_t(g.handler_us * 1000 / ns + 0.5));
    std::fprintf(stderr,
                 "skewed_work: %.3f ns/round; coarse %u rounds (~%.0f us), fine %u rounds (~%.0f us)\n", ns,
                 grains[0].rounds, grains[0].handler_us, grains[1].rounds, grains[1].handler_us);
  }

  for (const auto& g : grains) {
    if (!only_grain.empty() && std::string(g.bench) != std::string("skewed_work_") + only_grain) continue;
    const std::uint64_t expected = single_thread_checksum(g);
    std::vector<double> single;
    bench::run_interleaved(
        o, g.bench, "ms",
        {
            {"troupe", [&] { return troupe_skewed(g, true, o.quick, expected); }},
            {"troupe_nosteal", [&] { return troupe_skewed(g, false, o.quick, expected); }},
            {"caf", [&] { return p::caf_skewed_work(g.actors, g.items, g.rounds, kShards, expected); }},
            {"single_thread",
             [&] {
               single.push_back(single_thread(g, expected));
               return single.back();
             }},
        });
    if (!single.empty()) bench::emit(g.bench, "ideal", "ms", bench::median(single) / kShards);
  }
  return 0;
}
