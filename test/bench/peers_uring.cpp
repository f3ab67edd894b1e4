// Raw liburing and lock-free peers (no troupe code).  See peers.hpp.
#include "peers.hpp"

#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace bench::peers {

long rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) fail("cannot open /proc/self/statm");
  long size = 0, resident = 0;
  int got = std::fscanf(f, "%ld %ld", &size, &resident);
  std::fclose(f);
  check(got == 2, "cannot parse /proc/self/statm");
  return resident * sysconf(_SC_PAGESIZE);
}

namespace {

constexpr auto kTimeLimit = std::chrono::seconds(60);
constexpr int kReceivers = 64;
constexpr __u64 kSendTag = ~__u64{0};  // user_data of our own msg_ring SQEs

inline void relax() { __builtin_ia32_pause(); }

using bench::watchdog;

using bench::pin;

// Runs a() on CPU 0 and b() on CPU 1 under a watchdog.
template <class A, class B>
void run_pair(const std::string& what, A&& a, B&& b) {
  watchdog w(what);
  std::thread ta([&] { pin(0); a(); });
  std::thread tb([&] { pin(1); b(); });
  ta.join();
  tb.join();
}

// Ring fd exchange, start barrier and end barrier for two threads.
struct rendezvous {
  std::atomic<int> fd[2] = {-1, -1};
  std::atomic<int> started{0};
  std::atomic<int> finished{0};
  // Publishes my ring fd, waits for the other side, returns its fd.
  int start(int me, int my_fd) {
    fd[me].store(my_fd, std::memory_order_release);
    started.fetch_add(1, std::memory_order_acq_rel);
    while (started.load(std::memory_order_acquire) < 2) relax();
    return fd[1 - me].load(std::memory_order_acquire);
  }
  // Both sides are done sending; only then may a ring be closed.
  void finish() {
    finished.fetch_add(1, std::memory_order_acq_rel);
    while (finished.load(std::memory_order_acquire) < 2) relax();
  }
};

enum class ring_mode { defer, coop };

// Creates a ring owned by the calling thread.  Tries the full flag set first,
// then falls back (on -EINVAL only) to simpler sets.
void make_ring(io_uring* ring, unsigned entries, ring_mode mode, unsigned cq_entries = 0) {
  const unsigned cq = cq_entries ? IORING_SETUP_CQSIZE : 0u;
  const unsigned base = IORING_SETUP_SINGLE_ISSUER | cq;
  const unsigned tries[] = {
      mode == ring_mode::defer
          ? base | IORING_SETUP_DEFER_TASKRUN
          : base | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
      mode == ring_mode::defer ? base : base | IORING_SETUP_COOP_TASKRUN,
      cq,
  };
  int err = 0;
  for (unsigned flags : tries) {
    io_uring_params p{};
    p.flags = flags;
    p.cq_entries = cq_entries;
    err = io_uring_queue_init_params(entries, ring, &p);
    if (err == 0) return;
    if (err != -EINVAL) break;
  }
  fail(std::string("io_uring_queue_init_params: ") + std::strerror(-err));
}

struct ring_guard {
  io_uring* ring;
  ~ring_guard() { io_uring_queue_exit(ring); }
};

// A DEFER_TASKRUN ring without TASKRUN_FLAG gives no hint that deferred work
// is pending, so a poller must enter the kernel on every empty poll.  (Adding
// TASKRUN_FLAG to a DEFER_TASKRUN ring makes the kernel flag pending work, but
// measured ~1 us per round trip SLOWER on kernel 6.18 than io_uring_get_events
// on every empty poll, so the defer rings do not set it.)
inline bool always_get_events(const io_uring* ring) {
  return (ring->flags & IORING_SETUP_DEFER_TASKRUN) && !(ring->flags & IORING_SETUP_TASKRUN_FLAG);
}

inline bool kernel_has_work(const io_uring* ring) {
  return IO_URING_READ_ONCE(*ring->sq.kflags) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW);
}

