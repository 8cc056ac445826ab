#include <cstdio>

#include "cli/commands.h"

namespace corral::cli {

int Retry(int, char**) {
  std::fprintf(stderr, "corral retry: not available in this build yet\n");
  return kExitCorralError;
}

}  // namespace corral::cli
