// Whole-file helpers, each a short chain of fs operations on the ring of
// the calling actor's shard:
//
//   fs::read_file(*this, "config.toml").then([this](io::result<io::bytes> r) {...});
//   fs::write_file(*this, "state.json", std::move(bytes)).then([](io::result<void> r) {...});
//   fs::copy_file(*this, "a.log", "b.log").then([](io::result<std::uint64_t> n) {...});
//
// Like submit(op).then(fn): call them from the actor's own handlers; fn runs
// later as a message of that actor, once, with the first error of the chain
// or the result. If the actor stops midway, the operation in flight is
// cancelled, fn never runs and nothing leaks (descriptors close with the
// chain; write_file may leave its temporary file behind, see below).
#pragma once

#include <troupe/actor.hpp>
#include <troupe/fs.hpp>
#include <troupe/io.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

namespace troupe::fs {

namespace detail {

template <class Op, class G>
void issue(actor_base* a, Op op, G&& g) {
  io_request<Op>(a, std::move(op)).then(std::forward<G>(g));
}

/// pread(2) into `buf[at, size)`; the result is `buf` cut to `at` + what
/// was read. Reading in place saves a copy per chunk of a whole file.
struct read_into {
  shared_descriptor keep;
  int fd;
  std::uint64_t offset;
  io::bytes buf;
  std::size_t at;

  using output = io::bytes;
  void prepare(io_uring_sqe* sqe) {
    io_uring_prep_read(sqe, fd, buf.data() + at, static_cast<unsigned>(buf.size() - at), offset);
  }
  io::result<io::bytes> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    buf.resize(at + static_cast<std::size_t>(res));
    return std::move(buf);
  }
};

/// pwrite(2) of `data[at, size)`, the data staying owned by the chain.
struct write_from {
  shared_descriptor keep;
  int fd;
  std::uint64_t offset;
  io::bytes data;
  std::size_t at;
  std::size_t end;

  struct done {
    std::size_t bytes;
    io::bytes data;
  };
  using output = done;
  void prepare(io_uring_sqe* sqe) {
    io_uring_prep_write(sqe, fd, data.data() + at, static_cast<unsigned>(end - at), offset);
  }
  io::result<done> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    if (res == 0) return std::make_error_code(std::errc::io_error);  // no progress: never spin
    return done{static_cast<std::size_t>(res), std::move(data)};
  }
};

/// The kernel moves at most ~2 GiB per read or write (MAX_RW_COUNT).
inline constexpr std::size_t max_chunk = std::size_t{1} << 30;
/// What a read asks for past the size statx reported (files that grew,
/// /proc files that report 0).
inline constexpr std::size_t probe_chunk = 64 * 1024;
/// What copy_file moves per read and write.
inline constexpr std::size_t copy_chunk = 1024 * 1024;

// ---- read_file -------------------------------------------------------------

template <class F>
struct read_file_job {
  actor_base* a;
  F done;
  file f{};
  io::bytes data{};
  std::size_t hint = 0;  // the size statx reported

  using ptr = std::unique_ptr<read_file_job>;

  static void start(ptr j, open o) {
    actor_base* a = j->a;
    issue(a, std::move(o), [j = std::move(j)](io::result<file> f) mutable {
      if (!f) return j->done(f.error());
      j->f = std::move(*f);
      actor_base* a = j->a;
      stat st = stat::of(j->f);
      issue(a, std::move(st), [j = std::move(j)](io::result<metadata> m) mutable {
        if (!m) return j->done(m.error());
        if (m->is_directory()) return j->done(std::make_error_code(std::errc::is_a_directory));
        j->hint = m->is_regular() ? static_cast<std::size_t>(m->size) : 0;
        next(std::move(j));
      });
    });
  }

  static void next(ptr j) {
    actor_base* a = j->a;
    std::size_t got = j->data.size();
    if (got < j->hint) {
      // Straight into the result, up to the size statx reported.
      io::bytes buf = std::move(j->data);
      buf.resize(got + std::min(j->hint - got, max_chunk));
      read_into op{j->f.share(), j->f.fd(), got, std::move(buf), got};
      return issue(a, std::move(op), [j = std::move(j), got](io::result<io::bytes> r) mutable {
        if (!r) return j->done(r.error());
        bool eof = r->size() == got;
        j->data = std::move(*r);
        if (eof) j->hint = j->data.size();  // shrank meanwhile
        eof ? finish(std::move(j)) : next(std::move(j));
      });
    }
    // Past the reported size: a small probe tells end of file from growth.
    read_into op{j->f.share(), j->f.fd(), got, io::bytes(probe_chunk), 0};
    issue(a, std::move(op), [j = std::move(j)](io::result<io::bytes> r) mutable {
      if (!r) return j->done(r.error());
      if (r->empty()) return finish(std::move(j));
      j->data.insert(j->data.end(), r->begin(), r->end());
      j->hint = j->data.size();
      next(std::move(j));
    });
  }

  static void finish(ptr j) {
    actor_base* a = j->a;
    close c{std::move(j->f)};
    issue(a, std::move(c), [j = std::move(j)](io::result<void>) mutable {
      // A close error after a complete read loses nothing: the data stands.
      j->done(std::move(j->data));
    });
  }
};

