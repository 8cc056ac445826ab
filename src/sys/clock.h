#pragma once

#include <time.h>

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

}  // namespace corral
