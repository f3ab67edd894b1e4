// checksum_tree: the flagship example (examples/checksum) on a generated tree
// of many small and a few large files, against the reference tool it imitates,
// `xxhsum -H2`, single-threaded and under `xargs -P2`. Seconds of wall time,
// lower is better.
//
//   checksum_tree --checksum=PATH [--quick] [--reps=N] [--only=substring]
//
// The tree (made once, in a fresh directory under $TMPDIR or /tmp, removed at
// exit and on a failed check):
//   full   20 000 small files of 0..16 KiB (uniform) and 20 large files of
//          12 MiB, ~396 MiB in all, spread over 250 leaf directories
//          (tree/dNN/sN/); the large files sit in evenly spaced leaves, so
//          that any contiguous slice of the sorted file list gets its share.
//   quick  200 small files and 2 of 1 MiB over 10 leaves; the same checks.
// Every file's contents are a xorshift64 stream seeded by its index. After
// generation the tree is written back (syncfs, so that no writeback runs
// during a timed run) and read once in full, directories listed and every
// file read: every implementation runs against the page cache. The same
// untimed pass runs again before every timed run, because this VM's DAMON
// (kdamond, action pageout) pages out page cache left idle for some seconds;
// measured with cachestat(2) on an idle tree of this shape it took ~1% of
// its pages in 30 s and ~17% in 8 minutes. Timed runs come back to back, so
// the effect within one program run is small; the pass keeps it out.
//
// The implementations, each a child process (posix_spawn of the program's
// path, xxhsum, xargs and stdbuf looked up on PATH first; stdout and stderr
// to files next to the tree, never inside it), timed from before the spawn
// to after waitpid:
//   troupe           `checksum ROOT`: the flagship walks the tree itself
//                    (inside its timed run) with its default config, one
//                    shard per CPU.
//   xxhsum           `xxhsum -H2 PATH...`: one process given every path as
//                    an argument (more than one, run one after the other,
//                    only if the list exceeds ARG_MAX: stderr says how
//                    many). The list is made untimed, by this program.
//   xxhsum_xargs_P2  `xargs -0 -P2 -n B stdbuf -o4M xxhsum -H2` reading the
//                    NUL-separated list on stdin, B = files / 4 (4 batches,
//                    2 per process slot). stdbuf: two xxhsum writing one
//                    stdout in 4 KiB stdio blocks cut lines and interleave
//                    the pieces; with a 4 MiB buffer each batch's output
//                    (checked to fit) goes out in one write(2) at exit,
//                    which the kernel keeps whole on a regular file. With
//                    -oL instead (a write per line) and with 20 batches it
//                    measured slower.
// Every path is absolute and spelt as the flagship's walk spells it
// (ROOT/dNN/sN/name), so lines compare byte for byte.
//
// Checks, every repetition of every implementation: exit status 0; stdout is
// one well-formed `<32 hex>  path` line per generated file, the paths
// (sorted) exactly the generated list; the troupe output already sorted; the
// sorted lines identical to the first output seen (so every impl agrees with
// every other on every hash). A child that runs past its time limit is
// killed and fails the benchmark.
//
// Repetitions interleave (troupe, xxhsum, xargs, troupe, ...); medians are
// emitted with three decimals (bench::emit prints one).
#include "harness.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

extern char** environ;

namespace {

namespace stdfs = std::filesystem;

constexpr const char* kBench = "checksum_tree";

struct shape {
  int small;
  int large;
  int top_dirs, sub_dirs;  // leaves: top_dirs * sub_dirs
  std::uint64_t small_max;  // small sizes are uniform in [0, small_max]
  std::uint64_t large_size;
  std::chrono::seconds child_limit;
};

constexpr shape kFull{20000, 20, 25, 10, 16 << 10, 12 << 20, std::chrono::seconds(120)};
constexpr shape kQuick{200, 2, 2, 5, 16 << 10, 1 << 20, std::chrono::seconds(60)};

// The scratch directory: bench::fail ends the process with _Exit, which runs
// no destructor, so a failure goes through fail() below, which removes it first.
std::string scratch_dir;

void remove_scratch() {
  if (scratch_dir.empty()) return;
  std::error_code ec;
  stdfs::remove_all(scratch_dir, ec);
  scratch_dir.clear();
}

[[noreturn]] void fail(const std::string& what) {
  remove_scratch();
  bench::fail(std::string(kBench) + ": " + what);
}

void check(bool ok, const std::string& what) {
  if (!ok) fail(what);
}

std::string errno_text(const std::string& call) { return call + ": " + std::strerror(errno); }

struct scratch_guard {
  ~scratch_guard() { remove_scratch(); }
};

// --- the tree ---------------------------------------------------------------

struct tree {
  std::string root;                // absolute, no trailing slash
  std::vector<std::string> files;  // ROOT/dNN/sN/name, sorted
  std::uint64_t bytes = 0;
};

void write_file(const std::string& path, std::uint64_t size, std::uint64_t seed, std::vector<char>& buf) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  check(fd >= 0, errno_text("open " + path));
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (std::uint64_t done = 0; done < size;) {
    const std::size_t n = std::size_t(std::min<std::uint64_t>(size - done, buf.size()));
    for (std::size_t i = 0; i < n; i += 8) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      std::memcpy(buf.data() + i, &x, std::min<std::size_t>(8, n - i));
    }
    for (std::size_t off = 0; off < n;) {
      ssize_t w = ::write(fd, buf.data() + off, n - off);
      check(w > 0, errno_text("write " + path));
      off += std::size_t(w);
    }
    done += n;
  }
  ::close(fd);
}

