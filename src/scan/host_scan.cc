#include "scan/host_scan.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <thread>
#include <unordered_map>

#include "scan/proc_parse.h"
#include "sys/clock.h"
#include "sys/fd.h"

namespace corral::scan {

namespace {

constexpr uint64_t kPfKthread = 0x00200000;  // include/linux/sched.h
// The inode of the initial PID namespace (PROC_PID_INIT_INO, include/linux/proc_ns.h).
constexpr const char* kInitPidNs = "pid:[4026531836]";

// One process as the pass keeps it: small, so that 30,000 of them cost about a megabyte.
struct Proc {
  int pid;
  int ppid;
  char state;
  bool kthread;
  uint64_t starttime;
  int64_t threads;
  uint64_t fds;  // open fds (0 for kernel threads or when unreadable)
  std::string comm;
};

// openat + read + close, relative to a directory fd: three system calls and no path walk from
// the root. Returns the bytes read, or -1 with errno set.
ssize_t ReadAt(int dirfd, const char* path, char* buf, size_t cap) {
  int fd = ::openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return -1;
  ssize_t total = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf + total, cap - static_cast<size_t>(total));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n < 0 && total == 0) total = -1;
      break;
    }
    total += n;
    // Small seq_files answer in one read; only loop when the buffer filled up.
    if (static_cast<size_t>(total) == cap || static_cast<size_t>(n) < 1024) break;
  }
  int saved = errno;
  ::close(fd);
  errno = saved;
  return total;
}

// Closes the pass's stat fds in batches with one close_range(2) (Linux 5.9) instead of one
// close(2) each: a quarter of the pass's system calls. Only a run of consecutive fd numbers that
// this batch opened itself is closed by range — another thread (the exporter's event loop, the
// NVML helper) may open fds at any time, and a number held by us cannot be theirs — anything
// else is closed one by one.
// ThreadSanitizer does not see a raw close_range: the fds' next owners would look like races.
#if defined(__SANITIZE_THREAD__)
constexpr bool kCloseOneByOne = true;
#else
constexpr bool kCloseOneByOne = false;
#endif

class FdBatch {
 public:
  FdBatch() { fds_.reserve(kMax); }
  ~FdBatch() { Flush(); }
  void Add(int fd) {
    fds_.push_back(fd);
    if (fds_.size() >= kMax) Flush();
  }
  void Flush() {
    std::sort(fds_.begin(), fds_.end());
    for (size_t i = 0; i < fds_.size();) {
      size_t j = i + 1;
      while (j < fds_.size() && fds_[j] == fds_[j - 1] + 1) ++j;  // a run of our own fds
      if (j - i == 1 || kCloseOneByOne ||
          ::syscall(SYS_close_range, fds_[i], fds_[j - 1], 0) != 0) {
        for (size_t k = i; k < j; ++k) ::close(fds_[k]);
      }
      i = j;
    }
    fds_.clear();
  }

 private:
  // Stays far below the usual soft RLIMIT_NOFILE of 1024 (the exporter needs fds too).
  static constexpr size_t kMax = 128;
  std::vector<int> fds_;
};

