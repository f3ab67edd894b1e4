// Runs a test scenario that could hang or abort in a forked child, so that
// a hang is a bounded failure of one test and not a hung suite.
#pragma once

#include <boost/test/unit_test.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>

namespace troupe_test {

struct child_result {
  bool finished = false;  // false: still running at the deadline, killed
  int status = 0;         // as waitpid(2) reports it
  std::string output;     // the child's stderr
};

// Runs `body` in a forked child (exit status 0 when it returns) and waits at
// most `limit` for it. Called while this process has no other thread.
inline child_result run_in_child(const std::function<void()>& body,
                          std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  int out[2];
  BOOST_REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  pid_t pid = ::fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(out[1], STDERR_FILENO);
    ::signal(SIGABRT, SIG_DFL);  // Boost.Test's handler would turn an abort into an exit
    body();
    std::_Exit(0);
  }
  ::close(out[1]);
  child_result r;
  auto deadline = std::chrono::steady_clock::now() + limit;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) break;  // the child is gone (or has closed stderr)
    // Only the start: a child that hangs may log in a loop.
    if (r.output.size() < 16384) r.output.append(buf, static_cast<std::size_t>(n));
  }
  // Wait for the exit with what is left of the deadline, then kill.
  for (;;) {
    pid_t w = ::waitpid(pid, &r.status, WNOHANG);
    if (w == pid) {
      r.finished = true;
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &r.status, 0);
      break;
    }
    ::poll(nullptr, 0, 10);
  }
  ::close(out[0]);
  return r;
}

}  // namespace troupe_test
