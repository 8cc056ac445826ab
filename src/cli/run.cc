#include <cstdio>

#include "cli/commands.h"

namespace corral::cli {

int Run(int, char**) {
  std::fprintf(stderr, "corral run: not available in this build yet\n");
  return kExitCorralError;
}

}  // namespace corral::cli
