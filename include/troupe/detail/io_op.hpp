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
// Dropping a record destroys the operation, so a buffer is freed and a
// descriptor a completed open returned is closed — never leaked.
#pragma once

#include <troupe/detail/dispatch.hpp>
#include <troupe/detail/envelope.hpp>
#include <troupe/io.hpp>

#include <cstdint>
#include <utility>

namespace troupe::detail {

struct pending_io : envelope {
  enum class state : std::uint8_t { in_flight, completed, orphaned };
  control_block* owner = nullptr;
  int res = 0;
  unsigned cqe_flags = 0;
  state st = state::in_flight;
  pending_io* prev = nullptr;  // the owner's list of operations
  pending_io* next_op = nullptr;
  void (*prepare)(pending_io*, io_uring_sqe*) = nullptr;
};

/// Submits `p` on the calling shard's ring for `owner` (shard threads only;
/// throws troupe::error elsewhere).
void submit_io(actor_base* owner, pending_io* p);

/// The owner runs the completion: unlinks `p` and lifts its anchor.
void io_delivered(actor_base* owner, pending_io* p) noexcept;

template <class Op, class F>
struct pending_io_with final : pending_io {
  Op op;
  F then;
  pending_io_with(Op&& o, F&& f) : op(std::move(o)), then(std::move(f)) {
    fn = &run;
    prepare = [](pending_io* p, io_uring_sqe* sqe) {
      static_cast<pending_io_with*>(p)->op.prepare(sqe);
    };
  }
  static void run(envelope* e, envelope_action act, control_block* cb) {
    auto* self = static_cast<pending_io_with*>(e);
    destroy_on_exit<pending_io_with> guard{self};
    if (act == envelope_action::deliver) {
      io_delivered(cb->actor_, self);
      self->then(self->op.complete(self->res, self->cqe_flags));
      return;
    }
    // Nobody takes the result: build it anyway and let it go, so that what
    // the kernel handed over (a descriptor an open returned) is released.
    try {
      (void)self->op.complete(self->res, self->cqe_flags);
    } catch (...) {
    }
  }
};

}  // namespace troupe::detail