// Busy-polls until a CQE is available.
io_uring_cqe* poll_cqe(io_uring* ring) {
  const bool always = always_get_events(ring);
  for (;;) {
    io_uring_cqe* cqe = nullptr;
    if (io_uring_cq_ready(ring) && io_uring_peek_cqe(ring, &cqe) == 0 && cqe) return cqe;
    if (always || kernel_has_work(ring)) {
      int r = io_uring_get_events(ring);
      if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY)
        fail(std::string("io_uring_get_events: ") + std::strerror(-r));
    } else {
      relax();
    }
  }
}

io_uring_cqe* wait_cqe(io_uring* ring) {
  for (;;) {
    io_uring_cqe* cqe = nullptr;
    int r = io_uring_wait_cqe(ring, &cqe);
    if (r == 0 && cqe) return cqe;
    if (r != -EINTR && r != -EAGAIN) fail(std::string("io_uring_wait_cqe: ") + std::strerror(-r));
  }
}

void submit(io_uring* ring, unsigned wait_nr = 0) {
  for (;;) {
    int r = wait_nr ? io_uring_submit_and_wait(ring, wait_nr) : io_uring_submit(ring);
    if (r >= 0) return;
    if (r != -EINTR && r != -EAGAIN && r != -EBUSY)
      fail(std::string("io_uring_submit: ") + std::strerror(-r));
  }
}

// Queues one msg_ring SQE: the target sees a CQE with res = len and
// user_data = data.  Success posts nothing on our own ring.
void prep_send(io_uring* ring, int target_fd, unsigned len, __u64 data) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (!sqe) {
    submit(ring);
    sqe = io_uring_get_sqe(ring);
    check(sqe != nullptr, "no SQE after submit");
  }
  io_uring_prep_msg_ring(sqe, target_fd, len, data, 0);
  io_uring_sqe_set_data64(sqe, kSendTag);
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

// Checks a received CQE: fails on a failed send of our own, else checks the
// payload.
void expect_msg(const io_uring_cqe* cqe, __u64 data, int len, const char* what) {
  if (cqe->user_data == kSendTag)
    fail(std::string(what) + ": msg_ring send failed: " + std::strerror(-cqe->res));
  if (cqe->user_data != data || cqe->res != len)
    fail(std::string(what) + ": unexpected message " + std::to_string(cqe->user_data));
}

// --- cross-thread ping-pong over msg_ring -------------------------------------

double msgring_pingpong(long n, bool defer, bool busy, const char* what) {
  check(n > 0, "round trips must be positive");
  rendezvous rv;
  const ring_mode mode = defer ? ring_mode::defer : ring_mode::coop;
  double ns = 0;
  long replies = 0, pings = 0;
  run_pair(
      what,
      [&] {  // initiator
        io_uring ring;
        make_ring(&ring, 8, mode);
        ring_guard g{&ring};
        int peer = rv.start(0, ring.ring_fd);
        auto t0 = clock::now();
        for (long i = 1; i <= n; ++i) {
          prep_send(&ring, peer, 1, __u64(i));
          io_uring_cqe* cqe;
          if (busy) {
            submit(&ring);
            cqe = poll_cqe(&ring);
          } else {
            submit(&ring, 1);
            cqe = wait_cqe(&ring);
          }
          expect_msg(cqe, __u64(i), 1, what);
          io_uring_cqe_seen(&ring, cqe);
          ++replies;
        }
        ns = ns_since(t0);
        rv.finish();
      },
      [&] {  // responder
        io_uring ring;
        make_ring(&ring, 8, mode);
        ring_guard g{&ring};
        int peer = rv.start(1, ring.ring_fd);
        io_uring_cqe* cqe = busy ? poll_cqe(&ring) : wait_cqe(&ring);
        for (long i = 1; i <= n; ++i) {
          expect_msg(cqe, __u64(i), 1, what);
          io_uring_cqe_seen(&ring, cqe);
          ++pings;
          prep_send(&ring, peer, 1, __u64(i));
          if (i == n) {
            submit(&ring);
          } else if (busy) {
            submit(&ring);
            cqe = poll_cqe(&ring);
          } else {
            submit(&ring, 1);  // reply and wait for the next ping in one call
            cqe = wait_cqe(&ring);
          }
        }
        rv.finish();
      });
  check(replies == n && pings == n, std::string(what) + ": round trip count mismatch");
  return ns / double(n);
}

