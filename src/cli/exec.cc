#include <cstdio>

#include "cli/commands.h"

namespace corral::cli {

int Exec(int, char**) {
  std::fprintf(stderr, "corral exec: not available in this build yet\n");
  return kExitCorralError;
}

}  // namespace corral::cli
