// File operations as messages: each operation's success and errors, short
// reads, offsets past 2 GiB, many operations in flight with a small CQ,
// and cancellation when the actor stops (no completion, no descriptor left).
#include <troupe/runtime.hpp>

#define BOOST_TEST_MODULE fs
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"
#include "io_fixture.hpp"

#include <troupe/actor.hpp>
#include <troupe/fs.hpp>

#include <dirent.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

using namespace troupe;
using namespace troupe_test;
using namespace std::chrono_literals;
namespace stdfs = std::filesystem;

namespace {

int err(const std::error_code& ec) { return ec.value(); }

}  // namespace

BOOST_AUTO_TEST_CASE(write_fsync_stat_read_close_round_trip) {
  scratch tmp;
  const std::string path = tmp / "a.txt";
  auto done = std::make_shared<std::promise<std::string>>();
  auto verdict = done->get_future();
  runtime rt{test_config(2)};
  auto w = rt.spawn<worker>(pinned{1});
  w.send(job{[&, done](worker& self) {
    self.submit(fs::open{path, O_RDWR | O_CREAT | O_TRUNC, 0644}).then([&self, done](io::result<fs::file> f) {
      if (!f) return done->set_value("open: " + f.error().message());
      auto file = std::make_shared<fs::file>(std::move(*f));
      self.submit(fs::write(*file, 0, bytes_of("hello, ring"))).then([&self, done, file](io::result<fs::written> w) {
        if (!w || w->bytes != 11 || w->buffer.size() != 11) return done->set_value("write");
        self.submit(fs::fsync(*file)).then([&self, done, file](io::result<void> s) {
          if (!s) return done->set_value("fsync: " + s.error().message());
          self.submit(fs::stat::of(*file)).then([&self, done, file](io::result<fs::metadata> m) {
            if (!m || m->size != 11 || !m->is_regular()) return done->set_value("stat");
            self.submit(fs::read(*file, 7, 100)).then([&self, done, file](io::result<io::bytes> r) {
              if (!r) return done->set_value("read: " + r.error().message());
              std::string got = string_of(*r);  // short read at EOF: 4 of 100
              self.submit(fs::close{std::move(*file)}).then([done, got](io::result<void> c) {
                done->set_value(c ? got : "close: " + c.error().message());
              });
            });
          });
        });
      });
    });
  }});
  BOOST_TEST(await(verdict) == "ring");
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(errors_are_values) {
  scratch tmp;
  const std::string file = tmp / "f", dir = tmp / "d";
  { std::FILE* f = std::fopen(file.c_str(), "w"); std::fclose(f); }
  stdfs::create_directory(dir);
  auto done = std::make_shared<std::promise<std::vector<int>>>();
  auto verdict = done->get_future();
  runtime rt{test_config(1)};
  auto w = rt.spawn<worker>(pinned{0});
  w.send(job{[&, done](worker& self) {
    auto codes = std::make_shared<std::vector<int>>();
    auto note = [codes, done](int code) {
      codes->push_back(code);
      if (codes->size() == 7) done->set_value(*codes);
    };
    self.submit(fs::open{tmp / "missing"}).then([note](io::result<fs::file> r) { note(err(r.error())); });
    self.submit(fs::mkdir{dir}).then([note](io::result<void> r) { note(err(r.error())); });
    self.submit(fs::unlink{dir}).then([note](io::result<void> r) { note(err(r.error())); });
    self.submit(fs::stat{file + "/below"}).then([note](io::result<fs::metadata> r) { note(err(r.error())); });
    self.submit(fs::rename{tmp / "missing", tmp / "other"}).then([note](io::result<void> r) { note(err(r.error())); });
    self.submit(fs::read(fs::file{}, 0, 16)).then([note](io::result<io::bytes> r) { note(err(r.error())); });
    self.submit(fs::open{dir, O_WRONLY}).then([note](io::result<fs::file> r) { note(err(r.error())); });
  }});
  auto codes = await(verdict);
  std::sort(codes.begin(), codes.end());
  std::vector<int> want{ENOENT, EEXIST, EISDIR, ENOTDIR, ENOENT, EBADF, EISDIR};
  std::sort(want.begin(), want.end());
  BOOST_TEST(codes == want, boost::test_tools::per_element());
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(offsets_past_two_gib_in_a_sparse_file) {
  scratch tmp;
  const std::string path = tmp / "sparse";
  const std::uint64_t far = 3ull << 30;  // 3 GiB
  auto done = std::make_shared<std::promise<std::string>>();
  auto verdict = done->get_future();
  runtime rt{test_config(1)};
  auto w = rt.spawn<worker>(pinned{0});
  w.send(job{[&, done](worker& self) {
    self.submit(fs::open{path, O_RDWR | O_CREAT, 0600}).then([&self, done, far](io::result<fs::file> f) {
      if (!f) return done->set_value("open");
      auto file = std::make_shared<fs::file>(std::move(*f));
      self.submit(fs::write(*file, far, bytes_of("far away"))).then([&self, done, file, far](io::result<fs::written> w) {
        if (!w || w->bytes != 8) return done->set_value("write");
        self.submit(fs::read(*file, far + 4, 64)).then([&self, done, file, far](io::result<io::bytes> r) {
          if (!r) return done->set_value("read");
          std::string tail = string_of(*r);
          self.submit(fs::read(*file, far + 100, 64)).then([done, file, tail](io::result<io::bytes> past) {
            done->set_value(past && past->empty() ? tail : "past EOF");
          });
        });
      });
    });
  }});
  BOOST_TEST(await(verdict) == "away");
  BOOST_TEST(stdfs::file_size(path) == far + 8);
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(vectored_io_fallocate_ftruncate_and_links) {
  scratch tmp;
  const std::string path = tmp / "v", sym = tmp / "sym", hard = tmp / "hard";
  auto done = std::make_shared<std::promise<std::string>>();
  auto verdict = done->get_future();
  runtime rt{test_config(1)};
  auto w = rt.spawn<worker>(pinned{0});
  w.send(job{[&, done](worker& self) {
    self.submit(fs::open{path, O_RDWR | O_CREAT, 0600}).then([&, done](io::result<fs::file> f) {
      if (!f) return done->set_value("open");
      auto file = std::make_shared<fs::file>(std::move(*f));
      std::vector<io::bytes> parts{bytes_of("ab"), bytes_of("cde"), bytes_of("fghij")};
      self.submit(fs::writev(*file, 0, std::move(parts))).then([&, done, file](io::result<fs::writev::output> wv) {
        if (!wv || wv->bytes != 10 || wv->buffers.size() != 3) return done->set_value("writev");
        std::vector<io::bytes> into{io::bytes(4), io::bytes(100)};
        self.submit(fs::readv(*file, 0, std::move(into))).then([&, done, file](io::result<std::vector<io::bytes>> rv) {
          if (!rv || string_of((*rv)[0]) != "abcd" || string_of((*rv)[1]) != "efghij") return done->set_value("readv");
          self.submit(fs::fallocate(*file, 0, 4096)).then([&, done, file](io::result<void> fa) {
            if (!fa) return done->set_value("fallocate: " + fa.error().message());
            self.submit(fs::ftruncate(*file, 5)).then([&, done, file](io::result<void> ft) {
              if (!ft) return done->set_value("ftruncate: " + ft.error().message());
              self.submit(fs::stat::of(*file)).then([&, done, file](io::result<fs::metadata> m) {
                if (!m || m->size != 5) return done->set_value("size after ftruncate");
                self.submit(fs::symlink{path, sym}).then([&, done](io::result<void> sl) {
                  if (!sl) return done->set_value("symlink");
                  self.submit(fs::stat{sym, false}).then([&, done](io::result<fs::metadata> lm) {
                    if (!lm || !lm->is_symlink()) return done->set_value("lstat");
                    self.submit(fs::link{path, hard}).then([&, done](io::result<void> hl) {
                      if (!hl) return done->set_value("link");
                      self.submit(fs::stat{sym}).then([&, done](io::result<fs::metadata> sm) {
                        if (!sm || sm->nlink != 2 || !sm->is_regular()) return done->set_value("stat through link");
                        self.submit(fs::symlink{path, sym}).then([&, done](io::result<void> again) {
                          if (again.error().value() != EEXIST) return done->set_value("symlink twice");
                          self.submit(fs::link{tmp / "missing", tmp / "x"}).then([done](io::result<void> miss) {
                            done->set_value(miss.error().value() == ENOENT ? "ok" : "link from missing");
                          });
                        });
                      });
                    });
                  });
                });
              });
            });
          });
        });
      });
    });
  }});
  BOOST_TEST(await(verdict) == "ok");
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(an_opcode_the_kernel_lacks_completes_with_errc_unsupported) {
  scratch tmp;
  auto done = std::make_shared<std::promise<std::error_code>>();
  auto verdict = done->get_future();
  config c = test_config(1);
  c.fault_injection.hide_opcode = IORING_OP_FALLOCATE;
  runtime rt{c};
  auto w = rt.spawn<worker>(pinned{0});
  const std::string path = tmp / "f";
  w.send(job{[&, done](worker& self) {
    self.submit(fs::open{path, O_RDWR | O_CREAT, 0600}).then([&self, done](io::result<fs::file> f) {
      auto file = std::make_shared<fs::file>(std::move(*f));
      self.submit(fs::fallocate(*file, 0, 4096)).then([done, file](io::result<void> r) {
        done->set_value(r ? std::error_code() : r.error());
      });
    });
  }});
  BOOST_TEST(await(verdict) == make_error_code(troupe::errc::unsupported));
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(ftruncate_falls_back_to_the_blocking_pool_without_its_opcode) {
  scratch tmp;
  constexpr int ftruncate_opcode = 55;  // IORING_OP_FTRUNCATE, newer than liburing 2.3's headers
  for (int hide : {-1, ftruncate_opcode}) {
    auto done = std::make_shared<std::promise<std::string>>();
    auto verdict = done->get_future();
    config c = test_config(1);
    c.fault_injection.hide_opcode = hide;
    runtime rt{c};
    auto w = rt.spawn<worker>(pinned{0});
    const std::string path = tmp / ("f" + std::to_string(hide));
    w.send(job{[&, done](worker& self) {
      self.submit(fs::open{path, O_RDWR | O_CREAT, 0600}).then([&self, done](io::result<fs::file> f) {
        auto file = std::make_shared<fs::file>(std::move(*f));
        self.submit(fs::ftruncate(*file, 12345)).then([&self, done, file](io::result<void> r) {
          if (!r) return done->set_value("ftruncate: " + r.error().message());
          self.submit(fs::stat::of(*file)).then([done, file](io::result<fs::metadata> m) {
            done->set_value(m && m->size == 12345 ? "ok" : "size after ftruncate");
          });
        });
      });
    }});
    BOOST_TEST(await(verdict) == "ok");
    rt.stop();
    // Through the ring when the kernel has the opcode, else on the pool.
    BOOST_TEST(rt.stats().blocking_ops == (hide < 0 ? 0u : 1u));
    check_quiescent(rt.stats());
  }
}

BOOST_AUTO_TEST_CASE(blocking_pool_operations) {
  scratch tmp;
  for (const char* n : {"a", "b", "c"}) std::fclose(std::fopen((tmp / n).c_str(), "w"));
  stdfs::create_directory(tmp / "sub");
  stdfs::create_symlink(tmp / "sub", tmp / "via");
  auto done = std::make_shared<std::promise<std::string>>();
  auto verdict = done->get_future();
  runtime_stats st;
  {
    runtime rt{test_config(2)};
    auto w = rt.spawn<worker>(stealable{});
    w.send(job{[&, done](worker& self) {
      self.submit(fs::blocking::list_directory{tmp.dir.string()}).then([&, done](io::result<std::vector<fs::blocking::dir_entry>> l) {
        if (!l) return done->set_value("list: " + l.error().message());
        std::vector<std::string> names;
        for (auto& e : *l) names.push_back(e.name + (e.type == DT_DIR ? "/" : ""));
        std::sort(names.begin(), names.end());
        std::string joined;
        for (auto& n : names) joined += n + " ";
        if (joined != "a b c sub/ via ") return done->set_value("entries: " + joined);
        self.submit(fs::blocking::canonicalize{tmp / "via/../a"}).then([&, done](io::result<std::string> c) {
          if (!c || *c != stdfs::canonical(tmp.dir / "a").string()) return done->set_value("canonicalize");
          self.submit(fs::blocking::chmod{tmp / "a", 0600}).then([&, done](io::result<void> m) {
            if (!m) return done->set_value("chmod");
            self.submit(fs::stat{tmp / "a"}).then([&, done](io::result<fs::metadata> md) {
              if (!md || (md->mode & 0777) != 0600) return done->set_value("mode");
              self.submit(fs::blocking::list_directory{tmp / "missing"}).then([&, done](io::result<std::vector<fs::blocking::dir_entry>> e) {
                if (e.error().value() != ENOENT) return done->set_value("list missing");
                self.submit(fs::blocking::canonicalize{tmp / "missing"}).then([done](io::result<std::string> e2) {
                  done->set_value(e2.error().value() == ENOENT ? "ok" : "canonicalize missing");
                });
              });
            });
          });
        });
      });
    }});
    BOOST_TEST(await(verdict) == "ok");
    rt.stop();
    st = rt.stats();
  }
  BOOST_TEST(st.blocking_ops == 5u);
  check_quiescent(st);
}

BOOST_AUTO_TEST_CASE(walking_a_tree_on_the_blocking_pool) {
  scratch tmp;
  stdfs::create_directories(tmp.dir / "x/y/z");
  for (const char* n : {"top", "x/one", "x/y/two", "x/y/z/three"}) std::fclose(std::fopen((tmp / n).c_str(), "w"));
  stdfs::create_directory_symlink(tmp.dir / "x", tmp.dir / "loop");  // listed, not followed
  auto done = std::make_shared<std::promise<std::string>>();
  auto verdict = done->get_future();
  runtime rt{test_config(1)};
  auto w = rt.spawn<worker>(pinned{0});
  w.send(job{[&, done](worker& self) {
    self.submit(fs::blocking::walk{tmp.dir.string()}).then([done](io::result<std::vector<fs::blocking::dir_entry>> r) {
      if (!r) return done->set_value("walk: " + r.error().message());
      std::vector<std::string> names;
      for (auto& e : *r) names.push_back(e.name);
      std::sort(names.begin(), names.end());
      std::string joined;
      for (auto& n : names) joined += n + " ";
      done->set_value(joined);
    });
  }});
  BOOST_TEST(await(verdict) == "loop top x x/one x/y x/y/two x/y/z x/y/z/three ");
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(stopping_with_blocking_jobs_in_flight_drops_their_results) {
  scratch tmp;
  for (int i = 0; i < 200; ++i) std::fclose(std::fopen((tmp / std::to_string(i)).c_str(), "w"));
  auto seen = std::make_shared<std::atomic<long>>(0);
  runtime_stats st;
  {
    runtime rt{test_config(2)};
    auto w = rt.spawn<worker>(pinned{0});
    w.send(job{[&, seen](worker& self) {
      for (int i = 0; i < 50; ++i)
        self.submit(fs::blocking::list_directory{tmp.dir.string()}).then([seen](auto) { seen->fetch_add(1); });
      self.stop();
    }});
    BOOST_REQUIRE(eventually([&] { return w.stopped(); }));
    rt.stop();
    st = rt.stats();
  }
  BOOST_TEST(seen->load() == 0);
  BOOST_TEST(st.blocking_ops == 50u);
  check_quiescent(st);
}

BOOST_AUTO_TEST_CASE(a_file_closed_right_after_submit_stays_open_for_its_operations) {
  scratch tmp;
  const std::string path = tmp / "original", other = tmp / "other";
  { std::FILE* f = std::fopen(path.c_str(), "w"); std::fputs("original", f); std::fclose(f); }
  { std::FILE* f = std::fopen(other.c_str(), "w"); std::fputs("impostor", f); std::fclose(f); }
  auto done = std::make_shared<std::promise<std::string>>();
  auto verdict = done->get_future();
  const int before = open_fds();
  {
    runtime rt{test_config(1)};
    auto w = rt.spawn<worker>(pinned{0});
    w.send(job{[&, done](worker& self) {
      auto results = std::make_shared<std::string>();
      fs::file f(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      fs::file g(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      self.submit(fs::read(f, 0, 64)).then([results](io::result<io::bytes> r) {
        *results += r ? string_of(*r) : "error";
      });
      self.submit(fs::read(g, 0, 64)).then([results](io::result<io::bytes> r) {
        *results += r ? string_of(*r) : "error";
      });
      f = fs::file();                          // closed before the kernel saw the read...
      self.submit(fs::close{std::move(g)}).then([](io::result<void>) {});  // ...and this one through the ring
      int reused = ::open(other.c_str(), O_RDONLY | O_CLOEXEC);  // would take a freed number
      self.submit(fs::stat{path}).then([done, results, reused](io::result<fs::metadata>) {
        ::close(reused);
        done->set_value(*results);
      });
    }});
    BOOST_TEST(await(verdict) == "originaloriginal");
    rt.stop();
    check_quiescent(rt.stats());
  }
  BOOST_TEST(open_fds() == before);
}

BOOST_AUTO_TEST_CASE(raw_sqes_come_back_as_raw_cqes) {
  auto done = std::make_shared<std::promise<std::vector<int>>>();
  auto verdict = done->get_future();
  runtime rt{test_config(1)};
  auto w = rt.spawn<worker>(stealable{});
  w.send(job{[done](worker& self) {
    auto res = std::make_shared<std::vector<int>>();
    auto note = [res, done](io::result<io::cqe> c) {
      res->push_back(c ? c->res : c.error() == troupe::errc::unsupported ? -1 : -2);
      if (res->size() == 3) done->set_value(*res);
    };
    self.submit(io::raw{[](io_uring_sqe* s) { io_uring_prep_nop(s); }}).then(note);
    // A user that sets the flags the runtime owns still gets its one CQE.
    self.submit(io::raw{[](io_uring_sqe* s) {
      io_uring_prep_nop(s);
      s->flags |= IOSQE_CQE_SKIP_SUCCESS | IOSQE_IO_LINK;
    }}).then(note);
    // An opcode no kernel has: never reaches the ring, errc::unsupported.
    self.submit(io::raw{[](io_uring_sqe* s) {
      io_uring_prep_nop(s);
      s->opcode = 250;
    }}).then(note);
  }});
  auto got = await(verdict);
  std::sort(got.begin(), got.end());
  BOOST_TEST(got == (std::vector<int>{-1, 0, 0}), boost::test_tools::per_element());
  rt.stop();
  check_quiescent(rt.stats());
}

namespace {

struct reads_done {
  std::atomic<long> ok{0};
  std::atomic<long> bad{0};
};

// Issues `n` reads at once, each of 64 bytes at offset 64 * i of a file
// whose bytes are their offset modulo 251.
class reader : public actor<reader> {
  std::shared_ptr<reads_done> d_;
  std::shared_ptr<fs::file> f_;

 public:
  reader(std::shared_ptr<reads_done> d, int fd) : d_(std::move(d)), f_(std::make_shared<fs::file>(::dup(fd))) {}
  void on(int n) {
    for (int i = 0; i < n; ++i) {
      const std::uint64_t off = std::uint64_t(i) * 64 % (1 << 20);
      submit(fs::read(*f_, off, 64)).then([d = d_, off](io::result<io::bytes> r) {
        bool good = r && r->size() == 64;
        for (std::size_t k = 0; good && k < 64; ++k)
          good = std::to_integer<unsigned>((*r)[k]) == (off + k) % 251;
        (good ? d->ok : d->bad).fetch_add(1);
      });
    }
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(ten_thousand_reads_in_flight_with_a_small_cq) {
  scratch tmp;
  const std::string path = tmp / "data";
  {
    std::vector<unsigned char> data(1 << 20);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>(i % 251);
    std::FILE* f = std::fopen(path.c_str(), "wb");
    std::fwrite(data.data(), 1, data.size(), f);
    std::fclose(f);
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  BOOST_REQUIRE(fd >= 0);
  auto d = std::make_shared<reads_done>();
  config c = test_config(2);
  c.sq_entries = 32;
  c.cq_entries = 64;  // far fewer than the reads in flight: the CQ overflows
  runtime_stats st;
  {
    runtime rt{c};
    std::vector<ref<reader>> rs;
    for (int i = 0; i < 100; ++i) rs.push_back(rt.spawn<reader>(i % 2 ? troupe::placement(pinned{1}) : troupe::placement(stealable{}), d, fd));
    for (auto& r : rs) r.send(100);
    BOOST_REQUIRE_MESSAGE(eventually([&] { return d->ok.load() + d->bad.load() == 10'000; }, 60s),
                          "completed " << d->ok.load() + d->bad.load() << " of 10000");
    rt.stop();
    st = rt.stats();
  }
  ::close(fd);
  BOOST_TEST(d->ok.load() == 10'000);
  BOOST_TEST(d->bad.load() == 0);
  std::uint64_t submitted = 0;
  for (auto& s : st.shards) submitted += s.io_submitted;
  BOOST_TEST(submitted == 10'000u);
  // The kernel kept every completion the full CQ could not take
  // (IORING_FEAT_NODROP): its drop count stays at zero.
  for (auto& s : st.shards) BOOST_TEST(s.cq_overflows == 0u);
  check_quiescent(st);
}

namespace {

// Issues `n` reads of one page-cached file in one handler: they complete
// while they are submitted, many more than the CQ holds, before the shard
// reaps any of them.
class burst_reader : public actor<burst_reader> {
  std::shared_ptr<reads_done> d_;
  fs::file f_;

 public:
  burst_reader(std::shared_ptr<reads_done> d, int fd) : d_(std::move(d)), f_(::dup(fd)) {}
  void on(int n) {
    for (int i = 0; i < n; ++i)
      submit(fs::read(f_, 0, 16)).then([d = d_](io::result<io::bytes> r) {
        (r && r->size() == 16 ? d->ok : d->bad).fetch_add(1);
      });
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(a_cq_overflow_is_counted_as_a_backlog_and_loses_no_completion) {
  scratch tmp;
  const std::string path = tmp / "data";
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    std::fputs("sixteen bytes!!!", f);
    std::fclose(f);
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  BOOST_REQUIRE(fd >= 0);
  auto d = std::make_shared<reads_done>();
  config c = test_config(1);
  c.sq_entries = 16;
  c.cq_entries = 16;
  runtime_stats st;
  {
    runtime rt{c};
    rt.spawn<burst_reader>(pinned{0}, d, fd).send(400);
    BOOST_REQUIRE_MESSAGE(eventually([&] { return d->ok.load() + d->bad.load() == 400; }, 60s),
                          "completed " << d->ok.load() + d->bad.load() << " of 400");
    rt.stop();
    st = rt.stats();
  }
  ::close(fd);
  BOOST_TEST(d->ok.load() == 400);
  // 400 completions into a CQ of 16 between two reaps: the kernel kept the
  // rest aside, the shard saw the backlog, nothing was dropped.
  BOOST_TEST(st.shards[0].cq_backlogs > 0u);
  BOOST_TEST(st.shards[0].cq_overflows == 0u);
  check_quiescent(st);
}

namespace {

struct cancel_tally {
  std::atomic<long> reads{0};
  std::atomic<long> opens{0};
  std::atomic<int> started{0};
};

// Reads from an empty pipe (never completes) and opens files, then stops.
class staller : public actor<staller> {
  std::shared_ptr<cancel_tally> t_;
  std::string dir_;
  fs::file pipe_read_, pipe_write_;

 public:
  staller(std::shared_ptr<cancel_tally> t, std::string dir) : t_(std::move(t)), dir_(std::move(dir)) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) == 0) {
      pipe_read_ = fs::file(p[0]);
      pipe_write_ = fs::file(p[1]);
    }
  }
  void on_start() {
    for (int i = 0; i < 4; ++i)
      submit(fs::read(pipe_read_, 0, 128)).then([t = t_](io::result<io::bytes>) { t->reads.fetch_add(1); });
    for (int i = 0; i < 8; ++i)
      submit(fs::open{dir_ + "/f" + std::to_string(i), O_RDWR | O_CREAT, 0600})
          .then([t = t_](io::result<fs::file>) { t->opens.fetch_add(1); });
    t_->started.fetch_add(1);
  }
  void on(const std::string&) { stop(); }
};

}  // namespace

BOOST_AUTO_TEST_CASE(stopping_an_actor_cancels_its_operations_and_leaks_no_descriptor) {
  scratch tmp;
  const int before = open_fds();
  auto t = std::make_shared<cancel_tally>();
  runtime_stats st;
  {
    runtime rt{test_config(2)};
    // Stopped by a message right behind the start: the reads are still in
    // the kernel, the opens may or may not have completed.
    auto a = rt.spawn<staller>(pinned{0}, t, tmp.dir.string());
    a.send(std::string("stop"));
    // And one still running at shutdown.
    rt.spawn<staller>(stealable{}, t, tmp.dir.string());
    BOOST_REQUIRE(eventually([&] { return t->started.load() == 2; }));
    BOOST_REQUIRE(eventually([&] { return a.stopped(); }));
    rt.stop();
    st = rt.stats();
  }
  BOOST_TEST(t->reads.load() == 0);   // a pipe read never completes: cancelled, never delivered
  BOOST_TEST(t->opens.load() <= 16);  // those that came back before their actor stopped
  std::uint64_t cancelled = 0;
  for (auto& s : st.shards) cancelled += s.io_cancelled;
  BOOST_TEST(cancelled >= 8u);  // at least the 2 x 4 pipe reads
  BOOST_TEST(open_fds() == before);
  check_quiescent(st);
}

BOOST_AUTO_TEST_CASE(an_operation_with_a_timeout_completes_with_timed_out_or_its_result) {
  int p[2];
  BOOST_REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  auto reader = std::make_shared<fs::file>(p[0]);
  fs::file writer(p[1]);
  auto done = std::make_shared<std::promise<std::string>>();
  auto verdict = done->get_future();
  runtime rt{test_config(1)};
  auto w = rt.spawn<worker>(stealable{});
  w.send(job{[reader, done, wfd = writer.fd()](worker& self) {
    // Nothing to read: the linked timeout cancels the read.
    self.submit(fs::read(*reader, 0, 16)).timeout(30ms).then([&self, reader, done, wfd](io::result<io::bytes> r) {
      std::string first = r ? "data?" : r.error() == std::errc::timed_out ? "timed out" : r.error().message();
      // Data arrives well within the deadline: the result, no timeout.
      self.submit(fs::read(*reader, 0, 16)).timeout(10s).then([done, first, reader](io::result<io::bytes> r2) {
        done->set_value(first + ", then " + (r2 ? string_of(*r2) : r2.error().message()));
      });
      (void)!::write(wfd, "ping", 4);
    });
  }});
  BOOST_TEST(await(verdict) == "timed out, then ping");
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(poll_reports_readiness_and_cancel_drops_an_operation_in_flight) {
  int p[2];
  BOOST_REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  fs::file reader(p[0]), writer(p[1]);
  auto done = std::make_shared<std::promise<std::string>>();
  auto verdict = done->get_future();
  auto ran = std::make_shared<std::atomic<int>>(0);
  runtime rt{test_config(2)};
  auto w = rt.spawn<worker>(stealable{});
  w.send(job{[rfd = reader.fd(), wfd = writer.fd(), done, ran](worker& self) {
    // A poll that nothing will satisfy, cancelled: its continuation never runs.
    io::handle stuck = self.submit(io::poll{rfd, POLLPRI}).then([ran](io::result<unsigned>) { ++*ran; });
    bool cancelled = self.cancel(stuck);
    bool again = self.cancel(stuck);  // no longer in flight
    self.submit(io::poll{rfd, POLLIN}).then([&self, done, cancelled, again](io::result<unsigned> r) {
      std::string s = r && (*r & POLLIN) ? "readable" : "not readable";
      s += cancelled ? ", cancelled" : ", not cancelled";
      s += again ? ", twice" : ", once";
      done->set_value(s);
    });
    (void)!::write(wfd, "x", 1);
  }});
  BOOST_TEST(await(verdict) == "readable, cancelled, once");
  rt.stop();
  BOOST_TEST(ran->load() == 0);
  check_quiescent(rt.stats());
}
