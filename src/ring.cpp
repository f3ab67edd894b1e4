#include "ring.hpp"

#include "log.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sched.h>
#include <string>

namespace troupe::detail {

namespace {

const char* name_of(ring_setup s) {
  switch (s) {
    case ring_setup::coop_taskrun: return "SINGLE_ISSUER|COOP_TASKRUN|TASKRUN_FLAG";
    case ring_setup::defer_taskrun: return "SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG";
    case ring_setup::plain: return "SINGLE_ISSUER";
  }
  return "?";
}

unsigned flags_of(ring_setup s) {
  switch (s) {
    case ring_setup::coop_taskrun: return IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    case ring_setup::defer_taskrun: return IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    case ring_setup::plain: return 0;
  }
  return 0;
}

}  // namespace

std::string io_uring_unavailable_message(int err) {
  std::string disabled;
  if (std::ifstream f("/proc/sys/kernel/io_uring_disabled"); f) std::getline(f, disabled);
  std::string head = "troupe: cannot create an io_uring ring (io_uring_setup: " +
                     std::string(std::strerror(err)) + "). ";
  if (err == EPERM && disabled == "2")
    return head +
           "io_uring is disabled on this machine (sysctl kernel.io_uring_disabled=2). "
           "Enable it with `sysctl -w kernel.io_uring_disabled=0` (as root).";
  if (err == EPERM && disabled == "1")
    return head +
           "io_uring is restricted to one group (sysctl kernel.io_uring_disabled=1): run as a "
           "member of the group in kernel.io_uring_group, or set kernel.io_uring_disabled=0.";
  if (err == EPERM || err == ENOSYS)
    return head +
           "The kernel allows io_uring here, so a seccomp filter most likely denies "
           "io_uring_setup (container runtimes' default profiles do). Run with a seccomp "
           "profile that allows io_uring_setup, io_uring_enter and io_uring_register" +
           std::string(err == ENOSYS ? ", or use a kernel built with CONFIG_IO_URING." : ".");
  if (err == ENOMEM)
    return head + "Raise the locked-memory limit (ulimit -l) or lower config::sq_entries/cq_entries.";
  // The plainest ring troupe sets up needs IORING_SETUP_SINGLE_ISSUER (6.0);
  // the doorbells need IORING_OP_MSG_RING (5.18) and SUBMIT_ALL (5.18).
  // COOP_TASKRUN (5.19) and DEFER_TASKRUN (6.1) fall back when refused.
  return head +
         "The kernel refused even the plainest ring troupe sets up "
         "(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_CQSIZE): Linux 6.0 or newer is needed.";
}

std::string ring::open(const config& cfg, unsigned shard) {
  ring_setup tries[3] = {cfg.ring, ring_setup::plain, ring_setup::plain};
  int n = cfg.ring == ring_setup::plain ? 1 : 2;
  for (int i = 0; i < n; ++i) {
    io_uring_params p{};
    // SUBMIT_ALL: one bad SQE gets its error CQE and the rest of the batch
    // still goes, so a submit is short only when the kernel took nothing.
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL |
              flags_of(tries[i]);
    p.cq_entries = cfg.cq_entries;
    int r = io_uring_queue_init_params(cfg.sq_entries, &ring_, &p);
    if (r == -EINVAL && i + 1 < n) {
      log().warn("shard {}: kernel refused ring setup {}, falling back to {}", shard,
                 name_of(tries[i]), name_of(tries[i + 1]));
      continue;
    }
    if (r < 0) return io_uring_unavailable_message(-r);
    setup_ = tries[i];
    open_ = true;
    shard_ = shard;
    short_submit_every_ = cfg.fault_injection.short_submit_every_kth;
    spilled_.reserve(p.cq_entries);  // a spill in a handler allocates nothing, mostly
    if (short_submit_every_ == 1) short_submit_every_ = 2;  // every submit failing never submits
    log().debug("shard {}: ring fd {} set up with {}, sq {} cq {}", shard, ring_.ring_fd,
                name_of(setup_), p.sq_entries, p.cq_entries);
    return {};
  }
  return io_uring_unavailable_message(EINVAL);
}

void ring::close() noexcept {
  if (open_) io_uring_queue_exit(&ring_);
  open_ = false;
}

int ring::injected_failure() noexcept {
  if (short_submit_every_ == 0) return 0;
  // As kernels that take no SQE until a full CQ is read answer.
  if (io_uring_cq_ready(&ring_) >= ring_.cq.ring_entries) return -EBUSY;
  if (++submits_ % short_submit_every_ != 0) return 0;
  return (submits_ / short_submit_every_) % 2 ? -EAGAIN : -ENOMEM;  // short of memory
}

int ring::submit() noexcept {
  int r = injected_failure();
  if (r == 0) r = io_uring_submit(&ring_);
  if (r < 0) note(r);
  return r;
}

int ring::submit_and_wait(__kernel_timespec* timeout) noexcept {
  int r = injected_failure();
  if (r == 0) {
    io_uring_cqe* cqe = nullptr;
    r = timeout == nullptr ? io_uring_submit_and_wait(&ring_, 1)
                           : io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, timeout, nullptr);
  }
  if (r < 0 && r != -ETIME) note(r);
  return r;
}

void ring::note(int failed) noexcept {
  if (failed == -EBADR) {
    // Reported once per drop: completions are gone, and the operations that
    // waited for them are given up on at stop (shard::abandon_in_kernel).
    log().error("shard {}: the kernel dropped completions (CQ overflow without memory to keep "
                "them; {} so far): the operations they ended are abandoned at stop",
                shard_, cq_dropped());
    return;
  }
  if (failed == -EINTR || warned_) return;
  warned_ = true;
  log().warn("shard {}: io_uring_submit took nothing ({}); retrying", shard_, std::strerror(-failed));
}

void ring::make_room(int failed) noexcept {
  if (failed == -EBUSY || io_uring_cq_ready(&ring_) >= ring_.cq.ring_entries) {
    unsigned head, n = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      spilled_.push_back(*cqe);
      ++n;
    }
    io_uring_cq_advance(&ring_, n);
    if (n != 0) return;
  }
  if (failed != -EINTR) sched_yield();
}

void ring::flush() noexcept {
  while (io_uring_sq_ready(&ring_) > 0)
    if (int r = submit(); r < 0) make_room(r);
}

void ring::reserve(unsigned n) noexcept {
  while (io_uring_sq_space_left(&ring_) < n)
    if (int r = submit(); r < 0) make_room(r);
}

io_uring_sqe* ring::sqe() noexcept {
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  while (s == nullptr) {
    if (int r = submit(); r < 0) make_room(r);
    s = io_uring_get_sqe(&ring_);
  }
  return s;
}

}  // namespace troupe::detail
