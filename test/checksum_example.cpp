// examples/checksum against its reference: on a generated tree its stdout is
// line for line what `xxhsum -H2` prints for the same files, sorted by path;
// a path that does not exist gets xxhsum's error line on stderr and a
// non-zero exit status, while the other files still get their lines.
//
// The example's binary comes in as the last command-line argument
// (test/Jamfile passes the built target). Both programs run through the
// shell, under `timeout`, so that a hung example fails the test instead of
// stalling the build.
#define BOOST_TEST_MODULE checksum_example
#include <boost/test/unit_test.hpp>

#include <fmt/format.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

namespace stdfs = std::filesystem;

namespace {

std::string checksum_binary() {
  auto& m = boost::unit_test::framework::master_test_suite();
  BOOST_TEST_REQUIRE(m.argc >= 2, "the checksum example's path is the last argument");
  return stdfs::absolute(m.argv[m.argc - 1]).string();
}

/// A fresh directory, removed with everything in it at the end.
struct scratch {
  stdfs::path dir;
  scratch() {
    char tmpl[] = "/tmp/troupe-checksum-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~scratch() { stdfs::remove_all(dir); }
};

std::string quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

struct outcome {
  int status = -1;
  std::string out;
};

/// Runs `command` through the shell; its stdout and exit status.
outcome run(const std::string& command) {
  outcome r;
  std::FILE* p = ::popen(command.c_str(), "r");
  BOOST_TEST_REQUIRE(p != nullptr);
  char buf[65536];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  int status = ::pclose(p);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string read_file(const stdfs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// Writes `size` pseudo-random bytes (a xorshift stream seeded per file).
void write_file(const stdfs::path& p, std::uint64_t size, std::uint64_t seed) {
  std::vector<char> data(size);
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (char& c : data) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<char>(x >> 56);
  }
  std::ofstream(p, std::ios::binary).write(data.data(), static_cast<std::streamsize>(size));
}

/// A few hundred files in nested directories: empty ones, sizes around a
/// page and around the example's 1 MiB reads, and one of ~20 MiB. Plus a
/// FIFO, which the walk must skip (opening it would block), and an empty
/// directory.
void make_tree(const stdfs::path& root) {
  const stdfs::path dirs[] = {root, root / "a", root / "a" / "b", root / "a" / "b" / "c",
                              root / "d", root / "with space"};
  for (const auto& d : dirs) stdfs::create_directories(d);
  stdfs::create_directories(root / "a" / "empty");
  const std::uint64_t mib = 1 << 20;
  const std::uint64_t edges[] = {0, 0, 1, 2, 63, 64, 65, 4095, 4096, 4097, 65535, 65536,
                                 mib - 1, mib, mib + 1, 2 * mib, 3 * mib + 7};
  std::uint64_t seed = 1;
  int n = 0;
  for (std::uint64_t size : edges) {
    write_file(dirs[n % 6] / fmt::format("edge-{}", n), size, seed++);
    ++n;
  }
  for (int i = 0; i < 300; ++i, ++n) {
    const std::uint64_t size = (seed * 7919) % (i % 10 == 0 ? 300'000 : 9'000);
    write_file(dirs[n % 6] / fmt::format("f{}.bin", n), size, seed++);
  }
  write_file(root / "d" / "large", 20 * mib + 12345, seed++);
  BOOST_TEST_REQUIRE(::mkfifo((root / "a" / "fifo").c_str(), 0600) == 0);
}

/// The regular files under `root`, sorted as the example sorts them.
std::vector<std::string> regular_files(const stdfs::path& root) {
  std::vector<std::string> files;
  for (const auto& e : stdfs::recursive_directory_iterator(root))
    if (e.is_regular_file()) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

outcome xxhsum(const std::vector<std::string>& files) {
  std::string command = "timeout 120 xxhsum -H2";
  for (const auto& f : files) {
    command += ' ';
    command += quoted(f);
  }
  return run(command + " 2>/dev/null");  // it clears a progress line there
}

}  // namespace

BOOST_AUTO_TEST_CASE(its_output_is_xxhsum_h2_line_for_line) {
  scratch tmp;
  const stdfs::path root = tmp.dir / "tree";
  make_tree(root);
  const auto files = regular_files(root);
  BOOST_TEST_REQUIRE(files.size() > 300u);

  outcome ours = run(fmt::format("timeout 120 {} --quick {} 2>{}", quoted(checksum_binary()),
                                 quoted(root.string()), quoted((tmp.dir / "stderr").string())));
  outcome ref = xxhsum(files);
  BOOST_TEST(ours.status == 0, "exit status " << ours.status << ", stderr:\n" << read_file(tmp.dir / "stderr"));
  BOOST_TEST_REQUIRE(ref.status == 0);
  const auto got = lines_of(ours.out), want = lines_of(ref.out);
  BOOST_TEST(got.size() == files.size());
  BOOST_TEST(got == want, boost::test_tools::per_element());
  BOOST_TEST((ours.out == ref.out));  // byte for byte, line ends included
}

BOOST_AUTO_TEST_CASE(a_missing_path_gets_the_reference_error_and_a_failing_status) {
  scratch tmp;
  const stdfs::path root = tmp.dir / "tree", missing = tmp.dir / "missing";
  stdfs::create_directories(root / "sub");
  write_file(root / "sub" / "one", 1000, 1);
  write_file(root / "two", 0, 2);

  outcome ours = run(fmt::format("timeout 120 {} --quick {} {} 2>{}", quoted(checksum_binary()),
                                 quoted(root.string()), quoted(missing.string()),
                                 quoted((tmp.dir / "stderr").string())));
  const std::string err = read_file(tmp.dir / "stderr");
  (void)run(fmt::format("timeout 120 xxhsum -H2 {} 2>{}", quoted(missing.string()),
                        quoted((tmp.dir / "ref-stderr").string())));
  const auto ref_err = lines_of(read_file(tmp.dir / "ref-stderr"));

  BOOST_TEST(ours.status != 0);
  BOOST_TEST_REQUIRE(!ref_err.empty());
  BOOST_TEST(ref_err.front().find(missing.string()) != std::string::npos);
  const auto err_lines = lines_of(err);
  BOOST_TEST(std::count(err_lines.begin(), err_lines.end(), ref_err.front()) == 1,
             "no line '" << ref_err.front() << "' in stderr:\n" << err);
  // The files that exist still get their lines.
  BOOST_TEST(lines_of(ours.out) == lines_of(xxhsum(regular_files(root)).out), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(an_empty_directory_prints_nothing_and_succeeds) {
  scratch tmp;
  outcome ours = run(fmt::format("timeout 120 {} --quick {} 2>/dev/null", quoted(checksum_binary()),
                                 quoted(tmp.dir.string())));
  BOOST_TEST(ours.status == 0);
  BOOST_TEST(ours.out.empty());
}
