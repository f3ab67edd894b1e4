#include "log.hpp"

#include <troupe/log.hpp>

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

namespace troupe {

namespace {
spdlog::level::level_enum to_spdlog(log_level l) noexcept {
  switch (l) {
    case log_level::debug: return spdlog::level::debug;
    case log_level::info: return spdlog::level::info;
    case log_level::warn: return spdlog::level::warn;
    case log_level::error: return spdlog::level::err;
  }
  return spdlog::level::err;
}
}  // namespace

void log(log_level level, std::string_view message) noexcept {
  try {
    detail::log().log(to_spdlog(level), "{}", message);
  } catch (...) {
  }
}

bool log_enabled(log_level level) noexcept { return detail::log().should_log(to_spdlog(level)); }

}  // namespace troupe