struct payload {
  long seq;
  long words[5];
};

}  // namespace

double uring_msgring_blocking(long n, bool defer_taskrun) {
  return msgring_pingpong(n, defer_taskrun, false, "uring_msgring_blocking");
}

double uring_msgring_busypoll(long n, bool defer_taskrun) {
  return msgring_pingpong(n, defer_taskrun, true, "uring_msgring_busypoll");
}

double uring_payload_in_cqe(long n) {
  check(n > 0, "round trips must be positive");
  const char* what = "uring_payload_in_cqe";
  rendezvous rv;
  double ns = 0;
  long replies = 0, pings = 0;
  // Receives one heap message, checks and frees it.
  auto receive = [what](io_uring* ring, long seq) {
    io_uring_cqe* cqe = poll_cqe(ring);
    if (cqe->user_data == kSendTag)
      fail(std::string(what) + ": msg_ring send failed: " + std::strerror(-cqe->res));
    auto* p = reinterpret_cast<payload*>(uintptr_t(cqe->user_data));
    io_uring_cqe_seen(ring, cqe);
    check(p != nullptr && p->seq == seq && p->words[4] == seq, std::string(what) + ": bad payload");
    delete p;
  };
  auto send = [](io_uring* ring, int peer, long seq) {
    auto* p = new payload{seq, {seq, seq, seq, seq, seq}};
    prep_send(ring, peer, 0, __u64(uintptr_t(p)));
    submit(ring);
  };
  run_pair(
      what,
      [&] {
        io_uring ring;
        make_ring(&ring, 8, ring_mode::coop);
        ring_guard g{&ring};
        int peer = rv.start(0, ring.ring_fd);
        auto t0 = clock::now();
        for (long i = 1; i <= n; ++i) {
          send(&ring, peer, i);
          receive(&ring, i);
          ++replies;
        }
        ns = ns_since(t0);
        rv.finish();
      },
      [&] {
        io_uring ring;
        make_ring(&ring, 8, ring_mode::coop);
        ring_guard g{&ring};
        int peer = rv.start(1, ring.ring_fd);
        for (long i = 1; i <= n; ++i) {
          receive(&ring, i);
          ++pings;
          send(&ring, peer, i);
        }
        rv.finish();
      });
  check(replies == n && pings == n, std::string(what) + ": round trip count mismatch");
  return ns / double(n);
}

double spsc_spin_floor(long n) {
  check(n > 0, "round trips must be positive");
  struct alignas(64) slot {
    std::atomic<long> v{0};
  };
  slot ping, pong;
  double ns = 0;
  long pongs = 0;
  std::atomic<int> ready{0};
  run_pair(
      "spsc_spin_floor",
      [&] {
        ready.fetch_add(1);
        while (ready.load() < 2) relax();
        auto t0 = clock::now();
        for (long i = 1; i <= n; ++i) {
          ping.v.store(i, std::memory_order_release);
          while (pong.v.load(std::memory_order_acquire) != i) relax();
        }
        ns = ns_since(t0);
      },
      [&] {
        ready.fetch_add(1);
        while (ready.load() < 2) relax();
        for (long i = 1; i <= n; ++i) {
          while (ping.v.load(std::memory_order_acquire) != i) relax();
          pong.v.store(i, std::memory_order_release);
          ++pongs;
        }
      });
  check(pongs == n && pong.v.load() == n, "spsc_spin_floor: round trip count mismatch");
  return ns / double(n);
}

// --- single-thread intrusive actor floor --------------------------------------

