#include <cstdio>

#include "cli/commands.h"

namespace corral::cli {

int Doctor(int, char**) {
  std::fprintf(stderr, "corral doctor: not available in this build yet\n");
  return kExitCorralError;
}

}  // namespace corral::cli
