#include <cstdio>

#include "cli/commands.h"

namespace corral::cli {

int Init(int, char**) {
  std::fprintf(stderr, "corral init: not available in this build yet\n");
  return kExitCorralError;
}

}  // namespace corral::cli
