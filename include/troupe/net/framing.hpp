// Framing for line protocols: bytes in as they arrive, whole lines out.
//
//   net::line_framer framer_{4096};
//   // in the recv continuation:
//   if (auto ok = framer_.feed(bytes, [this](std::string_view line) { handle(line); }); !ok)
//     close_connection(ok.error().message());   // e.g. "line longer than 4096 bytes"
//
// A line ends at '\n' (a '\r' before it is dropped). A line longer than the
// limit, or one holding a NUL byte, is malformed: feed stops and returns
// the error; what follows in that stream cannot be trusted, so the caller
// closes that one connection.
#pragma once

#include <troupe/result.hpp>

#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

namespace troupe::net {

/// Why a frame was refused.
enum class frame_error {
  too_long = 1,  // longer than the framer's limit
  nul_byte,      // a NUL byte inside a line
};

const std::error_category& frame_category() noexcept;
inline std::error_code make_error_code(frame_error e) noexcept { return {static_cast<int>(e), frame_category()}; }

class line_framer {
 public:
  explicit line_framer(std::size_t max_line = 64 * 1024) : max_(max_line) {}

  /// Calls `on_line(std::string_view)` for every line `data` completes, in
  /// order. A malformed line stops it with the error (the framer is then
  /// spent: it refuses everything after).
  template <class F>
  result<void> feed(std::span<const std::byte> data, F&& on_line) {
    if (failed_) return failed_;
    const char* p = reinterpret_cast<const char*>(data.data());
    const char* end = p + data.size();
    while (p != end) {
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', std::size_t(end - p)));
      const char* stop = nl ? nl : end;
      if (std::memchr(p, '\0', std::size_t(stop - p)) != nullptr) return fail(frame_error::nul_byte);
      // One byte of slack: a '\r' that the '\n' may still strip.
      if (partial_.size() + std::size_t(stop - p) > max_ + 1) return fail(frame_error::too_long);
      if (nl == nullptr) {
        partial_.append(p, end);
        break;
      }
      std::string_view line;
      if (partial_.empty()) {
        line = std::string_view(p, std::size_t(nl - p));  // no copy for a line within one read
      } else {
        partial_.append(p, nl);
        line = partial_;
      }
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.size() > max_) return fail(frame_error::too_long);
      on_line(line);
      partial_.clear();
      p = nl + 1;
    }
    return {};
  }

  /// Bytes of an unfinished line held back.
  std::size_t pending() const noexcept { return partial_.size(); }
  std::size_t max_line() const noexcept { return max_; }

 private:
  result<void> fail(frame_error e) {
    failed_ = make_error_code(e);
    partial_.clear();
    return failed_;
  }

  std::size_t max_;
  std::string partial_;
  std::error_code failed_;
};

}  // namespace troupe::net

template <>
struct std::is_error_code_enum<troupe::net::frame_error> : std::true_type {};
