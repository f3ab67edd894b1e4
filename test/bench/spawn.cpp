// spawn: spawns/s and RSS bytes per idle actor, troupe against CAF 0.17.
//
// troupe: a 2-shard runtime (shards pinned to CPU 0 and CPU 1); `count` idle
// actors, actor i pinned to shard i % 2. The actor's own state is one int.
// Each actor's on_start bumps its shard's counter (one cache line per shard,
// so the count does not itself bounce between CPUs); the clock stops when
// every actor has run on_start, i.e. has been constructed on its shard.
//
//   troupe             spawned from main (a thread outside the runtime), as
//                      the CAF peer spawns from main
//   troupe_from_actor  spawned by an actor on shard 0 inside one handler
//                      (half the spawns are local, half go to shard 1)
//
// Memory: malloc_trim(0), RSS before, spawn, RSS after (refs are kept, in a
// vector sized before the first RSS reading). "bytes/actor" is the raw RSS
// growth per actor; "bytes/actor_beyond_state" subtracts the user state
// (sizeof(idle) - sizeof(troupe::actor<idle>), i.e. the int and its padding);
// the framework's part of the actor object (actor_base: vtable pointer,
// control-block pointer, extras pointer, stop flag) counts as overhead.
// "bytes/actor_without_pool_growth" also subtracts the slabs the shards'
// envelope pools allocated during the burst (runtime::stats() pool_slabs x
// envelope_slab x envelope_block): a spawn burst from an actor has every
// construct envelope in flight at once, and the pools keep those blocks for
// reuse; they are not part of any idle actor.
#include <troupe/troupe.hpp>

#include "harness.hpp"
#include "peers.hpp"

#include <linux/futex.h>
#include <malloc.h>
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

using bench::completion;

struct alignas(64) shard_counter {
  std::atomic<long> started{0};
  long expected = 0;
};

// Globals, so that the idle actor's state is one int and nothing else.
struct run_state {
  shard_counter per_shard[2];
  std::atomic<int> shards_left{0};
  bench::clock::time_point t1;
  completion finished;
};
run_state* g_run = nullptr;

struct poke {};

class idle : public troupe::actor<idle> {
  int value_ = 0;

 public:
  void on_start() {
    shard_counter& c = g_run->per_shard[this_shard()];
    if (c.started.fetch_add(1, std::memory_order_relaxed) + 1 == c.expected &&
        g_run->shards_left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      g_run->t1 = bench::clock::now();
      g_run->finished.signal();
    }
  }
  int on(const poke&) { return ++value_; }
};

constexpr double kUserState = double(sizeof(idle) - sizeof(troupe::actor<idle>));

struct spawn_all {};
struct ready {};

class spawner : public troupe::actor<spawner> {
  std::vector<troupe::ref<idle>>* out_;
  bench::clock::time_point* t0_;

 public:
  spawner(std::vector<troupe::ref<idle>>* out, bench::clock::time_point* t0) : out_(out), t0_(t0) {}
  bool on(const ready&) { return true; }
  void on(const spawn_all&) {
    *t0_ = bench::clock::now();
    for (std::size_t i = 0; i < out_->size(); ++i)
      (*out_)[i] = spawn<idle>(troupe::pinned{troupe::shard_id(i % 2)});
  }
};

struct figures {
  double spawns_per_s;
  double bytes_per_actor;
  double pool_growth_per_actor;
};

std::uint64_t pool_slabs(const troupe::runtime& rt) {
  std::uint64_t n = 0;
  for (auto& s : rt.stats().shards) n += s.pool_slabs;
  return n;
}

