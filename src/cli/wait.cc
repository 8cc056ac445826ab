#include <cstdio>

#include "cli/commands.h"

namespace corral::cli {

int Wait(int, char**) {
  std::fprintf(stderr, "corral wait: not available in this build yet\n");
  return kExitCorralError;
}

}  // namespace corral::cli
