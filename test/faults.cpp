// The I/O lifecycle under the kernel's rarer answers, made common by
// config::fault_injection: submits that take nothing (-EBUSY with a full CQ,
// -EAGAIN, -ENOMEM) and completions that never come (a CQE the kernel
// dropped). Each scenario runs in a child process with a deadline, so a
// hang is a bounded failure; the child checks for leaks itself
// (LeakSanitizer in the asan build) before it exits.
#include <troupe/runtime.hpp>

#define BOOST_TEST_MODULE faults
#include <boost/test/unit_test.hpp>

#include "child.hpp"
#include "fixture.hpp"
#include "io_fixture.hpp"

#include <troupe/actor.hpp>
#include <troupe/fs.hpp>
#include <troupe/net.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

using namespace troupe;
using namespace troupe_test;
using namespace std::chrono_literals;

namespace {

// The child's verdict: a line on stderr and an exit status.
[[noreturn]] void fail_child(const std::string& why) {
  std::fprintf(stderr, "FAILED: %s\n", why.c_str());
  std::fflush(stderr);
  std::_Exit(2);
}

void expect(bool ok, const std::string& why) {
  if (!ok) fail_child(why);
}

[[noreturn]] void pass_child() {
#if defined(__SANITIZE_ADDRESS__)
  if (__lsan_do_recoverable_leak_check() != 0) fail_child("LeakSanitizer found leaks");
#endif
  std::_Exit(0);
}

void check_child(const child_result& r) {
  BOOST_TEST_INFO("child stderr: " << r.output);
  BOOST_TEST(r.finished, "the child hung");
  BOOST_TEST_INFO("child stderr: " << r.output);
  BOOST_TEST((WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0));
}

struct tally {
  std::atomic<long> ok{0};
  std::atomic<long> bad{0};
  std::atomic<long> received{0};  // messages, or bytes of a stream
  std::atomic<bool> stream_ended{false};
  long done() const { return ok.load() + bad.load(); }
};

// A small page-cached file: reads of it complete while they are submitted.
class cached_file {
 public:
  cached_file() : path_(std::filesystem::temp_directory_path() / ("troupe-faults-" + std::to_string(::getpid()))) {
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    std::fputs("sixteen bytes!!!", f);
    std::fclose(f);
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  }
  ~cached_file() {
    ::close(fd_);
    std::filesystem::remove(path_);
  }
  int fd() const { return fd_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

// Issues `n` reads in one handler: far more completions than a small CQ
// holds arrive before the shard reaps any of them.
class burst_reader : public actor<burst_reader> {
  std::shared_ptr<tally> t_;
  fs::file f_;

 public:
  burst_reader(std::shared_ptr<tally> t, int fd) : t_(std::move(t)), f_(::dup(fd)) {}
  void on(int n) {
    for (int i = 0; i < n; ++i)
      submit(fs::read(f_, 0, 16)).then([t = t_](io::result<io::bytes> r) {
        (r && r->size() == 16 ? t->ok : t->bad).fetch_add(1);
      });
  }
};

// Counts what it is sent.
class sink : public actor<sink> {
  std::shared_ptr<tally> t_;

 public:
  explicit sink(std::shared_ptr<tally> t) : t_(std::move(t)) {}
  void on(long) { t_->received.fetch_add(1); }
};

// Sends `n` messages to a sink on another shard: doorbells on every turn.
class source : public actor<source> {
  ref<sink> to_;

 public:
  explicit source(ref<sink> to) : to_(std::move(to)) {}
  void on(long n) {
    for (long i = 0; i < n; ++i) to_.send(i);
  }
};

// Reads a stream with one multishot recv, counting its bytes.
class stream_reader : public actor<stream_reader> {
  std::shared_ptr<tally> t_;
  std::shared_ptr<net::socket> s_;

 public:
  stream_reader(std::shared_ptr<tally> t, std::shared_ptr<net::socket> s) : t_(std::move(t)), s_(std::move(s)) {}
  void on_start() { arm(); }
  // As net::recv_multishot says: the kernel may end the recv (ENOBUFS, or a
  // result with `more` false when the CQ was full), and then it is re-armed.
  void arm() {
    submit(net::recv_multishot{*s_}).then([this](io::result<net::buffer> r, bool more) {
      if (r && r->empty()) return t_->stream_ended.store(true);
      if (r) t_->received.fetch_add(static_cast<long>(r->size()));
      else if (r.error() != std::errc::no_buffer_space) return t_->stream_ended.store(true);
      if (!more) arm();
    });
  }
};

// Writes `bytes` in 4 KiB chunks from a thread of its own.
std::thread write_stream(int fd, long bytes) {
  return std::thread([fd, bytes] {
    std::string chunk(4096, 'x');
    for (long left = bytes; left > 0;) {
      ssize_t n = ::send(fd, chunk.data(), std::size_t(std::min<long>(left, 4096)), MSG_NOSIGNAL);
      if (n <= 0) return;
      left -= n;
    }
  });
}

}  // namespace

// Submits that take nothing, and a CQ too small for the completions of one
// handler: with -EBUSY the kernel wants the CQ read first, and the shard is
// in the middle of a handler. Every read, message and byte still arrives.
BOOST_AUTO_TEST_CASE(short_submits_and_a_full_cq_lose_nothing) {
  auto r = run_in_child([] {
    cached_file file;
    auto reads = std::make_shared<tally>();
    auto msgs = std::make_shared<tally>();
    auto bytes = std::make_shared<tally>();
    auto pair = net::socket_pair(SOCK_STREAM);
    expect(pair.has_value(), "socket_pair");
    auto a = std::make_shared<net::socket>(std::move(pair->first));
    net::socket b = std::move(pair->second);
    config c = test_config(2);
    c.sq_entries = 16;
    c.cq_entries = 16;
    c.recv_buffers.count = 64;
    c.recv_buffers.size = 4096;
    c.fault_injection.short_submit_every_kth = 3;
    constexpr long stream = 1 << 20;
    runtime_stats st;
    {
      runtime rt{c};
      auto s = rt.spawn<sink>(pinned{1}, msgs);
      rt.spawn<source>(pinned{0}, s).send(2000L);
      rt.spawn<stream_reader>(pinned{0}, bytes, a);
      std::thread writer = write_stream(b.fd(), stream);
      for (shard_id sh : {0u, 1u}) rt.spawn<burst_reader>(pinned{sh}, reads, file.fd()).send(400);
      bool all = eventually([&] {
        return reads->done() == 800 && msgs->received.load() == 2000 && bytes->received.load() == stream;
      }, 30s);
      expect(all, "reads " + std::to_string(reads->done()) + "/800, messages " +
                      std::to_string(msgs->received.load()) + "/2000, bytes " +
                      std::to_string(bytes->received.load()) + "/" + std::to_string(stream));
      writer.join();
      rt.stop();
      st = rt.stats();
    }
    expect(reads->ok.load() == 800, "a read failed");
    expect(st.sent() == st.processed() + st.dead_letters(), "sent != processed + dead letters");
    expect(st.envelopes_live() == 0, "envelopes not returned");
    std::uint64_t abandoned = 0;
    for (auto& sh : st.shards) abandoned += sh.io_abandoned;
    expect(abandoned == 0, "an operation was abandoned");
    pass_child();
  }, 60s);
  check_child(r);
}

// Completions that never come: their continuations do not run, and stop()
// does not wait for them for ever. It cancels what is left after the grace,
// gives up on the rest after a second one, logs each and frees its record;
// a multishot recv with results still queued goes down the same way.
BOOST_AUTO_TEST_CASE(lost_completions_are_given_up_at_stop_after_the_grace) {
  auto r = run_in_child([] {
    cached_file file;
    auto reads = std::make_shared<tally>();
    auto bytes = std::make_shared<tally>();
    auto pair = net::socket_pair(SOCK_STREAM);
    expect(pair.has_value(), "socket_pair");
    auto a = std::make_shared<net::socket>(std::move(pair->first));
    net::socket b = std::move(pair->second);
    config c = test_config(2);
    c.recv_buffers.count = 64;
    c.recv_buffers.size = 4096;
    c.fault_injection.lose_every_kth_completion = 5;
    c.shutdown_grace = 200ms;
    runtime_stats st;
    std::chrono::steady_clock::duration stopping{};
    {
      runtime rt{c};
      rt.spawn<stream_reader>(pinned{1}, bytes, a);
      std::thread writer = write_stream(b.fd(), 256 * 1024);
      for (shard_id sh : {0u, 1u}) rt.spawn<burst_reader>(pinned{sh}, reads, file.fd()).send(100);
      // A fifth of the last completions are "lost": at most 40 reads stay
      // unanswered, and no more come once the rest is in.
      expect(eventually([&] { return reads->done() >= 160; }, 30s),
             "only " + std::to_string(reads->done()) + " of 200 reads answered");
      writer.join();
      auto t0 = std::chrono::steady_clock::now();
      rt.stop();
      stopping = std::chrono::steady_clock::now() - t0;
      st = rt.stats();
    }
    expect(reads->bad.load() == 0, "a read failed");
    std::uint64_t abandoned = 0;
    for (auto& sh : st.shards) abandoned += sh.io_abandoned;
    expect(abandoned >= std::uint64_t(200 - reads->done()),
           "abandoned " + std::to_string(abandoned) + " with " + std::to_string(200 - reads->done()) +
               " reads unanswered");
    // Two graces and the synchronous cancel, with room for a slow machine.
    expect(stopping < 10s, "stop took " +
                               std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(stopping).count()) +
                               " ms");
    expect(st.sent() == st.processed() + st.dead_letters(), "sent != processed + dead letters");
    expect(st.envelopes_live() == 0, "envelopes not returned");
    pass_child();
  }, 60s);
  check_child(r);
}
