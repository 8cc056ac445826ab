// Isolated cells: plan building (parent), the steps between clone and exec (child), the seccomp
// program, host probing for `corral doctor`, profiles and the JSON form. The mechanism and its
// hazards are described in isolation.h; docs/isolation.md is the user's view.
#include "cell/isolation.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "sys/fd.h"

namespace corral {
namespace {

#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef SECCOMP_FILTER_FLAG_SPEC_ALLOW
#define SECCOMP_FILTER_FLAG_SPEC_ALLOW (1UL << 2)
#endif
constexpr uint64_t kLandlockTruncate = 1ULL << 14;  // ABI 3 (Linux 6.2); newer than our headers

// struct mount_attr (Linux 5.12), spelled out: <linux/mount.h> and glibc's <sys/mount.h> clash.
struct MountAttr {
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};
constexpr uint64_t kMountAttrRdonly = 0x1;

// struct landlock_ruleset_attr as of ABI 1 (the kernel accepts the shorter, older layout).
struct LandlockRulesetAttr {
  uint64_t handled_access_fs;
};

#if defined(__x86_64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#else
#error "isolation: add this architecture's AUDIT_ARCH to the seccomp filter"
#endif

constexpr uint32_t kNamespaceFlags = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
                                     CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | 0x80 /*TIME*/;

struct Denied {
  long nr;
  const char* name;
};
#define CORRAL_DENY(x) \
  { __NR_##x, #x }
// Calls an agent's tool never needs, each a privilege or kernel-attack-surface escalation:
// debugging other processes, changing the mount tree, loading code into the kernel, keyrings,
// namespaces, the machine's clock, power and swap, raw I/O ports, file handles (which bypass
// the mount tree), userfaultfd and io_uring (common exploit primitives).
const Denied kDenied[] = {
    CORRAL_DENY(ptrace),
    CORRAL_DENY(process_vm_readv),
    CORRAL_DENY(process_vm_writev),
    CORRAL_DENY(mount),
    CORRAL_DENY(umount2),
    CORRAL_DENY(pivot_root),
    CORRAL_DENY(chroot),
    CORRAL_DENY(mount_setattr),
    CORRAL_DENY(move_mount),
    CORRAL_DENY(open_tree),
    CORRAL_DENY(fsopen),
    CORRAL_DENY(fsconfig),
    CORRAL_DENY(fsmount),
    CORRAL_DENY(fspick),
    CORRAL_DENY(kexec_load),
    CORRAL_DENY(kexec_file_load),
    CORRAL_DENY(init_module),
    CORRAL_DENY(finit_module),
    CORRAL_DENY(delete_module),
    CORRAL_DENY(bpf),
    CORRAL_DENY(perf_event_open),
    CORRAL_DENY(keyctl),
    CORRAL_DENY(add_key),
    CORRAL_DENY(request_key),
    CORRAL_DENY(setns),
    CORRAL_DENY(reboot),
    CORRAL_DENY(swapon),
    CORRAL_DENY(swapoff),
    CORRAL_DENY(open_by_handle_at),
    CORRAL_DENY(userfaultfd),
    CORRAL_DENY(acct),
    CORRAL_DENY(quotactl),
    CORRAL_DENY(syslog),
    CORRAL_DENY(settimeofday),
    CORRAL_DENY(clock_settime),
    CORRAL_DENY(clock_adjtime),
    CORRAL_DENY(vhangup),
    CORRAL_DENY(io_uring_setup),
    CORRAL_DENY(io_uring_enter),
    CORRAL_DENY(io_uring_register),
#if defined(__x86_64__)
    CORRAL_DENY(iopl),
    CORRAL_DENY(ioperm),
    CORRAL_DENY(uselib),
#endif
};
#undef CORRAL_DENY

sock_filter Stmt(uint16_t code, uint32_t k) { return sock_filter{code, 0, 0, k}; }
sock_filter Jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) {
  return sock_filter{code, jt, jf, k};
}

bool IsUnder(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

long ReadLong(const char* path, long fallback) {
  auto s = ReadSmallFile(path);
  if (!s.ok()) return fallback;
  return std::strtol(s.value().c_str(), nullptr, 10);
}

int LandlockAbi() {
  static const int abi = [] {
    long v = syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return v < 0 ? 0 : static_cast<int>(v);
  }();
  return abi;
}

// On a file only file rights apply.
uint64_t RuleAccess(uint64_t access, bool is_dir) {
  return is_dir ? access : access & (LANDLOCK_ACCESS_FS_WRITE_FILE | kLandlockTruncate);
}

// The device nodes a tool writes to (not /dev as a whole, where a root caller's command could
// otherwise open a disk for writing), opened O_PATH once per process: they are the same inodes
// inside every cell, and each opened by the child cost it 4 system calls (about 40 us for all).
struct DeviceRule {
  const char* path;
  UniqueFd fd;  // invalid: absent on this host (no /dev/tty in a container): no rule
  bool is_dir = false;
};
std::vector<DeviceRule>& DeviceRules() {
  static std::vector<DeviceRule>* rules = [] {
    auto* v = new std::vector<DeviceRule>;
    for (const char* d : {"/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/pts",
                          "/dev/ptmx", "/dev/random", "/dev/urandom"}) {
      DeviceRule r{d, UniqueFd(open(d, O_PATH | O_CLOEXEC))};
      struct stat st;
      r.is_dir = r.fd && fstat(r.fd.get(), &st) == 0 && S_ISDIR(st.st_mode);
      v->push_back(std::move(r));
    }
    return v;
  }();
  return *rules;
}

// The write-class rights of a Landlock ABI: reads and execution stay as the mounts allow, so
// Landlock mirrors exactly "writes only beneath the writable paths".
uint64_t LandlockWriteRights(int abi) {
  uint64_t r = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |
               LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
               LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
               LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |
               LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM;
  if (abi >= 2) r |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) r |= kLandlockTruncate;
  return r;
}

std::string UserNsHint() {
  long max = ReadLong("/proc/sys/user/max_user_namespaces", -1);
  long clone = ReadLong("/proc/sys/kernel/unprivileged_userns_clone", -1);
  long apparmor = ReadLong("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", -1);
  if (max == 0) return "user namespaces are disabled: sysctl user.max_user_namespaces=15000";
  if (clone == 0)
    return "unprivileged user namespaces are disabled: sysctl "
           "kernel.unprivileged_userns_clone=1";
  if (apparmor == 1)
    return "AppArmor restricts unprivileged user namespaces: sysctl "
           "kernel.apparmor_restrict_unprivileged_userns=0, or run through the "
           "root daemon";
  return "run as root, or through the root daemon (`corral exec --isolate`), or enable "
         "unprivileged user namespaces";
}

// Absolute, symlink-free form of a path as the parent sees it ("." is the cell's cwd).
Result<std::string> ResolvePath(const std::string& flag, const std::string& p,
                                const std::string& cwd) {
  std::string abs = p;
  if (abs == ".")
    abs = cwd;
  else if (abs.empty() || abs[0] != '/')
    abs = cwd + "/" + abs;
  char buf[PATH_MAX];
  if (realpath(abs.c_str(), buf) == nullptr) {
    Error e = Error::FromErrno(errno, flag, p);
    if (IsUnder(abs, "/tmp") || IsUnder(abs, "/dev/shm")) {
      return Error::Msg(e.message() +
                            " (and /tmp, /dev/shm are a private tmpfs in an isolated "
                            "cell: name a path outside them)",
                        e.code());
    }
    return e;
  }
  return std::string(buf);
}

}  // namespace

// ------------------------------------------------------------------------------------------
// Parent side

std::vector<sock_filter> DefaultSeccompFilter() {
  constexpr uint32_t kAllow = SECCOMP_RET_ALLOW;
  constexpr uint32_t kEperm = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
  constexpr uint32_t kEnosys = SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA);
  constexpr uint32_t kNr = offsetof(seccomp_data, nr);
  constexpr uint32_t kArch = offsetof(seccomp_data, arch);
  constexpr uint32_t kArg0Low = offsetof(seccomp_data, args[0]);  // little-endian: low 32 bits
  std::vector<sock_filter> f;
  // Another ABI (i386 through int 0x80 on x86_64) has other numbers: refuse all of it rather
  // than let a deny-list for the wrong numbers through.
  f.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, kArch));
  f.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0));
  f.push_back(Stmt(BPF_RET | BPF_K, kEperm));
  f.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, kNr));
