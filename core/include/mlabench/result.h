// Result<T>: what the public API returns where a failure is an expected outcome (a bad checkpoint, a token id
// out of range, a missing file). Bugs abort (MLABENCH_ICHECK); expected failures are values, so the harness can
// record a failed task instead of crashing.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace mlabench {

/// \brief An expected failure: what was checked, where, and (after "HINT:") what to do about it.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// \brief A value or the Error that prevented it. `value()` on an error rethrows that Error.
template <class T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design, like std::expected
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    if (!ok()) throw std::get<1>(v_);
    return std::get<0>(v_);
  }
  T&& value() && {
    if (!ok()) throw std::get<1>(v_);
    return std::get<0>(std::move(v_));
  }
  const T& value() const& {
    if (!ok()) throw std::get<1>(v_);
    return std::get<0>(v_);
  }
  /// Only valid when !ok().
  const Error& error() const { return std::get<1>(v_); }

  T* operator->() { return &value(); }
  T& operator*() { return value(); }

 private:
  std::variant<T, Error> v_;
};

}  // namespace mlabench
