// CAF 0.17 peers.  See peers.hpp.
#include "peers.hpp"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include <caf/all.hpp>
#pragma GCC diagnostic pop

#include <malloc.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace bench::peers {
namespace {

using ping_atom = caf::atom_constant<caf::atom("ping")>;
using pong_atom = caf::atom_constant<caf::atom("pong")>;
using start_atom = caf::atom_constant<caf::atom("start")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
using msg_atom = caf::atom_constant<caf::atom("msg")>;
using ack_atom = caf::atom_constant<caf::atom("ack")>;
using more_atom = caf::atom_constant<caf::atom("more")>;
using count_atom = caf::atom_constant<caf::atom("count")>;
using work_atom = caf::atom_constant<caf::atom("work")>;

constexpr auto kTimeLimit = std::chrono::seconds(60);
constexpr int kReceivers = 64;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now().time_since_epoch()).count();
}

using bench::watchdog;

// A config with `threads` scheduler threads (the default work-stealing policy).
struct config : caf::actor_system_config {
  explicit config(int threads) { set("scheduler.max-threads", static_cast<int64_t>(threads)); }
};

// --- ping-pong ------------------------------------------------------------------

caf::behavior pong_actor(caf::event_based_actor*) {
  return {
      [](ping_atom, int64_t v) { return std::make_tuple(pong_atom::value, v); },
  };
}

struct ping_state {
  int64_t count = 0;
  int64_t n = 0;
  int64_t t0 = 0;
  bool bad = false;
  caf::actor pong;
  caf::actor reporter;
};

caf::behavior ping_actor(caf::stateful_actor<ping_state>* self, caf::actor pong, int64_t n,
                         caf::actor reporter) {
  self->state.pong = std::move(pong);
  self->state.n = n;
  self->state.reporter = std::move(reporter);
  return {
      [=](start_atom) {
        self->state.t0 = now_ns();
        self->send(self->state.pong, ping_atom::value, int64_t{1});
      },
      [=](pong_atom, int64_t v) {
        auto& s = self->state;
        if (v != s.count + 1) s.bad = true;
        s.count = v;
        if (v < s.n) {
          self->send(s.pong, ping_atom::value, v + 1);
        } else {
          self->send(s.reporter, done_atom::value, s.count, now_ns() - s.t0, s.bad);
          self->quit();
        }
      },
  };
}

// --- fan-out ----------------------------------------------------------------------

constexpr int64_t kAckEvery = 256;     // a receiver acks every kAckEvery messages
constexpr int64_t kWindow = 1 << 16;   // > kReceivers * (kAckEvery - 1): cannot stall
constexpr int64_t kChunk = 4096;       // sends per producer activation

struct producer_state {
  std::vector<caf::actor> receivers;
  int64_t total = 0;
  int64_t next = 0;
  int64_t acked = 0;
  bool stalled = false;
};

caf::behavior producer_actor(caf::stateful_actor<producer_state>* self, int64_t total) {
  self->state.total = total;
  // Sends up to kChunk messages, then yields to the scheduler by sending
  // itself `more`; stops when kWindow messages are un-acked.
  auto pump = [self] {
    auto& s = self->state;
    int64_t end = std::min(s.total, s.next + kChunk);
    while (s.next < end) {
      if (s.next - s.acked >= kWindow) {
        s.stalled = true;
        return;
      }
      self->send(s.receivers[size_t(s.next % kReceivers)], msg_atom::value, s.next);
      ++s.next;
    }
    if (s.next < s.total) self->send(self, more_atom::value);
  };
  return {
      [=](start_atom, const std::vector<caf::actor>& receivers) {
        self->state.receivers = receivers;
        pump();
      },
      [=](more_atom) { pump(); },
      [=](ack_atom, int64_t k) {
        self->state.acked += k;
        if (self->state.stalled) {
          self->state.stalled = false;
          pump();
        }
      },
  };
}

struct receiver_state {
  int64_t id = 0;
  int64_t count = 0;
  int64_t expected = 0;
  bool bad = false;
  caf::actor producer;
  caf::actor collector;
};

