// The entry points the public templates call: envelope memory, post, spawn's
// control block, and the small services (late replies, futex waits).
#include "log.hpp"
#include "runtime_core.hpp"
#include "shard.hpp"

#include <troupe/detail/dispatch.hpp>
#include <troupe/detail/runtime_api.hpp>
#include <troupe/error.hpp>
#include <troupe/ref.hpp>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <mutex>
#include <new>
#include <string>
#include <unordered_set>

namespace troupe::detail {

std::atomic<std::int64_t> heap_envelopes_live{0};
std::atomic<std::uint64_t> foreign_late_replies{0};
std::atomic<std::uint64_t> foreign_drop_failures{0};

namespace {
std::atomic<std::uint64_t> next_actor_id{1};

// The calling shard when it belongs to the runtime of `cb`, else nullptr.
shard* home_for(const control_block* cb) noexcept {
  shard* s = this_shard_ptr();
  return s != nullptr && &s->core() == cb->core() ? s : nullptr;
}
}  // namespace

const runtime_core* core_of(const control_block* cb) noexcept { return cb->core(); }

envelope_memory allocate_envelope(std::size_t size, const runtime_core* to) {
  shard* s = this_shard_ptr();
  if (s != nullptr && &s->core() == to && size <= envelope_pool::block_size)
    return {s->pool().allocate(), &s->pool()};
  void* p = ::operator new(size);
  heap_envelopes_live.fetch_add(1, std::memory_order_relaxed);
  return {p, nullptr};
}

void release_envelope_memory(envelope_memory m) noexcept {
  if (m.pool == nullptr) {
    heap_envelopes_live.fetch_sub(1, std::memory_order_relaxed);
    ::operator delete(m.memory);
    return;
  }
  static_cast<envelope_pool*>(m.pool)->free_local(m.memory);
}

void free_envelope(envelope* e) noexcept {
  if (shard* s = this_shard_ptr()) return s->free(e);
  auto* p = static_cast<envelope_pool*>(e->pool);
  if (p == nullptr) {
    heap_envelopes_live.fetch_sub(1, std::memory_order_relaxed);
    return ::operator delete(e);
  }
  p->give_back(envelope_pool::carrier::start(e));
}

namespace {
void dispatch(control_block* target, envelope* e, bool depth_reserved) noexcept {
  if (shard* s = home_for(target)) return s->post(target, e, depth_reserved);
  target->core()->post_foreign(target, e, depth_reserved);
}
}  // namespace

void post(control_block* target, envelope* e) noexcept { dispatch(target, e, false); }

bool try_post(control_block* target, envelope* e) noexcept {
  if (target->capacity_ != 0) {
    std::uint32_t depth = target->depth_.load(std::memory_order_relaxed);
    do {
      if (depth >= target->capacity_) return false;
    } while (!target->depth_.compare_exchange_weak(depth, depth + 1, std::memory_order_relaxed));
  }
  dispatch(target, e, true);
  return true;
}

control_block* new_control_block(runtime_core* core, const placement& where,
                                 const actor_type* type, std::uint32_t capacity) {
  if (core->stop_requested()) {
    // Its own shards may still be running handlers and on_stop: there a
    // spawn gives an actor that never starts (spawn_refused), since the
    // spawner cannot know the stop has begun. Everyone else is told.
    shard* me = this_shard_ptr();
    if (me == nullptr || &me->core() != core)
      throw error(fmt::format("troupe: spawn<{}>: the runtime is stopping or stopped (runtime::stop() was "
                              "called); no actor can start on it any more",
                              type->name));
  }
  shard_id s = core->pick(where);
  if (std::holds_alternative<stealable>(where) || std::holds_alternative<stealable_preferred>(where))
    s |= control_block::unbound_bit;
  auto* cb = new control_block(core, next_actor_id.fetch_add(1, std::memory_order_relaxed), s,
                               type, capacity);
  core->add_ref();
  return cb;
}

void control_block::destroy(control_block* cb) noexcept {
  runtime_core* core = cb->core_;
  delete cb->exit_;
  delete cb;
  core->release();
}

void actor_started(control_block* cb) { this_shard_ptr()->actor_started(cb); }

void spawn_refused(control_block* cb) noexcept {
  if (cb->life_.load(std::memory_order_acquire) != life::starting) return;  // a shard drains it
  cb->exit_ = new exit_info{make_error_code(errc::runtime_stopped), "spawned while the runtime was stopping"};
  cb->life_.store(life::dead, std::memory_order_release);
  cb->release();  // the life reference: no shard will ever hold it
}

runtime_core* current_core() noexcept {
  shard* s = this_shard_ptr();
  return s ? &s->core() : nullptr;
}

void forbid_on_shard(const char* what) {
  if (shard* s = this_shard_ptr())
    throw error(fmt::format("troupe: {} called on shard {}'s thread: it would block the shard "
                            "and deadlock it. Inside an actor use ask(...).then(...).",
                            what, s->id()));
}

runtime& owner_of(runtime_core* core) noexcept { return core->owner(); }

void count_late_reply() noexcept {
  if (shard* s = this_shard_ptr()) return s->count_late_reply();
  // A foreign thread answered (rare): no shard to count on, and the runtime
  // is unknown here, so the count goes to the process-wide tally.
  foreign_late_replies.fetch_add(1, std::memory_order_relaxed);
}

namespace {
thread_local payload_scope* tl_payload_scope = nullptr;

// A bug in a message type, not in traffic: the first time per type at warn,
// then at debug (the count is in the stats).
void log_drop_failure(const std::string& type, const std::string& text) {
  static std::mutex m;
  static std::unordered_set<std::string> warned;
  bool first;
  {
    std::lock_guard lock(m);
    first = warned.insert(type).second;
  }
  if (first)
    log().warn("a dropped message's destructor threw: {} (counted in drop_failures; logged once per type)",
               text);
  else
    log().debug("a dropped message's destructor threw: {}", text);
}
}  // namespace

payload_scope::payload_scope(const envelope* e) noexcept
    : e_(e), saved_(std::exchange(tl_payload_scope, this)) {}

payload_scope::~payload_scope() { tl_payload_scope = saved_; }

void payload_destructor_threw(const envelope* e, const char* message_type) noexcept {
  try {
    std::string type = short_type_name(message_type);
    std::string text = type + ": " + describe_current_exception();
    if (payload_scope* scope = tl_payload_scope; scope != nullptr && scope->e_ == e) {
      if (scope->failure_.empty()) scope->failure_ = std::move(text);
      return;
    }
    if (shard* s = this_shard_ptr()) s->count_drop_failure();
    else foreign_drop_failures.fetch_add(1, std::memory_order_relaxed);
    log_drop_failure(type, text);
  } catch (...) {
    // Out of memory while describing it: still counted, never thrown.
    if (payload_scope* scope = tl_payload_scope; scope != nullptr && scope->e_ == e) {
      if (scope->failure_.empty()) scope->failure_ = "?";
    } else if (shard* s = this_shard_ptr()) {
      s->count_drop_failure();
    } else {
      foreign_drop_failures.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

void count_unhandled(control_block* cb, std::string_view type) noexcept {
  if (shard* s = this_shard_ptr()) s->count_unhandled(cb, type);
}

void arm_timer(timer_node* t) noexcept { this_shard_ptr()->arm(t); }
void disarm_timer(timer_node* t) noexcept { this_shard_ptr()->disarm(t); }

bool futex_wait_until(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                      std::int64_t deadline_ns) noexcept {
  timespec ts{};
  timespec* tsp = nullptr;  // never_ns: no limit
  if (deadline_ns != never_ns) {
    std::int64_t left = deadline_ns - now_ns();
    if (left <= 0) return false;
    ts = {static_cast<time_t>(left / 1'000'000'000), static_cast<long>(left % 1'000'000'000)};
    tsp = &ts;
  }
  long r = ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT_PRIVATE,
                     expected, tsp, nullptr, 0);
  return !(r != 0 && errno == ETIMEDOUT);
}

void futex_wake_all(std::atomic<std::uint32_t>* word) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT32_MAX,
            nullptr, nullptr, 0);
}

}  // namespace troupe::detail

namespace troupe {

std::string to_string(const detail::ref_base& r) {
  return r ? detail::name_of(r.control()) : std::string("<empty ref>");
}

shard_id this_shard() noexcept {
  detail::shard* s = detail::this_shard_ptr();
  return s ? s->id() : no_shard;
}

}  // namespace troupe