std::string ReadAtString(int dirfd, const std::string& path, size_t cap) {
  std::string buf(cap, '\0');
  ssize_t n = ReadAt(dirfd, path.c_str(), buf.data(), cap);
  buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return buf;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

uint64_t ReadU64At(int dirfd, const char* path) {
  char buf[64];
  ssize_t n = ReadAt(dirfd, path, buf, sizeof buf);
  if (n <= 0) return 0;
  std::string s = Trim(std::string(buf, static_cast<size_t>(n)));
  uint64_t v = 0;
  return ParseU64(s, &v) ? v : 0;
}

double NowBoottimeS() {
  timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double NowWallS() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// Counts the entries of a directory (the fd-count fallback for kernels before 6.2).
uint64_t CountEntries(int dirfd, const char* path) {
  int fd = ::openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return 0;
  UniqueFd guard(fd);
  alignas(8) char buf[16384];
  uint64_t n = 0;
  for (;;) {
    long got = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (got <= 0) break;
    for (long off = 0; off < got;) {
      auto* d = reinterpret_cast<struct dirent64*>(buf + off);
      if (d->d_name[0] != '.') ++n;
      off += d->d_reclen;
    }
  }
  return n;
}

// Lists the numeric entries of a /proc-like directory with getdents64 and a large buffer (a few
// system calls for the whole of /proc). The buffer is the caller's, on the heap and not zeroed:
// a static thread_local one was zeroed into every process and thread of the binary at start
// (two instances: 32 page faults at the start of every `corral run`, daemon thread, ...).
constexpr size_t kDentsBufBytes = 65536;
template <typename F>
void ForEachPid(int dirfd, char* buf, F&& fn) {
  for (;;) {
    long got = ::syscall(SYS_getdents64, dirfd, buf, kDentsBufBytes);
    if (got <= 0) break;
    for (long off = 0; off < got;) {
      auto* d = reinterpret_cast<struct dirent64*>(buf + off);
      off += d->d_reclen;
      const char* name = d->d_name;
      if (name[0] < '1' || name[0] > '9') continue;
      int pid = 0;
      bool ok = true;
      for (const char* c = name; *c; ++c) {
        if (*c < '0' || *c > '9' || pid > 100000000) {
          ok = false;
          break;
        }
        pid = pid * 10 + (*c - '0');
      }
      if (ok) fn(pid);
    }
  }
}

bool ReadStat(int procfd, const std::string& rel, ProcStat* out) {
  char buf[1024];
  ssize_t n = ReadAt(procfd, rel.c_str(), buf, sizeof buf);
  if (n <= 0) return false;
  auto st = ParseProcStat(std::string_view(buf, static_cast<size_t>(n)));
  if (!st.ok()) return false;
  *out = std::move(st.value());
  return true;
}

std::string Cmdline(int procfd, int pid) {
  std::string s = ReadAtString(procfd, std::to_string(pid) + "/cmdline", 4096);
  while (!s.empty() && s.back() == '\0') s.pop_back();
  for (char& c : s) {
    if (c == '\0' || c == '\n') c = ' ';
  }
  return s;
}

struct Pids {
  uint64_t used, max;
};

// Mount points of cgroup hierarchies that can limit PIDs, from /proc/self/mountinfo.
std::vector<std::pair<std::string, std::string>> PidsHierarchies(int procfd) {
  std::vector<std::pair<std::string, std::string>> out;  // (mount point, "v1"|"v2")
  std::string info = ReadAtString(procfd, "self/mountinfo", 256 * 1024);
  std::string_view rest = info, each;
  while (NextLine(&rest, &each)) {
    std::string line(each);
    size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    // Fields before " - ": id parent maj:min root mountpoint ...; after: fstype source superopts.
    std::vector<std::string> pre, post;
    for (size_t i = 0, j; i < dash; i = j + 1) {
      j = line.find(' ', i);
      if (j == std::string::npos || j > dash) j = dash;
      pre.push_back(line.substr(i, j - i));
    }
    for (size_t i = dash + 3, j; i < line.size(); i = j + 1) {
      j = line.find(' ', i);
      if (j == std::string::npos) j = line.size();
      post.push_back(line.substr(i, j - i));
    }
    if (pre.size() < 5 || post.size() < 3) continue;
    const std::string& mnt = pre[4];
    if (post[0] == "cgroup2") {
      out.emplace_back(mnt, "v2");
    } else if (post[0] == "cgroup" && ("," + post[2] + ",").find(",pids,") != std::string::npos) {
      out.emplace_back(mnt, "v1");
    }
  }
  // The same hierarchy can be mounted twice (containers, bind mounts): keep the first.
  std::vector<std::pair<std::string, std::string>> uniq;
  for (auto& m : out) {
    bool dup = false;
    for (auto& u : uniq) dup = dup || u.first == m.first;
    if (!dup) uniq.push_back(m);
  }
  return uniq;
}

// Walks one cgroup hierarchy (bounded in depth and directory count) collecting pids limits.
void WalkPids(int dirfd, const std::string& rel, const std::string& hierarchy, int depth,
              int* budget, std::vector<PidsCgroup>* out) {
  if (--*budget < 0 || depth > 32) return;
  char buf[64];
  ssize_t n = ReadAt(dirfd, "pids.max", buf, sizeof buf);
  if (n > 0) {
    std::string s = Trim(std::string(buf, static_cast<size_t>(n)));
    uint64_t max = 0;
    if (s != "max" && ParseU64(s, &max)) {
      PidsCgroup c;
      c.path = rel.empty() ? "/" : rel;
      c.hierarchy = hierarchy;
      c.max = max;
      c.current = ReadU64At(dirfd, "pids.current");
      out->push_back(std::move(c));
    }
  }
  int fd = ::dup(dirfd);
  if (fd < 0) return;
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return;
  }
  std::vector<std::string> subdirs;
  while (dirent* e = ::readdir(d)) {
    if (e->d_type == DT_DIR && e->d_name[0] != '.') subdirs.emplace_back(e->d_name);
  }
  ::closedir(d);
  for (const std::string& name : subdirs) {
    int sub = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sub < 0) continue;
    UniqueFd guard(sub);
    WalkPids(sub, rel + "/" + name, hierarchy, depth + 1, budget, out);
  }
}

