// When io_uring is unavailable the runtime refuses to start with a
// troupe::error that says why and what to do, and leaves nothing behind.
//
// Each case forks a child that installs a seccomp filter making
// io_uring_setup fail (EPERM as container profiles do, or ENOSYS as a kernel
// without io_uring would), then constructs a runtime. The child reports
// through its exit status and a pipe carrying what(); the parent waits with a
// deadline and kills a child that hangs. kernel.io_uring_disabled is
// machine-wide and is never touched here.
#include <troupe/runtime.hpp>

#define BOOST_TEST_MODULE io_uring_unavailable
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

using namespace troupe;
using namespace troupe_test;
using namespace std::chrono_literals;

namespace {

// What the child reports through its exit status.
enum child_status : int {
  threw_error = 10,           // troupe::error, message in the pipe, one thread left
  threads_left = 11,          // troupe::error, but other threads are still alive
  constructed = 12,           // the runtime started although io_uring_setup fails
  threw_other = 13,           // some other exception (what() in the pipe)
  filter_not_installed = 14,  // seccomp refused, or io_uring_setup still works
  leaked = 15,                // LeakSanitizer found leaks after the failed start
};

/// Makes io_uring_setup fail with `err` in this thread and every thread it
/// creates afterwards. Returns 0 or -errno.
int deny_io_uring_setup(int err) {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<unsigned>(err) & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -errno;
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) return -errno;
  return 0;
}

/// Threads of ours still alive: shard threads are named "troupe-shard-N".
/// (Sanitizer runtimes keep threads of their own; those do not count.)
std::size_t shard_thread_count() {
  std::size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(e.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name.rfind("troupe-shard", 0) == 0) ++n;
  }
  return n;
}

void write_all(int fd, const std::string& s) {
  for (std::size_t done = 0; done < s.size();) {
    ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

/// The child: never returns.
[[noreturn]] void child(int err, int out) {
  if (int r = deny_io_uring_setup(err); r != 0) {
    write_all(out, std::string("seccomp: ") + std::strerror(-r));
    ::_exit(filter_not_installed);
  }
  io_uring_params p{};
  long r = ::syscall(__NR_io_uring_setup, 4, &p);
  if (r >= 0 || errno != err) {
    write_all(out, "io_uring_setup still works under the filter (" + std::to_string(r) + ")");
    ::_exit(filter_not_installed);
  }

  int status;
  try {
    runtime rt{test_config()};
    status = constructed;
  } catch (const troupe::error& e) {
    write_all(out, e.what());
    status = threw_error;
  } catch (const std::exception& e) {
    write_all(out, e.what());
    status = threw_other;
  }
  if (status == threw_error) {
    // The shard threads are joined before the constructor throws.
    std::size_t n = shard_thread_count();
    if (n != 0) {
      write_all(out, "\n" + std::to_string(n) + " shard threads alive after the failed start");
      status = threads_left;
    }
  }
#if defined(__SANITIZE_ADDRESS__)
  if (status == threw_error && __lsan_do_recoverable_leak_check() != 0) status = leaked;
#endif
  ::close(out);
  ::_exit(status);
}

struct child_result {
  bool hung = false;
  int exit_status = -1;  // -1: killed by a signal
  int signal = 0;
  std::string message;
};

child_result start_runtime_with_io_uring_setup_failing(int err) {
  std::cout.flush();
  std::cerr.flush();
  int fds[2];
  BOOST_TEST_REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  pid_t pid = ::fork();
  BOOST_TEST_REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    child(err, fds[1]);
  }
  ::close(fds[1]);

  child_result res;
  int wstatus = 0;
  // Generous: the sanitizer builds and a loaded CI machine start slowly.
  auto deadline = std::chrono::steady_clock::now() + 60s;
  for (;;) {
    pid_t w = ::waitpid(pid, &wstatus, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) break;
    if (std::chrono::steady_clock::now() > deadline) {
      res.hung = true;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &wstatus, 0);
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  if (!res.hung) {
    if (WIFEXITED(wstatus)) res.exit_status = WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus)) res.signal = WTERMSIG(wstatus);
  }
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    res.message.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  return res;
}

