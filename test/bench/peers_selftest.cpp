// Runs every peer once and prints one JSON line per figure.
//
//   peers_selftest          tiny counts (a quick correctness check)
//   peers_selftest --full   realistic counts (200k round trips, 10M fan-out
//                           messages, 100k spawns)
#include <string_view>

#include "harness.hpp"
#include "peers.hpp"

int main(int argc, char** argv) {
  namespace p = bench::peers;
  bool full = false;
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--full") full = true;
  const long rt = full ? 200'000 : 2'000;
  const long rt_caf = full ? 200'000 : 2'000;
  const long fan = full ? 10'000'000 : 100'000;
  const long spawns = full ? 100'000 : 1'000;

  const char* cross = "pingpong_cross_shard";
  const char* same = "pingpong_same_shard";
  const char* fanout = "fanout_throughput";
  bench::emit(cross, "uring_msgring_blocking", "ns/op", p::uring_msgring_blocking(rt, false));
  bench::emit(cross, "uring_msgring_blocking_defer", "ns/op", p::uring_msgring_blocking(rt, true));
  bench::emit(cross, "uring_msgring_busypoll", "ns/op", p::uring_msgring_busypoll(rt, false));
  bench::emit(cross, "uring_msgring_busypoll_defer", "ns/op", p::uring_msgring_busypoll(rt, true));
  bench::emit(cross, "uring_payload_in_cqe", "ns/op", p::uring_payload_in_cqe(rt));
  bench::emit(cross, "spsc_spin_floor", "ns/op", p::spsc_spin_floor(rt * 5));
  bench::emit(cross, "caf_2threads", "ns/op", p::caf_pingpong(rt_caf, 2, false));
  bench::emit(cross, "caf_detached", "ns/op", p::caf_pingpong(rt_caf, 2, true));

  bench::emit(same, "intrusive_queue_floor", "ns/op", p::intrusive_queue_floor(rt * 50));
  bench::emit(same, "caf_1thread", "ns/op", p::caf_pingpong(rt_caf, 1, false));

  bench::emit(fanout, "uring_msgring_per_message", "msgs/s", p::uring_msgring_per_message(fan));
  bench::emit(fanout, "mpsc_doorbell", "msgs/s", p::mpsc_doorbell(fan));
  bench::emit(fanout, "caf_2threads", "msgs/s", p::caf_fanout(fan, 2));

  auto s = p::caf_spawn(spawns, 2);
  bench::emit("spawn_rate", "caf_2threads", "spawns/s", s.spawns_per_s);
  bench::emit("spawn_memory", "caf_2threads", "bytes/actor", s.rss_bytes_per_actor);
  return 0;
}