std::string Percent(double r) { return std::to_string(static_cast<int>(r * 100 + 0.5)) + "%"; }

std::string Seconds(double s) { return std::to_string(static_cast<long long>(s)) + " s"; }

// One process of the pass: its stat, and its open-fd count (st_size of /proc/PID/fd, Linux 6.2+;
// counted by listing before). A process that exited since the listing is skipped.
void ScanOne(int procfd, int pid, bool fd_size_works, std::string* rel, FdBatch* batch,
             std::vector<Proc>* out) {
  *rel = std::to_string(pid);
  size_t base = rel->size();
  *rel += "/stat";
  char buf[1024];
  int fd = ::openat(procfd, rel->c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return;
  ssize_t n = ::read(fd, buf, sizeof buf);
  batch->Add(fd);
  if (n <= 0) return;
  auto st = ParseProcStat(std::string_view(buf, static_cast<size_t>(n)));
  if (!st.ok()) return;
  Proc p{pid,
         st->ppid,
         st->state,
         (st->flags & kPfKthread) != 0,
         st->starttime_ticks,
         st->num_threads,
         0,
         std::move(st->comm)};
  if (!p.kthread && p.state != 'Z') {
    rel->resize(base);
    *rel += "/fd";
    if (fd_size_works) {
      struct stat sb {};
      if (::fstatat(procfd, rel->c_str(), &sb, 0) == 0) p.fds = static_cast<uint64_t>(sb.st_size);
    } else {
      p.fds = CountEntries(procfd, rel->c_str());
    }
  }
  out->push_back(std::move(p));
}

}  // namespace

std::string ZombieAdvice(int ppid, const std::string& comm, int zombies) {
  std::string who = "PID " + std::to_string(ppid) + " (" + comm + ")";
  std::string n = std::to_string(zombies);
  if (ppid == 1) {
    return who + " is PID 1 and does not reap the " + n +
           " orphans it adopted: run a reaping init as PID 1 (`corral init -- CMD`, tini, "
           "`docker run --init`); restarting the container frees them.";
  }
  return who + " never waits for its " + n + " exited children. `kill -CHLD " +
         std::to_string(ppid) +
         "` may nudge it into reaping; restarting it frees them (init adopts and reaps them). "
         "Fix: reap with waitpid(-1, WNOHANG) in a loop on SIGCHLD or on each tick, or run the "
         "children with `corral run`.";
}

