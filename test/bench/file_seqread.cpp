// file_seqread: sequential read of a page-cached file in 128 KiB chunks,
// GiB/s, at a total queue depth of 8, against a hand-written liburing loop
// and a pool of pread threads.
//
// The file (1 GiB, read kPasses times, ~1 s; --quick: 16 MiB, read twice)
// is made by bench::peers::data_file (see file_randread_4k.cpp and
// peers.hpp): page-cached, unlinked at once, every 4 KiB block starting with
// its index. Chunk c (counted over all passes) is bytes
// [(c % chunks) * 128 KiB, +128 KiB); every completed chunk is checked
// block by block, as are the number of chunks and the sum of their numbers.
//
//   troupe          a 2-shard runtime (config default but for `shards`: pinned
//                   to CPU 0 and 1); one reader actor pinned to each shard,
//                   actor s reading the chunks c with c % 2 == s in order, 4
//                   fs::read in flight each (8 in total), re-issuing from the
//                   continuation with the buffer the result handed back. Two
//                   actors rather than one with 8 in flight: a page-cached
//                   read is a memcpy done by the submitting thread, so one
//                   actor would leave the second CPU idle, and pread_pool2
//                   uses both.
//   raw_uring_qd8   one liburing thread on CPU 0, 8 chunks in flight, issued
//                   in file order (it has one CPU: compare it with troupe
//                   knowing that).
//   pread_pool2     two threads (CPU 0, 1) doing pread(2), chunk c on thread c % 2.
//
// The figure runs from main's `go` to both readers (troupe) or from the
// threads' start (peers) to the last chunk checked.
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
#include <vector>

namespace {

namespace fs = troupe::fs;
namespace io = troupe::io;
using bench::completion;
using bench::peers::file_block;

constexpr const char* kBench = "file_seqread";
constexpr troupe::shard_id kShards = 2;
constexpr std::size_t kChunk = 128 << 10;
constexpr unsigned kDepthPerActor = 4;  // x kShards = 8
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

struct shared_state {
  std::atomic<int> readers_left{0};
  std::atomic<std::uint64_t> completed{0};
  std::atomic<std::uint64_t> sum{0};  // sum of the chunk numbers read
  bench::clock::time_point t1;
  completion finished;
};

struct go {};
struct get_completed {};

class reader : public troupe::actor<reader> {
  shared_state* st_;
  fs::file file_;
  std::uint64_t per_pass_;     // chunks in the file
  std::uint64_t next_, total_;  // next chunk to issue (step kShards), chunks over all passes
  std::uint64_t left_;         // chunks still to complete
  std::uint64_t sum_ = 0, completed_ = 0;

  void issue(io::bytes buffer) {
    const std::uint64_t c = next_;
    next_ += kShards;
    submit(fs::read(file_, (c % per_pass_) * kChunk, std::move(buffer)))
        .then([this, c](io::result<io::bytes> r) { done(c, std::move(r)); });
  }

  void done(std::uint64_t c, io::result<io::bytes> r) {
    const std::string what = std::string(kBench) + " troupe";
    if (!r) bench::fail(what + ": read of chunk " + std::to_string(c % per_pass_) + ": " + r.error().message());
    if (r->size() != kChunk)
      bench::fail(what + ": read of chunk " + std::to_string(c % per_pass_) + " returned " +
                  std::to_string(r->size()) + " bytes");
    bench::peers::check_blocks(r->data(), kChunk, (c % per_pass_) * (kChunk / file_block), what.c_str());
    sum_ += c;
    ++completed_;
    if (next_ < total_) issue(std::move(*r));
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
  // Reads chunks first, first + kShards, ... below total.
  reader(shared_state* st, int fd, std::uint64_t per_pass, std::uint64_t first, std::uint64_t total)
      : st_(st),
        file_(::dup(fd)),
        per_pass_(per_pass),
        next_(first),
        total_(total),
        left_((total - first + kShards - 1) / kShards) {}

  void on(const go&) {
    if (!file_) bench::fail(std::string(kBench) + " troupe: dup of the data file's descriptor failed");
    for (unsigned k = 0; k < kDepthPerActor && next_ < total_; ++k) issue(io::bytes(kChunk));
  }
  std::uint64_t on(const get_completed&) { return completed_; }
};

double troupe_seqread(int fd, std::uint64_t size, int passes) {
  const std::string what = std::string(kBench) + " troupe";
  bench::watchdog w(what);
  const std::uint64_t per_pass = size / kChunk;
  const std::uint64_t total = per_pass * std::uint64_t(passes);
  troupe::config cfg;
  cfg.shards = kShards;
  shared_state st;
  bench::clock::time_point t0;
  {
    troupe::runtime rt{cfg};
    std::vector<troupe::ref<reader>> rs;
    for (troupe::shard_id s = 0; s < kShards && s < total; ++s) {
      st.readers_left.fetch_add(1);
      rs.push_back(rt.spawn<reader>(troupe::pinned{s}, &st, fd, per_pass, std::uint64_t(s), total));
    }
    // Every reader is constructed before the clock starts.
    for (auto& r : rs) bench::check(rt.ask(r, get_completed{}).get() == 0, what + ": fresh reader has reads");
    t0 = bench::clock::now();
    for (auto& r : rs) r.send(go{});
    bench::check(st.finished.wait_for(std::chrono::seconds(60)), what + ": timed out");
    bench::check(st.completed.load() == total, what + ": wrong number of chunks");
    bench::check(st.sum.load() == total * (total - 1) / 2, what + ": a chunk was read twice or not at all");
    rt.stop();
    auto end = rt.stats();
    std::uint64_t submitted = 0, cancelled = 0;
    for (const auto& s : end.shards) {
      submitted += s.io_submitted;
      cancelled += s.io_cancelled;
    }
    bench::check(submitted == total, what + ": io_submitted != chunks");
    bench::check(cancelled == 0, what + ": operations were cancelled");
    bench::check(end.sent() == end.processed() + end.dead_letters(), what + ": sent != processed + dead");
    bench::check(end.envelopes_live() == 0, what + ": envelopes leaked");
  }
  return double(size) * passes / kGiB / std::chrono::duration<double>(st.t1 - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  namespace p = bench::peers;
  auto o = bench::parse(argc, argv);
  const std::uint64_t bytes = o.quick ? 16ull << 20 : 1ull << 30;
  const int passes = o.quick ? 2 : 8;

  p::data_file f(bytes);
  std::fprintf(stderr, "%s: %llu MiB data file, page-cached, %d passes of %zu KiB reads; O_DIRECT not used\n",
               kBench, (unsigned long long)(bytes >> 20), passes, kChunk >> 10);

  bench::run_interleaved(o, kBench, "GiB/s",
                         {
                             {"troupe", [&] { return troupe_seqread(f.fd(), bytes, passes); }},
                             {"raw_uring_qd8", [&] { return p::uring_seqread(f.fd(), bytes, kChunk, passes, 8); }},
                             {"pread_pool2", [&] { return p::pread_pool_seqread(f.fd(), bytes, kChunk, passes, 2); }},
                         });
  return 0;
}
