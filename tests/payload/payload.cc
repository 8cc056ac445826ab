// corral-payload: one small multi-call binary that misbehaves on demand, so the tests do not
// depend on what the host's tools happen to do. Usage: corral-payload MODE [ARGS...]; modes can
// be chained with "+" as separate arguments, e.g. `corral-payload setsid-escape 60 + sleep 60`.
//
//   sleep S              sleep S seconds (fractions allowed)
//   exit N               exit with code N
//   kill-self SIG        raise signal SIG (number)
//   ignore-sigterm S     ignore SIGTERM, then sleep S seconds
//   fork-orphans N S     N children that double-fork; the grandchildren sleep S seconds
//   setsid-escape S      a child that setsids and double-forks, sleeping S seconds
//   tree N S             N descendants: a fan of children each sleeping S seconds, half setsid
//   zombies N            fork N children that exit at once and are never waited for
//   memhog BYTES         allocate and touch BYTES of memory, then sleep 60
//   flood-stdout BYTES   write BYTES of 'x' to stdout (0: forever)
//   flood-stderr BYTES   the same on stderr
//   hold-pipe S          a child that keeps stdout/stderr open S seconds after we exit
//   fork-bomb            fork until it fails, each child sleeping 30 s; prints how many
//   spin S               burn S seconds of CPU time (not wall time: on a loaded machine a
//                        wall-clock spin gets less CPU than the tests measuring it expect)
//   list-fds             print the open fd numbers, one line
//   print-env NAME       print the value of NAME (or "<unset>")
//   print-cwd            print the working directory
//   print-ids            print "uid gid groups..."
//   cat                  copy stdin to stdout
//   echo TEXT            print TEXT and a newline
//   open-fds N           open N extra fds on /dev/null, then sleep 60
//   try-ptrace           fork a child and PTRACE_ATTACH to it; print "ptrace ok" or the errno name
//   try-mount            mount a tmpfs on /mnt; print "mount ok" or the errno name
//   try-unshare-user     unshare(CLONE_NEWUSER); print "unshare ok" or the errno name
//   net-ifaces           print the interface names of /proc/net/dev, one line
//   connect-ip ADDR PORT TCP connect to an IPv4 address; print "connect ok" or the errno name
//   write-file PATH      create PATH and write "x"; print "write ok" or the errno name
//   count-procs          print how many processes /proc lists
//   print-pid            print getpid()
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

