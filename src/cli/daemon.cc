#include <cstdio>

#include "cli/commands.h"

namespace corral::cli {

int Daemon(int, char**) {
  std::fprintf(stderr, "corral daemon: not available in this build yet\n");
  return kExitCorralError;
}

}  // namespace corral::cli
