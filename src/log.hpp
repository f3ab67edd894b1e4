// The runtime's one logger ("troupe"), level from TROUPE_LOG (default warn).
// Never log per message above debug.
#pragma once

#include <spdlog/spdlog.h>

namespace troupe::detail {
spdlog::logger& log();
}
