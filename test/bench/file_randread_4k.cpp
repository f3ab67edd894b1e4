// file_randread_4k: random 4 KiB reads of a page-cached file, IOPS, at a
// total queue depth of 32, against a hand-written liburing loop and a pool
// of pread threads.
//
// The file (1 GiB; --quick: 16 MiB) is made by bench::peers::data_file: a
// pattern whose every 4 KiB block starts with its index and ends with its
// complement, written, fsync'ed, read back once (so it is in the page cache)
// and unlinked at once (nothing is left behind, whatever the exit). Read i
// is of block random_block(i) (splitmix64 of a fixed seed), at a 4 KiB
// aligned offset; every implementation does reads 0..N-1 and checks each
// completed read against the pattern, the number of reads and the sum of
// the blocks read.
//
//   troupe          a 2-shard runtime (config default but for `shards`: pinned
//                   to CPU 0 and 1); one reader actor pinned to each shard
//                   takes half of the reads and keeps 16 fs::read in flight
//                   through submit(...).then(...), re-issuing from the
//                   continuation with the buffer the result handed back.
//   troupe_1shard   the same on a 1-shard runtime, one actor with 32 reads in
//                   flight: the like-for-like row against raw_uring_qd32.
//   troupe_1shard_fixed  the same into registered buffers (config::fixed_buffers,
//                   fs::read_fixed).
//   raw_uring_qd32  one liburing thread on CPU 0, 32 reads in flight;
//                   _fixed with registered buffers (READ_FIXED), _fixed_file
//                   with the descriptor registered too (IOSQE_FIXED_FILE).
//   pread_pool2     two threads (CPU 0, 1) doing pread(2), read i on thread i % 2.
//
// The figure runs from main's `go` to both readers (troupe) or from the
// threads' start (peers) to the last read checked.
//
// O_DIRECT: data_file probes it (an O_DIRECT open and one aligned read);
// when it works, raw_uring_qd32_direct and pread_pool2_direct run the same
// way on the O_DIRECT descriptor with fewer reads (they go to the device).
// troupe_direct / troupe_1shard_direct read into registered buffers, which
// are page aligned as O_DIRECT needs (io::bytes is not). Stderr says
// whether O_DIRECT was used.
#include <troupe/troupe.hpp>
#include <troupe/fs.hpp>

#include "harness.hpp"
#include "peers.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>
#include <vector>

namespace {

namespace fs = troupe::fs;
namespace io = troupe::io;
using bench::completion;
using bench::peers::file_block;

constexpr const char* kBench = "file_randread_4k";
constexpr troupe::shard_id kShards = 2;
constexpr unsigned kDepth = 32;  // in total, split over the readers

struct shared_state {
  std::atomic<int> readers_left{0};
  std::atomic<long> completed{0};
  std::atomic<std::uint64_t> sum{0};  // wrapping sum of the blocks read
  bench::clock::time_point t1;
  completion finished;
};

struct go {};
struct get_completed {};

// Fixed: reads into registered buffers (config::fixed_buffers, one per
// read in flight) with fs::read_fixed; else into io::bytes with fs::read.
template <bool Fixed>
class reader : public troupe::actor<reader<Fixed>> {
  using buffer_type = std::conditional_t<Fixed, io::fixed_buffer, io::bytes>;

  shared_state* st_;
  fs::file file_;
  std::uint64_t blocks_;
  long next_, end_;  // reads [next_, end_) are still to issue
  long left_;        // reads still to complete
  unsigned depth_;   // reads this actor keeps in flight
  std::uint64_t sum_ = 0;
  long completed_ = 0;

  void issue(buffer_type buffer) {
    const long i = next_++;
    const std::uint64_t b = bench::peers::random_block(std::uint64_t(i), blocks_);
    auto then = [this, b](io::result<buffer_type> r) { done(b, std::move(r)); };
    if constexpr (Fixed)
      this->submit(fs::read_fixed(file_, b * file_block, std::move(buffer), file_block)).then(std::move(then));
    else
      this->submit(fs::read(file_, b * file_block, std::move(buffer))).then(std::move(then));
  }

  void done(std::uint64_t b, io::result<buffer_type> r) {
    if (!r) bench::fail(std::string(kBench) + " troupe: read of block " + std::to_string(b) + ": " + r.error().message());
    if (r->size() != file_block || !bench::peers::block_ok(r->data(), b))
      bench::fail(std::string(kBench) + " troupe: block " + std::to_string(b) + " read " +
                  std::to_string(r->size()) + " bytes not holding its pattern");
    sum_ += b;
    ++completed_;
    if (next_ < end_) issue(std::move(*r));
    if (--left_ == 0) {
      st_->sum.fetch_add(sum_, std::memory_order_relaxed);
      st_->completed.fetch_add(completed_, std::memory_order_relaxed);
      if (st_->readers_left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        st_->t1 = bench::clock::now();
        st_->finished.signal();
      }
    }
  }

 public:
  reader(shared_state* st, int fd, std::uint64_t blocks, long begin, long end, unsigned depth)
      : st_(st), file_(::dup(fd)), blocks_(blocks), next_(begin), end_(end), left_(end - begin),
        depth_(depth) {}