#if defined(__x86_64__)
  // x32 system calls are the x86_64 numbers with bit 30 set: the same calls by another name.
  f.push_back(Jump(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1));
  f.push_back(Stmt(BPF_RET | BPF_K, kEperm));
#endif
  // One compare per denied call, all jumping to one shared return: loading a filter costs about
  // 1.3 us an instruction here (checked, converted and JIT-compiled for every cell).
  constexpr size_t kDeniedCount = std::size(kDenied);
  static_assert(kDeniedCount < 255, "a jump offset is 8 bits");
  for (size_t i = 0; i < kDeniedCount; ++i) {
    auto to_deny = static_cast<uint8_t>(kDeniedCount - i);  // over the rest and the JA below
    f.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(kDenied[i].nr), to_deny, 0));
  }
  f.push_back(Stmt(BPF_JMP | BPF_JA, 1));
  f.push_back(Stmt(BPF_RET | BPF_K, kEperm));
  // clone3 passes its flags in memory, which a filter cannot read: ENOSYS makes libc fall back
  // to clone(2), whose flags it can.
  f.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1));
  f.push_back(Stmt(BPF_RET | BPF_K, kEnosys));
  // clone and unshare: new namespaces refused (a user namespace would hand out capabilities
  // again, if only over the cell's own copies); plain forks and threads pass.
  for (long nr : {static_cast<long>(__NR_clone), static_cast<long>(__NR_unshare)}) {
    f.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 4));
    f.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, kArg0Low));
    f.push_back(Jump(BPF_JMP | BPF_JSET | BPF_K, kNamespaceFlags, 0, 1));
    f.push_back(Stmt(BPF_RET | BPF_K, kEperm));
    f.push_back(Stmt(BPF_RET | BPF_K, kAllow));
  }
  f.push_back(Stmt(BPF_RET | BPF_K, kAllow));
  return f;
}

