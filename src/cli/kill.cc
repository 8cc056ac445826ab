#include <cstdio>

#include "cli/commands.h"

namespace corral::cli {

int Kill(int, char**) {
  std::fprintf(stderr, "corral kill: not available in this build yet\n");
  return kExitCorralError;
}

}  // namespace corral::cli
