// Shared helpers for the benchmark programs in test/bench.
//
// Every benchmark prints one JSON line per result:
//   {"bench":"pingpong_cross_shard","impl":"troupe","unit":"ns/op","value":123.4}
// Peers run in the same process, repetitions interleaved (A B A B …), and the
// median of the repetitions is reported, because this VM moves its vCPUs
// around and a spinning floor can vary 2x between runs.
//
// `--quick` runs tiny counts with the same correctness checks; CI runs that.
#pragma once

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <future>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace bench {

struct options {
  bool quick = false;
  int repetitions = 5;
  std::string only;  // run only impls whose name contains this (empty: all; "=x": exactly x)
};

inline options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--quick") {
      o.quick = true;
      o.repetitions = 1;
    } else if (a.rfind("--reps=", 0) == 0) {
      o.repetitions = std::max(1, std::atoi(argv[i] + 7));
    } else if (a.rfind("--only=", 0) == 0) {
      o.only = std::string(a.substr(7));
    }
  }
  return o;
}

// A failed correctness check ends the benchmark with a non-zero status, so a
// broken benchmark is red in CI even in quick mode.
[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "benchmark check failed: %s\n", what.c_str());
  std::fflush(stderr);
  std::_Exit(1);
}

inline void check(bool ok, const std::string& what) {
  if (!ok) fail(what);
}

inline void emit(std::string_view bench, std::string_view impl, std::string_view unit, double value) {
  std::printf("{\"bench\":\"%.*s\",\"impl\":\"%.*s\",\"unit\":\"%.*s\",\"value\":%.1f}\n",
              int(bench.size()), bench.data(), int(impl.size()), impl.data(), int(unit.size()),
              unit.data(), value);
  std::fflush(stdout);
}

/// Pins the calling thread to CPU `cpu` (modulo the CPU count); peers pin
/// their threads the way troupe pins its shards.
inline void pin(int cpu) {
  int n = int(std::thread::hardware_concurrency());
  if (n <= 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu % n, &set);
  static std::atomic<bool> warned{false};
  if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0 && !warned.exchange(true))
    std::fprintf(stderr, "peers: pthread_setaffinity_np failed, running unpinned\n");
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// One implementation under test: a name and a function that runs one
// repetition and returns its figure in `unit`.
struct contender {
  std::string impl;
  std::function<double()> run;
};

// Runs every contender `reps` times, interleaved, and emits the medians.
inline void run_interleaved(const options& o, std::string_view bench, std::string_view unit,
                            const std::vector<contender>& cs) {
  std::vector<std::vector<double>> figures(cs.size());
  for (int r = 0; r < o.repetitions; ++r)
    for (std::size_t i = 0; i < cs.size(); ++i)
      if (o.only.empty() || cs[i].impl.find(o.only) != std::string::npos ||
          (o.only[0] == '=' && cs[i].impl == o.only.substr(1)))
        figures[i].push_back(cs[i].run());
  for (std::size_t i = 0; i < cs.size(); ++i)
    if (!figures[i].empty()) emit(bench, cs[i].impl, unit, median(figures[i]));
}

using clock = std::chrono::steady_clock;

inline double ns_since(clock::time_point t0) {
  return std::chrono::duration<double, std::nano>(clock::now() - t0).count();
}

// One-shot completion: signalled by a worker thread, waited for by main in
// the kernel (futex) with a deadline, so main takes no CPU from the workers.
struct completion {
  std::atomic<std::uint32_t> done{0};
  void signal() {
    done.store(1, std::memory_order_release);
    syscall(SYS_futex, &done, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
  }
  bool wait_for(std::chrono::seconds limit) {
    auto until = clock::now() + limit;
    while (done.load(std::memory_order_acquire) == 0) {
      auto left = until - clock::now();
      if (left <= decltype(left)::zero()) return false;
      auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
      timespec ts{time_t(ns / 1'000'000'000), long(ns % 1'000'000'000)};
      syscall(SYS_futex, &done, FUTEX_WAIT_PRIVATE, 0, &ts, nullptr, 0);
    }
    return true;
  }
};

// Fails the benchmark if the guarded scope has not ended within `limit`.
class watchdog {
 public:
  explicit watchdog(std::string what, std::chrono::seconds limit = std::chrono::seconds(60))
      : what_(std::move(what)), thread_([this, limit, f = done_.get_future()] {
          if (f.wait_for(limit) == std::future_status::timeout)
            fail(what_ + ": did not finish within " + std::to_string(limit.count()) + " s");
        }) {}
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;
  ~watchdog() {
    done_.set_value();
    thread_.join();
  }

 private:
  std::promise<void> done_;
  std::string what_;
  std::thread thread_;
};

}  // namespace bench
