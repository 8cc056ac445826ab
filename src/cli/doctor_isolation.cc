// corral doctor, isolation section: which parts of `--isolate` this host gives, part by part,
// probed for real (each namespace type is unshared in a throwaway child), with how to enable
// what is missing. Kept apart from doctor.cc so that the two evolve without conflicts.
#include <cstdio>

#include "cell/isolation.h"

namespace corral::cli {

void PrintIsolationSupport() {
  std::printf("\nisolation (--isolate, --profile; docs/isolation.md)\n");
  bool all = true;
  for (const IsolationPart& p : ProbeIsolation()) {
    // Landlock is a second layer over the mounts: its absence does not make --isolate fail.
    if (!p.ok && p.name != "landlock") all = false;
    std::printf("  %-17s %s%s\n", p.name.c_str(), p.ok ? "" : "NO: ", p.detail.c_str());
  }
  std::printf("  %-17s %s\n", "--isolate", all ? "available" : "unavailable (fails with exit 125)");
}

}  // namespace corral::cli
