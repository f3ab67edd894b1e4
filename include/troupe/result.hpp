// result<T>: a value or a std::error_code. Replies to `ask` arrive as one.
#pragma once

#include <troupe/error.hpp>

#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

namespace troupe {

template <class T>
class [[nodiscard]] result {
  static_assert(std::is_nothrow_destructible_v<T>,
                "troupe: result<T> (a reply type) needs a destructor that does not throw: "
                "std::variant would end the process when it threw");

 public:
  using value_type = T;

  result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  result(std::error_code ec) : v_(std::in_place_index<1>, ec) {}
  result(errc e) : v_(std::in_place_index<1>, make_error_code(e)) {}

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  /// The error; a default (empty) error_code when there is a value.
  std::error_code error() const noexcept {
    return has_value() ? std::error_code{} : std::get<1>(v_);
  }

  /// The value. Throws std::system_error carrying the error if there is none.
  T& value() & { check(); return std::get<0>(v_); }
  const T& value() const& { check(); return std::get<0>(v_); }
  T&& value() && { check(); return std::get<0>(std::move(v_)); }

  T& operator*() & { return std::get<0>(v_); }
  const T& operator*() const& { return std::get<0>(v_); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }

 private:
  void check() const {
    if (!has_value()) throw std::system_error(std::get<1>(v_));
  }
  std::variant<T, std::error_code> v_;
};

/// A reply without a value: success or an error.
template <>
class [[nodiscard]] result<void> {
 public:
  using value_type = void;
  result() = default;
  result(std::error_code ec) : ec_(ec) {}
  result(errc e) : ec_(make_error_code(e)) {}
  bool has_value() const noexcept { return !ec_; }
  explicit operator bool() const noexcept { return has_value(); }
  std::error_code error() const noexcept { return ec_; }
  void value() const {
    if (ec_) throw std::system_error(ec_);
  }

 private:
  std::error_code ec_;
};

}  // namespace troupe
