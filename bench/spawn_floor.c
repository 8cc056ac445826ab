// The ceiling of any task queue that runs /bin/true on this machine: N runs of /bin/true by
// posix_spawn + waitpid, from P threads at once (default: one per CPU), with nothing else done.
// bench/queue_bench.sh prints it beside the queues' throughput.
// Usage: spawn_floor N [P]   -> prints runs per second
#define _GNU_SOURCE
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;
static atomic_int left;

static void* worker(void* arg) {
  (void)arg;
  char* argv[] = {"true", NULL};
  while (atomic_fetch_sub(&left, 1) > 0) {
    pid_t pid;
    if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ) != 0) exit(1);
    int st;
    waitpid(pid, &st, 0);
  }
  return NULL;
}

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 10000;
  int p = argc > 2 ? atoi(argv[2]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
  atomic_store(&left, n);
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  pthread_t t[64];
  if (p < 1) p = 1;
  if (p > 64) p = 64;
  for (int i = 0; i < p; ++i) pthread_create(&t[i], NULL, worker, NULL);
  for (int i = 0; i < p; ++i) pthread_join(t[i], NULL);
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("%.0f\n", n / ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9));
  return 0;
}
