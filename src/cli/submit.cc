#include <cstdio>

#include "cli/commands.h"

namespace corral::cli {

int Submit(int, char**) {
  std::fprintf(stderr, "corral submit: not available in this build yet\n");
  return kExitCorralError;
}

}  // namespace corral::cli