/// The sysctl decides which advice the runtime gives for EPERM; these cases
/// expect the machine to allow io_uring, as the other suites do.
struct io_uring_allowed_by_sysctl {
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    std::ifstream f("/proc/sys/kernel/io_uring_disabled");
    std::string v;
    if (!f || !std::getline(f, v) || v == "0") return true;
    boost::test_tools::assertion_result r(false);
    r.message() << "kernel.io_uring_disabled=" << v << ": io_uring is off machine-wide";
    return r;
  }
};

#if defined(__x86_64__)
constexpr bool x86_64 = true;
#else
constexpr bool x86_64 = false;
#endif

struct on_x86_64 {
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    boost::test_tools::assertion_result r(x86_64);
    if (!x86_64) r.message() << "the seccomp filter here is written for x86_64";
    return r;
  }
};

void check_refused_with_advice(int err) {
  child_result r = start_runtime_with_io_uring_setup_failing(err);
  BOOST_TEST_INFO("child said: " << r.message);
  BOOST_TEST_REQUIRE(!r.hung, "the child did not exit within the deadline: a thread hangs after the failed start");
  BOOST_TEST_INFO("child said: " << r.message);
  BOOST_TEST_REQUIRE(r.signal == 0);
  BOOST_TEST_INFO("child said: " << r.message);
  BOOST_TEST_REQUIRE(r.exit_status == static_cast<int>(threw_error));

  const std::string& m = r.message;
  BOOST_TEST_INFO("what(): " << m);
  BOOST_TEST(m.find("io_uring_setup") != std::string::npos);
  BOOST_TEST_INFO("what(): " << m);
  BOOST_TEST(m.find("seccomp") != std::string::npos);
  BOOST_TEST_INFO("what(): " << m);
  BOOST_TEST(m.find(std::strerror(err)) != std::string::npos);
  // What to do: allow the io_uring syscalls in the seccomp profile.
  BOOST_TEST_INFO("what(): " << m);
  BOOST_TEST(m.find("allow") != std::string::npos);
  BOOST_TEST_INFO("what(): " << m);
  BOOST_TEST(m.find("io_uring_enter") != std::string::npos);
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_seccomp_filter_denying_io_uring_setup_with_eperm_makes_the_runtime_throw_with_advice,
                     *boost::unit_test::precondition(on_x86_64())
                         * boost::unit_test::precondition(io_uring_allowed_by_sysctl())) {
  check_refused_with_advice(EPERM);
}

BOOST_AUTO_TEST_CASE(a_seccomp_filter_answering_enosys_makes_the_runtime_throw_with_advice,
                     *boost::unit_test::precondition(on_x86_64())
                         * boost::unit_test::precondition(io_uring_allowed_by_sysctl())) {
  check_refused_with_advice(ENOSYS);
}

// A kernel older than the flags troupe needs answers io_uring_setup with
// EINVAL for every setup tried: the error names the kernel version those
// flags need (SINGLE_ISSUER: Linux 6.0), not an older one.
BOOST_AUTO_TEST_CASE(a_kernel_refusing_every_ring_setup_gets_the_kernel_version_the_flags_need,
                     *boost::unit_test::precondition(on_x86_64())) {
  child_result r = start_runtime_with_io_uring_setup_failing(EINVAL);
  BOOST_TEST_INFO("child said: " << r.message);
  BOOST_TEST_REQUIRE(!r.hung);
  BOOST_TEST_INFO("child said: " << r.message);
  BOOST_TEST_REQUIRE(r.exit_status == static_cast<int>(threw_error));
  const std::string& m = r.message;
  BOOST_TEST_INFO("what(): " << m);
  BOOST_TEST(m.find("Linux 6.0 or newer") != std::string::npos);
  BOOST_TEST_INFO("what(): " << m);
  BOOST_TEST(m.find("IORING_SETUP_SINGLE_ISSUER") != std::string::npos);
}
