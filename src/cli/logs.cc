#include <cstdio>

#include "cli/commands.h"

namespace corral::cli {

int Logs(int, char**) {
  std::fprintf(stderr, "corral logs: not available in this build yet\n");
  return kExitCorralError;
}

}  // namespace corral::cli
