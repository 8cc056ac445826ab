#include <cstdio>

#include "cli/commands.h"

namespace corral::cli {

int Mcp(int, char**) {
  std::fprintf(stderr, "corral mcp: not available in this build yet\n");
  return kExitCorralError;
}

}  // namespace corral::cli
