// File operations on the shard's ring, each one small struct (io.hpp):
//
//   submit(fs::open{"data.log", O_WRONLY | O_CREAT, 0644}).then([this](io::result<fs::file> f) {...});
//
// Each operation owns what the kernel touches (paths, buffers, the statx
// record) and hands buffers back in its result. Errors are the kernel's
// errno as io::result errors; nothing here throws for an I/O failure.
// See doc/io.md for the whole surface and its threading contract.
#pragma once

#include <troupe/detail/descriptor.hpp>
#include <troupe/fixed_buffer.hpp>
#include <troupe/io.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <linux/stat.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace troupe::fs {

namespace detail {
using troupe::detail::descriptor;
using troupe::detail::shared_descriptor;
}  // namespace detail

/// An open descriptor, closed when the file and every operation submitted
/// on it are gone (or through fs::close). Move-only.
class file : public troupe::detail::owned_descriptor {
 public:
  using owned_descriptor::owned_descriptor;
};

/// openat(2), or openat2(2) when `resolve` has RESOLVE_* flags (say
/// RESOLVE_BENEATH with `dirfd`: a path that escapes it fails with EXDEV).
/// O_CLOEXEC is always added.
struct open {
  std::string path;
  int flags = O_RDONLY;
  mode_t mode = 0;
  int dirfd = AT_FDCWD;
  std::uint64_t resolve = 0;
  open_how how{};  // what openat2 reads at submission

  using output = file;
  void prepare(io_uring_sqe* sqe) {
    if (resolve == 0) return io_uring_prep_openat(sqe, dirfd, path.c_str(), flags | O_CLOEXEC, mode);
    how = open_how{};
    how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
    bool creates = (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE;
    how.mode = creates ? mode : 0;  // openat2 refuses a mode otherwise
    how.resolve = resolve;
    io_uring_prep_openat2(sqe, dirfd, path.c_str(), &how);
  }
  io::result<file> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    return file(res);
  }
};

/// close(2) through the ring, once no other operation uses the file; if
/// some still do, the descriptor closes when the last of them completes.
/// Either way the file is given up (Linux releases a descriptor even when
/// close reports an error).
struct close {
  file f;
  bool closing = false;

  using output = void;
  void prepare(io_uring_sqe* sqe) {
    closing = f.sole_owner();
    if (closing) io_uring_prep_close(sqe, f.fd());
    else io_uring_prep_nop(sqe);
  }
  io::result<void> complete(int res, unsigned) {
    if (!closing) {
      f = file();
      return {};
    }
    f.release();
    return io::status_of(res);
  }
};

/// pread(2) into a buffer the operation owns: `len` new bytes, or the one
/// passed in (its size is the length). The result is that buffer, cut to
/// the bytes read (shorter at end of file, empty past it).
struct read {
  detail::shared_descriptor keep;
  int fd;
  std::uint64_t offset;
  io::bytes buffer;

  read(const file& f, std::uint64_t off, std::size_t len)
      : keep(f.share()), fd(f.fd()), offset(off), buffer(len) {}
  read(const file& f, std::uint64_t off, io::bytes buf)
      : keep(f.share()), fd(f.fd()), offset(off), buffer(std::move(buf)) {}

  using output = io::bytes;
  void prepare(io_uring_sqe* sqe) {
    io_uring_prep_read(sqe, fd, buffer.data(), static_cast<unsigned>(buffer.size()), offset);
  }
  io::result<io::bytes> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    buffer.resize(static_cast<std::size_t>(res));
    return std::move(buffer);
  }
};

/// What a write hands back: the byte count and the caller's buffer.
struct written {
  std::size_t bytes = 0;
  io::bytes buffer;
};

/// pwrite(2) of a buffer the operation owns. A short write is reported as
/// such (`bytes` < buffer size), never retried behind your back.
struct write {
  detail::shared_descriptor keep;
  int fd;
  std::uint64_t offset;
  io::bytes buffer;

  write(const file& f, std::uint64_t off, io::bytes data)
      : keep(f.share()), fd(f.fd()), offset(off), buffer(std::move(data)) {}

  using output = written;
  void prepare(io_uring_sqe* sqe) {
    io_uring_prep_write(sqe, fd, buffer.data(), static_cast<unsigned>(buffer.size()), offset);
  }
  io::result<written> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    return written{static_cast<std::size_t>(res), std::move(buffer)};
  }
};