std::vector<std::string> DefaultSeccompDenied() {
  std::vector<std::string> out;
  for (const Denied& d : kDenied) out.emplace_back(d.name);
  out.emplace_back("clone3 (ENOSYS: libc falls back to clone)");
  out.emplace_back("clone/unshare with CLONE_NEW* flags");
  return out;
}

Result<std::unique_ptr<IsolationPlan>> PrepareIsolation(const Isolation& iso,
                                                        const std::string& cwd, long uid) {
  auto plan = std::make_unique<IsolationPlan>();
  char here[PATH_MAX];
  if (getcwd(here, sizeof here) == nullptr) return Error::FromErrno("getcwd");
  std::string cell_cwd = cwd.empty()     ? std::string(here)
                         : cwd[0] == '/' ? cwd
                                         : std::string(here) + "/" + cwd;
  // Re-entered through the new mount tree: the cell's directory, not ours (a daemon started
  // from a directory under the host's /tmp must still run cells elsewhere).
  plan->chdir_to = cell_cwd;

  plan->clone_flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
  if (iso.net == NetMode::kNone) {
    plan->clone_flags |= CLONE_NEWNET;
    plan->lo_up = true;
  }
  if (geteuid() != 0) {
    // Namespaces other than the user namespace need CAP_SYS_ADMIN; a user namespace gives it
    // over the cell's own copies only. The caller's ids map to themselves: the command sees its
    // own uid, and exec drops the capabilities again (uid != 0).
    if (uid >= 0 && static_cast<uid_t>(uid) != geteuid()) {
      return Error::Msg("isolation: a non-root caller cannot run as another user", EPERM);
    }
    plan->clone_flags |= CLONE_NEWUSER;
    plan->user_ns = true;
    plan->uid_map = std::to_string(geteuid()) + " " + std::to_string(geteuid()) + " 1\n";
    plan->gid_map = std::to_string(getegid()) + " " + std::to_string(getegid()) + " 1\n";
    if (ReadLong("/proc/sys/user/max_user_namespaces", 1) == 0 ||
        ReadLong("/proc/sys/kernel/unprivileged_userns_clone", 1) == 0) {
      return Error::Msg("isolation: user namespaces are not available to uid " +
                            std::to_string(geteuid()) + ": " + UserNsHint(),
                        EPERM);
    }
  }

  // Mounts, in order: private tmpfs first, so that the binds below may not be hidden by it;
  // then writable binds, read-only binds (a --ro inside a --rw stays read-only), hidden paths,
  // and /proc last (it must be mounted by a process in the new PID namespace: the child is).
  std::vector<std::string> rw, ro, hide;
  for (const std::string& p : iso.rw) {
    ASSIGN_OR_RETURN(std::string r, ResolvePath("--rw", p, cell_cwd));
    rw.push_back(r);
  }
  for (const std::string& p : iso.ro) {
    ASSIGN_OR_RETURN(std::string r, ResolvePath("--ro", p, cell_cwd));
    ro.push_back(r);
  }
  for (const std::string& p : iso.hide) {
    ASSIGN_OR_RETURN(std::string r, ResolvePath("--hide", p, cell_cwd));
    hide.push_back(r);
  }
  bool share_tmp = false, share_shm = false;
  for (const std::string& r : rw) {
    if (r == "/tmp") share_tmp = true;
    if (r == "/dev/shm") share_shm = true;
  }
  auto check_place = [&](const char* flag, const std::string& r) -> Status {
    for (const char* priv : {"/tmp", "/dev/shm"}) {
      bool shared = std::string(priv) == "/tmp" ? share_tmp : share_shm;
      if (!shared && IsUnder(r, priv) && r != priv) {
        return Error::Msg(std::string("isolation: ") + flag + " " + r + ": " + priv +
                              " is a private tmpfs in an isolated cell; name a path outside it, "
                              "or --rw " +
                              priv + " to share the host's",
                          EINVAL);
      }
    }
    if (IsUnder(r, "/proc")) {
      return Error::Msg(std::string("isolation: ") + flag + " " + r +
                            ": /proc is the cell's own; it cannot be granted or hidden",
                        EINVAL);
    }
    return Ok();
  };
  for (const std::string& r : rw) TRY(check_place("--rw", r));
  for (const std::string& r : ro) TRY(check_place("--ro", r));
  for (const std::string& r : hide) TRY(check_place("--hide", r));

  using K = IsolationPlan::MountKind;
  if (!share_tmp) plan->mounts.push_back({K::kTmpfs, "/tmp"});
  struct stat st;
  if (!share_shm && stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode)) {
    plan->mounts.push_back({K::kTmpfs, "/dev/shm"});
  }
  for (const std::string& r : rw) plan->mounts.push_back({K::kBindRw, r});
  for (const std::string& r : ro) plan->mounts.push_back({K::kBindRo, r});
  for (const std::string& r : hide) {
    if (stat(r.c_str(), &st) != 0) return Error::FromErrno("--hide: stat", r);
    plan->mounts.push_back({S_ISDIR(st.st_mode) ? K::kHideDir : K::kHideFile, r});
  }
  plan->mounts.push_back({K::kProc, "/proc"});

  static const long cap_last = ReadLong("/proc/sys/kernel/cap_last_cap", CAP_LAST_CAP);
  plan->cap_last = static_cast<int>(cap_last);

  if (iso.seccomp) plan->seccomp = DefaultSeccompFilter();

  if (iso.landlock) {
    plan->landlock_abi = LandlockAbi();
    if (plan->landlock_abi > 0) {
      uint64_t all = LandlockWriteRights(plan->landlock_abi);
      uint64_t dev =
          LANDLOCK_ACCESS_FS_WRITE_FILE | (plan->landlock_abi >= 3 ? kLandlockTruncate : 0);
      plan->landlock_handled = all;
      plan->landlock_rules.push_back({"/tmp", all});
      plan->landlock_rules.push_back({"/dev/shm", all});
      // A --rw path is bind-mounted onto itself in the child: the same inode, so the rule can
      // name it by an fd opened here.
      for (const std::string& r : rw) {
        UniqueFd fd(open(r.c_str(), O_PATH | O_CLOEXEC));
        if (!fd) return Error::FromErrno("open", r).Wrap("--rw (Landlock rule)");
        struct stat st;
        bool is_dir = fstat(fd.get(), &st) == 0 && S_ISDIR(st.st_mode);
        plan->landlock_rules.push_back({r, RuleAccess(all, is_dir), fd.get()});
        plan->landlock_fds.push_back(std::move(fd));
      }
      for (const DeviceRule& d : DeviceRules()) {
        if (d.fd) plan->landlock_rules.push_back({d.path, RuleAccess(dev, d.is_dir), d.fd.get()});
      }
    }
  }
  return plan;
}

