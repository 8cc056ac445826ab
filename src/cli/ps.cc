#include <cstdio>

#include "cli/commands.h"

namespace corral::cli {

int Ps(int, char**) {
  std::fprintf(stderr, "corral ps: not available in this build yet\n");
  return kExitCorralError;
}

}  // namespace corral::cli
