// A mixed workload: pinned I/O front ends and stealable CPU workers in one
// runtime.
//
// - two `gateway`s, pinned to shard 0 and shard 1, stand in for network
//   front ends: a periodic timer delivers a burst of requests every
//   millisecond, each one asked of a worker; the reply is the "response".
//   They must never leave their shard, and they check it in every handler;
// - eight `worker`s do real CPU work per request (FNV-1a over a buffer, many
//   rounds). They are `stealable_preferred{0}`: all of them start on shard 0,
//   deliberately skewed, so shard 0 has more work than it can run and shard 1
//   has little. Work stealing may move a worker between two messages; each
//   worker records on which shards it ran.
// main() waits for the gateways, collects their latency figures and the
// workers' shards with blocking asks, stops the runtime and prints the
// per-shard stealing stats. Exit status 1 if a pinned actor ran off its
// shard or a request went unanswered.
//
// Run it with `--no-steal` for the same load without work stealing: shard 0
// alone cannot keep up and its backlog grows (on the 2-vCPU development VM:
// ~2 s instead of ~1 s, p99 tens to hundreds of ms instead of ~2 ms). The
// checksums stay the same: where a worker ran never changes what it computed.
#include <troupe/troupe.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstdint>
#include <latch>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

struct job {
  std::uint64_t seed;
  std::uint32_t rounds;
};
struct shards_report {};

class worker : public troupe::actor<worker> {
  std::uint32_t shards_seen_ = 0;  // bit s: this worker ran on shard s
  std::uint64_t jobs_ = 0;

 public:
  // A return value is the reply to the gateway's ask.
  std::uint64_t on(const job& j) {
    shards_seen_ |= 1u << troupe::this_shard();  // the thread's shard: where we really run
    ++jobs_;
    std::array<std::uint8_t, 1024> block;
    for (std::size_t i = 0; i < block.size(); ++i) block[i] = std::uint8_t(j.seed >> (i % 8 * 8) ^ i);
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (std::uint32_t r = 0; r < j.rounds; ++r) {
      for (std::uint8_t b : block) h = (h ^ b) * 0x100000001b3ull;
      block[r % block.size()] ^= std::uint8_t(h);  // each round depends on the last
    }
    return h;
  }
  std::pair<std::uint32_t, std::uint64_t> on(const shards_report&) { return {shards_seen_, jobs_}; }
};

struct tick {};
struct summary_request {};
struct summary {
  troupe::shard_id home;
  std::uint64_t sent, answered, lost, off_shard, checksum;
  double p50_us, p99_us;
};

class gateway : public troupe::actor<gateway> {
  troupe::shard_id home_;
  std::vector<troupe::ref<worker>> workers_;
  std::uint64_t quota_, sent_ = 0, answered_ = 0, lost_ = 0, off_shard_ = 0, checksum_ = 0;
  std::vector<std::uint32_t> latency_us_;
  std::latch* done_;
  troupe::timer_id timer_ = 0;

  // A pinned actor that runs anywhere else is a scheduler bug: count it.
  void check_shard() {
    if (troupe::this_shard() != home_) ++off_shard_;
  }

 public:
  static constexpr int burst = 8;  // requests per 1 ms tick ("network input")
  static constexpr std::uint32_t rounds = 100;  // ~100 us of hashing per request

  gateway(troupe::shard_id home, std::vector<troupe::ref<worker>> workers, std::uint64_t quota,
          std::latch* done)
      : home_(home), workers_(std::move(workers)), quota_(quota), done_(done) {
    latency_us_.reserve(quota);
  }
  void on_start() {
    check_shard();
    timer_ = every(1ms, tick{});
  }
  void on(const tick&) {
    check_shard();
    for (int i = 0; i < burst && sent_ < quota_; ++i, ++sent_) {
      auto& w = workers_[(sent_ + home_) % workers_.size()];
      auto t0 = clock_type::now();
      ask(w, job{sent_ * 2 + home_, rounds}).then([this, t0](troupe::result<std::uint64_t> r) {
        check_shard();  // the reply runs as a message of this actor, on its shard
        if (!r) {
          ++lost_;  // timeout or a dead worker
        } else {
          ++answered_;
          checksum_ ^= *r;  // same in every run, wherever the workers ran
          latency_us_.push_back(std::uint32_t((clock_type::now() - t0) / 1us));
        }
        if (answered_ + lost_ == quota_) done_->count_down();
      });
    }
    if (sent_ == quota_) cancel(timer_);
  }
  summary on(const summary_request&) {
    check_shard();
    std::sort(latency_us_.begin(), latency_us_.end());
    auto pct = [&](double p) {
      if (latency_us_.empty()) return 0.0;
      return double(latency_us_[std::size_t(p * double(latency_us_.size() - 1))]);
    };
    return {home_, sent_, answered_, lost_, off_shard_, checksum_, pct(0.50), pct(0.99)};
  }
};