void SleepSeconds(double s) {
  if (s <= 0) return;
  timespec ts;
  ts.tv_sec = static_cast<time_t>(s);
  ts.tv_nsec = static_cast<long>((s - static_cast<double>(ts.tv_sec)) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

double Num(const std::vector<std::string>& a, size_t i) {
  if (i >= a.size()) {
    std::fprintf(stderr, "payload: missing argument\n");
    std::exit(2);
  }
  return std::atof(a[i].c_str());
}

void WriteAll(int fd, unsigned long long total) {
  static char buf[65536];
  std::memset(buf, 'x', sizeof buf);
  unsigned long long done = 0;
  while (total == 0 || done < total) {
    size_t n = sizeof buf;
    if (total != 0 && total - done < n) n = static_cast<size_t>(total - done);
    ssize_t w = write(fd, buf, n);
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      std::exit(1);
    }
    done += static_cast<unsigned long long>(w);
  }
}

// Runs one mode; returns when the mode is done (for chaining), or exits.
void RunMode(const std::vector<std::string>& a) {
  const std::string& m = a[0];
  if (m == "sleep") {
    SleepSeconds(Num(a, 1));
  } else if (m == "exit") {
    std::exit(static_cast<int>(Num(a, 1)));
  } else if (m == "kill-self") {
    signal(static_cast<int>(Num(a, 1)), SIG_DFL);
    raise(static_cast<int>(Num(a, 1)));
    SleepSeconds(5);
  } else if (m == "ignore-sigterm") {
    signal(SIGTERM, SIG_IGN);
    SleepSeconds(Num(a, 1));
  } else if (m == "fork-orphans") {
    int n = static_cast<int>(Num(a, 1));
    double s = Num(a, 2);
    for (int i = 0; i < n; ++i) {
      pid_t p = fork();
      if (p == 0) {
        if (fork() == 0) {
          SleepSeconds(s);
          _exit(0);
        }
        _exit(0);
      }
      if (p > 0) waitpid(p, nullptr, 0);
    }
  } else if (m == "setsid-escape") {
    double s = Num(a, 1);
    pid_t p = fork();
    if (p == 0) {
      setsid();
      if (fork() == 0) {
        setsid();
        SleepSeconds(s);
        _exit(0);
      }
      _exit(0);
    }
    if (p > 0) waitpid(p, nullptr, 0);
  } else if (m == "tree") {
    int n = static_cast<int>(Num(a, 1));
    double s = Num(a, 2);
    for (int i = 0; i < n; ++i) {
      if (fork() == 0) {
        if (i % 2 == 1) setsid();
        SleepSeconds(s);
        _exit(0);
      }
    }
  } else if (m == "zombies") {
    int n = static_cast<int>(Num(a, 1));
    for (int i = 0; i < n; ++i) {
      if (fork() == 0) _exit(0);
    }
  } else if (m == "memhog") {
    size_t bytes = static_cast<size_t>(Num(a, 1));
    char* p = static_cast<char*>(
        mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (p == MAP_FAILED) std::exit(3);
    for (size_t i = 0; i < bytes; i += 4096) p[i] = 1;
    SleepSeconds(60);
  } else if (m == "flood-stdout") {
    WriteAll(1, static_cast<unsigned long long>(Num(a, 1)));
  } else if (m == "flood-stderr") {
    WriteAll(2, static_cast<unsigned long long>(Num(a, 1)));
  } else if (m == "hold-pipe") {
    double s = Num(a, 1);
    if (fork() == 0) {
      setsid();
      SleepSeconds(s);
      _exit(0);
    }
    std::exit(0);
  } else if (m == "fork-bomb") {
    int count = 0;
    for (;;) {
      pid_t p = fork();
      if (p == 0) {
        SleepSeconds(30);
        _exit(0);
      }
      if (p < 0) break;
      if (++count >= 100000) break;
    }
    std::printf("%d\n", count);
    std::fflush(stdout);
  } else if (m == "spin") {
    timespec start, now;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &start);
    double s = Num(a, 1);
    volatile unsigned long x = 0;
    do {
      for (int i = 0; i < 100000; ++i) x = x + 1;
      clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    } while (static_cast<double>(now.tv_sec - start.tv_sec) +
                 static_cast<double>(now.tv_nsec - start.tv_nsec) / 1e9 <
             s);
  } else if (m == "list-fds") {
    DIR* d = opendir("/proc/self/fd");
    int self = dirfd(d);
    std::string out;
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      if (std::atoi(e->d_name) == self) continue;
      if (!out.empty()) out += ' ';
      out += e->d_name;
    }
    closedir(d);
    std::printf("%s\n", out.c_str());
  } else if (m == "print-env") {
    const char* v = std::getenv(a.at(1).c_str());
    std::printf("%s\n", v ? v : "<unset>");
  } else if (m == "print-cwd") {
    char buf[4096];
    std::printf("%s\n", getcwd(buf, sizeof buf) ? buf : "?");
  } else if (m == "print-ids") {
    gid_t groups[256];
    int n = getgroups(256, groups);
    std::printf("%u %u", getuid(), getgid());
    for (int i = 0; i < n; ++i) std::printf(" %u", groups[i]);
    std::printf("\n");
  } else if (m == "cat") {
    char buf[65536];
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0) {
      if (write(1, buf, static_cast<size_t>(n)) != n) std::exit(1);
    }
  } else if (m == "echo") {
    std::printf("%s\n", a.at(1).c_str());
  } else if (m == "open-fds") {
    int n = static_cast<int>(Num(a, 1));
    for (int i = 0; i < n; ++i) {
      if (open("/dev/null", O_RDONLY) < 0) break;
    }
    SleepSeconds(60);
  } else if (m == "on-signal") {
    // on-signal SIG CODE S FILE [FORKS]: FORKS children (same process group) and this process
    // each append "<pid> ready" to FILE once a handler for SIG (a number) is in place; on SIG they
    // append "<pid> got <SIG>" and exit CODE; if S seconds pass first, "<pid> done" and exit 0.
    static int sig_code = 0;
    static int sig_fd = -1;
    int sig = static_cast<int>(Num(a, 1));
    sig_code = static_cast<int>(Num(a, 2));
    double s = Num(a, 3);
    int forks = a.size() > 5 ? static_cast<int>(Num(a, 5)) : 0;
    for (int i = 0; i < forks; ++i) {
      if (fork() == 0) break;
    }
    sig_fd = open(a.at(4).c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    struct sigaction sa {};
    sa.sa_handler = [](int got) {
      char line[64];
      int n = std::snprintf(line, sizeof line, "%d got %d\n", static_cast<int>(getpid()), got);
      if (write(sig_fd, line, static_cast<size_t>(n)) < 0) _exit(99);
      _exit(sig_code);
    };
    sigfillset(&sa.sa_mask);  // nothing may end the handler before its line is written
    sigaction(sig, &sa, nullptr);
    dprintf(sig_fd, "%d ready\n", static_cast<int>(getpid()));
    SleepSeconds(s);
    dprintf(sig_fd, "%d done\n", static_cast<int>(getpid()));
    _exit(0);
  } else if (m == "print-session") {
    // print-session: "pid=P pgid=G sid=S ctty=yes|no" (ctty: /dev/tty can be opened).
    int tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    std::printf("pid=%d pgid=%d sid=%d ctty=%s\n", static_cast<int>(getpid()),
                static_cast<int>(getpgrp()), static_cast<int>(getsid(0)), tty >= 0 ? "yes" : "no");
    if (tty >= 0) close(tty);
  } else if (m == "try-ptrace") {
    pid_t child = fork();
    if (child == 0) {
      pause();
      _exit(0);
    }
    long r = ptrace(PTRACE_ATTACH, child, nullptr, nullptr);
    std::printf("ptrace %s\n", r == 0 ? "ok" : strerrorname_np(errno));
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
  } else if (m == "try-mount") {
    int r = mount("tmpfs", "/mnt", "tmpfs", 0, nullptr);
    std::printf("mount %s\n", r == 0 ? "ok" : strerrorname_np(errno));
  } else if (m == "try-unshare-user") {
    int r = unshare(CLONE_NEWUSER);
    std::printf("unshare %s\n", r == 0 ? "ok" : strerrorname_np(errno));
  } else if (m == "net-ifaces") {
    FILE* f = std::fopen("/proc/net/dev", "r");
    std::string names;
    char line[512];
    while (f != nullptr && std::fgets(line, sizeof line, f) != nullptr) {
      char* colon = std::strchr(line, ':');
      if (colon == nullptr) continue;
      *colon = '\0';
      char* n = line;
      while (*n == ' ') ++n;
      names += (names.empty() ? "" : " ") + std::string(n);
    }
    if (f != nullptr) std::fclose(f);
    std::printf("%s\n", names.c_str());
  } else if (m == "connect-ip") {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(Num(a, 2)));
    inet_pton(AF_INET, a.at(1).c_str(), &sa.sin_addr);
    int r = connect(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    std::printf("connect %s\n", r == 0 ? "ok" : strerrorname_np(errno));
    close(s);
  } else if (m == "write-file") {
    int fd = open(a.at(1).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    bool ok = fd >= 0 && write(fd, "x", 1) == 1;
    std::printf("write %s\n", ok ? "ok" : strerrorname_np(errno));
    if (fd >= 0) close(fd);
  } else if (m == "count-procs") {
    int n = 0;
    if (DIR* d = opendir("/proc")) {
      while (dirent* e = readdir(d)) {
        if (e->d_name[0] >= '0' && e->d_name[0] <= '9') ++n;
      }
      closedir(d);
    }
    std::printf("%d\n", n);
  } else if (m == "print-pid") {
    std::printf("%d\n", static_cast<int>(getpid()));
  } else {
    std::fprintf(stderr, "payload: unknown mode '%s'\n", m.c_str());
    std::exit(2);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: corral-payload MODE [ARGS...] [+ MODE ARGS...]\n");
    return 2;
  }
  std::vector<std::string> cur;
  for (int i = 1; i <= argc; ++i) {
    if (i == argc || std::strcmp(argv[i], "+") == 0) {
      if (!cur.empty()) RunMode(cur);
      cur.clear();
    } else {
      cur.emplace_back(argv[i]);
    }
  }
  return 0;
}
