// File-read peers (no troupe code) and the data file they share with the
// troupe side of file_randread_4k and file_seqread.  See peers.hpp.
#include "peers.hpp"

#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace bench::peers {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr std::uint64_t kSeed = 0x5eed'f11e'4b10'c4aaull;

std::string errno_text(int e) { return std::strerror(e); }

using bench::pin;

std::uint64_t splitmix64(std::uint64_t x) noexcept {
  std::uint64_t z = x + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// `n` bytes aligned to file_block (O_DIRECT needs it; harmless otherwise).
struct aligned_buffer {
  std::byte* p;
  explicit aligned_buffer(std::size_t n)
      : p(static_cast<std::byte*>(std::aligned_alloc(file_block, (n + file_block - 1) / file_block * file_block))) {
    if (p == nullptr) fail("aligned_alloc of " + std::to_string(n) + " bytes failed");
  }
  ~aligned_buffer() { std::free(p); }
  aligned_buffer(const aligned_buffer&) = delete;
  aligned_buffer& operator=(const aligned_buffer&) = delete;
};

void fill_block(std::byte* p, std::uint64_t index) noexcept {
  const std::uint64_t last = ~index;
  std::memset(p, int(index * 31 + 7) & 0xff, file_block);
  std::memcpy(p, &index, sizeof index);
  std::memcpy(p + file_block - sizeof last, &last, sizeof last);
}

// pread(2) of exactly `len` bytes (retries EINTR and short reads); -errno,
// or 0 on success.
int pread_all(int fd, std::byte* p, std::size_t len, std::uint64_t off) {
  std::size_t got = 0;
  while (got < len) {
    ssize_t r = ::pread(fd, p + got, len - got, off_t(off + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -errno;
    if (r == 0) return -ENODATA;  // past the end: the file is shorter than it should be
    got += std::size_t(r);
  }
  return 0;
}

// Creates a ring owned by the calling thread: troupe's default setup
// (SINGLE_ISSUER|COOP_TASKRUN|TASKRUN_FLAG), falling back on -EINVAL.
void make_ring(io_uring* ring, unsigned entries) {
  const unsigned tries[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
      IORING_SETUP_COOP_TASKRUN,
      0,
  };
  int err = 0;
  for (unsigned flags : tries) {
    io_uring_params p{};
    p.flags = flags;
    err = io_uring_queue_init_params(entries, ring, &p);
    if (err == 0) return;
    if (err != -EINVAL) break;
  }
  fail("io_uring_queue_init_params: " + errno_text(-err));
}

struct ring_guard {
  io_uring* ring;
  ~ring_guard() { io_uring_queue_exit(ring); }
};

void submit_and_wait(io_uring* ring) {
  for (;;) {
    int r = io_uring_submit_and_wait(ring, 1);
    if (r >= 0) return;
    if (r != -EINTR && r != -EAGAIN && r != -EBUSY) fail("io_uring_submit_and_wait: " + errno_text(-r));
  }
}

// Runs body(t) on `threads` threads pinned to CPU t, released together after
// all have started; returns the seconds from the release to the last end.
template <class Body>
double run_pool(const std::string& what, int threads, Body body) {
  watchdog w(what);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<clock::time_point> ends(static_cast<std::size_t>(threads));
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      pin(t);
      ready.fetch_add(1, std::memory_order_acq_rel);
      while (!go.load(std::memory_order_acquire)) __builtin_ia32_pause();
      body(t);
      ends[std::size_t(t)] = clock::now();
    });
  while (ready.load(std::memory_order_acquire) < threads) std::this_thread::yield();
  auto t0 = clock::now();
  go.store(true, std::memory_order_release);
  for (auto& t : ts) t.join();
  return std::chrono::duration<double>(*std::max_element(ends.begin(), ends.end()) - t0).count();
}

// Runs body() on one thread pinned to CPU 0 under a watchdog.
template <class Body>
void run_one(const std::string& what, Body body) {
  watchdog w(what);
  std::thread t([&] {
    pin(0);
    body();
  });
  t.join();
}

}  // namespace

// --- the data file ---------------------------------------------------------------

