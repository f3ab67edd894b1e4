// Helpers shared by the I/O suites: a scratch directory, descriptor
// counting, byte conversions, and a worker actor that runs a test's job.
#pragma once

#include <troupe/actor.hpp>
#include <troupe/io.hpp>

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <string>

namespace troupe_test {

using namespace std::chrono_literals;
namespace stdfs = std::filesystem;
using troupe::actor;
namespace io = troupe::io;

/// A fresh directory, removed with everything in it at the end.
struct scratch {
  stdfs::path dir;
  scratch() {
    char tmpl[] = "/tmp/troupe-fs-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~scratch() { stdfs::remove_all(dir); }
  std::string operator/(const std::string& name) const { return (dir / name).string(); }
};

inline int open_fds() {
  int n = 0;
  for (auto& e : stdfs::directory_iterator("/proc/self/fd")) {
    (void)e;
    ++n;
  }
  return n;
}

inline io::bytes bytes_of(const std::string& s) {
  io::bytes b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}
inline std::string string_of(const io::bytes& b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

/// Runs a job inside an actor: tests write their I/O as continuations.
class worker;
struct job {
  std::function<void(worker&)> run;
};

class worker : public actor<worker> {
 public:
  void on(const job& j) { j.run(*this); }
};

/// The test thread waits for the actor's verdict.
template <class T>
T await(std::future<T>& f) {
  BOOST_REQUIRE(f.wait_for(20s) == std::future_status::ready);
  return f.get();
}

}  // namespace troupe_test
