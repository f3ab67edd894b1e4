#include "log.hpp"

#include <troupe/log.hpp>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>
#include <mutex>
#include <string>

namespace troupe::detail {

namespace {

log_level from_spdlog(spdlog::level::level_enum l) noexcept {
  switch (l) {
    case spdlog::level::trace:
    case spdlog::level::debug: return log_level::debug;
    case spdlog::level::info: return log_level::info;
    case spdlog::level::warn: return log_level::warn;
    default: return log_level::error;
  }
}

// The logger's one sink: the user's (set_log_sink) or, without one, the
// stderr sink it wraps. base_sink's mutex serialises lines and set().
class switch_sink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit switch_sink(spdlog::sink_ptr fallback) : fallback_(std::move(fallback)) {}
  void set(log_sink s) {
    std::lock_guard lock(mutex_);
    user_ = std::move(s);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    if (user_) return user_(from_spdlog(msg.level), std::string_view(msg.payload.data(), msg.payload.size()));
    if (fallback_ && fallback_->should_log(msg.level)) fallback_->log(msg);
  }
  void flush_() override {
    if (fallback_) fallback_->flush();
  }
  // spdlog::set_pattern and friends reach the logger's sinks: pass them on.
  void set_pattern_(const std::string& pattern) override {
    if (fallback_) fallback_->set_pattern(pattern);
  }
  void set_formatter_(std::unique_ptr<spdlog::formatter> f) override {
    if (fallback_) fallback_->set_formatter(std::move(f));
  }

 private:
  spdlog::sink_ptr fallback_;  // nullptr: a logger the program registered keeps its own sinks
  log_sink user_;
};

std::shared_ptr<switch_sink>& the_switch() {
  static std::shared_ptr<switch_sink> s;
  return s;
}

}  // namespace

spdlog::logger& log() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto l = spdlog::get("troupe");
    if (!l) {
      the_switch() = std::make_shared<switch_sink>(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
      l = std::make_shared<spdlog::logger>("troupe", the_switch());
      spdlog::initialize_logger(l);  // registered, with spdlog's global settings
    } else {
      the_switch() = std::make_shared<switch_sink>(nullptr);
      l->sinks().push_back(the_switch());
    }
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

void set_log_sink(log_sink sink) {
  (void)detail::log();  // creates the switch
  detail::the_switch()->set(std::move(sink));
}

}  // namespace troupe
