// The record of one I/O operation in flight: an envelope that waits on the
// shard until its CQE comes back, then goes into the actor's mailbox.
//
// Life of a record (src/io.cpp):
//   submit: SQE prepared on the actor's shard, user_data = the record; the
//           actor is anchored (an unbound actor is not stolen meanwhile).
//   CQE:    res/flags stored; the record is posted to the actor as a message.
//           If the actor stopped meanwhile, the record is a dead letter.
//   run:    the continuation runs with the operation's result; anchor off.
//   stop:   the actor's operations still in flight are cancelled
//           (IORING_OP_ASYNC_CANCEL); their records stay until their CQE.
//   shots:  each result of a multishot operation is a message of its own
//           that points to the record (src/io.cpp); the record lives until
//           its last CQE has come back and its last queued shot has run or
//           been dropped, whichever is later.
// Dropping a record destroys the operation, so a buffer is freed and a
// descriptor a completed open returned is closed — never leaked.
#pragma once

#include <troupe/detail/dispatch.hpp>
#include <troupe/detail/envelope.hpp>
#include <troupe/io.hpp>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <new>
#include <system_error>
#include <utility>

namespace troupe::detail {

struct pending_io : envelope {
  enum class state : std::uint8_t { in_flight, completed, orphaned };
  control_block* owner = nullptr;
  int res = 0;
  unsigned cqe_flags = 0;
  state st = state::in_flight;
  bool unsupported = false;  // the kernel lacks the opcode: never submitted
  std::uint64_t serial = 0;     // names it in an io::handle (never reused by its actor)
  std::int64_t timeout_ns = 0;  // > 0: a linked timeout; the kernel reads `deadline` at submission
  __kernel_timespec deadline{};
  pending_io* prev = nullptr;  // the owner's list of operations
  pending_io* next_op = nullptr;
  pending_io* kernel_prev = nullptr;  // the shard's list of records the kernel owes a CQE
  pending_io* kernel_next = nullptr;
  std::uint8_t opcode = 0;            // as submitted (named when abandoned)
  void (*prepare)(pending_io*, io_uring_sqe*) = nullptr;
  /// A CQE with IORING_CQE_F_MORE: for a multishot operation, deliver or
  /// drop one result (`deliver`, on the actor's shard, from a shot
  /// message); for a two-step one, absorb it (on the ring's shard, at once).
  void (*more)(pending_io*, int res, unsigned flags, bool deliver) = nullptr;
  bool multishot = false;  // `more` results become messages (else: absorbed)
  // The record's own hold (dropped when its last CQE finds the actor dead)
  // plus one per shot message queued; the last to go frees the record.
  std::atomic<std::uint32_t> holds{1};
  void (*run_blocking)(pending_io*) = nullptr;  // set for blocking-pool jobs
};

/// Submits `p` on the calling shard's ring for `owner` (shard threads only;
/// throws troupe::error elsewhere).
void submit_io(actor_base* owner, pending_io* p);

/// Whether the calling shard's ring has the opcode of `prepared` (probed at
/// start). Shard threads only.
bool ring_supports(const io_uring_sqe& prepared) noexcept;

/// Hands `p` (with run_blocking set) to the runtime's blocking pool for
/// `owner` (shard threads only). Blocking jobs do not anchor the actor:
/// their result is a message, and it reaches the actor wherever it runs.
void submit_blocking(actor_base* owner, pending_io* p);

/// Cancels the operation `h` of `owner` if it is still in the kernel: its
/// continuation will not run. True if it was.
bool cancel_io(actor_base* owner, const io::handle& h) noexcept;
/// actor::end_multishot.
bool end_multishot(actor_base* owner, const io::handle& h) noexcept;

/// The owner runs the completion: unlinks `p` (its anchor was lifted when
/// its CQE came back).
void io_delivered(actor_base* owner, pending_io* p) noexcept;

template <class Op, class F>
struct pending_io_with final : pending_io {
  using output = typename Op::output;
  Op op;
  F then;
  template <class G>
  pending_io_with(Op&& o, G&& g) : op(std::move(o)), then(std::forward<G>(g)) {
    fn = &run;
    prepare = [](pending_io* p, io_uring_sqe* sqe) {
      static_cast<pending_io_with*>(p)->op.prepare(sqe);
    };
    if constexpr (io::multishot_operation<Op>) {
      multishot = true;
      more = [](pending_io* p, int res, unsigned flags, bool deliver) {
        auto* self = static_cast<pending_io_with*>(p);
        if (deliver) return self->then(self->op.complete(res, flags), true);
        try {
          (void)self->op.complete(res, flags);  // releases what it handed over
        } catch (...) {
        }
      };
    } else if constexpr (io::two_step_operation<Op>) {
      more = [](pending_io* p, int res, unsigned flags, bool) {
        static_cast<pending_io_with*>(p)->op.absorb(res, flags);
      };
    }
  }
  void call(io::result<output>&& r) {
    if constexpr (io::multishot_operation<Op>) then(std::move(r), false);
    else then(std::move(r));
  }
  static void run(envelope* e, envelope_action act, control_block* cb) {
    auto* self = static_cast<pending_io_with*>(e);
    destroy_on_exit<pending_io_with> guard{self};
    // Cancelled by its actor (cancel(handle)): unlinked then, dropped now.
    if (act == envelope_action::deliver && self->st == state::orphaned) act = envelope_action::drop;
    if (act == envelope_action::deliver) {
      io_delivered(cb->actor_, self);
      if (self->unsupported) self->call(io::result<output>(errc::unsupported));
      else if (self->timeout_ns > 0 && self->res == -ECANCELED)  // its linked timeout fired
        self->call(io::result<output>(std::make_error_code(std::errc::timed_out)));
      else self->call(self->op.complete(self->res, self->cqe_flags));
      return;
    }
    // Nobody takes the result: build it anyway and let it go, so that what
    // the kernel handed over (a descriptor an open returned) is released.
    if (self->unsupported) return;
    try {
      (void)self->op.complete(self->res, self->cqe_flags);
    } catch (...) {
    }
  }
};

template <class Op, class F>
struct pending_blocking_with final : pending_io {
  using output = typename Op::output;
  Op op;
  F then;
  io::result<output> outcome{std::error_code{}};
  template <class G>
  pending_blocking_with(Op&& o, G&& g) : op(std::move(o)), then(std::forward<G>(g)) {
    fn = &run;
    run_blocking = [](pending_io* p) {
      auto* self = static_cast<pending_blocking_with*>(p);
      try {
        self->outcome = self->op.run();
      } catch (const std::bad_alloc&) {
        self->outcome = io::result<output>(std::make_error_code(std::errc::not_enough_memory));
      }
    };
  }
  static void run(envelope* e, envelope_action act, control_block*) {
    auto* self = static_cast<pending_blocking_with*>(e);
    destroy_on_exit<pending_blocking_with> guard{self};
    if (act == envelope_action::deliver) self->then(std::move(self->outcome));
  }
};

}  // namespace troupe::detail