std::string IsolationHint(const std::string& what, int err) {
  if (what.rfind("clone", 0) == 0) {
    if (geteuid() != 0 && (err == EPERM || err == ENOSPC || err == EUSERS || err == EACCES)) {
      return UserNsHint();
    }
    if (err == EINVAL)
      return "the kernel lacks a namespace type (CONFIG_PID_NS, CONFIG_NET_NS, "
             "CONFIG_IPC_NS, CONFIG_UTS_NS, CONFIG_USER_NS); see `corral doctor`";
    if (err == EPERM) return "creating namespaces needs CAP_SYS_ADMIN (root) or user namespaces";
    return "";
  }
  if (what.find("mount_setattr") != std::string::npos && err == ENOSYS) {
    return "isolation needs mount_setattr (Linux 5.12 or later)";
  }
  if (what.find("proc") != std::string::npos && err == EPERM) {
    return "/proc cannot be mounted in this user namespace (the host's /proc has parts covered, "
           "as in some containers); run through the root daemon";
  }
  if (what.find("landlock") != std::string::npos) {
    return "Landlock failed; `--no-landlock` (or \"landlock\": false) relies on the mounts alone";
  }
  if (what.find("seccomp") != std::string::npos && err == EINVAL) {
    return "the kernel lacks CONFIG_SECCOMP_FILTER; `--no-seccomp` runs without the filter";
  }
  if (what.find("bind") != std::string::npos && err == EPERM) {
    return "in a user namespace a mount the host made read-only stays read-only";
  }
  return "";
}

