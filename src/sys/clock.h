#pragma once

#include <time.h>

#include <cmath>
#include <cstdint>

namespace corral {

// CLOCK_MONOTONIC in nanoseconds: for deadlines and durations, never wall-clock time.
inline int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

constexpr int64_t kNsPerMs = 1000000;
constexpr int64_t kNsPerSec = 1000000000;

// The one conversion from a caller's seconds (a JSON number, a flag's fraction) to nanoseconds:
// rounded, not truncated, so 0.3 s is 300000000 ns and not 299999999. Callers bound s first (at
// most 1e9 s in every protocol field), so the result fits.
inline int64_t SecondsToNs(double s) { return static_cast<int64_t>(std::llround(s * 1e9)); }
inline double NsToSeconds(int64_t ns) { return static_cast<double>(ns) / 1e9; }

}  // namespace corral