data_file::data_file(std::uint64_t bytes) : size_(bytes) {
  check(bytes > 0 && bytes % file_block == 0, "data_file: size must be a positive multiple of 4 KiB");
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/troupe-bench-XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) fail("mkdtemp " + dir + ": " + errno_text(errno));
  const std::string path = dir + "/data";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  const int open_errno = errno;
  if (fd_ >= 0) {
    direct_fd_ = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (direct_fd_ < 0) direct_note_ = "open(O_DIRECT) failed: " + errno_text(errno);
  }
  // Gone from the namespace at once: the descriptors keep the data.
  ::unlink(path.c_str());
  ::rmdir(dir.c_str());
  if (fd_ < 0) fail("create " + path + ": " + errno_text(open_errno));

  constexpr std::size_t kChunk = 1 << 20;
  aligned_buffer buf(kChunk);
  for (std::uint64_t off = 0; off < bytes; off += kChunk) {
    const std::size_t len = std::size_t(std::min<std::uint64_t>(kChunk, bytes - off));
    for (std::size_t b = 0; b < len; b += file_block) fill_block(buf.p + b, (off + b) / file_block);
    for (std::size_t done = 0; done < len;) {
      ssize_t r = ::pwrite(fd_, buf.p + done, len - done, off_t(off + done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) fail("writing the data file: " + errno_text(r < 0 ? errno : EIO));
      done += std::size_t(r);
    }
  }
  // Clean pages: an O_DIRECT read then need not flush first, and nothing is
  // being written back behind the measurements.
  if (::fsync(fd_) != 0) fail("fsync of the data file: " + errno_text(errno));
  // Read once through the page cache (warms it; checks what was written).
  for (std::uint64_t off = 0; off < bytes; off += kChunk) {
    const std::size_t len = std::size_t(std::min<std::uint64_t>(kChunk, bytes - off));
    if (int r = pread_all(fd_, buf.p, len, off); r < 0) fail("reading the data file back: " + errno_text(-r));
    check_blocks(buf.p, len, off / file_block, "data file read-back");
  }

  if (direct_fd_ >= 0) {
    const std::uint64_t probe = blocks() / 2;
    int r = pread_all(direct_fd_, buf.p, file_block, probe * file_block);
    if (r < 0) {
      direct_note_ = "an aligned O_DIRECT read failed: " + errno_text(-r);
    } else if (!block_ok(buf.p, probe)) {
      direct_note_ = "an aligned O_DIRECT read returned wrong data";
    } else {
      direct_note_ = "an aligned 4 KiB O_DIRECT read works";
      return;
    }
    ::close(direct_fd_);
    direct_fd_ = -1;
  }
}

data_file::~data_file() {
  if (direct_fd_ >= 0) ::close(direct_fd_);
  if (fd_ >= 0) ::close(fd_);
}

bool block_ok(const std::byte* p, std::uint64_t index) noexcept {
  std::uint64_t first, last;
  std::memcpy(&first, p, sizeof first);
  std::memcpy(&last, p + file_block - sizeof last, sizeof last);
  return first == index && last == ~index;
}

void check_blocks(const std::byte* p, std::size_t len, std::uint64_t first, const char* what) {
  if (len % file_block != 0) fail(std::string(what) + ": " + std::to_string(len) + " bytes is not whole blocks");
  for (std::size_t b = 0; b < len / file_block; ++b)
    if (!block_ok(p + b * file_block, first + b))
      fail(std::string(what) + ": block " + std::to_string(first + b) + " does not hold its pattern");
}

std::uint64_t random_block(std::uint64_t i, std::uint64_t blocks) noexcept {
  return splitmix64(kSeed + i) % blocks;
}

std::uint64_t random_blocks_sum(long reads, std::uint64_t blocks) noexcept {
  std::uint64_t sum = 0;
  for (long i = 0; i < reads; ++i) sum += random_block(std::uint64_t(i), blocks);
  return sum;
}

// --- random 4 KiB reads ---------------------------------------------------------

