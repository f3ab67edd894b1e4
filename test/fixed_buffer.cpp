// Registered buffers: taken on a shard up to the configured count, read and
// written through READ_FIXED/WRITE_FIXED, given back from any thread (also
// after the runtime is gone), usable as plain memory on another shard, and
// page aligned for O_DIRECT.
#include <troupe/fixed_buffer.hpp>

#define BOOST_TEST_MODULE fixed_buffer
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"
#include "io_fixture.hpp"

#include <troupe/fs.hpp>
#include <troupe/runtime.hpp>

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

using namespace troupe;
using namespace troupe_test;

namespace {

config with_buffers(shard_id shards, unsigned count, std::size_t size) {
  config c = test_config(shards);
  c.fixed_buffers.count = count;
  c.fixed_buffers.size = size;
  return c;
}

void fill(io::fixed_buffer& b, const std::string& s) {
  std::memcpy(b.data(), s.data(), s.size());
  b.resize(s.size());
}

std::string text(const io::fixed_buffer& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// Hands a buffer to another actor, in a message.
struct parcel {
  std::shared_ptr<io::fixed_buffer> buffer;
  std::string path;
  std::shared_ptr<std::promise<std::string>> done;
};

class borrower : public actor<borrower> {
 public:
  // On another shard than the buffer's: a plain read into the same memory.
  void on(const parcel& p) {
    bool here = p.buffer->registered_here();
    auto f = std::make_shared<fs::file>(::open(p.path.c_str(), O_RDONLY | O_CLOEXEC));
    submit(fs::read_fixed(*f, 0, std::move(*p.buffer), 64)).then([f, here, done = p.done](io::result<io::fixed_buffer> b) {
      std::string seen = std::string(here ? "registered" : "plain") + " " + (b ? text(*b) : b.error().message());
      if (b) b->reset();  // back home before the test looks for it
      done->set_value(seen);
    });
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(buffers_are_taken_up_to_the_count_and_come_back_when_dropped) {
  auto done = std::make_shared<std::promise<std::string>>();
  auto verdict = done->get_future();
  runtime rt{with_buffers(1, 4, 5000)};
  auto w = rt.spawn<worker>(pinned{0});
  w.send(job{[done](worker& self) {
    std::vector<io::fixed_buffer> held;
    for (int i = 0; i < 5; ++i) held.push_back(self.take_fixed_buffer());
    std::string seen;
    for (auto& b : held) seen += b ? "b" : "-";
    auto page = std::uintptr_t(::sysconf(_SC_PAGESIZE));
    seen += held[0].capacity() == 2 * page ? " rounded" : " not rounded";
    seen += std::uintptr_t(held[1].data()) % page == 0 ? " aligned" : " unaligned";
    seen += held[0].registered_here() ? " registered" : " unregistered";
    held.clear();  // all back
    seen += " ";
    std::vector<io::fixed_buffer> again;
    for (int i = 0; i < 4; ++i) again.push_back(self.take_fixed_buffer());
    for (auto& b : again) seen += b ? "B" : "-";
    done->set_value(seen);
  }});
  BOOST_TEST(await(verdict) == "bbbb- rounded aligned registered BBBB");
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(write_fixed_then_read_fixed_round_trip) {
  scratch tmp;
  const std::string path = tmp / "f";
  auto done = std::make_shared<std::promise<std::string>>();
  auto verdict = done->get_future();
  runtime rt{with_buffers(2, 8, 4096)};
  auto w = rt.spawn<worker>(pinned{1});
  w.send(job{[&, done](worker& self) {
    self.submit(fs::open{path, O_RDWR | O_CREAT, 0600}).then([&self, done](io::result<fs::file> f) {
      auto file = std::make_shared<fs::file>(std::move(*f));
      io::fixed_buffer out = self.take_fixed_buffer();
      fill(out, "registered bytes");
      self.submit(fs::write_fixed(*file, 100, std::move(out))).then([&self, done, file](io::result<fs::written_fixed> wr) {
        if (!wr || wr->bytes != 16) return done->set_value("write");
        // The same buffer again, for the read.
        io::fixed_buffer in = std::move(wr->buffer);
        self.submit(fs::read_fixed(*file, 96, std::move(in), 4096)).then([done, file](io::result<io::fixed_buffer> r) {
          if (!r) return done->set_value("read: " + r.error().message());
          done->set_value(std::to_string(r->size()) + " " + text(*r).substr(4));
        });
      });
    });
  }});
  BOOST_TEST(await(verdict) == "20 registered bytes");
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(a_buffer_used_on_another_shard_reads_as_plain_memory_and_returns_home) {
  scratch tmp;
  std::ofstream(tmp / "f") << "across shards";
  auto done = std::make_shared<std::promise<std::string>>();
  auto verdict = done->get_future();
  auto taken = std::make_shared<std::promise<std::shared_ptr<io::fixed_buffer>>>();
  auto got = taken->get_future();
  runtime rt{with_buffers(2, 1, 4096)};
  auto home = rt.spawn<worker>(pinned{0});
  auto away = rt.spawn<borrower>(pinned{1});
  home.send(job{[taken](worker& self) { taken->set_value(std::make_shared<io::fixed_buffer>(self.take_fixed_buffer())); }});
  auto buffer = await(got);
  BOOST_REQUIRE(bool(*buffer));
  away.send(parcel{buffer, tmp / "f", done});
  BOOST_TEST(await(verdict) == "plain across shards");
  // The borrower dropped it on shard 1: shard 0 has its only buffer again.
  auto back = std::make_shared<std::promise<bool>>();
  auto is_back = back->get_future();
  home.send(job{[back](worker& self) { back->set_value(bool(self.take_fixed_buffer())); }});
  BOOST_TEST(await(is_back));
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(a_buffer_may_outlive_its_runtime_and_none_are_handed_out_unconfigured) {
  io::fixed_buffer kept;
  {
    runtime rt{with_buffers(1, 2, 4096)};
    auto taken = std::make_shared<std::promise<io::fixed_buffer>>();
    auto got = taken->get_future();
    auto w = rt.spawn<worker>(pinned{0});
    w.send(job{[taken](worker& self) { taken->set_value(self.take_fixed_buffer()); }});
    kept = await(got);
    rt.stop();
  }
  BOOST_REQUIRE(bool(kept));
  std::memset(kept.data(), 0xab, kept.capacity());  // still mapped
  kept.reset();                                     // the last reference unmaps it

  runtime rt{test_config(1)};
  auto none = std::make_shared<std::promise<bool>>();
  auto got = none->get_future();
  auto w = rt.spawn<worker>(pinned{0});
  w.send(job{[none](worker& self) { none->set_value(bool(self.take_fixed_buffer())); }});
  BOOST_TEST(!await(got));
  rt.stop();
}

namespace {

// Writes two 4 KiB blocks ("direct" first) into `dir` and opens them with
// O_DIRECT; -1 (and no file left) where the file system does not take it.
int open_direct_in(const char* dir, std::string& path) {
  path = std::string(dir) + "/troupe-direct-" + std::to_string(::getpid());
  {
    std::ofstream out(path, std::ios::binary);
    std::string block(4096, 'd');
    block.replace(0, 6, "direct");
    out << block << block;
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) ::unlink(path.c_str());
  return fd;
}

// O_DIRECT needs a file system that has it (tmpfs does not): the build
// directory's, else /var/tmp's. Null where neither does.
const char* direct_dir() {
  for (const char* dir : {".", "/var/tmp"}) {
    std::string path;
    int fd = open_direct_in(dir, path);
    if (fd < 0) continue;
    ::close(fd);
    ::unlink(path.c_str());
    return dir;
  }
  return nullptr;
}

bool have_o_direct() { return direct_dir() != nullptr; }

}  // namespace

BOOST_AUTO_TEST_CASE(fixed_buffers_serve_o_direct_reads,
                     *boost::unit_test::precondition(needs{&have_o_direct, "no file system here takes O_DIRECT"})) {
  std::string path;
  int fd = open_direct_in(direct_dir(), path);
  BOOST_REQUIRE(fd >= 0);
  ::fsync(fd);
  auto done = std::make_shared<std::promise<std::string>>();
  auto verdict = done->get_future();
  runtime rt{with_buffers(1, 2, 8192)};
  auto w = rt.spawn<worker>(pinned{0});
  auto file = std::make_shared<fs::file>(fd);
  w.send(job{[done, file](worker& self) {
    self.submit(fs::read_fixed(*file, 4096, self.take_fixed_buffer(), 8192)).then([done, file](io::result<io::fixed_buffer> r) {
      done->set_value(r ? std::to_string(r->size()) + " " + text(*r).substr(0, 6) : r.error().message());
    });
  }});
  BOOST_TEST(await(verdict) == "4096 direct");
  rt.stop();
  ::unlink(path.c_str());
  check_quiescent(rt.stats());
}

// ---------------------------------------------------------------------------
// Buffers that cannot be had

namespace {
int threads_now() {
  int n = 0;
  for (auto& e : stdfs::directory_iterator("/proc/self/task")) (void)e, ++n;
  return n;
}

/// The runtime constructor's troupe::error for `cfg`, or "" if it started.
std::string start_error(const config& cfg) {
  try {
    runtime rt{cfg};
    rt.stop();
  } catch (const troupe::error& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return true;
  BOOST_TEST_MESSAGE("'" << part << "' not in: " << text);
  return false;
}
}  // namespace

BOOST_AUTO_TEST_CASE(buffers_that_cannot_be_mapped_fail_the_constructor_and_no_shard_is_left_running) {
  const int threads = threads_now();
  const int fds = open_fds();
  // 2 x 64 TiB: more than the 47-bit user address space.
  std::string e = start_error(with_buffers(2, 2, std::size_t(1) << 46));
  BOOST_TEST_MESSAGE("the constructor said: " << e);
  BOOST_TEST(has(e, "config::fixed_buffers"));
  BOOST_TEST(has(e, "2 buffers of 70368744177664 bytes"));
  BOOST_TEST(has(e, std::strerror(ENOMEM)));
  // A count so large that count x size does not even fit in size_t.
  e = start_error(with_buffers(1, 1u << 31, std::size_t(1) << 40));
  BOOST_TEST(has(e, "2147483648 buffers of 1099511627776 bytes"));
  BOOST_TEST(has(e, "does not fit in the address space"));
  // The shards that had started were stopped and joined, their rings closed.
  BOOST_TEST(eventually([&] { return threads_now() == threads; }, 5000ms));
  BOOST_TEST(open_fds() == fds);
  // And the process can still start a runtime with buffers it can have.
  runtime rt{with_buffers(2, 2, 4096)};
  rt.stop();
}

namespace {
/// Lowers RLIMIT_MEMLOCK and, for a root test run, drops CAP_IPC_LOCK from
/// this thread's effective set (threads it starts inherit that), so that
/// io_uring accounts registered memory against the limit; both come back at
/// the end of the scope.
struct memlock_limited {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct saved[2]{};
  rlimit old{};
  bool caps_lowered = false;
  bool ok = false;

  explicit memlock_limited(rlim_t bytes) {
    if (::syscall(SYS_capget, &header, saved) != 0) return;
    __user_cap_data_struct lowered[2] = {saved[0], saved[1]};
    lowered[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
    if (::syscall(SYS_capset, &header, lowered) != 0) return;
    caps_lowered = true;
    if (::getrlimit(RLIMIT_MEMLOCK, &old) != 0) return;
    rlimit low{bytes, old.rlim_max};
    ok = ::setrlimit(RLIMIT_MEMLOCK, &low) == 0;
  }
  ~memlock_limited() {
    if (ok) ::setrlimit(RLIMIT_MEMLOCK, &old);
    if (caps_lowered) ::syscall(SYS_capset, &header, saved);
  }
};
}  // namespace

// Registration over RLIMIT_MEMLOCK is not fatal (config.hpp, doc/io.md):
// the shard logs what to raise, and the buffers work as plain memory.
namespace {
bool can_limit_memlock() { return memlock_limited(64 * 1024).ok; }
}  // namespace

BOOST_AUTO_TEST_CASE(buffers_over_the_memlock_limit_are_not_registered_and_work_as_plain_memory,
                     *boost::unit_test::precondition(
                         needs{&can_limit_memlock, "cannot lower CAP_IPC_LOCK / RLIMIT_MEMLOCK here"})) {
  memlock_limited limit(64 * 1024);
  BOOST_REQUIRE(limit.ok);
  auto done = std::make_shared<std::promise<std::string>>();
  auto verdict = done->get_future();
  runtime rt{with_buffers(1, 8, 64 * 1024)};  // 512 KiB against a 64 KiB limit
  auto w = rt.spawn<worker>(pinned{0});
  w.send(job{[done](worker& self) {
    io::fixed_buffer b = self.take_fixed_buffer();
    if (b) fill(b, "plain");
    done->set_value(!b ? "none" : std::string(b.registered_here() ? "registered " : "unregistered ") + text(b));
  }});
  BOOST_TEST(await(verdict) == "unregistered plain");
  rt.stop();
  check_quiescent(rt.stats());
}
