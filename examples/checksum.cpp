// The flagship example: a parallel file checksummer.
//
//   checksum [--quick] DIR|FILE...
//
// prints one line per regular file, `<XXH128 as 32 hex digits>  path`,
// sorted by path: byte for byte what `xxhsum -H2` (Debian 12's xxhash 0.8.1)
// prints for the same files, and what `xxhsum -c` checks. The per-shard stats go to stderr, so that stdout stays
// comparable with the reference tool.
//
// - main walks the trees with std::filesystem before it starts the runtime:
//   io_uring has no opcode that lists a directory, and the walk is cheap next
//   to reading the files.
// - `collector` (pinned to shard 0) hands out the files. It keeps at most
//   `max_open` hashers alive, so that a huge tree runs out of neither
//   descriptors nor memory, and it lends each hasher two read buffers, which
//   come back with the hasher's digest.
// - one `file_hasher` per file, stealable: it opens its file and reads it in
//   256 KiB chunks through the ring of the shard it runs on, the next read in
//   flight while it hashes the current chunk into its streaming XXH3 (128-bit) state.
//   A short read marks the end of the file: a small file is one open, one
//   read and a close.
// - a file that cannot be opened or read gets the reference's error line on
//   stderr instead of its checksum; the others still get theirs, and the exit
//   status is 1.
//
// --quick: for short runs on a shared machine (the test suite): idle shards
// park at once instead of spinning, and threads are not pinned to CPUs.
#include <troupe/troupe.hpp>

#include <fmt/format.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace fs = troupe::fs;
namespace io = troupe::io;
namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

using buffers = std::vector<io::bytes>;

struct digest {
  std::string path;
  XXH128_hash_t hash;
  std::uint64_t bytes;
  buffers lent;  // back to the collector, for the next hasher
};
struct failure {
  std::string message;  // the whole line, in xxhsum's words
};

// What the collector leaves for main once the runtime has stopped.
struct outcome {
  std::vector<digest> digests;
  int failures = 0;
};

class collector;
struct hash_next {};  // a hasher to itself: the chunk that just arrived is next

class file_hasher : public troupe::actor<file_hasher> {
  static constexpr std::size_t chunk_max = 256 << 10;  // 1 MiB measured no faster
  std::string path_;
  troupe::ref<collector> collector_;
  // From the library's allocator: the state wants 64-byte alignment.
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state_{XXH3_createState(), &XXH3_freeState};
  fs::file file_;
  std::uint64_t offset_ = 0;   // of the next read
  buffers lent_;               // those not in a read or being hashed
  io::bytes current_;          // the chunk to hash

 public:
  file_hasher(std::string path, troupe::ref<collector> c, buffers lent)
      : path_(std::move(path)), collector_(std::move(c)), lent_(std::move(lent)) {}

  void on_start() {
    XXH3_128bits_reset(state_.get());
    submit(fs::open{path_}).then([this](io::result<fs::file> f) {
      if (!f) return fail("open", f.error());
      file_ = std::move(*f);
      // No statx first: a short read says where the file ends, and a small
      // file comes in one read. (statx is one more trip through the
      // kernel's worker threads per file, and io::bytes does not zero what
      // a read is about to fill, so a large first read costs nothing.)
      read_next();
    });
  }

  void on(const hash_next&) {
    const bool last = current_.size() < chunk_max;  // a short read: end of file
    // The next read goes first, so the kernel fills it while we hash.
    if (!last) read_next();
    XXH3_128bits_update(state_.get(), current_.data(), current_.size());
    lent_.push_back(std::move(current_));
    if (last) finish();
  }

 private:
  void read_next() {
    io::bytes buffer = std::move(lent_.back());
    lent_.pop_back();
    buffer.resize(chunk_max);  // not zeroed: the read fills it
    submit(fs::read(file_, offset_, std::move(buffer))).then([this](io::result<io::bytes> r) {
      if (!r) return fail("read", r.error());
      offset_ += r->size();
      current_ = std::move(*r);
      // Hashing is a message of its own: the actor is anchored to this
      // shard's ring until this completion has run, and from now until its
      // next read an idle shard may steal it (and issue that read on its own
      // ring). One read in flight at a time keeps the chunks in order.
      send(self(), hash_next{});
    });
  }

  void finish();
  void fail(std::string_view verb, std::error_code ec);
};

class collector : public troupe::actor<collector> {
  std::vector<std::string> files_;
  std::size_t next_ = 0, running_ = 0;
  outcome* out_;
  // Read buffers between two hashers: allocated once per slot, not per file
  // (a fresh block costs page faults when a read first touches it).
  buffers pool_;

