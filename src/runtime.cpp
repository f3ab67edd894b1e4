#include "log.hpp"
#include "runtime_core.hpp"

#include <troupe/runtime.hpp>
#include <troupe/stats.hpp>

#include <fmt/format.h>

#include <exception>

namespace troupe {

runtime::runtime(config cfg) : core_(new detail::runtime_core(*this, cfg)) {
  try {
    core_->start();
  } catch (...) {
    core_->release();
    throw;
  }
}

namespace {

// Which of its own threads the caller is on, if any: those are the threads
// runtime::~runtime and runtime::wait would wait for.
const char* own_thread_kind(detail::runtime_core* core) noexcept {
  detail::shard* me = detail::this_shard_ptr();
  if (me != nullptr && &me->core() == core) return "shard";
  if (core->blocking().on_pool_thread()) return "blocking-pool";
  return nullptr;
}

}  // namespace

runtime::~runtime() {
  if (const char* kind = own_thread_kind(core_)) {
    // A destructor cannot throw, and going on would free the shards under
    // their own feet or wait for ourselves for ever.
    detail::log().critical(
        "troupe: runtime destroyed on one of its own {} threads; aborting. Destroy it on the "
        "thread that created it; from a handler or a blocking job call stop() instead.",
        kind);
    std::terminate();
  }
  stop();
  core_->release();
}

void runtime::stop() {
  core_->request_stop();
  // Never join from a thread the join would wait for: the owner's wait(),
  // stop() or destructor joins.
  if (own_thread_kind(core_) != nullptr) return;
  core_->wait_and_join();
}

void runtime::wait() {
  if (core_->blocking().on_pool_thread())
    throw error(
        "troupe: runtime::wait() called on one of the runtime's blocking-pool threads: it would "
        "wait for the pool to finish its own job and deadlock. Call stop() to request the stop; "
        "the runtime's owner waits.");
  core_->wait_and_join();
}

shard_id runtime::shards() const noexcept { return core_->size(); }

runtime_stats runtime::stats() const {
  runtime_stats s;
  core_->fill_stats(s);
  return s;
}

ring_setup runtime::ring_of(shard_id s) const {
  if (s >= core_->size()) throw error("troupe: ring_of: no such shard");
  return core_->at(s).setup();
}

bool runtime::foreign_doorbell_registered() const noexcept { return core_->registered_doorbell(); }

std::uint64_t runtime_stats::sent() const noexcept {
  std::uint64_t n = sends_foreign;
  for (auto& s : shards) n += s.sends_local + s.sends_remote;
  return n;
}
std::uint64_t runtime_stats::processed() const noexcept {
  std::uint64_t n = 0;
  for (auto& s : shards) n += s.messages_run;
  return n;
}
std::uint64_t runtime_stats::dead_letters() const noexcept {
  std::uint64_t n = foreign_dead_letters;
  for (auto& s : shards) n += s.dead_letters;
  return n;
}
std::uint64_t runtime_stats::late_replies() const noexcept {
  std::uint64_t n = foreign_late_replies;
  for (auto& s : shards) n += s.late_replies;
  return n;
}
std::uint64_t runtime_stats::drop_failures() const noexcept {
  std::uint64_t n = foreign_drop_failures;
  for (auto& s : shards) n += s.drop_failures;
  return n;
}
std::uint64_t runtime_stats::envelopes_live() const noexcept {
  std::uint64_t n = 0;
  for (auto& s : shards) n += s.envelopes_live;
  return n;
}

std::string runtime_stats::text() const {
  std::string out = fmt::format("{:>5} {:>12} {:>12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9} {:>6}\n",
                                "shard", "run", "local", "remote", "doorbell", "retried",
                                "parks", "dead", "late", "mbox-hw", "actors");
  for (std::size_t i = 0; i < shards.size(); ++i) {
    const shard_stats& s = shards[i];
    out += fmt::format("{:>5} {:>12} {:>12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9} {:>6}\n", i,
                       s.messages_run, s.sends_local, s.sends_remote, s.doorbells_sent,
                       s.doorbells_retried, s.parks, s.dead_letters, s.late_replies,
                       s.mailbox_high_water, s.actors_live);
  }
  out += fmt::format("foreign: {} sends, {} dead letters, {} doorbells, {} late replies\n",
                     sends_foreign, foreign_dead_letters, foreign_doorbells, foreign_late_replies);
  return out;
}

}  // namespace troupe