tree make_tree(const std::string& root, const shape& s) {
  tree t;
  t.root = root;
  std::vector<std::string> leaves;
  char name[64];
  for (int d = 0; d < s.top_dirs; ++d)
    for (int e = 0; e < s.sub_dirs; ++e) {
      std::snprintf(name, sizeof name, "/d%02d/s%d", d, e);
      leaves.push_back(root + name);
      std::error_code ec;
      stdfs::create_directories(leaves.back(), ec);
      check(!ec, "mkdir " + leaves.back() + ": " + ec.message());
    }
  std::vector<char> buf(1 << 20);
  std::uint64_t rng = 0x243f6a8885a308d3ull;  // sizes: splitmix64 of a fixed seed
  auto next = [&rng] {
    std::uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  std::uint64_t seed = 1;
  for (int i = 0; i < s.small; ++i) {
    std::snprintf(name, sizeof name, "/f%05d.bin", i);
    const std::uint64_t size = next() % (s.small_max + 1);
    t.files.push_back(leaves[std::size_t(i) % leaves.size()] + name);
    write_file(t.files.back(), size, seed++, buf);
    t.bytes += size;
  }
  for (int j = 0; j < s.large; ++j) {
    std::snprintf(name, sizeof name, "/large-%02d.bin", j);
    t.files.push_back(leaves[std::size_t(j) * leaves.size() / std::size_t(s.large)] + name);
    write_file(t.files.back(), s.large_size, seed++, buf);
    t.bytes += s.large_size;
  }
  std::sort(t.files.begin(), t.files.end());
  return t;
}

// Lists every directory and reads every file once, so that a timed run
// finds the whole tree in the page cache (and the dentry cache).
void warm(const tree& t) {
  std::size_t listed = 0;
  std::error_code ec;
  for (stdfs::recursive_directory_iterator it(t.root, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_regular_file(ec)) ++listed;
  check(!ec, "listing " + t.root + ": " + ec.message());
  check(listed == t.files.size(), "the tree holds " + std::to_string(listed) + " files, expected " +
                                      std::to_string(t.files.size()));
  std::vector<char> buf(1 << 20);
  std::uint64_t total = 0;
  for (const std::string& f : t.files) {
    int fd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC);
    check(fd >= 0, errno_text("open " + f));
    for (ssize_t n; (n = ::read(fd, buf.data(), buf.size())) != 0;) {
      check(n > 0, errno_text("read " + f));
      total += std::uint64_t(n);
    }
    ::close(fd);
  }
  check(total == t.bytes, "reading the tree back gave " + std::to_string(total) + " bytes, expected " +
                              std::to_string(t.bytes));
}

// Writes the tree back, so that no writeback of it runs during a timed run,
// and warms it.
void settle(const tree& t) {
  int dfd = ::open(t.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  check(dfd >= 0, errno_text("open " + t.root));
  check(::syncfs(dfd) == 0, errno_text("syncfs " + t.root));
  ::close(dfd);
  warm(t);
}

// --- children ---------------------------------------------------------------

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Finds `name` on PATH; empty if it is not there.
std::string on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string_view rest = path ? path : "/usr/bin:/bin";
  while (true) {
    const auto colon = rest.find(':');
    std::string dir(rest.substr(0, colon));
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string_view::npos) return {};
    rest.remove_prefix(colon + 1);
  }
}

struct redirect {
  std::string in = "/dev/null";
  std::string out, err;
};