/// pread(2) of up to `length` bytes (at most the buffer's capacity) into a
/// registered buffer (IORING_OP_READ_FIXED); the result is the buffer, its
/// size() what was read. On a shard the buffer is not registered with (an
/// unbound actor that moved) it is a plain read of the same memory.
struct read_fixed {
  detail::shared_descriptor keep;
  int fd;
  std::uint64_t offset;
  io::fixed_buffer buffer;
  std::size_t length;

  read_fixed(const file& f, std::uint64_t off, io::fixed_buffer buf, std::size_t len)
      : keep(f.share()), fd(f.fd()), offset(off), buffer(std::move(buf)), length(std::min(len, buffer.capacity())) {}

  using output = io::fixed_buffer;
  void prepare(io_uring_sqe* sqe) {
    auto n = static_cast<unsigned>(length);
    if (buffer.registered_here())
      io_uring_prep_read_fixed(sqe, fd, buffer.data(), n, offset, static_cast<int>(buffer.index()));
    else
      io_uring_prep_read(sqe, fd, buffer.data(), n, offset);
  }
  io::result<io::fixed_buffer> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    buffer.resize(static_cast<std::size_t>(res));
    return std::move(buffer);
  }
};

/// What a write_fixed hands back: the byte count and the buffer.
struct written_fixed {
  std::size_t bytes = 0;
  io::fixed_buffer buffer;
};

/// pwrite(2) of a registered buffer's size() bytes (IORING_OP_WRITE_FIXED;
/// plain write off its shard). `bytes` may be short.
struct write_fixed {
  detail::shared_descriptor keep;
  int fd;
  std::uint64_t offset;
  io::fixed_buffer buffer;

  write_fixed(const file& f, std::uint64_t off, io::fixed_buffer buf)
      : keep(f.share()), fd(f.fd()), offset(off), buffer(std::move(buf)) {}

  using output = written_fixed;
  void prepare(io_uring_sqe* sqe) {
    auto n = static_cast<unsigned>(buffer.size());
    if (buffer.registered_here())
      io_uring_prep_write_fixed(sqe, fd, buffer.data(), n, offset, static_cast<int>(buffer.index()));
    else
      io_uring_prep_write(sqe, fd, buffer.data(), n, offset);
  }
  io::result<written_fixed> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    return written_fixed{static_cast<std::size_t>(res), std::move(buffer)};
  }
};

/// preadv(2) into buffers the operation owns; each is cut to what it got.
struct readv {
  detail::shared_descriptor keep;
  int fd;
  std::uint64_t offset;
  std::vector<io::bytes> buffers;
  std::vector<iovec> iov;

  readv(const file& f, std::uint64_t off, std::vector<io::bytes> bufs)
      : keep(f.share()), fd(f.fd()), offset(off), buffers(std::move(bufs)) {}

  using output = std::vector<io::bytes>;
  void prepare(io_uring_sqe* sqe) {
    iov.clear();
    for (auto& b : buffers) iov.push_back({b.data(), b.size()});
    io_uring_prep_readv(sqe, fd, iov.data(), static_cast<unsigned>(iov.size()), offset);
  }
  io::result<std::vector<io::bytes>> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    std::size_t left = static_cast<std::size_t>(res);
    for (auto& b : buffers) {
      std::size_t got = std::min(left, b.size());
      b.resize(got);
      left -= got;
    }
    return std::move(buffers);
  }
};

/// pwritev(2) of buffers the operation owns; `bytes` may be short.
struct writev {
  detail::shared_descriptor keep;
  int fd;
  std::uint64_t offset;
  std::vector<io::bytes> buffers;
  std::vector<iovec> iov;

  writev(const file& f, std::uint64_t off, std::vector<io::bytes> bufs)
      : keep(f.share()), fd(f.fd()), offset(off), buffers(std::move(bufs)) {}

  struct output_type {
    std::size_t bytes = 0;
    std::vector<io::bytes> buffers;
  };
  using output = output_type;
  void prepare(io_uring_sqe* sqe) {
    iov.clear();
    for (auto& b : buffers) iov.push_back({b.data(), b.size()});
    io_uring_prep_writev(sqe, fd, iov.data(), static_cast<unsigned>(iov.size()), offset);
  }
  io::result<output_type> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    return output_type{static_cast<std::size_t>(res), std::move(buffers)};
  }
};

