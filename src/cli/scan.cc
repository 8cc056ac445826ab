#include <cstdio>

#include "cli/commands.h"

namespace corral::cli {

int Scan(int, char**) {
  std::fprintf(stderr, "corral scan: not available in this build yet\n");
  return kExitCorralError;
}

}  // namespace corral::cli