namespace {

struct iq_msg {
  iq_msg* next;
  long seq;
};

struct iq_actor;
using iq_handler = void (*)(iq_actor* self, iq_msg* m);

struct iq_sched;

struct iq_actor {
  iq_msg* head = nullptr;
  iq_msg** tail = &head;
  iq_actor* next_ready = nullptr;
  bool queued = false;
  iq_handler handler = nullptr;
  iq_sched* sched = nullptr;
  iq_actor* peer = nullptr;
  long count = 0;
  long limit = 0;
  bool bad = false;
};

struct iq_sched {
  iq_actor* ready_head = nullptr;
  iq_actor** ready_tail = &ready_head;
  iq_msg* free_list = nullptr;

  iq_msg* alloc() {
    iq_msg* m = free_list;
    free_list = m->next;  // pre-filled; a ping-pong needs two messages
    return m;
  }
  void release(iq_msg* m) {
    m->next = free_list;
    free_list = m;
  }
  void send(iq_actor* to, long seq) {
    iq_msg* m = alloc();
    m->seq = seq;
    m->next = nullptr;
    *to->tail = m;
    to->tail = &m->next;
    if (!to->queued) {
      to->queued = true;
      to->next_ready = nullptr;
      *ready_tail = to;
      ready_tail = &to->next_ready;
    }
  }
  void run() {
    while (iq_actor* a = ready_head) {
      ready_head = a->next_ready;
      if (!ready_head) ready_tail = &ready_head;
      while (iq_msg* m = a->head) {  // drain the mailbox
        a->head = m->next;
        if (!a->head) a->tail = &a->head;
        a->handler(a, m);
        release(m);
      }
      a->queued = false;
    }
  }
};

void iq_ping(iq_actor* self, iq_msg* m) {
  if (m->seq != self->count + 1) self->bad = true;
  if (++self->count < self->limit) self->sched->send(self->peer, self->count + 1);
}

void iq_pong(iq_actor* self, iq_msg* m) {
  ++self->count;
  self->sched->send(self->peer, m->seq);
}

}  // namespace

double intrusive_queue_floor(long n) {
  check(n > 0, "round trips must be positive");
  iq_sched s;
  iq_msg pool[64];
  for (iq_msg& m : pool) s.release(&m);
  iq_actor ping, pong;
  ping.handler = iq_ping;
  pong.handler = iq_pong;
  ping.sched = pong.sched = &s;
  ping.peer = &pong;
  pong.peer = &ping;
  ping.limit = n;
  auto t0 = clock::now();
  s.send(&pong, 1);
  s.run();
  double ns = ns_since(t0);
  check(!ping.bad, "intrusive_queue_floor: out-of-order reply");
  check(ping.count == n && pong.count == n, "intrusive_queue_floor: round trip count mismatch");
  return ns / double(n);
}

// --- fan-out ------------------------------------------------------------------

namespace {

long expected_count(long total, int r) { return total / kReceivers + (r < total % kReceivers ? 1 : 0); }

void check_counts(const long* counts, long total, const char* what) {
  long sum = 0;
  for (int r = 0; r < kReceivers; ++r) {
    sum += counts[r];
    if (counts[r] != expected_count(total, r))
      fail(std::string(what) + ": receiver " + std::to_string(r) + " got " + std::to_string(counts[r]) +
           " messages, expected " + std::to_string(expected_count(total, r)));
  }
  check(sum == total, std::string(what) + ": delivered != sent");
}

}  // namespace

