// troupe's error model: `troupe::errc` values inside std::error_code for
// results (ask replies, I/O), and `troupe::error` thrown only for misuse.
#pragma once

#include <stdexcept>
#include <string>
#include <system_error>

namespace troupe {

/// Error values carried by `result<T>` (as std::error_code, category "troupe").
enum class errc {
  /// The target actor had stopped (or stopped before it answered).
  actor_stopped = 1,
  /// No reply arrived within the ask's timeout.
  timeout,
  /// The target's handler threw while answering; the target has failed.
  actor_failed,
  /// The runtime is stopping or stopped; the request was not delivered.
  runtime_stopped,
  /// The kernel lacks what the operation needs (compares equal to
  /// std::errc::operation_not_supported).
  unsupported,
  /// The handler answered through a troupe::promise and then let the
  /// promise go unanswered (a bug in that handler's actor).
  broken_promise,
  /// A bounded queue is full: the data was not taken (it is handed back);
  /// try again when told it is writable.
  would_overflow,
};

const std::error_category& troupe_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), troupe_category()};
}

/// Thrown for misuse the type system cannot catch: a shard that does not
/// exist, io_uring unavailable, a blocking call on a shard thread. The
/// message says what to do.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace troupe

template <>
struct std::is_error_code_enum<troupe::errc> : std::true_type {};
