// fanout_throughput: msgs/s from one sender actor to 64 receiver actors,
// against CAF (2 threads), one msg_ring per message and the raw lock-free
// MPSC + msg_ring doorbell floor.
//
// troupe layout: a 2-shard runtime (shards pinned to CPU 0 and CPU 1, every
// other config default); the sender is pinned to shard 0, receiver i to
// shard i % 2 (pinned round robin), so half of the traffic is a same-shard
// send and half crosses to shard 1. Message k goes to receiver k % 64 and
// carries its per-receiver sequence number; a receiver checks it got the
// message meant for it, in order.
//
// Flow control: the sender sends in windows of `kWindow` messages. After
// each window it asks the window's last receiver on each shard for its count
// (ask(...).then(...)); per-pair order makes the reply mean "that receiver
// has processed this whole window". The sender keeps at most `kWindows`
// windows un-acknowledged, so at most kWindows*kWindow envelopes (~64 Ki,
// 8 MiB) are in flight whatever the speed difference; the probes are extra
// messages (2 per window) and are not counted in the figure.
//
// The figure runs from the sender's first send (its `go` handler) to the
// moment the last receiver has processed its last message. Main then asks
// every receiver for its count: each must be exact, and the sum == total.
#include <troupe/troupe.hpp>

#include "harness.hpp"
#include "peers.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

namespace {

constexpr const char* kBench = "fanout_throughput";
constexpr int kReceivers = 64;
constexpr long kWindow = 16384;
constexpr int kWindows = 4;

using bench::completion;

struct shared_state {
  bench::clock::time_point t0, t1;
  std::atomic<int> receivers_left{0};
  std::atomic<long> misdelivered{0};  // wrong receiver or out of order
  std::atomic<long> probe_errors{0};
  completion finished;
};

struct item {
  std::uint32_t to;   // receiver index
  std::uint32_t seq;  // per-receiver sequence number
};
struct probe {};
struct get_count {};

class receiver : public troupe::actor<receiver> {
  shared_state* st_;
  std::uint32_t id_;
  long expected_;
  long count_ = 0;

 public:
  receiver(shared_state* st, std::uint32_t id, long expected) : st_(st), id_(id), expected_(expected) {}
  void on(const item& m) {
    if (m.to != id_ || m.seq != std::uint32_t(count_)) st_->misdelivered.fetch_add(1, std::memory_order_relaxed);
    if (++count_ == expected_ && st_->receivers_left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      st_->t1 = bench::clock::now();
      st_->finished.signal();
    }
  }
  long on(const probe&) { return count_; }
  long on(const get_count&) { return count_; }
};

struct go {};

class sender : public troupe::actor<sender> {
  shared_state* st_;
  std::vector<troupe::ref<receiver>> rs_;
  long total_;
  long sent_ = 0;
  int probes_out_ = 0;

 public:
  sender(shared_state* st, std::vector<troupe::ref<receiver>> rs, long total)
      : st_(st), rs_(std::move(rs)), total_(total) {}

  void on(const go&) {
    st_->t0 = bench::clock::now();
    pump();
  }

 private:
  void pump() {
    while (sent_ < total_ && probes_out_ < 2 * kWindows) {
      const long end = std::min(total_, sent_ + kWindow);
      for (; sent_ < end; ++sent_)
        rs_[std::size_t(sent_ % kReceivers)].send(
            item{std::uint32_t(sent_ % kReceivers), std::uint32_t(sent_ / kReceivers)});
      // The window's last receiver on each shard (consecutive indices alternate shards).
      for (long k = std::max(0L, end - 2); k < end; ++k) {
        ++probes_out_;
        ask(rs_[std::size_t(k % kReceivers)], probe{}).then([this](troupe::result<long> r) {
          if (!r) st_->probe_errors.fetch_add(1, std::memory_order_relaxed);
          --probes_out_;
          pump();
        });
      }
    }
  }
};

// `--budget=N` overrides config::message_budget (to measure the default).
unsigned g_budget = troupe::defaults::message_budget;

double troupe_fanout(long total) {
  const std::string what = "troupe fanout";
  troupe::config cfg;
  cfg.shards = 2;
  cfg.message_budget = g_budget;
  cfg.pinning = troupe::thread_pinning::cpu;
  shared_state st;
  std::vector<long> expected;
  for (int r = 0; r < kReceivers; ++r) expected.push_back(total / kReceivers + (r < total % kReceivers ? 1 : 0));
  for (long e : expected) st.receivers_left.fetch_add(e > 0 ? 1 : 0);
  {
    troupe::runtime rt{cfg};
    std::vector<troupe::ref<receiver>> rs;
    for (int r = 0; r < kReceivers; ++r)
      rs.push_back(rt.spawn<receiver>(troupe::pinned{troupe::shard_id(r % 2)}, &st, std::uint32_t(r),
                                      expected[std::size_t(r)]));
    auto s = rt.spawn<sender>(troupe::pinned{0}, &st, rs, total);
    // Every receiver is constructed before the clock starts.
    for (auto& r : rs) bench::check(rt.ask(r, get_count{}).get() == 0, what + ": fresh receiver has a count");
    s.send(go{});
    bench::check(st.finished.wait_for(std::chrono::seconds(120)), what + ": timed out");
    long sum = 0;
    for (int r = 0; r < kReceivers; ++r) {
      long c = rt.ask(rs[std::size_t(r)], get_count{}).get();
      bench::check(c == expected[std::size_t(r)], what + ": receiver " + std::to_string(r) + " got " +
                                                      std::to_string(c) + " messages, expected " +
                                                      std::to_string(expected[std::size_t(r)]));
      sum += c;
    }
    bench::check(sum == total, what + ": delivered != sent");
    bench::check(st.misdelivered.load() == 0, what + ": messages to the wrong receiver or out of order");
    bench::check(st.probe_errors.load() == 0, what + ": a flow-control probe failed");
    rt.stop();
    auto end = rt.stats();
    bench::check(end.sent() == end.processed() + end.dead_letters(), what + ": sent != processed + dead");
    bench::check(end.envelopes_live() == 0, what + ": envelopes leaked");
  }
  return double(total) / (std::chrono::duration<double>(st.t1 - st.t0).count());
}

}  // namespace

int main(int argc, char** argv) {
  namespace p = bench::peers;
  auto o = bench::parse(argc, argv);
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]).rfind("--budget=", 0) == 0) g_budget = unsigned(std::stoul(argv[i] + 9));
  const long total = o.quick ? 100'000 : 10'000'000;
  bench::run_interleaved(o, kBench, "msgs/s",
                         {
                             {"troupe", [&] { return troupe_fanout(total); }},
                             {"caf_2threads", [&] { return p::caf_fanout(total, 2); }},
                             {"uring_msgring_per_message", [&] { return p::uring_msgring_per_message(total); }},
                             {"mpsc_doorbell", [&] { return p::mpsc_doorbell(total); }},
                         });
  return 0;
}
