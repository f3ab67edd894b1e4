// Durations and deadlines that saturate instead of overflowing. Every public
// call that takes a duration (ask timeouts, delayed_send, every, io::sleep,
// submit(op).timeout) converts it with saturating_ns, and every deadline is
// computed with deadline_after: a duration too long to represent is "never",
// not a wrapped value that fires at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace troupe::detail {

/// The deadline of a timer that never fires.
inline constexpr std::int64_t never_ns = std::numeric_limits<std::int64_t>::max();

/// `d` in nanoseconds, clamped to nanoseconds::min()/max() where it does not
/// fit (hours::max(), a thousand years); NaN is zero. Finer units are
/// truncated, as duration_cast does.
template <class Rep, class Period>
constexpr std::chrono::nanoseconds saturating_ns(std::chrono::duration<Rep, Period> d) noexcept {
  using std::chrono::nanoseconds;
  // The comparison is made in long double (64-bit mantissa on x86-64: every
  // int64 is exact), where nothing overflows; within the bounds, the exact
  // integer conversion cannot overflow either.
  const long double x = std::chrono::duration_cast<std::chrono::duration<long double, std::nano>>(d).count();
  if (x != x) return nanoseconds::zero();
  if (x >= 9223372036854775807.0L) return nanoseconds::max();
  if (x <= -9223372036854775808.0L) return nanoseconds::min();
  if constexpr (std::is_floating_point_v<Rep>)
    return nanoseconds(static_cast<std::int64_t>(x));  // Rep's own arithmetic could round up past max
  else
    return std::chrono::duration_cast<nanoseconds>(d);
}

/// `now + d` on the steady clock in nanoseconds, saturated: a negative `d`
/// is `now`, one that would pass int64 is never_ns.
constexpr std::int64_t deadline_after(std::int64_t now, std::chrono::nanoseconds d) noexcept {
  const std::int64_t n = d.count();
  if (n <= 0) return now;
  if (now > 0 && n >= never_ns - now) return never_ns;
  return now + n;
}

}  // namespace troupe::detail