/// fallocate(2): `mode` as FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE...
struct fallocate {
  detail::shared_descriptor keep;
  int fd;
  int mode;
  std::uint64_t offset;
  std::uint64_t length;

  fallocate(const file& f, std::uint64_t off, std::uint64_t len, int m = 0)
      : keep(f.share()), fd(f.fd()), mode(m), offset(off), length(len) {}

  using output = void;
  void prepare(io_uring_sqe* sqe) { io_uring_prep_fallocate(sqe, fd, mode, offset, length); }
  io::result<void> complete(int res, unsigned) { return io::status_of(res); }
};

/// ftruncate(2) through IORING_OP_FTRUNCATE (Linux 6.9+); on an older
/// kernel (probed at start) the same call runs on the blocking pool.
struct ftruncate {
  detail::shared_descriptor keep;
  int fd;
  std::uint64_t length;

  ftruncate(const file& f, std::uint64_t len) : keep(f.share()), fd(f.fd()), length(len) {}

  using output = void;
  void prepare(io_uring_sqe* sqe);  // src/fs.cpp: liburing 2.3 has no helper
  io::result<void> complete(int res, unsigned) { return io::status_of(res); }
  io::result<void> run() {
    if (::ftruncate(fd, static_cast<off_t>(length)) != 0) return std::error_code(errno, std::generic_category());
    return {};
  }
};

/// What fs::fsync makes durable.
enum class sync_scope {
  all,        // data and metadata: fsync(2)
  data_only,  // data, and the metadata needed to read it back: fdatasync(2)
};

/// fsync(2), or fdatasync(2) with sync_scope::data_only.
struct fsync {
  detail::shared_descriptor keep;
  int fd;
  sync_scope scope = sync_scope::all;

  explicit fsync(const file& f, sync_scope what = sync_scope::all) : keep(f.share()), fd(f.fd()), scope(what) {}

  using output = void;
  void prepare(io_uring_sqe* sqe) {
    io_uring_prep_fsync(sqe, fd, scope == sync_scope::data_only ? IORING_FSYNC_DATASYNC : 0);
  }
  io::result<void> complete(int res, unsigned) { return io::status_of(res); }
};

/// What statx(2) reports, in the units users expect.
struct metadata {
  std::uint64_t size = 0;
  std::uint32_t mode = 0;  // type and permission bits, as st_mode
  std::uint32_t nlink = 0;
  std::uint32_t uid = 0, gid = 0;
  std::int64_t mtime_ns = 0;  // since the epoch
  bool is_directory() const noexcept { return S_ISDIR(mode); }
  bool is_regular() const noexcept { return S_ISREG(mode); }
  bool is_symlink() const noexcept { return S_ISLNK(mode); }
};

/// statx(2) of a path (following symlinks; `follow = false` for the link
/// itself), or of an open file with an empty path and `dirfd` = its fd.
struct stat {
  std::string path;
  bool follow = true;
  int dirfd = AT_FDCWD;
  struct statx record {};

  detail::shared_descriptor keep{};  // set by of(file)

  static stat of(const file& f) {
    stat s{"", true, f.fd()};
    s.keep = f.share();
    return s;
  }

  using output = metadata;
  void prepare(io_uring_sqe* sqe) {
    int flags = (follow ? 0 : AT_SYMLINK_NOFOLLOW) | (path.empty() ? AT_EMPTY_PATH : 0);
    io_uring_prep_statx(sqe, dirfd, path.c_str(), flags, STATX_BASIC_STATS, &record);
  }
  io::result<metadata> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    return metadata{record.stx_size,
                    record.stx_mode,
                    record.stx_nlink,
                    record.stx_uid,
                    record.stx_gid,
                    std::int64_t(record.stx_mtime.tv_sec) * 1'000'000'000 + record.stx_mtime.tv_nsec};
  }
};

/// unlinkat(2); `directory` removes an empty directory (rmdir).
struct unlink {
  std::string path;
  bool directory = false;
  int dirfd = AT_FDCWD;

  using output = void;
  void prepare(io_uring_sqe* sqe) {
    io_uring_prep_unlinkat(sqe, dirfd, path.c_str(), directory ? AT_REMOVEDIR : 0);
  }
  io::result<void> complete(int res, unsigned) { return io::status_of(res); }
};

/// mkdirat(2).
struct mkdir {
  std::string path;
  mode_t mode = 0755;
  int dirfd = AT_FDCWD;