// ------------------------------------------------------------------------------------------
// Child side: async-signal-safe, no allocation; `plan` lives in the suspended parent's memory.

namespace {

bool WriteFile(const char* path, const char* data, size_t len) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write(fd, data, len) == static_cast<ssize_t>(len);
  int e = errno;
  close(fd);
  errno = e;
  return ok;
}

bool SetAttr(const char* path, unsigned flags, uint64_t set, uint64_t clr, uint64_t prop) {
  MountAttr a{set, clr, prop, 0};
  return syscall(SYS_mount_setattr, AT_FDCWD, path, flags, &a, sizeof a) == 0;
}

}  // namespace

bool LoopbackUp() {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return false;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, "lo", 3);
  bool ok = ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
  if (ok) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    ok = ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
  }
  int e = errno;
  close(s);
  errno = e;
  return ok;
}

bool IsolateEnter(const IsolationPlan& plan, const char** what, const char** object) {
  auto fail = [&](const char* w, const char* o) {
    *what = w;
    *object = o;
    return false;
  };
  if (plan.user_ns) {
    // Order matters: setgroups must be denied before an unprivileged gid_map is accepted.
    if (!WriteFile("/proc/self/setgroups", "deny", 4)) {
      return fail("isolate: write", "/proc/self/setgroups");
    }
    if (!WriteFile("/proc/self/uid_map", plan.uid_map.c_str(), plan.uid_map.size())) {
      return fail("isolate: write", "/proc/self/uid_map");
    }
    if (!WriteFile("/proc/self/gid_map", plan.gid_map.c_str(), plan.gid_map.size())) {
      return fail("isolate: write", "/proc/self/gid_map");
    }
  }
  // The host tree, read-only and private in one call, however many mounts it has.
  if (!SetAttr("/", AT_RECURSIVE, kMountAttrRdonly, 0, MS_PRIVATE)) {
    return fail("isolate: mount_setattr(read-only, private)", "/");
  }
  using K = IsolationPlan::MountKind;
  for (const IsolationPlan::MountOp& m : plan.mounts) {
    const char* p = m.path.c_str();
    switch (m.kind) {
      case K::kTmpfs:
        if (mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0) {
          return fail("isolate: mount tmpfs on", p);
        }
        break;
      case K::kBindRw:
        // A bind copies the (now read-only) flags of its source: clear them on the top mount
        // only, so a mount the host keeps read-only beneath it stays so.
        if (mount(p, p, nullptr, MS_BIND | MS_REC, nullptr) != 0) return fail("isolate: bind", p);
        if (!SetAttr(p, 0, 0, kMountAttrRdonly, 0)) {
          return fail("isolate: mount_setattr(read-write) bind", p);
        }
        break;
      case K::kBindRo:
        if (mount(p, p, nullptr, MS_BIND | MS_REC, nullptr) != 0) return fail("isolate: bind", p);
        if (!SetAttr(p, AT_RECURSIVE, kMountAttrRdonly, 0, 0)) {
          return fail("isolate: mount_setattr(read-only) bind", p);
        }
        break;
      case K::kHideDir:
        if (mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0555") !=
            0) {
          return fail("isolate: hide (mount tmpfs on)", p);
        }
        break;
      case K::kHideFile:
        if (mount("/dev/null", p, nullptr, MS_BIND, nullptr) != 0) {
          return fail("isolate: hide (bind /dev/null on)", p);
        }
        break;
      case K::kProc:
        // Read-only: a root caller's command must not reach /proc/sys or /proc/sysrq-trigger.
        if (mount("proc", p, "proc", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
          return fail("isolate: mount proc on", p);
        }
        break;
    }
  }
  if (plan.net_fd >= 0 &&
      (setns(plan.net_fd, CLONE_NEWNET) != 0 || setns(plan.ipc_fd, CLONE_NEWIPC) != 0 ||
       setns(plan.uts_fd, CLONE_NEWUTS) != 0)) {
    return fail("isolate: setns(namespaces made ahead)", nullptr);
  }
  if (plan.lo_up && !LoopbackUp()) return fail("isolate: bring up loopback", "lo");
  // The inherited cwd still points into the old mount, read-only now: enter it again.
  if (chdir(plan.chdir_to.c_str()) != 0) return fail("isolate: chdir", plan.chdir_to.c_str());
  // No capabilities survive exec, even for a root caller (uid 0 gets the bounding set).
  for (int cap = 0; cap <= plan.cap_last; ++cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {
      return fail("isolate: prctl(PR_CAPBSET_DROP)", nullptr);
    }
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return fail("isolate: prctl(PR_CAP_AMBIENT_CLEAR_ALL)", nullptr);
  }
  return true;
}

bool IsolateLockDown(const IsolationPlan& plan, const char** what, const char** object) {
  auto fail = [&](const char* w, const char* o) {
    *what = w;
    *object = o;
    return false;
  };
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return fail("isolate: prctl(PR_SET_NO_NEW_PRIVS)", nullptr);
  }
  if (plan.landlock_abi > 0) {
    LandlockRulesetAttr attr{plan.landlock_handled};
    int rs = static_cast<int>(syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0));
    if (rs < 0) return fail("isolate: landlock_create_ruleset", nullptr);
    for (const IsolationPlan::LandlockRule& r : plan.landlock_rules) {
      int fd = r.fd >= 0 ? r.fd : open(r.path.c_str(), O_PATH | O_CLOEXEC);
      if (fd < 0) continue;
      landlock_path_beneath_attr pb;
      pb.allowed_access = r.access;
      pb.parent_fd = fd;
      struct stat st;
      if (r.fd < 0 && fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode)) {
        pb.allowed_access = RuleAccess(r.access, false);
      }
      long rc = syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
      int e = errno;
      if (r.fd < 0) close(fd);
      if (rc != 0) {
        close(rs);
        errno = e;
        return fail("isolate: landlock_add_rule", r.path.c_str());
      }
    }
    long rc = syscall(SYS_landlock_restrict_self, rs, 0);
    int e = errno;
    close(rs);
    errno = e;
    if (rc != 0) return fail("isolate: landlock_restrict_self", nullptr);
  }
  if (!plan.seccomp.empty()) {
    sock_fprog prog;
    prog.len = static_cast<unsigned short>(plan.seccomp.size());
    prog.filter = const_cast<sock_filter*>(plan.seccomp.data());
    // SPEC_ALLOW: no forced speculative-store-bypass mitigation, which would slow the command.
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW, &prog) != 0) {
      return fail("isolate: seccomp(SECCOMP_SET_MODE_FILTER)", nullptr);
    }
  }
  return true;
}

