// One error type for the whole program: an errno value plus a sentence that names the call and
// its object ("openat `/sys/fs/cgroup/x`: Permission denied"). Callers add context in front with
// Wrap() the way crun's crun_error_wrap does, so the final message reads outermost-first:
//   "create cell c-42: mkdir `/sys/fs/cgroup/unified/corral/c-42`: Permission denied".
// The errno stays available so callers can branch on it (EBUSY: retry; ESRCH: already gone).
//
// Result<T> is returned instead of throwing: nothing may unwind across the event loop.
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace corral {

class Error {
 public:
  Error() = default;
  Error(int code, std::string message) : code_(code), message_(std::move(message)) {}

  // "CALL `OBJECT`: strerror(errno)" from the current errno. Call it right after the failing call.
  static Error FromErrno(std::string_view call, std::string_view object = {});
  static Error FromErrno(int code, std::string_view call, std::string_view object = {});
  // An error that is not an errno (bad input, a broken invariant): code 0 unless given.
  static Error Msg(std::string message, int code = 0) { return Error(code, std::move(message)); }

  int code() const { return code_; }
  const std::string& message() const { return message_; }

  // Prefix context: Wrap("create cell c-42") -> "create cell c-42: <message>".
  Error Wrap(std::string_view context) const&;
  Error Wrap(std::string_view context) &&;

 private:
  int code_ = 0;
  std::string message_;
};

// Holds either a T or an Error. Check ok() before value(); value() on an error aborts.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

  T value_or(T fallback) const& { return ok() ? std::get<0>(v_) : std::move(fallback); }

  const Error& error() const { return std::get<1>(v_); }
  Error&& take_error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }
  Error&& take_error() && { return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

inline Status Ok() { return Status(); }

}  // namespace corral

// Early-return helpers. TRY(expr) for Status; ASSIGN_OR_RETURN(lhs, expr) for Result<T>.
#define CORRAL_CONCAT_INNER(a, b) a##b
#define CORRAL_CONCAT(a, b) CORRAL_CONCAT_INNER(a, b)
#define TRY(expr)                                      \
  do {                                                 \
    auto _st = (expr);                                 \
    if (!_st.ok()) return std::move(_st).take_error(); \
  } while (0)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)        \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).take_error(); \
  lhs = std::move(tmp).value()
#define ASSIGN_OR_RETURN(lhs, expr) ASSIGN_OR_RETURN_IMPL(CORRAL_CONCAT(_res_, __LINE__), lhs, expr)