int main(int argc, char** argv) {
  // --quick: a short run (b2 test); --no-steal: the same load without work
  // stealing, to compare latencies with shard 0 left alone with the workers.
  bool quick = false, steal = true;
  for (int i = 1; i < argc; ++i) {
    quick |= std::string_view(argv[i]) == "--quick";
    steal &= std::string_view(argv[i]) != "--no-steal";
  }
  const std::uint64_t per_gateway = quick ? 400 : 8000;

  troupe::config cfg;
  cfg.shards = 2;
  cfg.stealing.enabled = steal;
  troupe::runtime rt{cfg};

  std::vector<troupe::ref<worker>> workers;
  for (int i = 0; i < 8; ++i) workers.push_back(rt.spawn<worker>(troupe::stealable_preferred{0}));
  std::latch done{2};
  std::vector<troupe::ref<gateway>> gateways;
  auto t0 = clock_type::now();
  for (troupe::shard_id s : {0u, 1u})
    gateways.push_back(rt.spawn<gateway>(troupe::pinned{s}, s, workers, per_gateway, &done));
  done.wait();  // every request answered or given up on
  double secs = std::chrono::duration<double>(clock_type::now() - t0).count();

  // Blocking asks are for threads that are not shards, like main.
  std::uint64_t sent = 0, answered = 0, off_shard = 0;
  fmt::print("{} requests in {:.2f} s ({} workers, {} hash rounds each, stealing {})\n",
             2 * per_gateway, secs, workers.size(), gateway::rounds, steal ? "on" : "off");
  for (auto& g : gateways) {
    summary s = rt.ask(g, summary_request{}).get();
    fmt::print("  gateway@{}: sent {} answered {} lost {} off-shard runs {}  latency p50 {:.0f} us "
               "p99 {:.0f} us  checksum {:016x}\n",
               s.home, s.sent, s.answered, s.lost, s.off_shard, s.p50_us, s.p99_us, s.checksum);
    sent += s.sent, answered += s.answered, off_shard += s.off_shard;
  }
  int moved = 0;
  for (auto& w : workers) {
    auto [seen, jobs] = rt.ask(w, shards_report{}).get();
    moved += std::popcount(seen) > 1;
    std::string on;
    for (troupe::shard_id s = 0; s < rt.shards(); ++s)
      if (seen & (1u << s)) on += fmt::format("{}{}", on.empty() ? "" : ",", s);
    fmt::print("  {:<14} {:>5} jobs, ran on shard {}\n", fmt::format("{}", w), jobs, on);
  }
  fmt::print("{} of {} workers ran on more than one shard\n", moved, workers.size());

  rt.stop();  // the stats are exact once stopped
  auto st = rt.stats();
  fmt::print("\nshard  steal_attempts  steals  actors_stolen  migrated_in  migrated_out  "
             "peer_wakeups  unbound_runs  messages_run\n");
  for (std::size_t i = 0; i < st.shards.size(); ++i) {
    const auto& s = st.shards[i];
    fmt::print("{:>5}  {:>14}  {:>6}  {:>13}  {:>11}  {:>12}  {:>12}  {:>12}  {:>12}\n", i,
               s.steal_attempts, s.steals, s.actors_stolen, s.migrated_in, s.migrated_out,
               s.peer_wakeups, s.unbound_runs, s.messages_run);
  }
  bool ok = off_shard == 0 && answered == sent && sent == 2 * per_gateway;
  fmt::print("\n{}\n", ok ? "ok: every request answered, no pinned actor left its shard"
                          : "FAILED: lost requests or a pinned actor ran off its shard");
  return ok ? 0 : 1;
}