// ------------------------------------------------------------------------------------------
// Doctor

std::vector<IsolationPart> ProbeIsolation() {
  std::vector<IsolationPart> parts;
  bool root = geteuid() == 0;
  // Each namespace type in a throwaway child: unshare() of it alone tells whether this
  // process may create it (through a user namespace when not root).
  auto try_ns = [&](const char* name, int flag, const char* config) {
    pid_t pid = fork();
    if (pid == 0) {
      int f = flag | (root ? 0 : CLONE_NEWUSER);
      _exit(unshare(f) == 0 ? 0 : (errno & 0x7f) + 1);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) {
      parts.push_back({name, false, "cannot fork to probe"});
      return;
    }
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 127;
    if (code == 0) {
      parts.push_back({name, true, root ? "yes" : "yes (through a user namespace)"});
    } else {
      int e = code - 1;
      std::string why = std::string(strerror(e)) + "; " +
                        (e == EINVAL ? std::string("kernel without ") + config
                         : root      ? std::string("not permitted here (a container "
                                                        "without CAP_SYS_ADMIN?)")
                                     : UserNsHint());
      parts.push_back({name, false, why});
    }
  };
  if (!root) try_ns("user namespace", CLONE_NEWUSER, "CONFIG_USER_NS");
  try_ns("pid namespace", CLONE_NEWPID, "CONFIG_PID_NS");
  try_ns("mount namespace", CLONE_NEWNS, "namespace support");
  try_ns("network namespace", CLONE_NEWNET, "CONFIG_NET_NS");
  try_ns("ipc namespace", CLONE_NEWIPC, "CONFIG_IPC_NS");
  try_ns("uts namespace", CLONE_NEWUTS, "CONFIG_UTS_NS");

  // mount_setattr: ENOSYS when missing; EBADF/EINVAL for our bogus call when present.
  long ms = syscall(SYS_mount_setattr, -1, "", 0, nullptr, 0);
  bool have_ms = !(ms < 0 && errno == ENOSYS);
  parts.push_back({"read-only root", have_ms,
                   have_ms ? "mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)"
                           : "no mount_setattr: needs Linux 5.12 or later"});
  int sc = prctl(PR_GET_SECCOMP, 0, 0, 0, 0);
  uint32_t action = SECCOMP_RET_ERRNO;  // filters exist when this action is known
  bool have_filter = syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action) == 0;
  parts.push_back({"seccomp filter", sc >= 0 && have_filter,
                   sc < 0 ? "kernel without CONFIG_SECCOMP"
                   : !have_filter
                       ? "kernel without CONFIG_SECCOMP_FILTER (--no-seccomp to run without)"
                       : "default deny-list, " + std::to_string(DefaultSeccompFilter().size()) +
                             " BPF instructions, EPERM"});
  int abi = LandlockAbi();
  parts.push_back({"landlock", abi > 0,
                   abi > 0 ? "ABI " + std::to_string(abi) +
                                 ": writes only beneath --rw, /tmp, "
                                 "/dev/shm and a few devices"
                           : std::string("not available (") + strerror(errno) +
                                 "): enable CONFIG_SECURITY_LANDLOCK and add landlock to the lsm= "
                                 "boot parameter; the mounts enforce the same paths without it"});
  parts.push_back({"no_new_privs", true, "PR_SET_NO_NEW_PRIVS"});
  auto max_ns = ReadSmallFile("/proc/sys/user/max_user_namespaces");
  if (!root) {
    parts.push_back({"identity", true,
                     "uid " + std::to_string(geteuid()) +
                         " mapped to itself; max_user_namespaces " +
                         (max_ns.ok() ? Trim(max_ns.value()) : std::string("?"))});
  }
  return parts;
}

