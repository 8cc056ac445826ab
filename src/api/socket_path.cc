#include "api/socket_path.h"

#include <unistd.h>

#include <cstdlib>

namespace corral {

std::string DefaultSocketPathFor(uid_t euid, const char* xdg_runtime_dir) {
  if (euid == 0) return "/run/corral/corral.sock";
  if (xdg_runtime_dir != nullptr && xdg_runtime_dir[0] == '/') {
    std::string dir(xdg_runtime_dir);
    while (!dir.empty() && dir.back() == '/') dir.pop_back();
    return dir + "/corral.sock";
  }
  return "/tmp/corral-" + std::to_string(euid) + "/corral.sock";
}

std::string DefaultSocketPath() {
  return DefaultSocketPathFor(::geteuid(), std::getenv("XDG_RUNTIME_DIR"));
}

}  // namespace corral
