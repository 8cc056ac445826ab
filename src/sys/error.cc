#include "sys/error.h"

#include <cstring>

namespace corral {

Error Error::FromErrno(std::string_view call, std::string_view object) {
  return FromErrno(errno, call, object);
}

Error Error::FromErrno(int code, std::string_view call, std::string_view object) {
  std::string msg(call);
  if (!object.empty()) {
    msg += " `";
    msg += object;
    msg += '`';
  }
  msg += ": ";
  msg += strerror(code);
  return Error(code, std::move(msg));
}

Error Error::Wrap(std::string_view context) const& {
  std::string msg(context);
  msg += ": ";
  msg += message_;
  return Error(code_, std::move(msg));
}

Error Error::Wrap(std::string_view context) && {
  message_.insert(0, ": ");
  message_.insert(0, context);
  return std::move(*this);
}

}  // namespace corral
