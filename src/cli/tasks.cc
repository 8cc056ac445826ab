#include <cstdio>

#include "cli/commands.h"

namespace corral::cli {

int Tasks(int, char**) {
  std::fprintf(stderr, "corral tasks: not available in this build yet\n");
  return kExitCorralError;
}

}  // namespace corral::cli
