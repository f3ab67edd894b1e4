// I/O operations on a shard's ring: submission, completion, cancellation.
//
// A pending_io record (include/troupe/detail/io_op.hpp) is an envelope. It
// is prepared into an SQE whose user_data is the record, waits in the kernel,
// and when its CQE is reaped it is posted to its actor like any message —
// or, if the actor stopped meanwhile, counted as a dead letter and dropped
// (which releases what the operation got back, e.g. an opened descriptor).
// Records hold a reference to their actor's control block, so they may
// outlive the actor; the shard counts them in `inflight_`, so shutdown waits
// for every CQE before it closes the ring.
//
// Multishot records: every CQE with IORING_CQE_F_MORE becomes a shot message
// that points to the record, and the record counts it (`holds`). Shots run in
// FIFO order before the record's own final message, so while the actor lives
// they always find the record. When the actor is dead by the time the last
// CQE comes (stopped, runtime stop), its shots may still sit in its queues:
// drained later in shutdown, or behind a mailbox node a preempted sender has
// not linked yet. Then the record is not dropped at once: the last of it and
// its shots drops it, so no shot reads freed memory.
//
// A cancelled record keeps its actor's anchor until its last CQE: an unbound
// actor is not stolen away from a ring that still owes it completions.
//
// The shard lists every record the kernel owes a last CQE (in_kernel_), so
// that a stop is bounded even when a completion never comes (a CQE the
// kernel dropped): after config::shutdown_grace it cancels them all
// synchronously, after a second grace it answers the rest as cancelled.
#include "log.hpp"
#include "shard.hpp"

#include <liburing.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