double uring_randread(int fd, std::uint64_t blocks, long reads, unsigned depth, unsigned registered) {
  const std::string what = "uring_randread";
  check(reads > 0 && depth > 0, what + ": reads and depth must be positive");
  double seconds = 0;
  std::uint64_t sum = 0;
  long completed = 0;
  run_one(what, [&] {
    io_uring ring;
    make_ring(&ring, depth);
    ring_guard g{&ring};
    aligned_buffer bufs(std::size_t(depth) * file_block);
    std::vector<std::uint64_t> block_of(depth);  // per slot: the block in flight
    // Registered buffers: one per slot (READ_FIXED). A registered file: slot
    // 0 of the ring's file table (IOSQE_FIXED_FILE).
    const bool fixed_buffers = (registered & register_buffers) != 0;
    const bool fixed_file = (registered & register_file) != 0;
    if (fixed_buffers) {
      std::vector<iovec> iov(depth);
      for (unsigned s = 0; s < depth; ++s) iov[s] = {bufs.p + std::size_t(s) * file_block, file_block};
      int r = io_uring_register_buffers(&ring, iov.data(), depth);
      check(r == 0, what + ": io_uring_register_buffers: " + errno_text(-r));
    }
    if (fixed_file) {
      int r = io_uring_register_files(&ring, &fd, 1);
      check(r == 0, what + ": io_uring_register_files: " + errno_text(-r));
    }
    const int target = fixed_file ? 0 : fd;
    long next = 0;
    auto issue = [&](unsigned slot) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      check(sqe != nullptr, what + ": no free SQE");  // never more than `depth` in flight
      block_of[slot] = random_block(std::uint64_t(next++), blocks);
      std::byte* into = bufs.p + std::size_t(slot) * file_block;
      if (fixed_buffers)
        io_uring_prep_read_fixed(sqe, target, into, unsigned(file_block), block_of[slot] * file_block, int(slot));
      else
        io_uring_prep_read(sqe, target, into, unsigned(file_block), block_of[slot] * file_block);
      if (fixed_file) sqe->flags |= IOSQE_FIXED_FILE;
      io_uring_sqe_set_data64(sqe, slot);
    };
    auto t0 = clock::now();
    for (unsigned s = 0; s < depth && next < reads; ++s) issue(s);
    while (completed < reads) {
      submit_and_wait(&ring);
      unsigned head, seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(&ring, head, cqe) {
        ++seen;
        const auto slot = unsigned(cqe->user_data);
        if (cqe->res != int(file_block))
          fail(what + ": read of block " + std::to_string(block_of[slot]) + " returned " +
               (cqe->res < 0 ? errno_text(-cqe->res) : std::to_string(cqe->res) + " bytes"));
        if (!block_ok(bufs.p + std::size_t(slot) * file_block, block_of[slot]))
          fail(what + ": block " + std::to_string(block_of[slot]) + " does not hold its pattern");
        sum += block_of[slot];
        ++completed;
        if (next < reads) issue(slot);
      }
      io_uring_cq_advance(&ring, seen);
    }
    seconds = std::chrono::duration<double>(clock::now() - t0).count();
  });
  check(completed == reads, what + ": wrong number of reads");
  check(sum == random_blocks_sum(reads, blocks), what + ": the blocks read are not the blocks asked for");
  return double(reads) / seconds;
}

double pread_pool_randread(int fd, std::uint64_t blocks, long reads, int threads) {
  const std::string what = "pread_pool_randread";
  check(reads > 0 && threads > 0, what + ": reads and threads must be positive");
  std::vector<std::uint64_t> sums(std::size_t(threads), 0);
  std::vector<long> counts(std::size_t(threads), 0);
  double seconds = run_pool(what, threads, [&](int t) {
    aligned_buffer buf(file_block);
    std::uint64_t sum = 0;
    long n = 0;
    for (long i = t; i < reads; i += threads) {
      const std::uint64_t b = random_block(std::uint64_t(i), blocks);
      if (int r = pread_all(fd, buf.p, file_block, b * file_block); r < 0)
        fail(what + ": read of block " + std::to_string(b) + ": " + errno_text(-r));
      if (!block_ok(buf.p, b)) fail(what + ": block " + std::to_string(b) + " does not hold its pattern");
      sum += b;
      ++n;
    }
    sums[std::size_t(t)] = sum;
    counts[std::size_t(t)] = n;
  });
  std::uint64_t sum = 0;
  long completed = 0;
  for (int t = 0; t < threads; ++t) {
    sum += sums[std::size_t(t)];
    completed += counts[std::size_t(t)];
  }
  check(completed == reads, what + ": wrong number of reads");
  check(sum == random_blocks_sum(reads, blocks), what + ": the blocks read are not the blocks asked for");
  return double(reads) / seconds;
}

