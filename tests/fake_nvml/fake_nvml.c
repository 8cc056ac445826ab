/* A stand-in for libnvidia-ml.so.1 implementing only the NVML calls corral's scan uses, so the
 * GPU path (dlopen, device loop, per-process memory, the join with /proc liveness) is tested on
 * hosts without a GPU. Configured by environment variables read at nvmlInit_v2:
 *
 *   FAKE_NVML_DEVICES   number of devices (default 1)
 *   FAKE_NVML_TOTAL     bytes of memory per device (default 16 GiB)
 *   FAKE_NVML_PROCS     "PID:BYTES[@DEV],..." processes holding memory (default device 0)
 *   FAKE_NVML_FAIL_INIT if set, nvmlInit_v2 fails with NVML_ERROR_DRIVER_NOT_LOADED (9)
 *   FAKE_NVML_HANG_MS   if set, nvmlDeviceGetCount_v2 sleeps that long (a wedged driver)
 *
 * Used memory per device is the sum of its processes' bytes. Built by the marked block at the
 * end of CMakeLists.txt as build/fake_nvml/libnvidia-ml.so.1. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_PROCS 256
#define MAX_DEVICES 8

typedef struct {
  unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct {
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId;
  unsigned int computeInstanceId;
} nvmlProcessInfo_t;

static struct {
  unsigned int pid;
  unsigned long long bytes;
  unsigned int dev;
} procs[MAX_PROCS];
static int nprocs;
static unsigned int ndevices = 1;
static unsigned long long total = 16ULL << 30;
static int devices[MAX_DEVICES];

int nvmlInit_v2(void) {
  const char* s;
  if (getenv("FAKE_NVML_FAIL_INIT")) return 9;
  if ((s = getenv("FAKE_NVML_DEVICES"))) ndevices = (unsigned int)atoi(s);
  if (ndevices > MAX_DEVICES) ndevices = MAX_DEVICES;
  if ((s = getenv("FAKE_NVML_TOTAL"))) total = strtoull(s, NULL, 10);
  nprocs = 0;
  if ((s = getenv("FAKE_NVML_PROCS"))) {
    const char* p = s;
    while (*p && nprocs < MAX_PROCS) {
      char* end;
      unsigned long pid = strtoul(p, &end, 10);
      if (*end != ':') break;
      unsigned long long bytes = strtoull(end + 1, &end, 10);
      unsigned int dev = 0;
      if (*end == '@') dev = (unsigned int)strtoul(end + 1, &end, 10);
      procs[nprocs].pid = (unsigned int)pid;
      procs[nprocs].bytes = bytes;
      procs[nprocs].dev = dev;
      ++nprocs;
      if (*end != ',') break;
      p = end + 1;
    }
  }
  return 0;
}

int nvmlShutdown(void) { return 0; }

const char* nvmlErrorString(int rc) { return rc == 0 ? "Success" : "Fake NVML error"; }

int nvmlDeviceGetCount_v2(unsigned int* count) {
  const char* hang = getenv("FAKE_NVML_HANG_MS");
  if (hang) {
    long ms = atol(hang);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  *count = ndevices;
  return 0;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void** device) {
  if (index >= ndevices) return 2; /* NVML_ERROR_INVALID_ARGUMENT */
  devices[index] = (int)index;
  *device = &devices[index];
  return 0;
}

static unsigned int Index(void* device) { return (unsigned int)*(int*)device; }

int nvmlDeviceGetName(void* device, char* name, unsigned int length) {
  const char* n = "Fake GPU";
  (void)device;
  if (length < strlen(n) + 1) return 7;
  strcpy(name, n);
  return 0;
}

int nvmlDeviceGetMemoryInfo(void* device, nvmlMemory_t* mem) {
  unsigned long long used = 0;
  for (int i = 0; i < nprocs; ++i) {
    if (procs[i].dev == Index(device)) used += procs[i].bytes;
  }
  mem->total = total;
  mem->used = used;
  mem->free = used < total ? total - used : 0;
  return 0;
}

int nvmlDeviceGetComputeRunningProcesses_v3(void* device, unsigned int* count,
                                            nvmlProcessInfo_t* infos) {
  unsigned int n = 0;
  for (int i = 0; i < nprocs; ++i) {
    if (procs[i].dev == Index(device)) ++n;
  }
  if (*count < n) {
    *count = n;
    return 7; /* NVML_ERROR_INSUFFICIENT_SIZE */
  }
  unsigned int k = 0;
  for (int i = 0; i < nprocs; ++i) {
    if (procs[i].dev != Index(device)) continue;
    infos[k].pid = procs[i].pid;
    infos[k].usedGpuMemory = procs[i].bytes;
    infos[k].gpuInstanceId = 0xFFFFFFFF;
    infos[k].computeInstanceId = 0xFFFFFFFF;
    ++k;
  }
  *count = k;
  return 0;
}

int nvmlDeviceGetGraphicsRunningProcesses_v3(void* device, unsigned int* count,
                                             nvmlProcessInfo_t* infos) {
  (void)device;
  (void)infos;
  *count = 0;
  return 0;
}