  using output = void;
  void prepare(io_uring_sqe* sqe) { io_uring_prep_mkdirat(sqe, dirfd, path.c_str(), mode); }
  io::result<void> complete(int res, unsigned) { return io::status_of(res); }
};

/// renameat2(2); `flags` as RENAME_NOREPLACE etc.
struct rename {
  std::string from;
  std::string to;
  unsigned flags = 0;

  using output = void;
  void prepare(io_uring_sqe* sqe) {
    io_uring_prep_renameat(sqe, AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), flags);
  }
  io::result<void> complete(int res, unsigned) { return io::status_of(res); }
};

/// symlinkat(2): a link at `path` pointing to `target`.
struct symlink {
  std::string target;
  std::string path;

  using output = void;
  void prepare(io_uring_sqe* sqe) { io_uring_prep_symlinkat(sqe, target.c_str(), AT_FDCWD, path.c_str()); }
  io::result<void> complete(int res, unsigned) { return io::status_of(res); }
};

/// linkat(2): a hard link at `path` to the existing `from`.
struct link {
  std::string from;
  std::string path;

  using output = void;
  void prepare(io_uring_sqe* sqe) {
    io_uring_prep_linkat(sqe, AT_FDCWD, from.c_str(), AT_FDCWD, path.c_str(), 0);
  }
  io::result<void> complete(int res, unsigned) { return io::status_of(res); }
};

/// What io_uring has no opcode for, run on the runtime's small blocking
/// pool (config::blocking_threads) and counted in runtime_stats::blocking_ops.
/// Same `submit(op).then(fn)`; these cannot be cancelled (an actor that
/// stops first never sees the result).
namespace blocking {

struct dir_entry {
  std::string name;
  unsigned char type = DT_UNKNOWN;  // DT_REG, DT_DIR, DT_LNK... as readdir(3) reports
};

/// The entries of a directory, without "." and "..", in readdir order.
struct list_directory {
  std::string path;

  using blocking_tag = void;
  using output = std::vector<dir_entry>;
  io::result<output> run() {
    DIR* d = ::opendir(path.c_str());
    if (d == nullptr) return std::error_code(errno, std::generic_category());
    output out;
    errno = 0;
    while (dirent* e = ::readdir(d)) {
      std::string_view n = e->d_name;
      if (n != "." && n != "..") out.push_back({std::string(n), e->d_type});
    }
    int err = errno;
    ::closedir(d);
    if (err != 0) return std::error_code(err, std::generic_category());
    return out;
  }
};

/// realpath(3): the absolute path with every symlink, "." and ".." resolved.
struct canonicalize {
  std::string path;

  using blocking_tag = void;
  using output = std::string;
  io::result<output> run() {
    char* r = ::realpath(path.c_str(), nullptr);
    if (r == nullptr) return std::error_code(errno, std::generic_category());
    std::string out(r);
    std::free(r);
    return out;
  }
};

/// Every entry below `path`, depth first, as paths relative to it (symlinks
/// to directories are listed, not followed). An entry that vanishes or
/// cannot be read during the walk is skipped; a `path` that cannot be
/// opened is the error.
struct walk {
  std::string path;

  using blocking_tag = void;
  using output = std::vector<dir_entry>;  // name: the relative path
  io::result<output> run() {
    output out;
    std::string rel;
    if (int err = visit(path, rel, out); err != 0) return std::error_code(err, std::generic_category());
    return out;
  }

 private:
  static int visit(const std::string& root, std::string& rel, output& out) {
    DIR* d = ::opendir((rel.empty() ? root : root + "/" + rel).c_str());
    if (d == nullptr) return errno;
    std::vector<std::string> subdirs;
    while (dirent* e = ::readdir(d)) {
      std::string_view n = e->d_name;
      if (n == "." || n == "..") continue;
      std::string child = rel.empty() ? std::string(n) : rel + "/" + std::string(n);
      out.push_back({child, e->d_type});
      if (e->d_type == DT_DIR) subdirs.push_back(std::move(child));
    }
    ::closedir(d);
    for (std::string& sub : subdirs) (void)visit(root, sub, out);  // unreadable subtrees are skipped
    return 0;
  }
};

/// chmod(2).
struct chmod {
  std::string path;
  mode_t mode;

  using blocking_tag = void;
  using output = void;
  io::result<void> run() {
    if (::chmod(path.c_str(), mode) != 0) return std::error_code(errno, std::generic_category());
    return {};
  }
};

}  // namespace blocking

}  // namespace troupe::fs