double uring_msgring_per_message(long total) {
  check(total > 0, "total must be positive");
  const char* what = "uring_msgring_per_message";
  constexpr unsigned kBatch = 256, kCq = 32768;
  constexpr long kWindow = kCq - kBatch;  // never overflow the consumer's CQ
  rendezvous rv;
  alignas(64) std::atomic<long> consumed{0};
  clock::time_point t0, t1;
  long counts[kReceivers] = {};
  long retries = 0;
  run_pair(
      what,
      [&] {  // producer
        io_uring ring;
        make_ring(&ring, kBatch, ring_mode::coop);
        ring_guard g{&ring};
        int consumer = rv.start(0, ring.ring_fd);
        std::vector<long> retry;
        long next = 0, prepared = 0, failed = 0, seen = 0;
        t0 = clock::now();
        while (seen < total) {
          // Failed sends come back as CQEs on our ring; resend them.
          unsigned head, k = 0;
          io_uring_cqe* cqe;
          io_uring_for_each_cqe(&ring, head, cqe) {
            ++k;
            int e = -cqe->res;
            if (e != EOVERFLOW && e != EBUSY && e != EAGAIN)
              fail(std::string(what) + ": msg_ring failed: " + std::strerror(e));
            retry.push_back(long(cqe->user_data));
          }
          io_uring_cq_advance(&ring, k);
          failed += k;
          retries += k;
          unsigned batch = 0;
          while (batch < kBatch && (!retry.empty() || next < total)) {
            if (prepared - failed - seen >= kWindow) {
              seen = consumed.load(std::memory_order_acquire);
              if (prepared - failed - seen >= kWindow) break;
            }
            io_uring_sqe* sqe = io_uring_get_sqe(&ring);
            if (!sqe) break;
            long i;
            if (!retry.empty()) {
              i = retry.back();
              retry.pop_back();
            } else {
              i = next++;
            }
            io_uring_prep_msg_ring(sqe, consumer, unsigned(i % kReceivers), __u64(i), 0);
            io_uring_sqe_set_data64(sqe, __u64(i));
            sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
            ++prepared;
            ++batch;
          }
          if (batch) {
            submit(&ring);
          } else {
            relax();
            seen = consumed.load(std::memory_order_acquire);
          }
        }
        rv.finish();
      },
      [&] {  // consumer hosting all receivers
        io_uring ring;
        make_ring(&ring, 8, ring_mode::coop, kCq);
        ring_guard g{&ring};
        rv.start(1, ring.ring_fd);
        long got = 0;
        bool bad = false;
        while (got < total) {
          unsigned head, k = 0;
          io_uring_cqe* cqe;
          io_uring_for_each_cqe(&ring, head, cqe) {
            ++k;
            unsigned r = unsigned(cqe->res);
            bad |= cqe->user_data >= __u64(total) || r >= unsigned(kReceivers) ||
                   long(cqe->user_data) % kReceivers != long(r);
            counts[r % kReceivers]++;
          }
          if (k) {
            io_uring_cq_advance(&ring, k);
            got += k;
            consumed.store(got, std::memory_order_release);
          } else if (kernel_has_work(&ring)) {
            io_uring_get_events(&ring);
          } else {
            relax();
          }
        }
        t1 = clock::now();
        check(!bad, std::string(what) + ": malformed message");
        rv.finish();
      });
  check_counts(counts, total, what);
  if (retries) std::fprintf(stderr, "%s: %ld sends retried\n", what, retries);
  return double(total) / std::chrono::duration<double>(t1 - t0).count();
}

namespace {

struct mp_node {
  std::atomic<mp_node*> next{nullptr};
  long seq = 0;
  int receiver = 0;
};

// Vyukov's intrusive MPSC queue.
struct mpsc_queue {
  alignas(64) std::atomic<mp_node*> head;  // producers push here
  alignas(64) mp_node* tail;               // consumer pops here
  mp_node stub;

  mpsc_queue() : head(&stub), tail(&stub) {}

  void push(mp_node* n) {
    n->next.store(nullptr, std::memory_order_relaxed);
    mp_node* prev = head.exchange(n, std::memory_order_seq_cst);
    prev->next.store(n, std::memory_order_release);
  }
  // nullptr: empty, or a producer is between its exchange and its link.
  mp_node* pop() {
    mp_node* t = tail;
    mp_node* next = t->next.load(std::memory_order_acquire);
    if (t == &stub) {
      if (!next) return nullptr;
      tail = next;
      t = next;
      next = next->next.load(std::memory_order_acquire);
    }
    if (next) {
      tail = next;
      return t;
    }
    if (t != head.load(std::memory_order_acquire)) return nullptr;
    push(&stub);
    next = t->next.load(std::memory_order_acquire);
    if (next) {
      tail = next;
      return t;
    }
    return nullptr;
  }
  // Consumer only: true iff nothing has been pushed that was not popped.
  bool empty() const { return tail == &stub && head.load(std::memory_order_seq_cst) == &stub; }
};

enum : int { running = 0, parked = 1, notified = 2 };

}  // namespace

