// troupe's logger, for stock actors and users who want their lines next to
// the runtime's: one spdlog logger named "troupe" on stderr, its level from
// the TROUPE_LOG environment variable (trace, debug, info, warn, error,
// off; default warn). Never log per message above debug on a hot path.
#pragma once

#include <string_view>

namespace troupe {

enum class log_level { debug, info, warn, error };

/// Writes one line at `level` (dropped below the logger's level). @threadsafe.
void log(log_level level, std::string_view message) noexcept;

/// Whether a line at `level` would be written (to skip building it).
bool log_enabled(log_level level) noexcept;

}  // namespace troupe