// ---- write_file ------------------------------------------------------------

/// A name next to `path` for its temporary file: same directory (rename
/// must not cross file systems), hidden, unlikely to collide (O_EXCL
/// catches the rest).
inline std::string temporary_name_for(const std::string& path) {
  static std::atomic<std::uint64_t> counter{0};
  std::size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  auto stamp = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  std::uint64_t n = counter.fetch_add(1, std::memory_order_relaxed);
  std::uint64_t mix = (stamp ^ (n * 0x9E3779B97F4A7C15ull) ^ (std::uint64_t(::getpid()) << 40)) & 0xFFFFFFFFFFull;
  static const char hex[] = "0123456789abcdef";
  std::string tag(10, '0');
  for (int i = 9; i >= 0; --i, mix >>= 4) tag[std::size_t(i)] = hex[mix & 15];
  return dir + "." + base + ".troupe-" + tag + ".tmp";
}

inline std::string directory_of(const std::string& path) {
  std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

template <class F>
struct write_file_job {
  actor_base* a;
  F done;
  std::string path;
  std::string temp{};
  io::bytes data;
  mode_t mode;
  file f{};
  std::size_t written = 0;
  int attempts = 0;

  using ptr = std::unique_ptr<write_file_job>;

  static void start(ptr j) {
    actor_base* a = j->a;
    j->temp = temporary_name_for(j->path);
    open o{j->temp, O_WRONLY | O_CREAT | O_EXCL, j->mode};
    issue(a, std::move(o), [j = std::move(j)](io::result<file> f) mutable {
      if (!f) {
        if (f.error() == std::errc::file_exists && ++j->attempts < 3) return start(std::move(j));
        return j->done(f.error());
      }
      j->f = std::move(*f);
      write_more(std::move(j));
    });
  }

  static void write_more(ptr j) {
    if (j->written == j->data.size()) return sync(std::move(j));
    actor_base* a = j->a;
    std::size_t end = j->written + std::min(j->data.size() - j->written, max_chunk);
    write_from op{j->f.share(), j->f.fd(), j->written, std::move(j->data), j->written, end};
    issue(a, std::move(op), [j = std::move(j)](io::result<write_from::done> w) mutable {
      if (!w) return fail(std::move(j), w.error());
      j->data = std::move(w->data);
      j->written += w->bytes;  // a short write continues where it stopped
      write_more(std::move(j));
    });
  }

  // The data is on disk before the name points at it: a crash leaves the
  // old file or the new one, never a torn one.
  static void sync(ptr j) {
    actor_base* a = j->a;
    fsync s{j->f};
    issue(a, std::move(s), [j = std::move(j)](io::result<void> r) mutable {
      if (!r) return fail(std::move(j), r.error());
      actor_base* a = j->a;
      close c{std::move(j->f)};
      issue(a, std::move(c), [j = std::move(j)](io::result<void> r) mutable {
        if (!r) return fail(std::move(j), r.error());
        actor_base* a = j->a;
        rename mv{j->temp, j->path};
        issue(a, std::move(mv), [j = std::move(j)](io::result<void> r) mutable {
          if (!r) return fail(std::move(j), r.error());
          sync_directory(std::move(j));
        });
      });
    });
  }

  // And the rename itself survives a crash once the directory is synced.
  static void sync_directory(ptr j) {
    actor_base* a = j->a;
    open o{directory_of(j->path), O_RDONLY | O_DIRECTORY};
    issue(a, std::move(o), [j = std::move(j)](io::result<file> d) mutable {
      if (!d) return j->done(d.error());
      actor_base* a = j->a;
      auto dir = std::make_shared<file>(std::move(*d));
      fsync s{*dir};
      issue(a, std::move(s), [j = std::move(j), dir](io::result<void> r) mutable {
        if (!r) return j->done(r.error());
        j->done(io::result<void>{});
      });
    });
  }

  static void fail(ptr j, std::error_code ec) {
    actor_base* a = j->a;
    j->f = file();
    unlink u{j->temp};
    issue(a, std::move(u), [j = std::move(j), ec](io::result<void>) mutable { j->done(ec); });
  }
};

// ---- copy_file -------------------------------------------------------------

template <class F>
struct copy_file_job {
  actor_base* a;
  F done;
  std::string to;
  file in{};
  file out{};
  std::uint64_t offset = 0;
  io::bytes chunk{};
  std::size_t chunk_written = 0;

  using ptr = std::unique_ptr<copy_file_job>;

  static void start(ptr j, std::string from) {
    actor_base* a = j->a;
    issue(a, open{std::move(from), O_RDONLY}, [j = std::move(j)](io::result<file> f) mutable {
      if (!f) return j->done(f.error());
      j->in = std::move(*f);
      actor_base* a = j->a;
      stat st = stat::of(j->in);
      issue(a, std::move(st), [j = std::move(j)](io::result<metadata> m) mutable {
        if (!m) return j->done(m.error());
        if (m->is_directory()) return j->done(std::make_error_code(std::errc::is_a_directory));
        actor_base* a = j->a;
        open o{j->to, O_WRONLY | O_CREAT | O_TRUNC, static_cast<mode_t>(m->mode & 07777)};
        issue(a, std::move(o), [j = std::move(j)](io::result<file> f) mutable {
          if (!f) return j->done(f.error());
          j->out = std::move(*f);
          j->chunk.resize(copy_chunk);
          read_more(std::move(j));
        });
      });
    });
  }

  static void read_more(ptr j) {
    actor_base* a = j->a;
    io::bytes buf = std::move(j->chunk);
    buf.resize(copy_chunk);
    read_into op{j->in.share(), j->in.fd(), j->offset, std::move(buf), 0};
    issue(a, std::move(op), [j = std::move(j)](io::result<io::bytes> r) mutable {
      if (!r) return j->done(r.error());
      j->chunk = std::move(*r);
      if (j->chunk.empty()) return finish(std::move(j));
      j->chunk_written = 0;
      write_more(std::move(j));
    });
  }

  static void write_more(ptr j) {
    if (j->chunk_written == j->chunk.size()) {
      j->offset += j->chunk.size();
      return read_more(std::move(j));
    }
    actor_base* a = j->a;
    std::size_t end = j->chunk.size();
    write_from op{j->out.share(), j->out.fd(), j->offset + j->chunk_written, std::move(j->chunk),
                  j->chunk_written, end};
    issue(a, std::move(op), [j = std::move(j)](io::result<write_from::done> w) mutable {
      if (!w) return j->done(w.error());
      j->chunk = std::move(w->data);
      j->chunk_written += w->bytes;
      write_more(std::move(j));
    });
  }

  static void finish(ptr j) {
    actor_base* a = j->a;
    j->in = file();
    close c{std::move(j->out)};
    issue(a, std::move(c), [j = std::move(j)](io::result<void> r) mutable {
      if (!r) return j->done(r.error());  // the copy may not have reached the disk (NFS)
      j->done(j->offset);
    });
  }
};

/// What a whole-file helper returns: issued by `.then(fn)`.
template <class Output, class Start>
class [[nodiscard("a whole-file helper is issued by .then(fn)")]] chain_request {
 public:
  explicit chain_request(Start start) : start_(std::move(start)) {}
  template <class F>
  void then(F&& fn) && {
    static_assert(std::is_invocable_v<std::decay_t<F>&, io::result<Output>>,
                  "troupe: fs helper .then(fn): fn must be callable with troupe::io::result<Output>");
    std::move(start_)(std::decay_t<F>(std::forward<F>(fn)));
  }

 private:
  Start start_;
};

template <class Output, class Start>
chain_request<Output, Start> make_chain(Start s) {
  return chain_request<Output, Start>(std::move(s));
}

}  // namespace detail