// --- sequential reads ------------------------------------------------------------

double uring_seqread(int fd, std::uint64_t size, std::size_t chunk, int passes, unsigned depth) {
  const std::string what = "uring_seqread";
  check(chunk % file_block == 0 && size % chunk == 0, what + ": size must be whole chunks of whole blocks");
  check(passes > 0 && depth > 0, what + ": passes and depth must be positive");
  const std::uint64_t per_pass = size / chunk;
  const std::uint64_t total = per_pass * std::uint64_t(passes);
  double seconds = 0;
  std::uint64_t sum = 0, completed = 0;
  run_one(what, [&] {
    io_uring ring;
    make_ring(&ring, depth);
    ring_guard g{&ring};
    aligned_buffer bufs(std::size_t(depth) * chunk);
    std::vector<std::uint64_t> chunk_of(depth);  // per slot: the chunk number (over all passes)
    std::uint64_t next = 0;
    auto issue = [&](unsigned slot) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      check(sqe != nullptr, what + ": no free SQE");
      chunk_of[slot] = next++;
      io_uring_prep_read(sqe, fd, bufs.p + std::size_t(slot) * chunk, unsigned(chunk),
                         (chunk_of[slot] % per_pass) * chunk);
      io_uring_sqe_set_data64(sqe, slot);
    };
    auto t0 = clock::now();
    for (unsigned s = 0; s < depth && next < total; ++s) issue(s);
    while (completed < total) {
      submit_and_wait(&ring);
      unsigned head, seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(&ring, head, cqe) {
        ++seen;
        const auto slot = unsigned(cqe->user_data);
        const std::uint64_t c = chunk_of[slot];
        if (cqe->res != int(chunk))
          fail(what + ": read of chunk " + std::to_string(c % per_pass) + " returned " +
               (cqe->res < 0 ? errno_text(-cqe->res) : std::to_string(cqe->res) + " bytes"));
        check_blocks(bufs.p + std::size_t(slot) * chunk, chunk, (c % per_pass) * chunk / file_block, what.c_str());
        sum += c;
        ++completed;
        if (next < total) issue(slot);
      }
      io_uring_cq_advance(&ring, seen);
    }
    seconds = std::chrono::duration<double>(clock::now() - t0).count();
  });
  check(completed == total, what + ": wrong number of chunks");
  check(sum == total * (total - 1) / 2, what + ": a chunk was read twice or not at all");
  return double(size) * passes / kGiB / seconds;
}

double pread_pool_seqread(int fd, std::uint64_t size, std::size_t chunk, int passes, int threads) {
  const std::string what = "pread_pool_seqread";
  check(chunk % file_block == 0 && size % chunk == 0, what + ": size must be whole chunks of whole blocks");
  check(passes > 0 && threads > 0, what + ": passes and threads must be positive");
  const std::uint64_t per_pass = size / chunk;
  const std::uint64_t total = per_pass * std::uint64_t(passes);
  std::vector<std::uint64_t> sums(std::size_t(threads), 0), counts(std::size_t(threads), 0);
  double seconds = run_pool(what, threads, [&](int t) {
    aligned_buffer buf(chunk);
    std::uint64_t sum = 0, n = 0;
    for (std::uint64_t c = std::uint64_t(t); c < total; c += std::uint64_t(threads)) {
      const std::uint64_t off = (c % per_pass) * chunk;
      if (int r = pread_all(fd, buf.p, chunk, off); r < 0)
        fail(what + ": read of chunk " + std::to_string(c % per_pass) + ": " + errno_text(-r));
      check_blocks(buf.p, chunk, off / file_block, what.c_str());
      sum += c;
      ++n;
    }
    sums[std::size_t(t)] = sum;
    counts[std::size_t(t)] = n;
  });
  std::uint64_t sum = 0, completed = 0;
  for (int t = 0; t < threads; ++t) {
    sum += sums[std::size_t(t)];
    completed += counts[std::size_t(t)];
  }
  check(completed == total, what + ": wrong number of chunks");
  check(sum == total * (total - 1) / 2, what + ": a chunk was read twice or not at all");
  return double(size) * passes / kGiB / seconds;
}

}  // namespace bench::peers