// Runs argv[0] (a path) with `io` as its stdin, stdout and stderr, in a
// process group of its own (so that a timeout kills xargs' children too);
// fails unless it exits 0 within `limit`. Returns its wall time in seconds,
// spawn to reaped.
double run_child(const std::string& what, const std::vector<std::string>& argv, const redirect& io,
                 std::chrono::seconds limit) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, io.in.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, io.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, io.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);

  const auto t0 = bench::clock::now();
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, args[0], &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) fail(what + ": cannot run " + argv[0] + ": " + std::strerror(rc));

  // Wait in poll(2) on a pidfd, with the time limit; without pidfd_open
  // (ENOSYS), waitpid without one.
  const int pidfd = int(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    const int ms = int(std::chrono::duration_cast<std::chrono::milliseconds>(limit).count());
    int n;
    while ((n = ::poll(&p, 1, ms)) < 0 && errno == EINTR) {
    }
    ::close(pidfd);
    if (n == 0) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      fail(what + ": did not finish within " + std::to_string(limit.count()) + " s");
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) fail(what + ": " + errno_text("waitpid"));
  const double secs = std::chrono::duration<double>(bench::clock::now() - t0).count();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const std::string how = WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                                              : "died of signal " + std::to_string(WTERMSIG(status));
    std::string err = read_text(io.err);
    if (err.size() > 2000) err = "..." + err.substr(err.size() - 2000);
    fail(what + ": " + how + "; its stderr:\n" + err);
  }
  return secs;
}

// --- output checks ------------------------------------------------------------

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.emplace_back(text, start, end - start);
    start = end + 1;
  }
  return lines;
}

// The path of `<32 hex digits>  path` (XXH128, GNU style); empty if the
// line is not one.
std::string_view path_of(std::string_view line) {
  constexpr std::size_t hex = 32;
  constexpr std::string_view gap = "  ";
  if (line.size() <= hex + gap.size() || line.substr(hex, gap.size()) != gap) return {};
  const std::string_view h = line.substr(0, hex);
  if (!std::all_of(h.begin(), h.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }))
    return {};
  return line.substr(hex + gap.size());
}

struct verifier {
  const tree& t;
  std::vector<std::string> reference;  // sorted lines of the first output checked
  std::string reference_impl;

  void operator()(const std::string& impl, const std::string& out_path, bool must_be_sorted) {
    std::vector<std::string> lines = lines_of(read_text(out_path));
    auto by_path = [](const std::string& a, const std::string& b) { return path_of(a) < path_of(b); };
    const bool sorted = std::is_sorted(lines.begin(), lines.end(), by_path);
    check(sorted || !must_be_sorted, impl + ": output not sorted by path");
    if (!sorted) std::sort(lines.begin(), lines.end(), by_path);
    check(lines.size() == t.files.size(), impl + ": " + std::to_string(lines.size()) + " lines for " +
                                              std::to_string(t.files.size()) + " files");
    for (std::size_t i = 0; i < lines.size(); ++i) {
      const std::string_view p = path_of(lines[i]);
      check(!p.empty(), impl + ": malformed line: " + lines[i]);
      check(p == t.files[i], impl + ": line " + lines[i] + " where the path " + t.files[i] + " was expected");
    }
    if (reference.empty()) {
      reference = std::move(lines);
      reference_impl = impl;
      return;
    }
    for (std::size_t i = 0; i < lines.size(); ++i)
      check(lines[i] == reference[i],
            impl + " says " + lines[i] + " where " + reference_impl + " said " + reference[i]);
  }
};

void emit(std::string_view impl, double seconds) {
  std::printf("{\"bench\":\"%s\",\"impl\":\"%.*s\",\"unit\":\"s\",\"value\":%.3f}\n", kBench, int(impl.size()),
              impl.data(), seconds);
  std::fflush(stdout);
}