double mpsc_doorbell(long total) {
  check(total > 0, "total must be positive");
  const char* what = "mpsc_doorbell";
  constexpr long kPool = 1 << 16;  // messages recycled behind the consumer
  constexpr int kSpin = 256;       // empty polls before the consumer parks
  auto pool = std::make_unique<mp_node[]>(kPool);
  mpsc_queue q;
  rendezvous rv;
  alignas(64) std::atomic<int> state{running};
  alignas(64) std::atomic<long> consumed{0};
  clock::time_point t0, t1;
  long counts[kReceivers] = {};
  long doorbells = 0, parks = 0;  // parks: times the consumer announced parked
  run_pair(
      what,
      [&] {  // producer
        io_uring ring;
        make_ring(&ring, 64, ring_mode::coop);
        ring_guard g{&ring};
        int consumer = rv.start(0, ring.ring_fd);
        long seen = 0;
        t0 = clock::now();
        for (long i = 0; i < total; ++i) {
          if (i - seen >= kPool) {  // slot i % kPool still holds message i - kPool
            while (i - (seen = consumed.load(std::memory_order_acquire)) >= kPool) relax();
          }
          mp_node* n = &pool[i & (kPool - 1)];
          n->seq = i;
          n->receiver = int(i % kReceivers);
          q.push(n);
          if (state.load(std::memory_order_seq_cst) == parked) {
            int expected = parked;
            if (state.compare_exchange_strong(expected, notified, std::memory_order_seq_cst)) {
              prep_send(&ring, consumer, 0, 0);
              submit(&ring);
              ++doorbells;
              io_uring_cqe* cqe;
              if (io_uring_peek_cqe(&ring, &cqe) == 0)
                fail(std::string(what) + ": doorbell failed: " + std::strerror(-cqe->res));
            }
          }
        }
        rv.finish();
        io_uring_cqe* cqe;
        if (io_uring_peek_cqe(&ring, &cqe) == 0)
          fail(std::string(what) + ": doorbell failed: " + std::strerror(-cqe->res));
      },
      [&] {  // consumer hosting all receivers
        io_uring ring;
        make_ring(&ring, 8, ring_mode::coop);
        ring_guard g{&ring};
        rv.start(1, ring.ring_fd);
        long got = 0;
        int idle = 0;
        bool bad = false;
        while (got < total) {
          if (mp_node* n = q.pop()) {
            bad |= n->seq % kReceivers != n->receiver;
            counts[n->receiver]++;
            if ((++got & 63) == 0) consumed.store(got, std::memory_order_release);
            idle = 0;
            continue;
          }
          if (++idle < kSpin) {
            relax();
            continue;
          }
          idle = 0;
          consumed.store(got, std::memory_order_release);
          // Drop stale doorbells before announcing the park, never after.
          io_uring_cq_advance(&ring, io_uring_cq_ready(&ring));
          state.store(parked, std::memory_order_seq_cst);
          ++parks;
          if (!q.empty()) {
            state.store(running, std::memory_order_seq_cst);  // a pending doorbell only wakes us spuriously
            continue;
          }
          wait_cqe(&ring);
          state.store(running, std::memory_order_seq_cst);
        }
        t1 = clock::now();
        consumed.store(got, std::memory_order_release);
        check(!bad, std::string(what) + ": malformed message");
        rv.finish();
      });
  check_counts(counts, total, what);
  check(doorbells <= parks, std::string(what) + ": more doorbells than parks");
  return double(total) / std::chrono::duration<double>(t1 - t0).count();
}

}  // namespace bench::peers
