// Where the daemon listens and where its clients look, when no --socket is given (DESIGN.md):
//   root (euid 0)                  /run/corral/corral.sock
//   others, $XDG_RUNTIME_DIR set   $XDG_RUNTIME_DIR/corral.sock
//   others, no usable XDG dir      /tmp/corral-$UID/corral.sock
// $XDG_RUNTIME_DIR counts only when it is an absolute path (pam_systemd sets /run/user/$UID; an
// empty or relative value is ignored). The /tmp fallback is a per-user directory because /tmp is
// shared: the server refuses a parent directory that is owned by someone else or writable by
// group/others (see unix_server.h), so another user cannot pre-create it and swap the socket.
#pragma once

#include <sys/types.h>

#include <string>

namespace corral {

// The rule above, as a pure function of its inputs (xdg_runtime_dir may be nullptr).
std::string DefaultSocketPathFor(uid_t euid, const char* xdg_runtime_dir);
// The rule above for this process (geteuid(), getenv("XDG_RUNTIME_DIR")).
std::string DefaultSocketPath();

}  // namespace corral
