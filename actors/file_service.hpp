// file_service: a stock actor that serves file reads, writes and metadata
// to other actors, built only on troupe's public API.
//
//   auto files = rt.spawn<troupe::actors::file_service>(troupe::pinned{0},
//       troupe::actors::file_service::options{.root = "/srv/data"});
//   ask(files, file_service::read{"index/7.bin", 4096, 4096})
//       .then([this](troupe::result<troupe::io::bytes> r) { ... });
//
// Every request is an ask; the answer comes when its I/O has completed on
// the service's shard, and the service takes other requests meanwhile
// (handlers answer later through troupe::promise). Errors are the kernel's
// errno (generic category) or troupe::errc: EXDEV for a path that escapes
// `root`, EINVAL for a read longer than `max_read`, errc::actor_stopped
// when the service stops with the request in flight.
//
// Descriptors are cached between requests (at most `max_open`, least
// recently used closed first), one read-only and one write-only per path.
// A cached descriptor keeps pointing at the file it opened: after `replace`
// the service forgets the path itself; if something else renames or deletes
// the file, send `forget{path}`.
//
// Link with the `actors` library (actors/Jamfile) and #include
// <actors/file_service.hpp>.
#pragma once

#include <troupe/actor.hpp>
#include <troupe/fs.hpp>
#include <troupe/io.hpp>
#include <troupe/promise.hpp>

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

namespace troupe::actors {

class file_service : public actor<file_service> {
 public:
  struct options {
    /// Empty: paths as given (absolute, or relative to the working
    /// directory). Otherwise every path is resolved beneath this directory
    /// (openat2 RESOLVE_BENEATH: "..", absolute paths and symlinks that
    /// leave it fail with EXDEV).
    std::string root;
    /// Descriptors kept open between requests.
    std::size_t max_open = 64;
    /// The longest read one request may ask for (a guard against a request
    /// that would allocate gigabytes); longer: EINVAL.
    std::size_t max_read = 64 * 1024 * 1024;
    /// Permission bits of files `write` creates (less the umask).
    mode_t create_mode = 0644;
  };

  // ---- requests (each an ask; the reply type is after the arrow) --------

  /// pread of up to `length` bytes at `offset` → io::bytes (shorter at end
  /// of file, empty past it).
  struct read {
    std::string path;
    std::uint64_t offset = 0;
    std::size_t length = 0;
  };
  /// pwrite of all of `data` at `offset`, creating the file if needed (short
  /// writes are continued) → bytes written.
  struct write {
    std::string path;
    std::uint64_t offset = 0;
    io::bytes data;
  };
  /// statx → fs::metadata.
  struct stat {
    std::string path;
  };
  /// The whole file → io::bytes (fs::read_file; not through the cache).
  struct read_all {
    std::string path;
  };
  /// Replaces the whole file atomically → void (fs::write_file). Beneath a
  /// root, `path` must be relative without ".." (EXDEV otherwise); unlike
  /// the other requests it is not checked against symlinks that leave root.
  struct replace {
    std::string path;
    io::bytes data;
  };
  /// fdatasync of what `write` wrote to `path` → void (nothing cached: ok).
  struct sync {
    std::string path;
  };
  /// Closes the cached descriptors of `path` → void.
  struct forget {
    std::string path;
  };
  /// What the service did so far → counters.
  struct query_counters {};

  struct counters {
    std::uint64_t reads = 0, writes = 0, stats = 0, whole_reads = 0, replaces = 0, syncs = 0;
    std::uint64_t opens = 0;       // descriptors opened
    std::uint64_t cache_hits = 0;  // requests served by a cached descriptor
    std::uint64_t evictions = 0;   // descriptors closed to stay under max_open
    std::uint64_t errors = 0;      // requests answered with an error
    std::size_t open_now = 0;
  };

  file_service();
  explicit file_service(options o);
  ~file_service();

  deferred<io::bytes> on(read r);
  deferred<std::size_t> on(write w);
  deferred<fs::metadata> on(const stat& s);
  deferred<io::bytes> on(const read_all& r);
  deferred<void> on(replace r);
  deferred<void> on(const sync& s);
  void on(const forget& f);
  counters on(const query_counters&) const { return counters_; }

 private:
  enum class access : bool { read_only, write_only };

  // Shared by the cache and the requests using it: an evicted descriptor
  // stays open until the last request holding it is done.
  using shared_file = std::shared_ptr<fs::file>;

  // A request waiting for a descriptor: runs once with it or the error.
  struct waiter {
    virtual ~waiter() = default;
    virtual void ready(shared_file f, std::error_code ec) = 0;
  };
  template <class F>
  struct waiter_with final : waiter {
    F fn;
    explicit waiter_with(F f) : fn(std::move(f)) {}
    void ready(shared_file f, std::error_code ec) override { fn(std::move(f), ec); }
  };

  struct entry {
    shared_file file;
    bool opening = true;
    bool stale = false;  // forgotten while it opened
    std::vector<std::unique_ptr<waiter>> waiting;
    std::list<std::string>::iterator lru;  // valid once open
  };

  static std::string key(const std::string& path, access a) {
    return (a == access::read_only ? "r:" : "w:") + path;
  }

  /// Runs fn(shared_file, std::error_code) with a descriptor for
  /// `path`: cached, being opened (then it waits), or opened now.
  template <class F>
  void with_file(const std::string& path, access a, F fn);
  void opened(const std::string& k, io::result<fs::file> f);
  void touch(entry& e, const std::string& k);
  void evict_beyond_limit();
  void close_entry(std::unordered_map<std::string, entry>::iterator it);
  fs::open open_op(const std::string& path, int flags, mode_t mode) const;
  void write_all(shared_file f, std::uint64_t offset, io::bytes data, std::size_t before,
                 promise<std::size_t> reply);
  void forget_path(const std::string& path);

  template <class R>
  void answer(promise<R>& p, io::result<R> r) {
    if (!r) ++counters_.errors;
    p.deliver(std::move(r));
  }

  options options_;
  fs::file root_;
  std::unordered_map<std::string, entry> cache_;
  std::list<std::string> lru_;  // open entries, most recently used first
  counters counters_;
};

template <class F>
void file_service::with_file(const std::string& path, access a, F fn) {
  std::string k = key(path, a);
  auto it = cache_.find(k);
  if (it != cache_.end()) {
    entry& e = it->second;
    if (e.opening) {
      e.waiting.push_back(std::make_unique<waiter_with<F>>(std::move(fn)));
      return;
    }
    ++counters_.cache_hits;
    touch(e, k);
    fn(e.file, std::error_code());
    return;
  }
  entry& e = cache_[k];
  e.waiting.push_back(std::make_unique<waiter_with<F>>(std::move(fn)));
  int flags = a == access::read_only ? O_RDONLY : O_WRONLY | O_CREAT;
  submit(open_op(path, flags, options_.create_mode)).then([this, k](io::result<fs::file> f) {
    opened(k, std::move(f));
  });
}

}  // namespace troupe::actors
