// I/O as messages: what an operation is, and what its completion carries.
//
// An operation is one small struct that owns everything the kernel touches
// (its buffer, its path) and knows how to fill its SQE and how to read its
// CQE. An actor hands it over with `submit(op).then(fn)`; the SQE goes to the
// ring of the shard the actor runs on, and `fn(io::result<output>)` runs
// later as a message of the actor, on that shard. The operation record lives
// until its CQE has come back, also when the actor stops first (then the
// operation is cancelled and its result dropped: buffers freed, a descriptor
// it opened closed). See doc/io.md.
#pragma once

#include <troupe/detail/deadline.hpp>
#include <troupe/result.hpp>

#include <liburing.h>

#include <cerrno>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <system_error>
#include <vector>

namespace troupe::io {

/// A value or a std::error_code (the kernel's errno, generic category).
template <class T>
using result = troupe::result<T>;

/// std::allocator, except that an element made without a value is left
/// uninitialised: growing a buffer that a read will overwrite does not
/// zero it first (a measured 10-20% of a small-file checksum run).
template <class T>
struct uninitialized_allocator : std::allocator<T> {
  using std::allocator<T>::allocator;
  template <class U>
  struct rebind {
    using other = uninitialized_allocator<U>;
  };
  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

/// Bytes an operation owns while the kernel may write or read them.
/// `bytes(n)` and `resize(n)` do not zero the new bytes (a read fills
/// them, and a read's result is cut to what it read); `bytes(n, std::byte{0})`
/// does.
using bytes = std::vector<std::byte, uninitialized_allocator<std::byte>>;

/// What `submit` accepts. `prepare` fills an SQE (the runtime sets its
/// user_data and flags); `complete` turns the CQE's res and flags into the
/// result and may move owned buffers into it. Both run on the actor's shard.
template <class Op>
concept operation = std::move_constructible<Op> && requires(Op& op, io_uring_sqe* sqe, int res,
                                                            unsigned flags) {
  typename Op::output;
  { op.prepare(sqe) } -> std::same_as<void>;
  { op.complete(res, flags) } -> std::same_as<result<typename Op::output>>;
};

/// What `submit` runs on the runtime's small blocking pool instead of the
/// ring, for what has no io_uring opcode (fs::blocking). `run` executes on
/// a pool thread and must not touch actor state.
template <class Op>
concept blocking_operation = std::move_constructible<Op> && requires(Op& op) {
  typename Op::output;
  typename Op::blocking_tag;
  { op.run() } -> std::same_as<result<typename Op::output>>;
};

/// An operation whose SQE completes many times (IORING_CQE_F_MORE):
/// multishot accept, multishot recv. Each CQE becomes its own message of
/// the actor: the continuation runs as `fn(io::result<output>, bool more)`,
/// with `more` false on the last one (an error, or the kernel ending it).
template <class Op>
concept multishot_operation = operation<Op> && Op::multishot;

/// An operation with one result and a second CQE the runtime waits for
/// before it hands the result over (IORING_OP_SEND_ZC: the send's count,
/// then the notification that the kernel no longer reads the buffer).
/// `absorb(res, flags)` takes the first CQE on the shard; `complete` the
/// last.
template <class Op>
concept two_step_operation = operation<Op> && requires(Op& op, int res, unsigned flags) {
  { op.absorb(res, flags) } -> std::same_as<void>;
};

/// An operation that can also run as a plain syscall: when the kernel lacks
/// its opcode (probed when the runtime starts), `submit` runs `run()` on the
/// blocking pool instead (fs::ftruncate before Linux 6.9). An operation
/// without it completes with errc::unsupported there.
template <class Op>
concept operation_with_fallback = operation<Op> && requires(Op& op) {
  { op.run() } -> std::same_as<result<typename Op::output>>;
};

/// Names one ring operation in flight, for actor::cancel(handle). What
/// `submit(op).then(fn)` returns; empty for blocking-pool operations.
struct handle {
  const void* record = nullptr;
  std::uint64_t serial = 0;
  explicit operator bool() const noexcept { return record != nullptr; }
};

/// Waits until `fd` is ready for `events` (POLLIN, POLLOUT, ...), once:
/// IORING_OP_POLL_ADD. The result is the ready events (revents). The
/// adapter for C libraries that work by readiness (c-ares, libpq, ...):
/// poll their descriptors through the shard's ring instead of a thread. The
/// descriptor stays the caller's; cancel the poll (actor::cancel) before
/// the library closes it.
struct poll {
  int fd;
  unsigned events;

  using output = unsigned;
  void prepare(io_uring_sqe* sqe) { io_uring_prep_poll_add(sqe, fd, events); }
  result<unsigned> complete(int res, unsigned) {
    if (res < 0) return std::error_code(-res, std::generic_category());
    return static_cast<unsigned>(res);
  }
};

/// Completes after `duration` (IORING_OP_TIMEOUT): a timer that is an
/// operation, for code that has no message type of its own to send itself
/// (a base class, a helper). Cancelled with its actor like any operation.
/// Takes any duration type: zero or negative completes at once; one too
/// long for nanoseconds (hours::max()) saturates and, like
/// nanoseconds::max(), never completes (the kernel clamps it to its "never").
struct sleep {
  std::chrono::nanoseconds duration{};
  __kernel_timespec ts{};

  sleep() = default;
  template <class Rep, class Period>
  explicit sleep(std::chrono::duration<Rep, Period> d) noexcept : duration(detail::saturating_ns(d)) {}

  using output = void;
  void prepare(io_uring_sqe* sqe) {
    const std::int64_t ns = duration.count() > 0 ? duration.count() : 0;  // the kernel refuses negatives
    ts.tv_sec = ns / 1'000'000'000;
    ts.tv_nsec = ns % 1'000'000'000;
    io_uring_prep_timeout(sqe, &ts, 0, 0);
  }
  result<void> complete(int res, unsigned) {
    if (res == -ETIME || res == 0) return {};
    return std::error_code(-res, std::generic_category());
  }
};

/// A raw completion: the CQE's res and flags as the kernel wrote them.
struct cqe {
  int res = 0;
  unsigned flags = 0;
};

/// Any SQE you fill yourself, for opcodes troupe does not wrap:
///
///   submit(io::raw{[buf](io_uring_sqe* s) { io_uring_prep_...(s, ...); }})
///       .then([](io::result<io::cqe> c) { ... c->res ... });
///
/// UNSAFE, and on you: everything the SQE points to must stay valid until
/// the continuation runs — own it in the lambda (it lives in the operation
/// record until then), never point into actor state. Do not set user_data
/// or the IOSQE_CQE_SKIP_SUCCESS flag (the runtime owns them); multishot
/// requests are not supported (one CQE per operation). The CQE comes back
/// as is: a negative res is a value here, not an error. doc/io.md.
template <class Fill>
struct raw {
  Fill fill;

  using output = cqe;
  void prepare(io_uring_sqe* sqe) { fill(sqe); }
  result<cqe> complete(int res, unsigned flags) { return cqe{res, flags}; }
};
template <class Fill>
raw(Fill) -> raw<Fill>;

/// The error of a negative CQE result.
inline std::error_code error_of(int res) noexcept {
  return std::error_code(-res, std::generic_category());
}

/// The result of an operation whose CQE carries nothing but success or -errno.
inline result<void> status_of(int res) noexcept {
  if (res < 0) return error_of(res);
  return {};
}

}  // namespace troupe::io
