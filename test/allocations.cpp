// No heap allocation per message in steady state for payloads up to 64
// bytes: envelopes come from per-shard pools, and envelopes freed on another
// shard go back to their origin pool in batches.
//
// This binary replaces the global operator new (every overload) with a
// counting one: per thread (thread_local, read by an actor on the shard it
// measures) and process-wide (an atomic). Each scenario warms up, then runs
// 200k messages and checks allocations per message on the shard threads and
// in the whole process.
#include <troupe/actor.hpp>

#define BOOST_TEST_MODULE allocations
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"

#include <array>
#include <atomic>
#include <stdexcept>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

// ---- counting operator new ----------------------------------------------------

namespace {

thread_local std::uint64_t thread_allocations = 0;
std::atomic<std::uint64_t> process_allocations{0};

void count() noexcept {
  ++thread_allocations;
  process_allocations.fetch_add(1, std::memory_order_relaxed);
}

// Not inlined into the test's own new/delete pairs: g++ would warn about
// free() on memory from operator new, which is what this replacement does.
[[gnu::noinline]] void release(void* p) noexcept { std::free(p); }

void* allocate(std::size_t n) noexcept {
  count();
  return std::malloc(n == 0 ? 1 : n);
}

void* allocate(std::size_t n, std::align_val_t al) noexcept {
  count();
  std::size_t a = static_cast<std::size_t>(al);
  if (a < sizeof(void*)) a = sizeof(void*);
  void* p = nullptr;
  if (::posix_memalign(&p, a, n == 0 ? 1 : n) != 0) return nullptr;
  return p;
}

}  // namespace