caf::behavior receiver_actor(caf::stateful_actor<receiver_state>* self, int64_t id, int64_t expected,
                             caf::actor producer, caf::actor collector) {
  auto& s = self->state;
  s.id = id;
  s.expected = expected;
  s.producer = std::move(producer);
  s.collector = std::move(collector);
  return {
      [=](msg_atom, int64_t seq) {
        auto& s = self->state;
        if (seq % kReceivers != s.id) s.bad = true;
        ++s.count;
        if (s.count % kAckEvery == 0) self->send(s.producer, ack_atom::value, kAckEvery);
        if (s.count == s.expected) self->send(s.collector, done_atom::value, s.id, now_ns(), s.bad);
      },
      [=](count_atom) { return self->state.count; },
  };
}

// --- spawn ----------------------------------------------------------------------

caf::behavior idle_actor(caf::event_based_actor*, std::atomic<long>* initialised) {
  initialised->fetch_add(1, std::memory_order_relaxed);
  return {
      [](int64_t) {},
  };
}

// --- skewed work -----------------------------------------------------------------

struct skewed_shared {
  std::atomic<long> initialised{0};
  std::atomic<long> actors_left{0};
  std::atomic<std::uint64_t> checksum{0};  // wrapping sum of the actors' checksums
  clock::time_point t1;                    // written by the last actor before `finished`
  completion finished;
};

struct skewed_state {
  int64_t items = 0;
  std::uint64_t acc = 0;
};

caf::behavior skewed_actor(caf::stateful_actor<skewed_state>* self, int64_t id, std::uint32_t rounds,
                           skewed_shared* sh) {
  sh->initialised.fetch_add(1, std::memory_order_relaxed);
  auto finish = [self, sh] {
    sh->checksum.fetch_add(self->state.acc, std::memory_order_relaxed);
    if (sh->actors_left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      sh->t1 = clock::now();
      sh->finished.signal();
    }
  };
  return {
      [=](start_atom, int64_t items) {
        self->state.items = items;
        if (items > 0)
          self->send(self, work_atom::value, items);
        else
          finish();
      },
      [=](work_atom, int64_t left) {
        auto& s = self->state;
        s.acc = skewed_item(s.acc, std::uint64_t(id), std::uint64_t(s.items - left), rounds);
        if (left > 1)
          self->send(self, work_atom::value, left - 1);
        else
          finish();
      },
  };
}

}  // namespace

double caf_pingpong(long n, int threads, bool detached) {
  check(n > 0, "round trips must be positive");
  const std::string what = "caf_pingpong";
  watchdog w(what);
  config cfg(threads);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto reporter = caf::actor_cast<caf::actor>(self);
  caf::actor pong, ping;
  if (detached) {
    pong = sys.spawn<caf::detached>(pong_actor);
    ping = sys.spawn<caf::detached>(ping_actor, pong, int64_t(n), reporter);
  } else {
    pong = sys.spawn(pong_actor);
    ping = sys.spawn(ping_actor, pong, int64_t(n), reporter);
  }
  self->send(ping, start_atom::value);
  double ns = 0;
  self->receive(
      [&](done_atom, int64_t count, int64_t elapsed, bool bad) {
        check(!bad, what + ": out-of-order reply");
        check(count == n, what + ": round trip count mismatch");
        ns = double(elapsed);
      },
      caf::after(kTimeLimit) >> [&] { fail(what + ": timed out"); });
  self->send_exit(ping, caf::exit_reason::user_shutdown);
  self->send_exit(pong, caf::exit_reason::user_shutdown);
  return ns / double(n);
}

