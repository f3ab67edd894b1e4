// spawn: creating an actor on a shard. Used by runtime::spawn (any thread)
// and actor::spawn (inside handlers).
#pragma once

#include <troupe/detail/dispatch.hpp>
#include <troupe/detail/runtime_api.hpp>
#include <troupe/placement.hpp>
#include <troupe/ref.hpp>

#include <type_traits>
#include <utility>

namespace troupe::detail {

template <class A, class... Args>
ref<A> spawn(runtime_core* core, const placement& where, mailbox_capacity cap, Args&&... args) {
  static_assert(std::is_base_of_v<actor<A>, A>,
                "troupe: spawn<A>: A must derive from troupe::actor<A>");
  static_assert(std::is_constructible_v<A, std::decay_t<Args>&&...>,
                "troupe: spawn<A>(placement, args...): A has no constructor taking these args");
  control_block* cb = new_control_block(core, where, type_of<A>(), cap.messages);
  ref<A> r(cb);  // adopts the spawner's reference; the life reference stays
  post(cb, make_envelope<construct_envelope<A, Args...>>(cb, std::forward<Args>(args)...));
  return r;
}

}  // namespace troupe::detail
