// troupe's logger, for stock actors and users who want their lines next to
// the runtime's: one spdlog logger named "troupe" on stderr, its level from
// the TROUPE_LOG environment variable (trace, debug, info, warn, error,
// off; default warn). Never log per message above debug on a hot path.
#pragma once

#include <fmt/core.h>

#include <functional>
#include <string>
#include <string_view>
#include <type_traits>

namespace troupe {

enum class log_level { debug, info, warn, error };

/// Writes one line at `level` (dropped below the logger's level). @threadsafe.
void log(log_level level, std::string_view message) noexcept;

/// Whether a line at `level` would be written (to skip building it).
bool log_enabled(log_level level) noexcept;

/// Receives each line the logger writes: its level (spdlog's trace counts as
/// debug, critical as error) and its text, without time stamp, logger name
/// or newline.
using log_sink = std::function<void(log_level, std::string_view)>;

/// Sends the logger's lines to `sink` instead of stderr from now on (to a
/// test's capture, a program's own log); an empty `sink` restores stderr.
/// Lines below the logger's level are dropped before they reach it. The
/// sink is called on whichever thread logs (any shard, the caller of
/// log()), one line at a time under the logger's lock: it must not throw
/// and must not log. A "troupe" logger the program registered with spdlog
/// before troupe's first line keeps its own sinks as well. @threadsafe.
void set_log_sink(log_sink sink);

}  // namespace troupe

namespace troupe {
namespace detail {
class ref_base;
}  // namespace detail
std::string to_string(const detail::ref_base& r);  // troupe/ref.hpp
}  // namespace troupe

/// fmt::format("{}", r) for any ref<A> or any_ref: `counter#42@1`, as
/// troupe::to_string.
template <class R>
  requires std::is_base_of_v<troupe::detail::ref_base, R>
struct fmt::formatter<R> : fmt::formatter<std::string_view> {
  auto format(const R& r, fmt::format_context& ctx) const {
    std::string s = troupe::to_string(r);
    return fmt::formatter<std::string_view>::format(s, ctx);
  }
};
