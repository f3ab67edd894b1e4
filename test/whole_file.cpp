// Whole-file helpers: read_file to the end whatever statx says, write_file
// atomic (temporary + fsync + rename, nothing left behind), copy_file with
// its mode, the errors of each step, and no descriptor left when the actor
// stops midway.
#include <troupe/whole_file.hpp>

#define BOOST_TEST_MODULE whole_file
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"
#include "io_fixture.hpp"

#include <troupe/runtime.hpp>

#include <sys/stat.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

using namespace troupe;
using namespace troupe_test;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const std::string& path, const std::string& s) {
  std::ofstream(path, std::ios::binary) << s;
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = char('a' + (i * 7 + i / 4096) % 26);
  return s;
}

std::vector<std::string> entries(const stdfs::path& dir) {
  std::vector<std::string> names;
  for (auto& e : stdfs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

template <class T>
std::string describe(const io::result<T>& r) {
  return r ? "ok" : r.error().message();
}

}  // namespace

BOOST_AUTO_TEST_CASE(read_file_reads_every_size_to_its_end) {
  scratch tmp;
  const std::vector<std::size_t> sizes{0, 1, 4095, 4096, 65537, 3 * 1024 * 1024 + 5};
  for (std::size_t n : sizes) spit(tmp / std::to_string(n), pattern(n));
  auto done = std::make_shared<std::promise<std::vector<std::string>>>();
  auto verdict = done->get_future();
  runtime rt{test_config(2)};
  auto w = rt.spawn<worker>(stealable{});
  w.send(job{[&, done](worker& self) {
    auto got = std::make_shared<std::vector<std::string>>(sizes.size() + 1);
    auto left = std::make_shared<int>(int(sizes.size()) + 1);
    for (std::size_t i = 0; i < sizes.size(); ++i)
      fs::read_file(self, tmp / std::to_string(sizes[i])).then([=](io::result<io::bytes> r) {
        (*got)[i] = r ? string_of(*r) : "error: " + r.error().message();
        if (--*left == 0) done->set_value(*got);
      });
    // statx says 0 for /proc files: read_file reads to the end anyway.
    fs::read_file(self, "/proc/self/status").then([=](io::result<io::bytes> r) {
      got->back() = r ? string_of(*r) : "error";
      if (--*left == 0) done->set_value(*got);
    });
  }});
  auto got = await(verdict);
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    BOOST_TEST_CONTEXT("size " << sizes[i]) {
      BOOST_TEST(got[i].size() == sizes[i]);
      BOOST_TEST((got[i] == pattern(sizes[i])));
    }
  }
  BOOST_TEST(got.back().find("VmRSS") != std::string::npos);
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(read_file_reports_a_missing_file_and_a_directory) {
  scratch tmp;
  auto done = std::make_shared<std::promise<std::vector<int>>>();
  auto verdict = done->get_future();
  runtime rt{test_config(1)};
  auto w = rt.spawn<worker>(pinned{0});
  w.send(job{[&, done](worker& self) {
    fs::read_file(self, tmp / "missing").then([&self, &tmp, done](io::result<io::bytes> a) {
      fs::read_file(self, tmp.dir.string()).then([a, done](io::result<io::bytes> b) {
        done->set_value({a ? 0 : a.error().value(), b ? 0 : b.error().value()});
      });
    });
  }});
  BOOST_TEST(await(verdict) == (std::vector<int>{ENOENT, EISDIR}), boost::test_tools::per_element());
  rt.stop();
  check_quiescent(rt.stats());
}

BOOST_AUTO_TEST_CASE(write_file_replaces_atomically_and_leaves_no_temporary_file) {
  scratch tmp;
  const std::string path = tmp / "state.json";
  spit(path, "old content");
  // A reader that opened the old file keeps reading the old file: the new
  // one is a new inode renamed over the name, not a rewrite in place.
  std::ifstream old_reader(path, std::ios::binary);
  struct ::stat before {};
  ::stat(path.c_str(), &before);
  const std::string fresh = pattern(5 * 1024 * 1024 + 3);
  auto done = std::make_shared<std::promise<std::string>>();
  auto verdict = done->get_future();
  runtime rt{test_config(2)};
  auto w = rt.spawn<worker>(stealable{});
  w.send(job{[&, done](worker& self) {
    fs::write_file(self, path, bytes_of(fresh), 0600).then([&self, &tmp, done](io::result<void> r) {
      if (!r) return done->set_value(describe(r));
      // A new file, in a directory by a relative-free absolute path.
      fs::write_file(self, tmp / "new", bytes_of("")).then([done](io::result<void> r2) {
        done->set_value(describe(r2));
      });
    });
  }});
  BOOST_TEST(await(verdict) == "ok");
  rt.stop();
  check_quiescent(rt.stats());
  BOOST_TEST((slurp(path) == fresh));
  BOOST_TEST(slurp(tmp / "new").empty());
  struct ::stat after {};
  ::stat(path.c_str(), &after);
  BOOST_TEST(after.st_ino != before.st_ino);
  std::string old_seen((std::istreambuf_iterator<char>(old_reader)), std::istreambuf_iterator<char>());
  BOOST_TEST(old_seen == "old content");
  BOOST_TEST(entries(tmp.dir) == (std::vector<std::string>{"new", "state.json"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(write_file_errors_leave_the_target_untouched_and_no_temporary_file) {
  scratch tmp;
  stdfs::create_directory(tmp / "dir");
  spit(tmp / "keep", "kept");
  auto done = std::make_shared<std::promise<std::vector<int>>>();
  auto verdict = done->get_future();
  runtime rt{test_config(1)};
  auto w = rt.spawn<worker>(pinned{0});
  w.send(job{[&, done](worker& self) {
    // No such directory: the temporary file cannot be created.
    fs::write_file(self, tmp / "nowhere/x", bytes_of("x")).then([&self, &tmp, done](io::result<void> a) {
      // The target is a directory: everything succeeds up to the rename,
      // which fails; the temporary file is removed.
      fs::write_file(self, tmp / "dir", bytes_of("x")).then([a, done](io::result<void> b) {
        done->set_value({a ? 0 : a.error().value(), b ? 0 : b.error().value()});
      });
    });
  }});
  BOOST_TEST(await(verdict) == (std::vector<int>{ENOENT, EISDIR}), boost::test_tools::per_element());
  rt.stop();
  check_quiescent(rt.stats());
  BOOST_TEST(stdfs::is_directory(tmp / "dir"));
  BOOST_TEST(stdfs::is_empty(tmp / "dir"));
  BOOST_TEST(slurp(tmp / "keep") == "kept");
  BOOST_TEST(entries(tmp.dir) == (std::vector<std::string>{"dir", "keep"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(copy_file_copies_content_and_mode_and_reports_errors) {
  scratch tmp;
  const std::string content = pattern(2 * 1024 * 1024 + 77);  // three chunks
  spit(tmp / "src", content);
  ::chmod((tmp / "src").c_str(), 0640);
  spit(tmp / "dst", std::string(10 * 1024 * 1024, 'z'));  // longer: truncated first
  auto done = std::make_shared<std::promise<std::string>>();
  auto verdict = done->get_future();
  runtime rt{test_config(2)};
  auto w = rt.spawn<worker>(stealable{});
  w.send(job{[&, done](worker& self) {
    fs::copy_file(self, tmp / "src", tmp / "dst").then([&self, &tmp, done](io::result<std::uint64_t> n) {
      if (!n) return done->set_value(describe(n));
      std::string bytes = std::to_string(*n);
      fs::copy_file(self, tmp / "src", tmp / "fresh").then([&self, &tmp, done, bytes](io::result<std::uint64_t> f) {
        if (!f) return done->set_value(describe(f));
        fs::copy_file(self, tmp / "missing", tmp / "x").then([&self, &tmp, done, bytes](io::result<std::uint64_t> m) {
          std::string missing = m ? "copied" : std::to_string(m.error().value());
          fs::copy_file(self, tmp / "src", tmp / "no/such/dir").then([done, bytes, missing](io::result<std::uint64_t> k) {
            done->set_value(bytes + " " + missing + " " + (k ? "copied" : std::to_string(k.error().value())));
          });
        });
      });
    });
  }});
  BOOST_TEST(await(verdict) == std::to_string(content.size()) + " " + std::to_string(ENOENT) + " " +
                                   std::to_string(ENOENT));
  rt.stop();
  check_quiescent(rt.stats());
  BOOST_TEST((slurp(tmp / "dst") == content));  // the longer file was truncated first
  BOOST_TEST((slurp(tmp / "fresh") == content));
  // A new file gets the source's permission bits (less the umask).
  mode_t mask = ::umask(0);
  ::umask(mask);
  BOOST_TEST(int(stdfs::status(tmp / "fresh").permissions() & stdfs::perms::all) == int(0640 & ~mask));
  BOOST_TEST(!stdfs::exists(tmp / "x"));
}

BOOST_AUTO_TEST_CASE(stopping_midway_leaves_no_descriptor_and_runs_no_continuation) {
  scratch tmp;
  const std::string big = pattern(8 * 1024 * 1024);
  spit(tmp / "big", big);
  const int before = open_fds();
  auto ran = std::make_shared<std::atomic<int>>(0);
  for (int round = 0; round < 20; ++round) {
    runtime rt{test_config(2)};
    for (int i = 0; i < 8; ++i) {
      auto w = rt.spawn<worker>(stealable{});
      w.send(job{[&, ran, i, round](worker& self) {
        std::string mine = tmp / ("copy" + std::to_string(round) + "_" + std::to_string(i));
        fs::copy_file(self, tmp / "big", mine).then([ran](io::result<std::uint64_t>) { ++*ran; });
        fs::read_file(self, tmp / "big").then([ran](io::result<io::bytes>) { ++*ran; });
      }});
    }
    rt.stop();  // mid-chain for most of them
    check_quiescent(rt.stats());
  }
  BOOST_TEST(open_fds() == before);
  BOOST_TEST_MESSAGE("chains finished before the stop: " << ran->load() << " of 320");
}