double caf_fanout(long total, int threads) {
  check(total > 0, "total must be positive");
  const std::string what = "caf_fanout";
  watchdog w(what);
  config cfg(threads);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto collector = caf::actor_cast<caf::actor>(self);
  auto producer = sys.spawn(producer_actor, int64_t(total));
  std::vector<caf::actor> receivers;
  std::vector<int64_t> expected;
  for (int r = 0; r < kReceivers; ++r) {
    expected.push_back(total / kReceivers + (r < total % kReceivers ? 1 : 0));
    receivers.push_back(sys.spawn(receiver_actor, int64_t(r), expected.back(), producer, collector));
  }
  int64_t t0 = now_ns(), t1 = t0;
  self->send(producer, start_atom::value, receivers);
  int active = 0;
  for (int r = 0; r < kReceivers; ++r) active += expected[size_t(r)] > 0;
  std::vector<bool> done(kReceivers, false);
  for (int i = 0; i < active; ++i) {
    self->receive(
        [&](done_atom, int64_t id, int64_t at, bool bad) {
          check(id >= 0 && id < kReceivers && !done[size_t(id)], what + ": bad completion");
          check(!bad, what + ": message delivered to the wrong receiver");
          done[size_t(id)] = true;
          t1 = std::max(t1, at);
        },
        caf::after(kTimeLimit) >> [&] { fail(what + ": timed out"); });
  }
  // Exact per-receiver counts (catches duplicates that arrived after `done`).
  int64_t sum = 0;
  for (int r = 0; r < kReceivers; ++r) {
    self->request(receivers[size_t(r)], kTimeLimit, count_atom::value)
        .receive(
            [&](int64_t c) {
              check(c == expected[size_t(r)], what + ": receiver " + std::to_string(r) + " got " +
                                                  std::to_string(c) + " messages");
              sum += c;
            },
            [&](caf::error& e) { fail(what + ": count request failed: " + sys.render(e)); });
  }
  check(sum == total, what + ": delivered != sent");
  for (auto& r : receivers) self->send_exit(r, caf::exit_reason::user_shutdown);
  self->send_exit(producer, caf::exit_reason::user_shutdown);
  return double(total) / (double(t1 - t0) * 1e-9);
}

spawn_figures caf_spawn(long count, int threads) {
  check(count > 0, "count must be positive");
  const std::string what = "caf_spawn";
  watchdog w(what);
  config cfg(threads);
  caf::actor_system sys{cfg};
  std::vector<caf::actor> actors(static_cast<size_t>(count));  // handle storage touched before measuring
  std::atomic<long> initialised{0};
  // Return memory freed by earlier repetitions to the kernel, so that this
  // repetition's actors land on fresh pages and show up in the RSS growth.
  malloc_trim(0);
  long rss0 = rss_bytes();
  auto t0 = clock::now();
  for (long i = 0; i < count; ++i) actors[size_t(i)] = sys.spawn(idle_actor, &initialised);
  while (initialised.load(std::memory_order_acquire) < count) std::this_thread::yield();
  double ns = ns_since(t0);
  long rss1 = rss_bytes();
  for (auto& a : actors) check(a != nullptr, what + ": spawn returned an invalid handle");
  actors.clear();
  actors.shrink_to_fit();
  return {double(count) / (ns * 1e-9), double(rss1 - rss0) / double(count)};
}

double caf_skewed_work(long actors, long items, std::uint32_t rounds, int threads, std::uint64_t expected) {
  check(actors > 0 && items >= 0, "actors must be positive, items not negative");
  const std::string what = "caf_skewed_work";
  watchdog w(what);
  skewed_shared sh;  // outlives the actor system and so every actor
  sh.actors_left.store(actors);
  config cfg(threads);
  caf::actor_system sys{cfg};
  std::vector<caf::actor> as;
  as.reserve(size_t(actors));
  for (long i = 0; i < actors; ++i) as.push_back(sys.spawn(skewed_actor, int64_t(i), rounds, &sh));
  // Every actor has run its initialisation before the clock starts.
  while (sh.initialised.load(std::memory_order_acquire) < actors) std::this_thread::yield();
  caf::scoped_actor self{sys};
  auto t0 = clock::now();
  for (auto& a : as) self->send(a, start_atom::value, int64_t(items));
  check(sh.finished.wait_for(kTimeLimit), what + ": timed out");
  check(sh.actors_left.load() == 0, what + ": an actor finished twice");
  check(sh.checksum.load() == expected,
        what + ": checksum mismatch (a work item was lost, repeated or reordered)");
  for (auto& a : as) self->send_exit(a, caf::exit_reason::user_shutdown);
  return std::chrono::duration<double, std::milli>(sh.t1 - t0).count();
}

}  // namespace bench::peers