Result<ScanReport> HostScanner::Scan() {
  const ScanOptions& o = options_;
  ScanReport r;
  int64_t t0 = MonotonicNs();
  r.timestamp_s = NowWallS();
  int procfd_raw = ::open(o.proc.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (procfd_raw < 0) return Error::FromErrno("open", o.proc).Wrap("host scan");
  UniqueFd procfd(procfd_raw);
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double boot_now = NowBoottimeS();

  // st_size of /proc/PID/fd is the open-fd count since Linux 6.2; earlier it is 0.
  struct stat self_fd {};
  bool fd_size_works = ::fstatat(procfd.get(), "self/fd", &self_fd, 0) == 0 && self_fd.st_size > 0;

  // --- The one pass: stat and the fd count of every process. ---
  std::vector<int> pids;
  pids.reserve(1024);
  auto dents = std::make_unique_for_overwrite<char[]>(kDentsBufBytes);
  ForEachPid(procfd.get(), dents.get(), [&](int pid) { pids.push_back(pid); });
  // Each process costs a few /proc system calls (~10 us each on a slow VM), all independent, so
  // on a big host the pass is split across cores; a thread costs ~50 us, hence kPidsPerThread.
  constexpr size_t kPidsPerThread = 512;
  size_t cores = std::max(1u, std::thread::hardware_concurrency());
  size_t nthreads = std::min({cores, size_t{4}, pids.size() / kPidsPerThread + 1});
  std::vector<std::vector<Proc>> parts(nthreads);
  auto scan_part = [&](size_t part) {
    size_t begin = pids.size() * part / nthreads, end = pids.size() * (part + 1) / nthreads;
    parts[part].reserve(end - begin);
    FdBatch batch;  // closes only runs of its own fds: safe beside the other parts
    std::string rel;
    for (size_t i = begin; i < end; ++i) {
      ScanOne(procfd.get(), pids[i], fd_size_works, &rel, &batch, &parts[part]);
    }
  };
  std::vector<std::thread> workers;
  for (size_t t = 1; t < nthreads; ++t) workers.emplace_back(scan_part, t);
  scan_part(0);
  for (std::thread& w : workers) w.join();
  std::vector<Proc> procs = std::move(parts[0]);
  for (size_t t = 1; t < nthreads; ++t) {
    procs.insert(procs.end(), std::make_move_iterator(parts[t].begin()),
                 std::make_move_iterator(parts[t].end()));
  }
  r.processes = procs.size();

  std::unordered_map<int, size_t> index;
  index.reserve(procs.size() * 2);
  for (size_t i = 0; i < procs.size(); ++i) index.emplace(procs[i].pid, i);
  auto find = [&](int pid) -> const Proc* {
    auto it = index.find(pid);
    return it == index.end() ? nullptr : &procs[it->second];
  };

  // Optional: thread states, for D-state secondary threads.
  std::vector<std::pair<int, ProcStat>> dthreads;  // (tgid, thread stat)
  if (o.threads) {
    for (const Proc& p : procs) {
      if (p.threads <= 1 || p.kthread || p.state == 'Z') continue;
      std::string dir = std::to_string(p.pid) + "/task";
      int tfd = ::openat(procfd.get(), dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (tfd < 0) continue;
      UniqueFd guard(tfd);
      ForEachPid(tfd, dents.get(), [&](int tid) {
        if (tid == p.pid) return;
        ProcStat st;
        if (ReadStat(tfd, std::to_string(tid) + "/stat", &st) && st.state == 'D') {
          dthreads.emplace_back(p.pid, std::move(st));
        }
      });
    }
  }

  // --- Zombies, grouped by parent. ---
  struct Agg {
    int zombies = 0;
    uint64_t oldest_start = UINT64_MAX;
    std::vector<int> sample;
  };
  std::unordered_map<int, Agg> by_parent;
  for (const Proc& p : procs) {
    if (p.state != 'Z') continue;
    ++r.zombies;
    Agg& a = by_parent[p.ppid];
    ++a.zombies;
    a.oldest_start = std::min(a.oldest_start, p.starttime);
    if (a.sample.size() < 5) a.sample.push_back(p.pid);
  }
  std::vector<std::pair<int, Agg*>> parents;
  for (auto& [ppid, agg] : by_parent) parents.emplace_back(ppid, &agg);
  std::sort(parents.begin(), parents.end(), [](const auto& a, const auto& b) {
    return a.second->zombies != b.second->zombies ? a.second->zombies > b.second->zombies
                                                  : a.first < b.first;
  });
  for (const auto& [ppid, agg] : parents) {
    const Proc* parent = find(ppid);
    if (parent != nullptr && parent->state == 'Z') {
      // A chain: find the nearest live ancestor, which must reap `ppid` first.
      ZombieChain c;
      c.pid = ppid;
      c.comm = parent->comm;
      c.zombies = agg->zombies;
      const Proc* up = find(parent->ppid);
      for (int hops = 0; up != nullptr && up->state == 'Z' && hops < 64; ++hops) {
        up = find(up->ppid);
      }
      if (up != nullptr) {
        c.reaper = up->pid;
        c.reaper_comm = up->comm;
      }
      r.zombie_chains.push_back(std::move(c));
    }
    if (r.zombies_by_parent.size() >= o.top) continue;
    ZombieParent z;
    z.pid = ppid;
    z.zombies = agg->zombies;
    z.sample = agg->sample;
    z.oldest_s = std::max(0.0, boot_now - static_cast<double>(agg->oldest_start) / hz);
    if (parent != nullptr) {
      z.comm = parent->comm;
      z.state = parent->state;
      // Re-read the parent's state right before touching its memory: it may have entered D
      // state since the pass, and cmdline of a D-state process can block.
      ProcStat now;
      bool fresh = ReadStat(procfd.get(), std::to_string(ppid) + "/stat", &now);
      if (fresh) z.state = now.state;
      if (parent->kthread || z.state == 'Z') {
        // Kernel threads have no command line; a zombie's is gone.
      } else if (!fresh || z.state == 'D') {
        r.skipped.push_back(
            {ppid, z.comm, "cmdline", "process in D state: reading its memory can block"});
      } else {
        z.cmdline = Cmdline(procfd.get(), ppid);
      }
    }
    z.advice = z.state == 'Z'
                   ? "PID " + std::to_string(ppid) + " (" + z.comm +
                         ") is itself a zombie: its children are freed when its own parent "
                         "reaps it (see zombie_chains)."
                   : ZombieAdvice(ppid, z.comm, z.zombies);
    r.zombies_by_parent.push_back(std::move(z));
  }

  // --- D state: only stat (already read), wchan and sched; never memory. ---
  int64_t mono_now = MonotonicNs();
  int64_t sched_now = -1;  // the scheduler clock "now": our own se.exec_start (we are running)
  {
    std::string self = ReadAtString(procfd.get(), "thread-self/sched", 8192);
    auto v = ParseSchedExecStartNs(self);
    if (v.ok()) sched_now = v.value();
  }
  std::map<std::pair<int, uint64_t>, int64_t> seen;
  auto add_dstate = [&](int pid, int tid, int ppid, const std::string& comm, uint64_t start) {
    ++r.dstate_total;
    DStateProcess d;
    d.pid = pid;
    d.tid = tid;
    d.ppid = ppid;
    d.comm = comm;
    std::string base =
        pid == tid ? std::to_string(pid) : std::to_string(pid) + "/task/" + std::to_string(tid);
    d.wchan = Trim(ReadAtString(procfd.get(), base + "/wchan", 256));
    if (d.wchan == "0") d.wchan.clear();
    auto key = std::make_pair(tid, start);
    auto it = dstate_first_seen_.find(key);
    int64_t first = it == dstate_first_seen_.end() ? mono_now : it->second;
    seen[key] = first;
    d.since_s = static_cast<double>(mono_now - first) / 1e9;
    if (sched_now > 0) {
      auto v = ParseSchedExecStartNs(ReadAtString(procfd.get(), base + "/sched", 8192));
      if (v.ok() && v.value() <= sched_now) {
        d.since_s = std::max(d.since_s, static_cast<double>(sched_now - v.value()) / 1e9);
      }
    }
    r.dstate.push_back(std::move(d));
    r.skipped.push_back({pid, comm, "cmdline, environ, maps, status",
                         "process in D state: reading its memory can block; read stat, wchan "
                         "and sched only"});
  };
  for (const Proc& p : procs) {
    if (p.state == 'D') add_dstate(p.pid, p.pid, p.ppid, p.comm, p.starttime);
  }
  for (const auto& [tgid, st] : dthreads) {
    add_dstate(tgid, st.pid, st.ppid, st.comm, st.starttime_ticks);
  }
  dstate_first_seen_ = std::move(seen);
  std::sort(r.dstate.begin(), r.dstate.end(),
            [](const auto& a, const auto& b) { return a.since_s > b.since_s; });
  if (r.dstate.size() > o.top) r.dstate.resize(o.top);
  if (r.skipped.size() > 4 * o.top) r.skipped.resize(4 * o.top);

  // --- fd pressure: limits only for processes that hold at least fd_min fds. ---
  for (const Proc& p : procs) {
    if (p.fds < o.fd_min || p.fds == 0) continue;
    std::string lim = ReadAtString(procfd.get(), std::to_string(p.pid) + "/limits", 4096);
    auto nl = ParseNofileLimit(lim);
    if (!nl.ok() || nl->soft == 0 || nl->soft == NofileLimit::kUnlimited) continue;
    double ratio = static_cast<double>(p.fds) / static_cast<double>(nl->soft);
    r.fd_max_ratio = std::max(r.fd_max_ratio, ratio);
    if (ratio >= o.thresholds.fd_ratio) {
      r.fd_pressure.push_back({p.pid, p.comm, p.fds, nl->soft, nl->hard});
    }
  }
  std::sort(r.fd_pressure.begin(), r.fd_pressure.end(), [](const auto& a, const auto& b) {
    return a.open_fds * b.soft_limit > b.open_fds * a.soft_limit;
  });
  if (r.fd_pressure.size() > o.top) r.fd_pressure.resize(o.top);

  // --- PIDs. ---
  r.pids.processes = procs.size();
  r.pids.max = ReadU64At(procfd.get(), "sys/kernel/pid_max");
  r.pids.threads_max = ReadU64At(procfd.get(), "sys/kernel/threads-max");
  {
    auto tasks = ParseLoadavgTasks(ReadAtString(procfd.get(), "loadavg", 256));
    if (tasks.ok()) {
      r.pids.used = tasks.value();
    } else {
      for (const Proc& p : procs)
        r.pids.used += p.state == 'Z' ? 1 : static_cast<uint64_t>(std::max<int64_t>(p.threads, 1));
    }
  }
  if (o.cgroups) {
    for (const auto& [mnt, hier] : PidsHierarchies(procfd.get())) {
      int fd = ::open(mnt.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd < 0) continue;
      UniqueFd guard(fd);
      int budget = 10000;
      WalkPids(fd, "", hier, 0, &budget, &r.pids.cgroups);
      if (budget < 0) {
        r.skipped.push_back({0, "", "cgroups under " + mnt,
                             "more than 10000 cgroup directories: the walk stopped there"});
      }
    }
    auto ratio = [](const PidsCgroup& c) {
      return c.max == 0 ? 1.0 : static_cast<double>(c.current) / static_cast<double>(c.max);
    };
    std::stable_sort(r.pids.cgroups.begin(), r.pids.cgroups.end(),
                     [&](const auto& a, const auto& b) { return ratio(a) > ratio(b); });
    if (r.pids.cgroups.size() > o.top) r.pids.cgroups.resize(o.top);
  }

  // --- GPU, joined with /proc liveness. ---
  if (o.gpu) {
    NvmlAnswer a =
        QueryGpus(o.nvml_library.empty() ? NvmlLibraryPath() : o.nvml_library, o.nvml_deadline_ms);
    r.gpu.available = a.available;
    r.gpu.status = a.status;
    if (a.status.rfind("skipped", 0) == 0) r.skipped.push_back({0, "", "GPU (NVML)", a.status});
    std::string self_ns(64, '\0');
    ssize_t nl = ::readlinkat(procfd.get(), "self/ns/pid", self_ns.data(), self_ns.size());
    bool in_init_ns = nl > 0 && self_ns.substr(0, static_cast<size_t>(nl)) == kInitPidNs;
    for (const NvmlDevice& nd : a.devices) {
      GpuDevice g;
      g.index = nd.index;
      g.name = nd.name;
      g.total_bytes = nd.total_bytes;
      g.used_bytes = nd.used_bytes;
      for (const NvmlProcess& np : nd.processes) {
        GpuProcess gp;
        gp.pid = np.pid;
        gp.used_bytes = np.used_bytes;
        ProcStat st;
        int pid = static_cast<int>(np.pid);
        if (ReadStat(procfd.get(), std::to_string(pid) + "/stat", &st)) {
          gp.comm = st.comm;
          if (st.state == 'Z' || st.state == 'X') {
            gp.state = "zombie";
          } else {
            // NSpid with more than one entry: the process lives in a nested PID namespace.
            std::string status = ReadAtString(procfd.get(), std::to_string(pid) + "/status", 4096);
            size_t at = status.find("\nNSpid:");
            size_t eol = at == std::string::npos ? at : status.find('\n', at + 1);
            std::string line = at == std::string::npos ? "" : status.substr(at + 7, eol - at - 7);
            size_t fields = 0;
            for (size_t i = 0; i < line.size(); ++i) {
              if (line[i] != '\t' && line[i] != ' ' &&
                  (i == 0 || line[i - 1] == '\t' || line[i - 1] == ' '))
                ++fields;
            }
            gp.state = fields > 1 ? "other_pid_namespace" : "alive";
          }
        } else {
          gp.state = in_init_ns ? "dead" : "not_visible";
        }
        if (gp.state == "dead" || gp.state == "zombie") g.orphaned_bytes += gp.used_bytes;
        g.processes.push_back(std::move(gp));
      }
      r.gpu.orphaned_bytes += g.orphaned_bytes;
      r.gpu.devices.push_back(std::move(g));
    }
  }

  // --- Findings: one sentence per threshold crossed. ---
  const Thresholds& t = o.thresholds;
  for (const ZombieParent& z : r.zombies_by_parent) {
    if (z.zombies >= t.zombies_per_parent) {
      r.findings.push_back("PID " + std::to_string(z.pid) + " (" + z.comm + ") holds " +
                           std::to_string(z.zombies) + " zombie children (threshold " +
                           std::to_string(t.zombies_per_parent) + ")");
    }
  }
  for (const DStateProcess& d : r.dstate) {
    if (d.since_s >= t.dstate_s) {
      r.findings.push_back("PID " + std::to_string(d.tid) + " (" + d.comm + ") in D state for " +
                           Seconds(d.since_s) + (d.wchan.empty() ? "" : " in " + d.wchan));
    }
  }
  for (const FdPressure& f : r.fd_pressure) {
    r.findings.push_back("PID " + std::to_string(f.pid) + " (" + f.comm + ") has " +
                         std::to_string(f.open_fds) + " of " + std::to_string(f.soft_limit) +
                         " fds open");
  }
  if (r.pids.max > 0 &&
      static_cast<double>(r.pids.used) >= t.pid_ratio * static_cast<double>(r.pids.max)) {
    r.findings.push_back("PIDs: " + std::to_string(r.pids.used) + " of pid_max " +
                         std::to_string(r.pids.max) + " in use");
  }
  for (const PidsCgroup& c : r.pids.cgroups) {
    if (c.max > 0 && static_cast<double>(c.current) >= t.pid_ratio * static_cast<double>(c.max)) {
      r.findings.push_back(
          "cgroup " + c.hierarchy + ":" + c.path + " uses " + std::to_string(c.current) +
          " of pids.max " + std::to_string(c.max) + " (" +
          Percent(static_cast<double>(c.current) / static_cast<double>(c.max)) + ")");
    }
  }
  if (r.gpu.orphaned_bytes >= t.gpu_orphaned_bytes && r.gpu.orphaned_bytes > 0) {
    r.findings.push_back("GPU: " + std::to_string(r.gpu.orphaned_bytes) +
                         " bytes held by dead or zombie processes");
  }
  r.duration_s = static_cast<double>(MonotonicNs() - t0) / 1e9;
  return r;
}

}  // namespace corral::scan