  void on(const go&) {
    if (!file_) bench::fail(std::string(kBench) + " troupe: dup of the data file's descriptor failed");
    for (unsigned k = 0; k < depth_ && next_ < end_; ++k) {
      if constexpr (Fixed) {
        io::fixed_buffer b = this->take_fixed_buffer();
        if (!b || !b.registered_here()) bench::fail(std::string(kBench) + " troupe: no registered buffer");
        issue(std::move(b));
      } else {
        issue(io::bytes(file_block));
      }
    }
  }
  long on(const get_completed&) { return completed_; }
};

template <bool Fixed>
double troupe_randread(int fd, std::uint64_t blocks, long reads, std::uint64_t expected_sum,
                       troupe::shard_id shards) {
  const std::string what = std::string(kBench) + (shards == 1 ? " troupe_1shard" : " troupe") + (Fixed ? " fixed" : "");
  bench::watchdog w(what);
  troupe::config cfg;
  cfg.shards = shards;
  if (Fixed) {
    cfg.fixed_buffers.count = kDepth / shards;
    cfg.fixed_buffers.size = file_block;
  }
  shared_state st;
  bench::clock::time_point t0;
  {
    troupe::runtime rt{cfg};
    std::vector<troupe::ref<reader<Fixed>>> rs;
    for (troupe::shard_id s = 0; s < shards; ++s) {
      const long begin = reads * long(s) / shards, end = reads * long(s + 1) / shards;
      if (begin == end) continue;
      st.readers_left.fetch_add(1);
      rs.push_back(rt.spawn<reader<Fixed>>(troupe::pinned{s}, &st, fd, blocks, begin, end, kDepth / shards));
    }
    // Every reader is constructed before the clock starts.
    for (auto& r : rs) bench::check(rt.ask(r, get_completed{}).get() == 0, what + ": fresh reader has reads");
    t0 = bench::clock::now();
    for (auto& r : rs) r.send(go{});
    bench::check(st.finished.wait_for(std::chrono::seconds(60)), what + ": timed out");
    bench::check(st.completed.load() == reads, what + ": wrong number of reads");
    bench::check(st.sum.load() == expected_sum, what + ": the blocks read are not the blocks asked for");
    rt.stop();
    auto end = rt.stats();
    std::uint64_t submitted = 0, cancelled = 0;
    for (const auto& s : end.shards) {
      submitted += s.io_submitted;
      cancelled += s.io_cancelled;
    }
    bench::check(submitted == std::uint64_t(reads), what + ": io_submitted != reads");
    bench::check(cancelled == 0, what + ": operations were cancelled");
    bench::check(end.sent() == end.processed() + end.dead_letters(), what + ": sent != processed + dead");
    bench::check(end.envelopes_live() == 0, what + ": envelopes leaked");
  }
  return double(reads) / std::chrono::duration<double>(st.t1 - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  namespace p = bench::peers;
  auto o = bench::parse(argc, argv);
  const std::uint64_t bytes = o.quick ? 16ull << 20 : 1ull << 30;
  const long reads = o.quick ? 4'000 : 1'000'000;
  const long direct_reads = o.quick ? 1'000 : 10'000;  // pread_pool2_direct: ~6-20 k IOPS here

  p::data_file f(bytes);
  const bool direct = f.direct_fd() >= 0;
  std::fprintf(stderr, "%s: %llu MiB data file, page-cached; O_DIRECT %s (%s)\n", kBench,
               (unsigned long long)(bytes >> 20), direct ? "used" : "not used", f.direct_note().c_str());

  const std::uint64_t expected = p::random_blocks_sum(reads, f.blocks());
  auto troupe_row = [&](auto fixed, int fd, long n, std::uint64_t sum, troupe::shard_id shards) {
    return [=, &f] { return troupe_randread<decltype(fixed)::value>(fd, f.blocks(), n, sum, shards); };
  };
  using plain = std::false_type;
  using fixed = std::true_type;
  bench::run_interleaved(o, kBench, "IOPS",
                         {
                             {"troupe", troupe_row(plain{}, f.fd(), reads, expected, kShards)},
                             // Same CPU count as raw_uring_qd32: one shard, one actor, QD 32.
                             {"troupe_1shard", troupe_row(plain{}, f.fd(), reads, expected, 1)},
                             {"troupe_1shard_fixed", troupe_row(fixed{}, f.fd(), reads, expected, 1)},
                             {"raw_uring_qd32", [&] { return p::uring_randread(f.fd(), f.blocks(), reads, 32); }},
                             {"raw_uring_qd32_fixed",
                              [&] { return p::uring_randread(f.fd(), f.blocks(), reads, 32, p::register_buffers); }},
                             {"raw_uring_qd32_fixed_file",
                              [&] {
                                return p::uring_randread(f.fd(), f.blocks(), reads, 32,
                                                         p::register_buffers | p::register_file);
                              }},
                             {"pread_pool2", [&] { return p::pread_pool_randread(f.fd(), f.blocks(), reads, 2); }},
                         });
  if (direct) {
    // O_DIRECT needs aligned memory: troupe reads into registered buffers.
    const std::uint64_t direct_sum = p::random_blocks_sum(direct_reads, f.blocks());
    bench::run_interleaved(
        o, kBench, "IOPS",
        {
            {"troupe_direct", troupe_row(fixed{}, f.direct_fd(), direct_reads, direct_sum, kShards)},
            {"troupe_1shard_direct", troupe_row(fixed{}, f.direct_fd(), direct_reads, direct_sum, 1)},
            {"raw_uring_qd32_direct", [&] { return p::uring_randread(f.direct_fd(), f.blocks(), direct_reads, 32); }},
            {"pread_pool2_direct", [&] { return p::pread_pool_randread(f.direct_fd(), f.blocks(), direct_reads, 2); }},
        });
  }
  return 0;
}