namespace troupe::detail {

void shard::probe_opcodes() noexcept {
  io_uring_probe* probe = io_uring_get_probe_ring(ring_.get());
  if (probe == nullptr) {
    // No probe (kernels before 5.6): let the kernel answer -EINVAL per op.
    supported_.set();
    return;
  }
  for (unsigned op = 0; op <= probe->last_op && op < supported_.size(); ++op)
    if (io_uring_opcode_supported(probe, static_cast<int>(op))) supported_.set(op);
  io_uring_free_probe(probe);
  if (int hidden = cfg().fault_injection.hide_opcode; hidden >= 0 && hidden < 256)
    supported_.reset(static_cast<std::size_t>(hidden));
}

bool ring_supports(const io_uring_sqe& prepared) noexcept {
  shard* s = this_shard_ptr();
  return s != nullptr && s->supports(prepared.opcode);
}

void shard::start_io(pending_io* p) noexcept {
  ++io_submitted_;
  // Prepared aside first: an opcode the kernel lacks never reaches the ring.
  io_uring_sqe prepared{};
  p->prepare(p, &prepared);
  if (!supports(prepared.opcode)) {
    log().debug("shard {}: opcode {} is not supported by this kernel", id_, prepared.opcode);
    p->unsupported = true;  // the result is errc::unsupported
    return complete_io(p, -EOPNOTSUPP, 0);
  }
  // One CQE per operation, and no link into the runtime's own SQEs that
  // follow (io::raw lets users fill any SQE).
  prepared.flags &= ~(IOSQE_CQE_SKIP_SUCCESS | IOSQE_IO_LINK | IOSQE_IO_HARDLINK);
  const bool timed = p->timeout_ns > 0;
  if (timed) {
    prepared.flags |= IOSQE_IO_LINK;
    p->deadline.tv_sec = p->timeout_ns / 1'000'000'000;
    p->deadline.tv_nsec = p->timeout_ns % 1'000'000'000;
    ring_.reserve(2);
  }
  io_uring_sqe* sqe = ring_.sqe();
  *sqe = prepared;
  io_uring_sqe_set_data64(sqe, tag(cqe_kind::io, reinterpret_cast<std::uintptr_t>(p)));
  p->opcode = prepared.opcode;
  link_in_kernel(p);
  ++inflight_;
  if (timed) {
    // Fires -> the operation completes with -ECANCELED (reported as
    // timed_out); its own CQE (-ETIME or -ECANCELED) is only counted.
    io_uring_sqe* t = ring_.sqe();
    io_uring_prep_link_timeout(t, &p->deadline, 0);
    io_uring_sqe_set_data64(t, tag(cqe_kind::io_timeout, 0));
    ++inflight_;
  }
}

void shard::link_in_kernel(pending_io* p) noexcept {
  p->kernel_prev = nullptr;
  p->kernel_next = in_kernel_;
  if (in_kernel_ != nullptr) in_kernel_->kernel_prev = p;
  in_kernel_ = p;
}

void shard::unlink_in_kernel(pending_io* p) noexcept {
  if (p->kernel_prev != nullptr) p->kernel_prev->kernel_next = p->kernel_next;
  else in_kernel_ = p->kernel_next;
  if (p->kernel_next != nullptr) p->kernel_next->kernel_prev = p->kernel_prev;
  p->kernel_prev = p->kernel_next = nullptr;
}

void shard::cancel_io(pending_io* p, bool orphan) noexcept {
  if (orphan) p->st = pending_io::state::orphaned;
  ++io_cancelled_;
  cancel_unsubmitted_ = true;
  io_uring_sqe* sqe = ring_.sqe();
  io_uring_prep_cancel64(sqe, tag(cqe_kind::io, reinterpret_cast<std::uintptr_t>(p)), 0);
  io_uring_sqe_set_data64(sqe, tag(cqe_kind::io_cancel, 0));
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

namespace {

// One result of a multishot operation, a message of its actor.
struct shot_envelope final : envelope {
  pending_io* src;
  int res;
  unsigned flags;
  shot_envelope(pending_io* p, int r, unsigned f) : src(p), res(r), flags(f) { fn = &run; }
  static void run(envelope* e, envelope_action act, control_block* cb) {
    auto* self = static_cast<shot_envelope*>(e);
    pending_io* src = self->src;
    {
      destroy_on_exit<shot_envelope> guard{self};
      const bool deliver = act == envelope_action::deliver && src->st != pending_io::state::orphaned;
      src->more(src, self->res, self->flags, deliver);
    }
    // The record's last CQE found the actor dead and left the record to us.
    if (src->holds.fetch_sub(1, std::memory_order_acq_rel) == 1) this_shard_ptr()->dead_letter_unsent(cb, src);
  }
};

}  // namespace

void shard::complete_io(pending_io* p, int res, unsigned flags) noexcept {
  control_block* owner = p->owner;
  if ((flags & IORING_CQE_F_MORE) != 0) {
    // Not the last CQE of this record: it stays in the kernel. (An io::raw
    // SQE made multishot by its user: its extra CQEs are dropped.)
    if (p->more == nullptr) return;
    if (!p->multishot) return p->more(p, res, flags, false);  // two-step: absorbed here
    if (p->st == pending_io::state::orphaned) return p->more(p, res, flags, false);
    p->holds.fetch_add(1, std::memory_order_relaxed);
    return post(owner, make_envelope<shot_envelope>(owner, p, res, flags));
  }
  ++io_completed_;
  p->res = res;
  p->cqe_flags = flags;
  if (p->st == pending_io::state::orphaned) {
    if (owner->life_.load(std::memory_order_acquire) != life::dead) {
      // Cancelled by an actor that lives on (actor::cancel): its anchor goes
      // now. A multishot record queues after its shots (FIFO) and is
      // dropped when it comes up; any other is a dead letter now.
      owner->anchors_.store(owner->anchors_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
      if (p->multishot) post(owner, p);
      else dead_letter_unsent(owner, p);
    } else if (p->holds.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      dead_letter_unsent(owner, p);  // no shot of it is queued any more
    }
  } else {
    p->st = pending_io::state::completed;
    // Out of the kernel: the completion is a message now and may follow
    // the actor to another shard, so the anchor goes here, not when the
    // continuation runs (examples/checksum: hashers were never stolen).
    // This shard is the actor's (it is anchored), so this thread is the
    // only one that may run it: no handler of it runs concurrently.
    owner->anchors_.store(owner->anchors_.load(std::memory_order_relaxed) - 1,
                          std::memory_order_relaxed);
    post(owner, p);
  }
  owner->release();  // the record's reference
}

// ---------------------------------------------------------------------------
// Shutdown phase 2: the records the kernel still owes a CQE

void shard::wait_in_flight() noexcept {
  const std::int64_t grace = std::chrono::duration_cast<std::chrono::nanoseconds>(cfg().shutdown_grace).count();
  std::int64_t until = now_ns() + grace;
  bool cancelled_all = false;
  for (;;) {
    reap();
    if (any_retry_) retry_doorbells();
    if (inflight_ == 0 && !any_retry_) return;
    const std::int64_t now = now_ns();
    if (now >= until) {
      if (cancelled_all || in_kernel_ == nullptr) return abandon_in_kernel(true);
      // Cancel everything still in the kernel, and wait until it is done:
      // after that the kernel touches none of our records any more.
      cancelled_all = true;
      io_uring_sync_cancel_reg reg{};
      reg.flags = IORING_ASYNC_CANCEL_ANY;
      reg.timeout.tv_sec = 1;
      int r = io_uring_register_sync_cancel(ring_.get(), &reg);
      log().warn("shard {}: {} operation(s) still in the kernel {} ms into stop; cancelled them all ({})",
                 id_, inflight_, grace / 1'000'000, r == 0 || r == -ENOENT ? "done" : std::strerror(-r));
      if (r != 0 && r != -ENOENT) return abandon_in_kernel(false);
      until = now + grace;
      continue;
    }
    __kernel_timespec ts{};
    const std::int64_t wait = std::min<std::int64_t>(until - now, 50'000'000);
    ts.tv_nsec = wait;
    ring_.submit_and_wait(&ts);
  }
}

void shard::abandon_in_kernel(bool kernel_done) noexcept {
  // Completions that never came (a CQE the kernel dropped): the records are
  // answered as cancelled, so their actors' dead letters and references go
  // as usual. If the kernel might still be working on them, they are left
  // allocated: freeing memory the kernel may write is worse than a leak.
  while (pending_io* p = in_kernel_) {
    unlink_in_kernel(p);
    ++io_abandoned_;
    log().error("shard {}: stop gave up on an I/O operation (opcode {}) of {}: its completion never came{}",
                id_, unsigned(p->opcode), p->owner->type()->name,
                kernel_done ? "" : "; left allocated, the kernel may still use it");
    if (kernel_done) complete_io(p, -ECANCELED, 0);
  }
  if (inflight_ != 0) log().debug("shard {}: {} other CQE(s) never came", id_, inflight_);
  inflight_ = 0;
  any_retry_ = false;
}

}  // namespace troupe::detail