// Splits `files` into argument lists for `prefix...` that each fit ARG_MAX
// (with the environment, and a page of margin).
std::vector<std::vector<std::string>> batches(const std::vector<std::string>& prefix,
                                              const std::vector<std::string>& files) {
  long budget = ::sysconf(_SC_ARG_MAX);
  if (budget <= 0) budget = 128 << 10;
  budget -= 4096;
  for (char** e = environ; *e; ++e) budget -= long(std::strlen(*e) + 1 + sizeof(char*));
  for (const std::string& a : prefix) budget -= long(a.size() + 1 + sizeof(char*));
  std::vector<std::vector<std::string>> out;
  long used = budget;  // start a batch at the first file
  for (const std::string& f : files) {
    const long cost = long(f.size() + 1 + sizeof(char*));
    if (used + cost > budget) {
      out.push_back(prefix);
      used = 0;
    }
    out.back().push_back(f);
    used += cost;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  auto o = bench::parse(argc, argv);
  std::string checksum;
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]).rfind("--checksum=", 0) == 0) checksum = argv[i] + 11;
  check(!checksum.empty(),
        "needs --checksum=PATH, the built examples/checksum (b2 bench and b2 bench-quick pass it)");
  check(::access(checksum.c_str(), X_OK) == 0, errno_text("the checksum example " + checksum));
  checksum = stdfs::absolute(checksum).string();
  const std::string xxhsum = on_path("xxhsum"), xargs = on_path("xargs"), stdbuf = on_path("stdbuf");
  check(!xxhsum.empty(), "xxhsum is not on PATH: run ./bootstrap.sh (Debian package xxhash)");
  check(!xargs.empty() && !stdbuf.empty(),
        "xargs or stdbuf is not on PATH (Debian packages findutils, coreutils)");

  const shape& s = o.quick ? kQuick : kFull;
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = stdfs::absolute(tmp && *tmp ? tmp : "/tmp").string() + "/troupe-checksum_tree-XXXXXX";
  check(::mkdtemp(tmpl.data()) != nullptr, errno_text("mkdtemp " + tmpl));
  scratch_dir = tmpl;
  scratch_guard guard;

  const auto g0 = bench::clock::now();
  const tree t = make_tree(scratch_dir + "/tree", s);
  settle(t);
  const double made = std::chrono::duration<double>(bench::clock::now() - g0).count();

  // The NUL-separated list for xargs, next to the tree.
  const std::string list = scratch_dir + "/files.nul";
  {
    std::ofstream l(list, std::ios::binary);
    for (const std::string& f : t.files) l.write(f.c_str(), std::streamsize(f.size() + 1));
    check(bool(l), "writing " + list);
  }
  const auto single = batches({xxhsum, "-H2"}, t.files);
  constexpr std::size_t kBatches = 4, kStdoutBuffer = 4 << 20;  // stdbuf -o4M
  const std::size_t per_batch_n = std::max<std::size_t>(1, (t.files.size() + kBatches - 1) / kBatches);
  const std::string per_batch = std::to_string(per_batch_n);
  std::size_t longest = 0;
  for (const std::string& f : t.files) longest = std::max(longest, f.size());
  check(per_batch_n * (longest + sizeof "0123456789abcdef0123456789abcdef  \n") <= kStdoutBuffer,
        "a batch's output may not fit stdbuf's buffer: shorten $TMPDIR");

  std::fprintf(stderr,
               "%s: %d small files (0..%llu KiB) + %d of %llu MiB, %.1f MiB in %d directories under %s; "
               "made, synced and read in %.1f s, and read again before every timed run: "
               "every run reads the page cache\n"
               "%s: xxhsum: %zu process(es); xxhsum_xargs_P2: xargs -0 -P2 -n %s stdbuf -o4M xxhsum -H2\n",
               kBench, s.small, (unsigned long long)(s.small_max >> 10), s.large,
               (unsigned long long)(s.large_size >> 20), double(t.bytes) / (1 << 20), s.top_dirs * s.sub_dirs,
               t.root.c_str(), made, kBench, single.size(), per_batch.c_str());

  verifier verify{t, {}, {}};
  const redirect out{"/dev/null", scratch_dir + "/out", scratch_dir + "/err"};
  std::string troupe_stats;
  const std::vector<bench::contender> cs = {
      {"troupe",
       [&] {
         const double secs = run_child("troupe", {checksum, t.root}, out, s.child_limit);
         verify("troupe", out.out, true);
         troupe_stats = read_text(out.err);
         return secs;
       }},
      {"xxhsum",
       [&] {
         double secs = 0;
         std::string all;
         for (const auto& b : single) {
           secs += run_child("xxhsum", b, out, s.child_limit);
           all += read_text(out.out);
         }
         std::ofstream(out.out, std::ios::binary | std::ios::trunc) << all;
         verify("xxhsum", out.out, false);
         return secs;
       }},
      {"xxhsum_xargs_P2",
       [&] {
         const redirect in_list{list, out.out, out.err};
         const double secs = run_child(
             "xxhsum_xargs_P2", {xargs, "-0", "-P2", "-n", per_batch, stdbuf, "-o4M", xxhsum, "-H2"}, in_list,
             s.child_limit);
         verify("xxhsum_xargs_P2", out.out, false);
         return secs;
       }},
  };

  std::vector<std::vector<double>> figures(cs.size());
  for (int r = 0; r < o.repetitions; ++r)
    for (std::size_t i = 0; i < cs.size(); ++i)
      if (o.only.empty() || cs[i].impl.find(o.only) != std::string::npos ||
          (o.only[0] == '=' && cs[i].impl == o.only.substr(1))) {
        warm(t);
        figures[i].push_back(cs[i].run());
      }
  for (std::size_t i = 0; i < cs.size(); ++i) {
    if (figures[i].empty()) continue;
    emit(cs[i].impl, bench::median(figures[i]));
    std::fprintf(stderr, "%s %s: each repetition (s):", kBench, cs[i].impl.c_str());
    for (double f : figures[i]) std::fprintf(stderr, " %.3f", f);
    std::fprintf(stderr, "\n");
  }
  if (!troupe_stats.empty())
    std::fprintf(stderr, "%s: the flagship's stderr (last run):%s", kBench, troupe_stats.c_str());
  return 0;
}
