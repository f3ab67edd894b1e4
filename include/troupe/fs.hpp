// File operations on the shard's ring, each one small struct (io.hpp):
//
//   submit(fs::open{"data.log", O_WRONLY | O_CREAT, 0644}).then([this](io::result<fs::file> f) {...});
//
// Each operation owns what the kernel touches (paths, buffers, the statx
// record) and hands buffers back in its result. Errors are the kernel's
// errno as io::result errors; nothing here throws for an I/O failure.
// See doc/io.md for the whole surface and its threading contract.
#pragma once

#include <troupe/io.hpp>

#include <fcntl.h>
#include <linux/stat.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <utility>

namespace troupe::fs {

/// An open descriptor; closed (close(2)) when destroyed unless released or
/// handed to fs::close. Move-only.
class file {
 public:
  file() = default;
  explicit file(int fd) noexcept : fd_(fd) {}
  file(file&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  file& operator=(file&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  file(const file&) = delete;
  file& operator=(const file&) = delete;
  ~file() { reset(); }

  int fd() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  /// Gives up ownership: the caller closes it.
  int release() noexcept { return std::exchange(fd_, -1); }

 private:
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
};

/// openat(2). O_CLOEXEC is always added.
struct open {
  std::string path;
  int flags = O_RDONLY;
  mode_t mode = 0;
  int dirfd = AT_FDCWD;

  using output = file;
  void prepare(io_uring_sqe* sqe) {
    io_uring_prep_openat(sqe, dirfd, path.c_str(), flags | O_CLOEXEC, mode);
  }
  io::result<file> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    return file(res);
  }
};

/// close(2) through the ring; the file is given up either way (Linux
/// releases a descriptor even when close reports an error).
struct close {
  file f;

  using output = void;
  void prepare(io_uring_sqe* sqe) { io_uring_prep_close(sqe, f.fd()); }
  io::result<void> complete(int res, unsigned) {
    f.release();
    if (res < 0) return io::error_of(res);
    return {};
  }
};

/// pread(2) into a buffer the operation owns: `len` new bytes, or the one
/// passed in (its size is the length). The result is that buffer, cut to
/// the bytes read (shorter at end of file, empty past it).
struct read {
  int fd;
  std::uint64_t offset;
  io::bytes buffer;

  read(const file& f, std::uint64_t off, std::size_t len) : fd(f.fd()), offset(off), buffer(len) {}
  read(const file& f, std::uint64_t off, io::bytes buf)
      : fd(f.fd()), offset(off), buffer(std::move(buf)) {}

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
  int fd;
  std::uint64_t offset;
  io::bytes buffer;

  write(const file& f, std::uint64_t off, io::bytes data)
      : fd(f.fd()), offset(off), buffer(std::move(data)) {}

  using output = written;
  void prepare(io_uring_sqe* sqe) {
    io_uring_prep_write(sqe, fd, buffer.data(), static_cast<unsigned>(buffer.size()), offset);
  }
  io::result<written> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    return written{static_cast<std::size_t>(res), std::move(buffer)};
  }
};

/// fsync(2), or fdatasync(2) with `data_only`.
struct fsync {
  int fd;
  bool data_only = false;

  explicit fsync(const file& f, bool data = false) : fd(f.fd()), data_only(data) {}

  using output = void;
  void prepare(io_uring_sqe* sqe) {
    io_uring_prep_fsync(sqe, fd, data_only ? IORING_FSYNC_DATASYNC : 0);
  }
  io::result<void> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    return {};
  }
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

  static stat of(const file& f) { return stat{"", true, f.fd()}; }

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
  io::result<void> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    return {};
  }
};

/// mkdirat(2).
struct mkdir {
  std::string path;
  mode_t mode = 0755;
  int dirfd = AT_FDCWD;

  using output = void;
  void prepare(io_uring_sqe* sqe) { io_uring_prep_mkdirat(sqe, dirfd, path.c_str(), mode); }
  io::result<void> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    return {};
  }
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
  io::result<void> complete(int res, unsigned) {
    if (res < 0) return io::error_of(res);
    return {};
  }
};

}  // namespace troupe::fs