// ------------------------------------------------------------------------------------------
// Profiles and the JSON form

namespace {

Isolation BuiltinProfile(const std::string& name, bool* found) {
  Isolation iso;
  iso.enabled = true;
  iso.profile = name;
  *found = true;
  if (name == "readonly") {
    // Reads the host, writes only its private /tmp, no network.
  } else if (name == "workspace") {
    iso.rw = {"."};  // the cell's working directory
  } else if (name == "network") {
    iso.rw = {"."};
    iso.net = NetMode::kHost;
  } else {
    *found = false;
  }
  return iso;
}

std::optional<std::string> StringList(const nlohmann::json& j, const char* field,
                                      std::vector<std::string>* out) {
  if (!j.is_array()) return std::string("isolate.") + field + " must be an array of paths";
  for (const auto& v : j) {
    if (!v.is_string() || v.get<std::string>().empty()) {
      return std::string("isolate.") + field + " must be an array of non-empty strings";
    }
    out->push_back(v.get<std::string>());
  }
  return std::nullopt;
}

std::string ProfilesPath() {
  const char* env = getenv("CORRAL_PROFILES");
  return env != nullptr && *env != '\0' ? env : "/etc/corral/profiles.json";
}

}  // namespace

Result<Isolation> LoadProfile(const std::string& name) {
  std::string path = ProfilesPath();
  auto text = ReadSmallFile(path);
  if (text.ok()) {
    nlohmann::json j = nlohmann::json::parse(text.value(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("profiles") ||
        !j["profiles"].is_object()) {
      return Error::Msg("profiles file " + path + ": not {\"profiles\": {NAME: {...}}}", EINVAL);
    }
    const auto& profiles = j["profiles"];
    if (profiles.contains(name)) {
      Isolation iso;
      iso.enabled = true;
      const auto& p = profiles[name];
      if (p.is_object() && p.contains("profile")) {
        return Error::Msg(
            "profiles file " + path + ": profile " + name + " may not name another profile",
            EINVAL);
      }
      if (auto err = ParseIsolationJson(p, &iso)) {
        return Error::Msg("profiles file " + path + ", profile " + name + ": " + *err, EINVAL);
      }
      iso.enabled = true;
      iso.profile = name;
      return iso;
    }
  } else if (text.error().code() != ENOENT) {
    return text.error().Wrap("profiles file");
  }
  bool found = false;
  Isolation iso = BuiltinProfile(name, &found);
  if (!found) {
    std::string known = "readonly, workspace, network";
    if (text.ok()) {
      auto j = nlohmann::json::parse(text.value(), nullptr, false);
      for (auto it = j["profiles"].begin(); it != j["profiles"].end(); ++it) {
        if (known.find(it.key()) == std::string::npos) known += ", " + it.key();
      }
    }
    return Error::Msg(
        "no isolation profile '" + name + "' (known: " + known + "; file " + path + ")", ENOENT);
  }
  return iso;
}

std::optional<std::string> ParseIsolationJson(const nlohmann::json& j, Isolation* out) {
  if (j.is_null()) return std::nullopt;
  if (j.is_boolean()) {
    out->enabled = j.get<bool>();
    return std::nullopt;
  }
  if (j.is_string()) {
    auto p = LoadProfile(j.get<std::string>());
    if (!p.ok()) return "isolate: " + p.error().message();
    *out = std::move(p).value();
    return std::nullopt;
  }
  if (!j.is_object()) return "isolate must be true, false, a profile name or an object";
  if (j.contains("profile")) {
    if (!j["profile"].is_string()) return "isolate.profile must be a string";
    auto p = LoadProfile(j["profile"].get<std::string>());
    if (!p.ok()) return "isolate.profile: " + p.error().message();
    *out = std::move(p).value();
  }
  out->enabled = true;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const auto& v = it.value();
    std::optional<std::string> err;
    if (k == "profile") {
      continue;
    } else if (k == "net") {
      if (v == "none")
        out->net = NetMode::kNone;
      else if (v == "host")
        out->net = NetMode::kHost;
      else
        err = "isolate.net must be \"none\" or \"host\"";
    } else if (k == "rw") {
      err = StringList(v, "rw", &out->rw);
    } else if (k == "ro") {
      err = StringList(v, "ro", &out->ro);
    } else if (k == "hide") {
      err = StringList(v, "hide", &out->hide);
    } else if (k == "seccomp" || k == "landlock") {
      if (!v.is_boolean())
        err = "isolate." + k + " must be true or false";
      else
        (k == "seccomp" ? out->seccomp : out->landlock) = v.get<bool>();
    } else {
      err = "isolate." + k +
            " is not a known field (profile, net, rw, ro, hide, seccomp, "
            "landlock)";
    }
    if (err) return err;
  }
  return std::nullopt;
}

nlohmann::json IsolationToJson(const Isolation& iso) {
  if (!iso.enabled) return false;
  // The resolved form: the profile's paths are already in the lists, so naming the profile
  // again would add them twice when this is parsed back.
  nlohmann::json j = nlohmann::json::object();
  j["net"] = iso.net == NetMode::kNone ? "none" : "host";
  j["rw"] = iso.rw;
  j["ro"] = iso.ro;
  j["hide"] = iso.hide;
  j["seccomp"] = iso.seccomp;
  j["landlock"] = iso.landlock;
  return j;
}

}  // namespace corral
