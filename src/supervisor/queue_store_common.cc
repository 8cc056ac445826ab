// Shared judgement of the task queue's stores; see the header.
#include "supervisor/queue_store_common.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "supervisor/cell_request.h"
#include "sys/fd.h"

namespace corral::queue {
namespace {

constexpr int64_t kMaxBackoffMs = 3600 * 1000;

Status WriteWhole(const std::string& path, const std::string& data) {
  ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::FromErrno("write", path);
    done += static_cast<size_t>(n);
  }
  return Ok();
}

}  // namespace

std::string TaskId(int64_t id) { return "t-" + std::to_string(id); }

std::variant<CellSpec, CellResult> AttemptCell(const std::string& spec_json, const Caller& owner,
                                               int64_t id, int64_t n) {
  auto built = SpecFromStored(spec_json, owner);
  if (auto* err = std::get_if<std::string>(&built)) {
    CellResult r;
    r.state = CellState::kFailedToStart;
    r.exit_code = 125;
    r.error = *err;
    return r;
  }
  CellSpec spec = std::move(std::get<CellSpec>(built));
  spec.env.emplace_back("CORRAL_TASK", TaskId(id));
  spec.env.emplace_back("CORRAL_ATTEMPT", std::to_string(n));
  return spec;
}

std::string AttemptOutcome(const CellResult& r, bool cancel_requested) {
  switch (r.state) {
    case CellState::kExited: return r.exit_code == 0 ? "succeeded" : "failed";
    case CellState::kTimedOut: return "timed_out";
    case CellState::kFailedToStart: return "failed";
    case CellState::kKilled:
      // A limit of the task's own is its failure; a signal from outside is a crash.
      return r.reason == "signal" ? "crashed" : "failed";
    case CellState::kCancelled: return cancel_requested ? "cancelled" : "crashed";
  }
  return "failed";
}

int64_t RetryDelayMs(int64_t backoff_ms, int64_t n) {
  int64_t delay = backoff_ms;
  for (int64_t i = 1; i < n && delay < kMaxBackoffMs; ++i) delay *= 2;
  return std::min(delay, kMaxBackoffMs);
}

std::string AttemptOutputPath(const std::string& state_dir, int64_t id, int64_t n, bool err) {
  return state_dir + "/tasks/t-" + std::to_string(id) + "." + std::to_string(n) +
         (err ? ".stderr" : ".stdout");
}

int64_t NextPruneMs(int64_t retention_ms, int64_t removed) {
  return removed >= kPruneBatch ? 10 : std::clamp<int64_t>(retention_ms / 10, 1000, 3600 * 1000);
}

void RemoveOutputFiles(const std::string& state_dir, const std::vector<std::string>& paths) {
  const std::string mine = state_dir + "/tasks/";
  for (const std::string& p : paths) {
    if (p.size() <= mine.size() || p.compare(0, mine.size(), mine) != 0 ||
        p.find("/..", mine.size() - 1) != std::string::npos) {
      continue;
    }
    // ENOENT: removed already (a crash after the unlink, before the row went); nothing to say.
    (void)unlink(p.c_str());
  }
}

nlohmann::json FinishedOutputPage(const std::string& path, int64_t total_bytes, bool truncated,
                                  uint64_t offset, uint64_t max_bytes) {
  std::string data;
  uint64_t size = 0;
  if (!path.empty()) {
    auto fd = OpenFile(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd.ok() && fstat(fd->get(), &sb) == 0) {
      size = static_cast<uint64_t>(sb.st_size);
      offset = std::min(offset, size);
      data.resize(std::min<uint64_t>(max_bytes, size - offset));
      ssize_t got = pread(fd->get(), data.data(), data.size(), static_cast<off_t>(offset));
      data.resize(got > 0 ? static_cast<size_t>(got) : 0);
    }
  }
  offset = std::min(offset, size);
  return {{"data", data},
          {"offset", offset},
          {"next_offset", offset + data.size()},
          {"total_bytes", total_bytes},
          {"truncated", truncated},
          {"done", true}};
}

void AddLastAttempt(nlohmann::json* task, const nlohmann::json& last, nlohmann::json* attempts) {
  for (const char* k : {"exit_code", "signal", "reason"}) {
    (*task)[k] = last.is_null() ? nlohmann::json(nullptr) : last[k];
  }
  if (attempts != nullptr) (*task)["attempt_list"] = std::move(*attempts);
}

nlohmann::json RunningOutputPage(Supervisor* sup, const std::string& cell, bool stderr_stream,
                                 uint64_t offset, uint64_t max_bytes) {
  if (!cell.empty()) {
    auto chunk = sup->Output(Caller::System(), cell, stderr_stream, offset, max_bytes);
    if (auto* c = std::get_if<Supervisor::OutputChunk>(&chunk)) {
      return {{"data", c->data},
              {"offset", c->offset},
              {"next_offset", c->next_offset},
              {"total_bytes", c->total_bytes},
              {"truncated", c->truncated},
              {"done", false}};
    }
  }
  return {{"data", ""},       {"offset", offset},   {"next_offset", offset},
          {"total_bytes", 0}, {"truncated", false}, {"done", false}};
}

nlohmann::json NoAttemptYet(bool task_done) {
  return {{"data", ""},         {"offset", 0},   {"next_offset", 0}, {"total_bytes", 0},
          {"truncated", false}, {"done", false}, {"attempt", 0},     {"task_done", task_done}};
}

Result<UniqueFd> LockStateDir(const std::string& dir, const std::string& lock_name) {
  for (const std::string& d : {dir, dir + "/tasks"}) {
    if (mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) {
      return Error::FromErrno("mkdir", d).Wrap("task queue state dir");
    }
  }
  std::string lock = dir + "/" + lock_name;
  ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Error::Msg("another corral daemon already uses the state dir " + dir + " (its lock " +
                        lock + " is held); give this one another --state-dir");
    }
    return Error::FromErrno("flock", lock);
  }
  return fd;
}

std::optional<Refusal> CheckGroupSet(const Caller& caller, const std::string& group,
                                     bool valid_name) {
  if (!valid_name) {
    return Refusal{Refusal::kBadInput, "params.group: '" + group +
                                           "' is not a group name (1 to 64 of A-Z a-z 0-9 _ - .)"};
  }
  if (!caller.root() && caller.uid != geteuid()) {
    return Refusal{Refusal::kNotAllowed,
                   "only root or the daemon's own user may set group limits: they apply to "
                   "every user's tasks"};
  }
  return std::nullopt;
}

void WriteAttemptOutput(const std::string& state_dir, int64_t id, int64_t n, const CellResult& r,
                        std::string* out_path, std::string* err_path) {
  // Only streams that produced bytes get a file (an empty one reads back the same without it),
  // all in one directory: a directory per task cost an ext4 mkdir per task, and /bin/true-sized
  // tasks spent a fifth of the daemon's time creating inodes.
  out_path->clear();
  err_path->clear();
  if (!r.stdout_data.empty() &&
      WriteWhole(AttemptOutputPath(state_dir, id, n, false), r.stdout_data).ok()) {
    *out_path = AttemptOutputPath(state_dir, id, n, false);
  }
  if (!r.stderr_data.empty() &&
      WriteWhole(AttemptOutputPath(state_dir, id, n, true), r.stderr_data).ok()) {
    *err_path = AttemptOutputPath(state_dir, id, n, true);
  }
}

}  // namespace corral::queue
