#include "log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>
#include <string>

namespace troupe::detail {

spdlog::logger& log() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto l = spdlog::get("troupe");
    if (!l) l = spdlog::stderr_color_mt("troupe");
    spdlog::level::level_enum level = spdlog::level::warn;
    if (const char* env = std::getenv("TROUPE_LOG"); env && *env)
      level = spdlog::level::from_str(env);  // unknown names mean "off"
    l->set_level(level);
    return l;
  }();
  return *logger;
}

}  // namespace troupe::detail
