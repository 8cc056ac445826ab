// GPU memory through NVML, loaded with dlopen at run time so that corral has no build-time or
// link-time dependency on the NVIDIA driver: a host without libnvidia-ml.so.1 simply has "no
// GPU", which is a normal answer, not an error.
//
// Mechanism: dlopen the library (CORRAL_NVML_LIBRARY names another one, e.g. the test library in
// tests/fake_nvml), resolve the handful of entry points used, nvmlInit_v2, then per device its
// name, memory info and the compute + graphics processes with the memory each holds. The
// process-list call is versioned (_v3, _v2, plain); the newest one the library exports is used,
// with the struct layout of that version.
//
// Hazard: NVML calls go into the driver and can hang on a wedged GPU. QueryGpus therefore runs
// the query on a helper thread and waits at most `deadline_ms`; on timeout it returns an answer
// that says so and leaves the helper behind (detached, it owns everything it touches), and later
// calls answer "still waiting" instead of piling up more stuck threads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace corral::scan {

struct NvmlProcess {
  uint32_t pid = 0;         // as the driver sees it: the host (initial) PID namespace
  uint64_t used_bytes = 0;  // 0 when the driver cannot tell (NVML_VALUE_NOT_AVAILABLE)
  bool graphics = false;    // from the graphics list rather than the compute list
};

struct NvmlDevice {
  int index = 0;
  std::string name;
  uint64_t total_bytes = 0;
  uint64_t used_bytes = 0;
  std::vector<NvmlProcess> processes;
};

struct NvmlAnswer {
  bool available = false;  // a library was loaded and initialised
  std::string status;      // one sentence: "NVML 2 device(s)", "no NVML library: ...", ...
  std::string library;     // the path or soname that was loaded / tried
  std::vector<NvmlDevice> devices;
};

// The library to load: $CORRAL_NVML_LIBRARY when set and non-empty, else "libnvidia-ml.so.1".
std::string NvmlLibraryPath();

// Runs one NVML query with a deadline (see the hazard above). Thread-safe.
NvmlAnswer QueryGpus(const std::string& library, int deadline_ms);

}  // namespace corral::scan
