// actors/file_service: serves reads, writes and metadata to other actors
// (answers arrive when the I/O completes, and the service keeps taking
// requests meanwhile), caches descriptors within its limit, confines paths
// beneath its root, and stops without hanging an asker or leaking a
// descriptor.
#include <actors/file_service.hpp>

#define BOOST_TEST_MODULE file_service
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"
#include "io_fixture.hpp"

#include <troupe/runtime.hpp>

#include <unistd.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

using namespace troupe;
using namespace troupe_test;
using troupe::actors::file_service;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

template <class T>
int errno_of(const result<T>& r) {
  return r ? 0 : r.error().value();
}

// Writes `blocks` blocks of 512 bytes into each of `files` files through
// the service, all at once, then reads every block back and checks it.
struct exercise {
  std::string dir;
  int files;
  int blocks;
};

struct tally {
  std::atomic<int> written{0}, verified{0}, bad{0};
};

class client : public actor<client> {
  ref<file_service> files_;
  std::shared_ptr<tally> t_;

 public:
  client(ref<file_service> f, std::shared_ptr<tally> t) : files_(std::move(f)), t_(std::move(t)) {}

  static std::string block(int file, int n) {
    std::string s(512, char('a' + (file + n) % 26));
    std::string tag = std::to_string(file) + ":" + std::to_string(n);
    s.replace(0, tag.size(), tag);
    return s;
  }

  void on(const exercise& e) {
    const int total = e.files * e.blocks;
    for (int f = 0; f < e.files; ++f)
      for (int b = 0; b < e.blocks; ++b) {
        std::string path = e.dir + "/f" + std::to_string(f);
        ask(files_, file_service::write{path, std::uint64_t(b) * 512, bytes_of(block(f, b))})
            .then([this, e, total](result<std::size_t> n) {
              if (!n || *n != 512) t_->bad++;
              if (++t_->written == total) read_back(e);
            });
      }
  }