  // Stealable hashers start on the least loaded shard; stealing then evens
  // out what their file sizes make uneven.
  void start_next() {
    buffers lend(2);
    for (io::bytes& b : lend) {
      if (pool_.empty()) break;
      b = std::move(pool_.back());
      pool_.pop_back();
    }
    spawn<file_hasher>(troupe::stealable{}, std::move(files_[next_++]), self(), std::move(lend));
    ++running_;
  }
  void settle() {
    --running_;
    if (next_ < files_.size())
      start_next();
    else if (running_ == 0)
      system().stop();
  }

 public:
  static constexpr std::size_t max_open = 64;

  collector(std::vector<std::string> files, outcome* out) : files_(std::move(files)), out_(out) {}
  void on_start() {
    while (next_ < files_.size() && running_ < max_open) start_next();
    if (running_ == 0) system().stop();  // nothing to hash
  }
  void on(digest&& d) {
    for (io::bytes& b : d.lent) pool_.push_back(std::move(b));
    d.lent.clear();
    out_->digests.push_back(std::move(d));
    settle();
  }
  void on(const failure& f) {
    fmt::print(stderr, "{}\n", f.message);
    ++out_->failures;
    settle();
  }
};

void file_hasher::finish() {
  const std::uint64_t bytes = offset_;
  file_ = fs::file{};  // closed now, before the collector opens the next file
  collector_.send(digest{std::move(path_), XXH3_128bits_digest(state_.get()), bytes, std::move(lent_)});
  stop();
}

void file_hasher::fail(std::string_view verb, std::error_code ec) {
  file_ = fs::file{};  // its buffers go too: the collector makes new ones
  // xxhsum says "Error: Could not open 'x': No such file or directory. ".
  collector_.send(failure{fmt::format("Error: Could not {} '{}': {}. ", verb, path_, ec.message())});
  stop();
}

// The regular files under `dir`, as `dir/sub/name`. Symlinks to files are
// hashed (as xxhsum would, given their path); symlinks to directories are not
// followed, so a cycle cannot trap the walk.
void walk(const stdfs::path& dir, std::vector<std::string>& files, int& errors) {
  std::error_code ec;
  for (stdfs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;  // an entry that vanished meanwhile is skipped
    if (it->is_directory(type_ec) && !it->is_symlink(type_ec))
      walk(it->path(), files, errors);
    else if (it->is_regular_file(type_ec))
      files.push_back(it->path().string());
  }
  if (ec) {
    fmt::print(stderr, "Error: Could not open '{}': {}. \n", dir.string(), ec.message());
    ++errors;
  }
}

int main(int argc, char** argv) {
  bool quick = false;
  std::vector<std::string> files;
  int walk_errors = 0, roots = 0;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--quick") {
      quick = true;
      continue;
    }
    ++roots;
    std::error_code ec;
    if (stdfs::is_directory(arg, ec))
      walk(arg, files, walk_errors);
    else  // a file, or a missing path: its open reports it as the reference does
      files.emplace_back(arg);
  }
  if (roots == 0) {
    fmt::print(stderr, "usage: {} [--quick] DIR|FILE...\n", argv[0]);
    return 2;
  }

  troupe::config cfg;  // one shard per CPU
  if (quick) {
    cfg.spin_before_park = 0us;
    cfg.pinning = troupe::thread_pinning::none;
  }
  outcome out;
  auto t0 = std::chrono::steady_clock::now();
  troupe::runtime rt{cfg};
  rt.spawn<collector>(troupe::pinned{0}, std::move(files), &out);
  rt.wait();  // until the collector stops the runtime; it joins the shards, so `out` is ours
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::sort(out.digests.begin(), out.digests.end(),
            [](const digest& a, const digest& b) { return a.path < b.path; });
  std::uint64_t bytes = 0;
  for (const digest& d : out.digests) {
    fmt::print("{:016x}{:016x}  {}\n", d.hash.high64, d.hash.low64, d.path);
    bytes += d.bytes;
  }
  std::fflush(stdout);  // before the stats, when both go to one console

  auto st = rt.stats();
  fmt::print(stderr, "\n{} files, {:.1f} MiB in {:.3f} s on {} shards, {} errors\n", out.digests.size(),
             double(bytes) / (1 << 20), secs, rt.shards(), out.failures + walk_errors);
  fmt::print(stderr, "shard  messages_run  io_submitted  steals  migrated_in  migrated_out\n");
  for (std::size_t i = 0; i < st.shards.size(); ++i) {
    const auto& s = st.shards[i];
    fmt::print(stderr, "{:>5}  {:>12}  {:>12}  {:>6}  {:>11}  {:>12}\n", i, s.messages_run,
               s.io_submitted, s.steals, s.migrated_in, s.migrated_out);
  }
  return out.failures + walk_errors == 0 ? 0 : 1;
}
