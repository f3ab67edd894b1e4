#include <troupe/error.hpp>
#include <troupe/detail/runtime_api.hpp>

#include <boost/core/demangle.hpp>

#include <string>

namespace troupe {

namespace {
class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "troupe"; }
  std::string message(int v) const override {
    switch (static_cast<errc>(v)) {
      case errc::actor_stopped: return "the actor has stopped";
      case errc::timeout: return "no reply within the timeout";
      case errc::actor_failed: return "the actor failed while answering";
      case errc::runtime_stopped: return "the runtime is stopping or stopped";
      case errc::unsupported: return "not supported by this kernel";
      case errc::broken_promise: return "the actor dropped its promise without answering";
      case errc::would_overflow: return "the queue is full";
    }
    return "unknown troupe error";
  }
  std::error_condition default_error_condition(int v) const noexcept override {
    if (static_cast<errc>(v) == errc::unsupported) return std::errc::operation_not_supported;
    return std::error_condition(v, *this);
  }
};
}  // namespace

const std::error_category& troupe_category() noexcept {
  static const category c;
  return c;
}

namespace detail {

std::string short_type_name(const char* mangled) {
  std::string full = boost::core::demangle(mangled);
  // Strip the namespaces of the outermost name only: "app::counter<x::y>"
  // becomes "counter<x::y>".
  std::size_t end = full.find('<');
  std::size_t cut = full.rfind("::", end == std::string::npos ? full.size() : end);
  return cut == std::string::npos ? full : full.substr(cut + 2);
}

}  // namespace detail
}  // namespace troupe