  void read_back(const exercise& e) {
    for (int f = 0; f < e.files; ++f)
      for (int b = 0; b < e.blocks; ++b) {
        std::string path = e.dir + "/f" + std::to_string(f);
        ask(files_, file_service::read{path, std::uint64_t(b) * 512, 512}).then([this, f, b](result<io::bytes> r) {
          if (!r || string_of(*r) != block(f, b)) t_->bad++;
          t_->verified++;
        });
      }
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(serves_concurrent_writes_and_reads_from_another_shard) {
  scratch tmp;
  runtime rt{test_config(2)};
  auto files = rt.spawn<file_service>(pinned{0});
  auto t = std::make_shared<tally>();
  auto c = rt.spawn<client>(pinned{1}, files, t);
  c.send(exercise{tmp.dir.string(), 10, 40});
  BOOST_REQUIRE(eventually([&] { return t->verified.load() == 400; }));
  BOOST_TEST(t->bad.load() == 0);
  auto m = rt.ask(files, file_service::stat{tmp / "f3"}).get();
  BOOST_TEST(m.size == 40u * 512);
  BOOST_TEST(m.is_regular());
  auto n = rt.ask(files, file_service::query_counters{}).get();
  BOOST_TEST(n.writes == 400u);
  BOOST_TEST(n.reads == 400u);
  BOOST_TEST(n.opens == 20u);  // one write-only and one read-only descriptor per file
  BOOST_TEST(n.cache_hits + n.opens <= 800u);
  BOOST_TEST(n.errors == 0u);
  BOOST_TEST(rt.ask(files, file_service::sync{tmp / "f3"}).wait().has_value());
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(keeps_at_most_max_open_descriptors_and_closes_them_at_stop) {
  scratch tmp;
  for (int i = 0; i < 6; ++i) std::ofstream(tmp / std::to_string(i)) << "file " << i;
  const int before = open_fds();
  {
    runtime rt{test_config(2)};
    file_service::options o;
    o.max_open = 2;
    auto files = rt.spawn<file_service>(pinned{1}, o);
    for (int round = 0; round < 5; ++round)
      for (int i = 0; i < 6; ++i) {
        auto r = rt.ask(files, file_service::read{tmp / std::to_string(i), 0, 100}).get();
        BOOST_TEST(string_of(r) == "file " + std::to_string(i));
      }
    auto n = rt.ask(files, file_service::query_counters{}).get();
    BOOST_TEST(n.open_now <= 2u);
    BOOST_TEST(n.evictions == n.opens - n.open_now);
    BOOST_TEST(n.opens == 30u);  // round robin over 6 with room for 2: every read opens
    // The same file again: served from the cache.
    for (int k = 0; k < 3; ++k) (void)rt.ask(files, file_service::read{tmp / "0", 0, 1}).get();
    BOOST_TEST(rt.ask(files, file_service::query_counters{}).get().cache_hits >= 2u);
    rt.stop();
    check_quiescent(rt.stats());
  }
  BOOST_TEST(open_fds() == before);
}

BOOST_AUTO_TEST_CASE(answers_errors_as_values) {
  scratch tmp;
  std::ofstream(tmp / "small") << "tiny";
  runtime rt{test_config(2)};
  file_service::options o;
  o.max_read = 1024;
  auto files = rt.spawn<file_service>(pinned{0}, o);
  BOOST_TEST(errno_of(rt.ask(files, file_service::read{tmp / "missing", 0, 10}).wait()) == ENOENT);
  BOOST_TEST(errno_of(rt.ask(files, file_service::read{tmp / "small", 0, 4096}).wait()) == EINVAL);
  BOOST_TEST(errno_of(rt.ask(files, file_service::stat{tmp / "missing"}).wait()) == ENOENT);
  BOOST_TEST(errno_of(rt.ask(files, file_service::write{tmp / "no/dir/x", 0, bytes_of("x")}).wait()) == ENOENT);
  BOOST_TEST(errno_of(rt.ask(files, file_service::read{tmp.dir.string(), 0, 10}).wait()) == EISDIR);
  // Past the end: an empty buffer, not an error.
  auto past = rt.ask(files, file_service::read{tmp / "small", 100, 10}).get();
  BOOST_TEST(past.empty());
  BOOST_TEST(rt.ask(files, file_service::query_counters{}).get().errors == 5u);
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(confines_every_path_beneath_its_root) {
  scratch tmp;
  stdfs::create_directories(tmp / "root/sub");
  std::ofstream(tmp / "root/sub/in") << "inside";
  std::ofstream(tmp / "outside") << "secret";
  stdfs::create_symlink(tmp / "outside", tmp / "root/escape");
  stdfs::create_symlink("sub/in", tmp / "root/alias");
  runtime rt{test_config(1)};
  file_service::options o;
  o.root = tmp / "root";
  auto files = rt.spawn<file_service>(pinned{0}, o);
  BOOST_TEST(string_of(rt.ask(files, file_service::read{"sub/in", 0, 100}).get()) == "inside");
  BOOST_TEST(string_of(rt.ask(files, file_service::read{"alias", 0, 100}).get()) == "inside");
  BOOST_TEST(rt.ask(files, file_service::stat{"sub/in"}).get().size == 6u);
  BOOST_TEST(string_of(rt.ask(files, file_service::read_all{"sub/in"}).get()) == "inside");
  for (const std::string& bad : std::vector<std::string>{"../outside", tmp / "outside", "escape", "sub/../../outside"}) {
    BOOST_TEST_CONTEXT(bad) {
      BOOST_TEST(errno_of(rt.ask(files, file_service::read{bad, 0, 100}).wait()) == EXDEV);
      BOOST_TEST(errno_of(rt.ask(files, file_service::stat{bad}).wait()) == EXDEV);
      BOOST_TEST(errno_of(rt.ask(files, file_service::read_all{bad}).wait()) == EXDEV);
      BOOST_TEST(errno_of(rt.ask(files, file_service::write{bad, 0, bytes_of("x")}).wait()) == EXDEV);
    }
  }
  BOOST_TEST(errno_of(rt.ask(files, file_service::replace{"../outside", bytes_of("x")}).wait()) == EXDEV);
  BOOST_TEST(slurp(tmp / "outside") == "secret");
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(replace_is_atomic_and_later_reads_see_the_new_file) {
  scratch tmp;
  std::ofstream(tmp / "conf") << "version 1";
  runtime rt{test_config(2)};
  auto files = rt.spawn<file_service>(pinned{0});
  BOOST_TEST(string_of(rt.ask(files, file_service::read{tmp / "conf", 0, 100}).get()) == "version 1");
  BOOST_TEST(rt.ask(files, file_service::replace{tmp / "conf", bytes_of("version 2")}).wait().has_value());
  // The cached descriptor pointed at the old file; the service forgot it.
  BOOST_TEST(string_of(rt.ask(files, file_service::read{tmp / "conf", 0, 100}).get()) == "version 2");
  BOOST_TEST(string_of(rt.ask(files, file_service::read_all{tmp / "conf"}).get()) == "version 2");
  // Renamed behind its back: forget, then the new file is read.
  std::ofstream(tmp / "conf.new") << "version 3";
  stdfs::rename(tmp / "conf.new", tmp / "conf");
  BOOST_TEST(string_of(rt.ask(files, file_service::read{tmp / "conf", 0, 100}).get()) == "version 2");
  BOOST_TEST(rt.ask(files, file_service::forget{tmp / "conf"}).wait().has_value());
  BOOST_TEST(string_of(rt.ask(files, file_service::read{tmp / "conf", 0, 100}).get()) == "version 3");
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(a_root_that_cannot_be_opened_fails_the_service_at_start) {
  runtime rt{test_config(1)};
  file_service::options o;
  o.root = "/nonexistent/troupe-root";
  auto files = rt.spawn<file_service>(pinned{0}, o);
  auto r = rt.ask(files, file_service::stat{"x"}).wait();
  BOOST_TEST(!r.has_value());
  BOOST_TEST((r.error() == errc::actor_stopped));
  rt.stop();
}

BOOST_AUTO_TEST_CASE(stopping_with_requests_in_flight_answers_every_asker_and_leaks_nothing) {
  scratch tmp;
  {
    std::ofstream big(tmp / "big", std::ios::binary);
    std::string chunk(1 << 20, 'x');
    for (int i = 0; i < 16; ++i) big << chunk;
  }
  const int before = open_fds();
  for (int round = 0; round < 10; ++round) {
    runtime rt{test_config(2)};
    auto files = rt.spawn<file_service>(pinned{0});
    auto t = std::make_shared<tally>();
    std::vector<blocking_reply<io::bytes>> pending;
    for (int i = 0; i < 32; ++i)
      pending.push_back(rt.ask(files, file_service::read{tmp / "big", std::uint64_t(i) << 19, 1 << 19}));
    rt.stop();
    for (auto& p : pending) {
      auto r = p.wait();  // a value, or actor_stopped / runtime_stopped: never a hang
      BOOST_TEST((r.has_value() || r.error() == errc::actor_stopped || r.error() == errc::runtime_stopped));
    }
    check_quiescent(rt.stats());
  }
  BOOST_TEST(open_fds() == before);
}