figures troupe_spawn(long count, bool from_actor) {
  const std::string what = from_actor ? "troupe_from_actor spawn" : "troupe spawn";
  troupe::config cfg;
  cfg.shards = 2;
  cfg.pinning = troupe::thread_pinning::cpu;
  run_state rs;
  g_run = &rs;
  for (int s = 0; s < 2; ++s) rs.per_shard[s].expected = count / 2 + (s < count % 2 ? 1 : 0);
  for (auto& c : rs.per_shard) rs.shards_left.fetch_add(c.expected > 0 ? 1 : 0);
  figures f{};
  {
    troupe::runtime rt{cfg};
    std::vector<troupe::ref<idle>> refs(static_cast<std::size_t>(count));
    troupe::ref<spawner> sp;
    bench::clock::time_point t0;
    if (from_actor) {
      sp = rt.spawn<spawner>(troupe::pinned{0}, &refs, &t0);
      // The spawner is constructed (and its envelope memory warm) before we measure.
      bench::check(rt.ask(sp, ready{}).get(), what + ": the spawner is not ready");
    }
    // Fresh pages for this repetition's actors (see peers.hpp, caf_spawn).
    malloc_trim(0);
    long rss0 = bench::peers::rss_bytes();
    std::uint64_t slabs0 = pool_slabs(rt);
    if (from_actor) {
      sp.send(spawn_all{});
    } else {
      t0 = bench::clock::now();
      for (long i = 0; i < count; ++i)
        refs[std::size_t(i)] = rt.spawn<idle>(troupe::pinned{troupe::shard_id(i % 2)});
    }
    bench::check(rs.finished.wait_for(std::chrono::seconds(60)), what + ": timed out");
    long rss1 = bench::peers::rss_bytes();
    double ns = std::chrono::duration<double, std::nano>(rs.t1 - t0).count();
    double pool_bytes = double(pool_slabs(rt) - slabs0) * double(troupe::defaults::envelope_slab) *
                        double(troupe::defaults::envelope_block);
    f = {double(count) / (ns * 1e-9), double(rss1 - rss0) / double(count), pool_bytes / double(count)};
    for (auto& r : refs) bench::check(bool(r) && !r.stopped(), what + ": an actor is missing");
    // Every actor is alive and answers (first and last of each shard).
    for (std::size_t i : {std::size_t(0), std::size_t(1), refs.size() - 2, refs.size() - 1})
      if (i < refs.size()) bench::check(rt.ask(refs[i], poke{}).get() == 1, what + ": an actor does not answer");
    auto st = rt.stats();
    std::uint64_t live = 0;
    for (auto& s : st.shards) live += s.actors_live;
    bench::check(live == std::uint64_t(count) + (from_actor ? 1 : 0),
                 what + ": actors_live = " + std::to_string(live));
    rt.stop();
  }
  g_run = nullptr;
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  namespace p = bench::peers;
  auto o = bench::parse(argc, argv);
  const long count = o.quick ? 1'000 : 100'000;
  std::vector<double> mem_troupe, mem_troupe_actor, mem_caf, pool_troupe, pool_troupe_actor;
  bench::run_interleaved(o, "spawn_rate", "spawns/s",
                         {
                             {"troupe",
                              [&] {
                                auto f = troupe_spawn(count, false);
                                mem_troupe.push_back(f.bytes_per_actor);
                                pool_troupe.push_back(f.bytes_per_actor - f.pool_growth_per_actor);
                                return f.spawns_per_s;
                              }},
                             {"troupe_from_actor",
                              [&] {
                                auto f = troupe_spawn(count, true);
                                mem_troupe_actor.push_back(f.bytes_per_actor);
                                pool_troupe_actor.push_back(f.bytes_per_actor - f.pool_growth_per_actor);
                                return f.spawns_per_s;
                              }},
                             {"caf_2threads",
                              [&] {
                                auto f = p::caf_spawn(count, 2);
                                mem_caf.push_back(f.rss_bytes_per_actor);
                                return f.spawns_per_s;
                              }},
                         });
  if (!mem_troupe.empty()) {
    bench::emit("spawn_memory", "troupe", "bytes/actor", bench::median(mem_troupe));
    bench::emit("spawn_memory", "troupe", "bytes/actor_beyond_state", bench::median(mem_troupe) - kUserState);
    bench::emit("spawn_memory", "troupe", "bytes/actor_without_pool_growth",
                bench::median(pool_troupe) - kUserState);
  }
  if (!mem_troupe_actor.empty()) {
    bench::emit("spawn_memory", "troupe_from_actor", "bytes/actor", bench::median(mem_troupe_actor));
    bench::emit("spawn_memory", "troupe_from_actor", "bytes/actor_beyond_state",
                bench::median(mem_troupe_actor) - kUserState);
    bench::emit("spawn_memory", "troupe_from_actor", "bytes/actor_without_pool_growth",
                bench::median(pool_troupe_actor) - kUserState);
  }
  if (!mem_caf.empty()) bench::emit("spawn_memory", "caf_2threads", "bytes/actor", bench::median(mem_caf));
  return 0;
}