/// The whole content of the file at `path` (opened O_RDONLY, read to its
/// end even if it grows meanwhile or statx reports 0, as /proc files do).
/// Errors: open's (ENOENT, EACCES...), EISDIR for a directory, read's.
template <class Self>
auto read_file(Self& self, std::string path) {
  return read_file(self, open{std::move(path), O_RDONLY});
}

/// The same, opening with `how` (say with a dirfd and RESOLVE_BENEATH).
template <class Self>
auto read_file(Self& self, open how) {
  actor_base* a = &self;
  return detail::make_chain<io::bytes>([a, how = std::move(how)](auto fn) mutable {
    using job = detail::read_file_job<decltype(fn)>;
    job::start(typename job::ptr(new job{a, std::move(fn)}), std::move(how));
  });
}

/// Replaces the file at `path` with `data`, atomically: written to a
/// temporary file in the same directory, fsync'ed, renamed over `path`, and
/// the directory fsync'ed. Readers see the old content or the new one,
/// never a mix, and after a crash the file is one or the other. On an error
/// the temporary file is removed and `path` is untouched; if the actor
/// stops midway, the temporary file (".<name>.troupe-<tag>.tmp") may stay.
/// `mode` is for a new file, as open(2) with the umask applied.
template <class Self>
auto write_file(Self& self, std::string path, io::bytes data, mode_t mode = 0644) {
  actor_base* a = &self;
  return detail::make_chain<void>(
      [a, path = std::move(path), data = std::move(data), mode](auto fn) mutable {
        using job = detail::write_file_job<decltype(fn)>;
        job::start(typename job::ptr(new job{a, std::move(fn), std::move(path), {}, std::move(data), mode}));
      });
}

/// Copies the file `from` to `to` (created with `from`'s permission bits,
/// or truncated), 1 MiB at a time through the ring. The result is the
/// number of bytes copied. Not atomic: on an error `to` may hold a prefix.
template <class Self>
auto copy_file(Self& self, std::string from, std::string to) {
  actor_base* a = &self;
  return detail::make_chain<std::uint64_t>(
      [a, from = std::move(from), to = std::move(to)](auto fn) mutable {
        using job = detail::copy_file_job<decltype(fn)>;
        job::start(typename job::ptr(new job{a, std::move(fn), std::move(to)}), std::move(from));
      });
}

}  // namespace troupe::fs
