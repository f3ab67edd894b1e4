// The envelope: one message in flight, with its dispatch thunk.
//
// An envelope is a header followed by its typed payload. `fn` is the thunk of
// one (actor, message) pair, chosen at compile time: called with `deliver`
// it runs the handler on the live actor; with `drop` it disposes of the
// payload (and answers an ask with errc::actor_stopped, a monitor request
// with `down`). Either way it destroys the payload (destroy_payload in
// dispatch.hpp: a destructor that throws is caught and reported, never
// ends the process); the runtime then returns the memory to its pool.
#pragma once

#include <troupe/detail/mpsc_queue.hpp>
#include <troupe/defaults.hpp>

#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

namespace troupe::detail {

class control_block;
class runtime_core;
const runtime_core* core_of(const control_block* cb) noexcept;

enum class envelope_action : unsigned char { deliver, drop };

struct envelope;
using envelope_fn = void (*)(envelope*, envelope_action, control_block*);

struct envelope : mpsc_node {
  envelope_fn fn = nullptr;
  void* pool = nullptr;  // the shard pool it came from; nullptr: the heap
};

struct envelope_memory {
  void* memory;
  void* pool;
};

/// Memory for an envelope of `size` bytes bound for an actor of runtime
/// `to`: from the calling shard's pool when that shard belongs to `to` and
/// the envelope fits a block, else from the heap (so a pool never lends
/// memory to a runtime that may outlive it). @threadsafe.
envelope_memory allocate_envelope(std::size_t size, const runtime_core* to);

/// Returns memory from allocate_envelope that never held an envelope.
void release_envelope_memory(envelope_memory m) noexcept;

/// Returns an envelope's memory (after its payload was destroyed) to the pool
/// it came from, batched when that pool belongs to another shard.
void free_envelope(envelope* e) noexcept;

/// Constructs an envelope of type E, bound for the actor `to`, in pool or
/// heap memory.
template <class E, class... Args>
E* make_envelope(const control_block* to, Args&&... args) {
  static_assert(std::is_base_of_v<envelope, E>);
  static_assert(alignof(E) <= alignof(std::max_align_t),
                "troupe: messages with alignment above alignof(max_align_t) are not supported");
  envelope_memory m = allocate_envelope(sizeof(E), core_of(to));
  E* e;
  try {
    e = new (m.memory) E(std::forward<Args>(args)...);
  } catch (...) {
    release_envelope_memory(m);
    throw;
  }
  e->pool = m.pool;
  return e;
}

}  // namespace troupe::detail
