#include <cstdio>

#include "cli/commands.h"

namespace corral::cli {

int Cancel(int, char**) {
  std::fprintf(stderr, "corral cancel: not available in this build yet\n");
  return kExitCorralError;
}

}  // namespace corral::cli