void* operator new(std::size_t n) {
  if (void* p = allocate(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = allocate(n)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return allocate(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return allocate(n); }
void* operator new(std::size_t n, std::align_val_t a) {
  if (void* p = allocate(n, a)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) {
  if (void* p = allocate(n, a)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return allocate(n, a);
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return allocate(n, a);
}

void operator delete(void* p) noexcept { release(p); }
void operator delete[](void* p) noexcept { release(p); }
void operator delete(void* p, std::size_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t) noexcept { release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete(void* p, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { release(p); }

// ---- actors -------------------------------------------------------------------

using namespace troupe;
using namespace troupe_test;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t warm_up_messages = 10'000;
constexpr std::uint64_t measured_messages = 200'000;
constexpr double allowed_per_message = 0.01;

/// The largest payload the pools promise to carry without the heap.
struct payload {
  std::array<std::uint64_t, 8> words;
};
static_assert(sizeof(payload) == 64);

/// Answered by every actor here: the allocation count of the thread it runs on.
struct allocations_here {};

struct finish_line {
  std::atomic<std::uint64_t> runs_done{0};
};

// -- scenario A: two actors on one shard, a window of payloads bouncing.

class driver;

class echo : public actor<echo> {
  ref<driver> back_;

 public:
  explicit echo(ref<driver> back) : back_(std::move(back)) {}
  void on(const payload& p);
  std::uint64_t on(const allocations_here&) const { return thread_allocations; }
};

/// A round of `messages` deliveries (half to the echo, half back) with
/// `window` payloads in flight.
struct bounce {
  std::uint64_t messages;
  unsigned window;
};
struct meet {
  ref<echo> peer;
};

class driver : public actor<driver> {
  std::shared_ptr<finish_line> done_;
  ref<echo> peer_;
  std::uint64_t to_send_ = 0;
  std::uint64_t sent_ = 0;
  std::uint64_t back_ = 0;

 public:
  explicit driver(std::shared_ptr<finish_line> done) : done_(std::move(done)) {}
  void on(const meet& m) { peer_ = m.peer; }
  void on(const bounce& b) {
    to_send_ = b.messages / 2;
    sent_ = back_ = 0;
    for (unsigned i = 0; i < b.window && sent_ < to_send_; ++i) send_one();
  }
  void on(const payload& p) {
    // Not BOOST_REQUIRE: Boost.Test is not thread-safe. A throw fails the
    // actor, and the test's bounded wait for the finish line then fails.
    if (p.words[0] >= to_send_) throw std::logic_error("payload out of range");
    if (sent_ < to_send_) send_one();
    if (++back_ == to_send_) done_->runs_done.fetch_add(1, std::memory_order_release);
  }
  std::uint64_t on(const allocations_here&) const { return thread_allocations; }

 private:
  void send_one() {
    payload p{};
    p.words[0] = sent_++;
    peer_.send(p);
  }
};

void echo::on(const payload& p) { back_.send(p); }

// -- scenario B: one way across shards, in windows acknowledged by the receiver.

class sender;

struct ack {};

class receiver : public actor<receiver> {
  ref<sender> back_;
  std::uint64_t window_;
  std::uint64_t received_ = 0;

 public:
  receiver(ref<sender> back, std::uint64_t window) : back_(std::move(back)), window_(window) {}
  void on(const payload& p);
  std::uint64_t on(const allocations_here&) const { return thread_allocations; }
};

struct stream {
  unsigned windows;
};
struct meet_receiver {
  ref<receiver> peer;
};

class sender : public actor<sender> {
  std::shared_ptr<finish_line> done_;
  ref<receiver> peer_;
  std::uint64_t window_;
  unsigned windows_left_ = 0;
  std::uint64_t next_ = 0;

 public:
  sender(std::shared_ptr<finish_line> done, std::uint64_t window) : done_(std::move(done)), window_(window) {}
  void on(const meet_receiver& m) { peer_ = m.peer; }
  void on(const stream& s) {
    windows_left_ = s.windows;
    send_window();
  }
  void on(const ack&) {
    if (--windows_left_ > 0)
      send_window();
    else
      done_->runs_done.fetch_add(1, std::memory_order_release);
  }
  std::uint64_t on(const allocations_here&) const { return thread_allocations; }

 private:
  void send_window() {
    for (std::uint64_t i = 0; i < window_; ++i) {
      payload p{};
      p.words[0] = next_++;
      peer_.send(p);
    }
  }
};

void receiver::on(const payload& p) {
  if (p.words[0] != received_) throw std::logic_error("payload out of order");
  if (++received_ % window_ == 0) back_.send(ack{});
}

template <class A>
std::uint64_t allocations_on_shard_of(runtime& rt, const ref<A>& a) {
  return rt.ask(a, allocations_here{}).get();
}

void wait_for_run(const finish_line& f, std::uint64_t n) {
  BOOST_REQUIRE(eventually([&] { return f.runs_done.load(std::memory_order_acquire) >= n; }, 60s));
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_replacement_operator_new_counts_on_the_calling_thread) {
  std::uint64_t before = thread_allocations;
  std::uint64_t before_all = process_allocations.load();
  delete new int(1);
  ::operator delete(::operator new(8, std::align_val_t{64}), std::align_val_t{64});
  BOOST_TEST(thread_allocations - before == 2u);
  BOOST_TEST(process_allocations.load() - before_all >= 2u);
}

BOOST_AUTO_TEST_CASE(messages_between_two_actors_on_one_shard_do_not_allocate_in_steady_state) {
  runtime_stats st;
  {
    runtime rt{test_config()};
    auto done = std::make_shared<finish_line>();
    auto d = rt.spawn<driver>(pinned{0}, done);
    auto e = rt.spawn<echo>(pinned{0}, d);
    d.send(meet{e});

    d.send(bounce{warm_up_messages, 32});
    wait_for_run(*done, 1);

    std::uint64_t shard_before = allocations_on_shard_of(rt, d);
    std::uint64_t process_before = process_allocations.load();
    d.send(bounce{measured_messages, 32});
    wait_for_run(*done, 2);
    std::uint64_t process_after = process_allocations.load();
    std::uint64_t shard_after = allocations_on_shard_of(rt, d);

    double on_shard = double(shard_after - shard_before) / double(measured_messages);
    double in_process = double(process_after - process_before) / double(measured_messages);
    BOOST_TEST_MESSAGE("same shard: " << shard_after - shard_before << " allocations on the shard, "
                                      << process_after - process_before << " in the process, over "
                                      << measured_messages << " messages");
    BOOST_TEST(on_shard < allowed_per_message);
    BOOST_TEST(in_process < allowed_per_message);

    rt.stop();
    st = rt.stats();
  }
  check_quiescent(st);
}

BOOST_AUTO_TEST_CASE(one_way_messages_across_shards_do_not_allocate_in_steady_state) {
  constexpr std::uint64_t window = 1000;
  runtime_stats st;
  {
    runtime rt{test_config(2)};
    auto done = std::make_shared<finish_line>();
    auto s = rt.spawn<sender>(pinned{0}, done, window);
    auto r = rt.spawn<receiver>(pinned{1}, s, window);
    s.send(meet_receiver{r});

    s.send(stream{static_cast<unsigned>(warm_up_messages / window)});
    wait_for_run(*done, 1);

    std::uint64_t sender_before = allocations_on_shard_of(rt, s);
    std::uint64_t receiver_before = allocations_on_shard_of(rt, r);
    std::uint64_t slabs_before = rt.stats().shards[0].pool_slabs + rt.stats().shards[1].pool_slabs;
    std::uint64_t process_before = process_allocations.load();
    s.send(stream{static_cast<unsigned>(measured_messages / window)});
    wait_for_run(*done, 2);
    std::uint64_t process_after = process_allocations.load();
    std::uint64_t sender_after = allocations_on_shard_of(rt, s);
    std::uint64_t receiver_after = allocations_on_shard_of(rt, r);
    std::uint64_t slabs_after = rt.stats().shards[0].pool_slabs + rt.stats().shards[1].pool_slabs;

    // The acks are messages too.
    const std::uint64_t messages = measured_messages + measured_messages / window;
    std::uint64_t on_shards = (sender_after - sender_before) + (receiver_after - receiver_before);
    BOOST_TEST_MESSAGE("across shards: " << sender_after - sender_before << " allocations on the sender's shard, "
                                         << receiver_after - receiver_before << " on the receiver's, "
                                         << process_after - process_before << " in the process, "
                                         << slabs_after - slabs_before << " new pool slabs, over "
                                         << messages << " messages");
    BOOST_TEST(double(on_shards) / double(messages) < allowed_per_message);
    BOOST_TEST(double(process_after - process_before) / double(messages) < allowed_per_message);

    rt.stop();
    st = rt.stats();
  }
  check_quiescent(st);
}
