#include "scan/nvml.h"

#include <dlfcn.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>

namespace corral::scan {

namespace {

// The few NVML types and constants used, from nvml.h (stable ABI since the driver's r3xx).
using nvmlReturn_t = int;
using nvmlDevice_t = void*;
constexpr nvmlReturn_t kNvmlSuccess = 0;
constexpr nvmlReturn_t kNvmlErrorInsufficientSize = 7;
constexpr unsigned long long kNvmlValueNotAvailable = ~0ULL;

struct nvmlMemory_t {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
struct nvmlProcessInfo_v1_t {  // nvmlDeviceGet*RunningProcesses (no suffix)
  unsigned int pid;
  unsigned long long usedGpuMemory;
};
struct nvmlProcessInfo_v2_t {  // the _v2 and _v3 entry points
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId;
  unsigned int computeInstanceId;
};

using InitFn = nvmlReturn_t (*)();
using ShutdownFn = nvmlReturn_t (*)();
using ErrorStringFn = const char* (*)(nvmlReturn_t);
using CountFn = nvmlReturn_t (*)(unsigned int*);
using HandleFn = nvmlReturn_t (*)(unsigned int, nvmlDevice_t*);
using NameFn = nvmlReturn_t (*)(nvmlDevice_t, char*, unsigned int);
using MemoryFn = nvmlReturn_t (*)(nvmlDevice_t, nvmlMemory_t*);
using ProcsFn = nvmlReturn_t (*)(nvmlDevice_t, unsigned int*, void*);

struct Api {
  InitFn init = nullptr;
  ShutdownFn shutdown = nullptr;
  ErrorStringFn error_string = nullptr;
  CountFn count = nullptr;
  HandleFn handle = nullptr;
  NameFn name = nullptr;
  MemoryFn memory = nullptr;
  ProcsFn compute = nullptr;
  ProcsFn graphics = nullptr;
  int procs_version = 0;  // 1: nvmlProcessInfo_v1_t, 2: nvmlProcessInfo_v2_t
};

template <typename F>
F Sym(void* lib, const char* name) {
  return reinterpret_cast<F>(dlsym(lib, name));
}

std::string ErrStr(const Api& api, nvmlReturn_t rc) {
  const char* s = api.error_string ? api.error_string(rc) : nullptr;
  return s ? std::string(s) : "NVML error " + std::to_string(rc);
}

// Reads one of the process lists, growing the buffer while NVML says it is too small (the list
// can grow between the two calls).
bool ReadProcesses(const Api& api, ProcsFn fn, nvmlDevice_t dev, bool graphics,
                   std::vector<NvmlProcess>* out) {
  if (fn == nullptr) return true;
  unsigned int n = 64;
  for (int attempt = 0; attempt < 4; ++attempt) {
    size_t elem =
        api.procs_version == 1 ? sizeof(nvmlProcessInfo_v1_t) : sizeof(nvmlProcessInfo_v2_t);
    std::vector<unsigned char> buf(static_cast<size_t>(n) * elem);
    unsigned int count = n;
    nvmlReturn_t rc = fn(dev, &count, buf.data());
    if (rc == kNvmlErrorInsufficientSize) {
      n = count > n ? count + 16 : n * 2;
      continue;
    }
    if (rc != kNvmlSuccess) return false;
    for (unsigned int i = 0; i < count && i < n; ++i) {
      NvmlProcess p;
      p.graphics = graphics;
      unsigned long long used;
      if (api.procs_version == 1) {
        const auto* e = reinterpret_cast<const nvmlProcessInfo_v1_t*>(buf.data()) + i;
        p.pid = e->pid;
        used = e->usedGpuMemory;
      } else {
        const auto* e = reinterpret_cast<const nvmlProcessInfo_v2_t*>(buf.data()) + i;
        p.pid = e->pid;
        used = e->usedGpuMemory;
      }
      p.used_bytes = used == kNvmlValueNotAvailable ? 0 : used;
      out->push_back(p);
    }
    return true;
  }
  return false;
}

NvmlAnswer QueryNow(const std::string& library) {
  NvmlAnswer a;
  a.library = library;
  // RTLD_LOCAL: NVML's symbols must not interpose on anything else in the process.
  void* lib = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* err = dlerror();
    a.status = "no GPU: cannot load NVML (" + std::string(err ? err : library) + ")";
    return a;
  }
  Api api;
  api.init = Sym<InitFn>(lib, "nvmlInit_v2");
  if (api.init == nullptr) api.init = Sym<InitFn>(lib, "nvmlInit");
  api.shutdown = Sym<ShutdownFn>(lib, "nvmlShutdown");
  api.error_string = Sym<ErrorStringFn>(lib, "nvmlErrorString");
  api.count = Sym<CountFn>(lib, "nvmlDeviceGetCount_v2");
  if (api.count == nullptr) api.count = Sym<CountFn>(lib, "nvmlDeviceGetCount");
  api.handle = Sym<HandleFn>(lib, "nvmlDeviceGetHandleByIndex_v2");
  if (api.handle == nullptr) api.handle = Sym<HandleFn>(lib, "nvmlDeviceGetHandleByIndex");
  api.name = Sym<NameFn>(lib, "nvmlDeviceGetName");
  api.memory = Sym<MemoryFn>(lib, "nvmlDeviceGetMemoryInfo");
  for (const char* suffix : {"_v3", "_v2", ""}) {
    api.compute =
        Sym<ProcsFn>(lib, (std::string("nvmlDeviceGetComputeRunningProcesses") + suffix).c_str());
    if (api.compute != nullptr) {
      api.graphics = Sym<ProcsFn>(
          lib, (std::string("nvmlDeviceGetGraphicsRunningProcesses") + suffix).c_str());
      api.procs_version = suffix[0] == '\0' ? 1 : 2;
      break;
    }
  }
  if (api.init == nullptr || api.shutdown == nullptr || api.count == nullptr ||
      api.handle == nullptr || api.memory == nullptr) {
    a.status = "no GPU: " + library + " lacks the NVML entry points corral needs";
    dlclose(lib);
    return a;
  }
  nvmlReturn_t rc = api.init();
  if (rc != kNvmlSuccess) {
    a.status = "no GPU: nvmlInit failed: " + ErrStr(api, rc);
    dlclose(lib);
    return a;
  }
  unsigned int count = 0;
  rc = api.count(&count);
  if (rc != kNvmlSuccess) {
    a.status = "nvmlDeviceGetCount failed: " + ErrStr(api, rc);
  } else {
    a.available = true;
    std::string problems;
    for (unsigned int i = 0; i < count && i < 64; ++i) {
      NvmlDevice d;
      d.index = static_cast<int>(i);
      nvmlDevice_t dev = nullptr;
      rc = api.handle(i, &dev);
      if (rc != kNvmlSuccess) {
        problems += "; device " + std::to_string(i) + ": " + ErrStr(api, rc);
        continue;
      }
      char name[96] = {};
      if (api.name != nullptr && api.name(dev, name, sizeof name - 1) == kNvmlSuccess) {
        d.name = name;
      }
      nvmlMemory_t mem{};
      if (api.memory(dev, &mem) == kNvmlSuccess) {
        d.total_bytes = mem.total;
        d.used_bytes = mem.used;
      }
      if (!ReadProcesses(api, api.compute, dev, false, &d.processes) ||
          !ReadProcesses(api, api.graphics, dev, true, &d.processes)) {
        problems += "; device " + std::to_string(i) + ": process list unavailable";
      }
      a.devices.push_back(std::move(d));
    }
    a.status = "NVML: " + std::to_string(count) + " device(s)" + problems;
  }
  api.shutdown();
  // The library stays loaded: drivers do not all survive dlclose + dlopen cycles.
  return a;
}

// One query in flight at most; a stuck one is remembered so that later calls do not add more.
std::mutex g_mu;
bool g_stuck = false;

}  // namespace

std::string NvmlLibraryPath() {
  const char* env = std::getenv("CORRAL_NVML_LIBRARY");
  return env != nullptr && env[0] != '\0' ? std::string(env) : "libnvidia-ml.so.1";
}

NvmlAnswer QueryGpus(const std::string& library, int deadline_ms) {
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    NvmlAnswer answer;
  };
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_stuck) {
      NvmlAnswer a;
      a.library = library;
      a.status = "skipped: an earlier NVML query has not returned (driver hung?)";
      return a;
    }
    g_stuck = true;  // until the helper finishes
  }
  auto shared = std::make_shared<Shared>();
  std::thread([shared, library] {
    NvmlAnswer a = QueryNow(library);
    {
      std::lock_guard<std::mutex> lock(shared->mu);
      shared->answer = std::move(a);
      shared->done = true;
    }
    shared->cv.notify_all();
    std::lock_guard<std::mutex> lock(g_mu);
    g_stuck = false;
  }).detach();
  std::unique_lock<std::mutex> lock(shared->mu);
  if (!shared->cv.wait_for(lock, std::chrono::milliseconds(deadline_ms),
                           [&] { return shared->done; })) {
    NvmlAnswer a;
    a.library = library;
    a.status = "skipped: NVML did not answer within " + std::to_string(deadline_ms) + " ms";
    return a;
  }
  return std::move(shared->answer);
}

}  // namespace corral::scan
