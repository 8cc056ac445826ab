// Reap-latency workload for bench/init_bench.sh: run it as the child of the init under test.
// Usage: init_orphans N
// Makes N orphans (double forks: the init adopts each grandchild), all blocked reading one pipe;
// then closes the pipe so that all N exit at once, and polls the init's
// /proc/<ppid>/task/<ppid>/children until we are its only child again.
// Prints "fork_ms drain_ms": the time to create them, and the time from the release to the last
// of the N reaped, i.e. how long a burst of N exits takes the init to reap.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// Children of the init other than us; -1 if the file cannot be read.
static int others(const char* path, pid_t self) {
  static char buf[1 << 20];
  FILE* f = fopen(path, "re");
  if (f == NULL) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  int count = 0;
  for (char* s = buf; *s;) {
    char* end;
    long pid = strtol(s, &end, 10);
    if (end == s) break;
    if (pid != self) ++count;
    s = end;
  }
  return count;
}

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000;
  pid_t self = getpid(), init = getppid();
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", init, init);
  int gate[2];
  if (pipe2(gate, O_CLOEXEC) != 0) return 2;
  double t0 = now_ms();
  for (int i = 0; i < n; ++i) {
    pid_t p = fork();
    if (p == 0) {
      if (fork() == 0) {
        char c;
        close(gate[1]);
        while (read(gate[0], &c, 1) < 0) {
        }
        _exit(0);
      }
      _exit(0);
    }
    if (p < 0) return 2;
    waitpid(p, NULL, 0);
  }
  // All N are adopted by the init and blocked; release them at once.
  struct timespec pause = {0, 50000};
  double t1 = now_ms();
  close(gate[1]);
  while (others(path, self) > 0) nanosleep(&pause, NULL);
  double t2 = now_ms();
  printf("%.3f %.3f\n", t1 - t0, t2 - t1);
  return 0;
}
