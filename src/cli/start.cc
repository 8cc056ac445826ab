#include <cstdio>

#include "cli/commands.h"

namespace corral::cli {

int Start(int, char**) {
  std::fprintf(stderr, "corral start: not available in this build yet\n");
  return kExitCorralError;
}

}  // namespace corral::cli
