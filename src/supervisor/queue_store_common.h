// The task queue's judgement of an attempt and its files (docs/queue.md), kept apart from the
// queue's state so that it can be tested alone: an attempt's outcome, its retry delay, where its
// output goes and how it is read back and removed, the lock that makes a state dir one daemon's.
// The policy (task_queue.cc) and both stores (sqlite_task_store.cc, pg_task_store.cc) use it.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "supervisor/supervisor.h"
#include "sys/error.h"
#include "sys/fd.h"

namespace corral::queue {

// "t-<id>", the id callers see.
std::string TaskId(int64_t id);

// The cell of attempt n of task `id`: its stored params built for its owner as a `run` of them
// would be (supervisor/cell_request.h), with CORRAL_TASK and CORRAL_ATTEMPT in its environment;
// or, when they no longer build (the owner's user was deleted since), the failed_to_start result
// to record for the attempt.
std::variant<CellSpec, CellResult> AttemptCell(const std::string& spec_json, const Caller& owner,
                                               int64_t id, int64_t n);

// Task states, in the order `tasks` lists their counts.
inline constexpr const char* kStates[] = {"queued",    "running", "succeeded", "failed",
                                          "timed_out", "crashed", "cancelled"};

// An attempt's outcome from its cell's result: exit 0 -> succeeded; exit != 0, failed to start,
// a limit of its own -> failed; timeout -> timed_out; a signal from outside -> crashed; cancelled
// -> cancelled if `cancel` asked for it, else crashed (the shutdown case is the caller's).
std::string AttemptOutcome(const CellResult& r, bool cancel_requested);

// The delay before attempt n+1 after attempt n failed: backoff * 2^(n-1), at most 1 h.
int64_t RetryDelayMs(int64_t backoff_ms, int64_t n);

// Writes an attempt's captured output to STATE/tasks/t-ID.N.stdout and .stderr, each only if the
// stream produced bytes; *out_path / *err_path get the files written, "" if not.
void WriteAttemptOutput(const std::string& state_dir, int64_t id, int64_t n, const CellResult& r,
                        std::string* out_path, std::string* err_path);
std::string AttemptOutputPath(const std::string& state_dir, int64_t id, int64_t n, bool err);

// Retention (`corral daemon --retain`): each turn of the prune timer removes at most this many
// tasks (and on PostgreSQL, drains at most this many file names), so a turn of the loop stays
// short however much has expired.
inline constexpr int64_t kPruneBatch = 500;
// When to prune again after a turn that removed `removed` things: soon (10 ms) after a full
// batch, since more may have expired; else a tenth of the retention, between 1 s and 1 h.
int64_t NextPruneMs(int64_t retention_ms, int64_t removed);
// Unlinks pruned attempts' output files, each only if it is one of this daemon's: under
// STATE/tasks/, with no ".." in it (on PostgreSQL the names come from a database other daemons
// write). Called only once the rows naming them are durably gone: a crash in between leaves
// files, never rows pointing at nothing.
void RemoveOutputFiles(const std::string& state_dir, const std::vector<std::string>& paths);

// The page [offset, offset + max_bytes) of a finished attempt's output file ("": none kept) as
// the fields of a `task_output` answer: data, offset, next_offset, total_bytes, truncated, done.
nlohmann::json FinishedOutputPage(const std::string& path, int64_t total_bytes, bool truncated,
                                  uint64_t offset, uint64_t max_bytes);

// A task's answer gets the last attempt's exit_code, signal and reason (so that `corral wait` can
// exit like the task did; null before any attempt) and, if given, the list of attempts.
void AddLastAttempt(nlohmann::json* task, const nlohmann::json& last, nlohmann::json* attempts);

// A running attempt's page: live from its cell when this daemon runs it (`cell` not empty), else
// empty; done is false either way.
nlohmann::json RunningOutputPage(Supervisor* sup, const std::string& cell, bool stderr_stream,
                                 uint64_t offset, uint64_t max_bytes);
// The `task_output` answer for a task with no attempt yet.
nlohmann::json NoAttemptYet(bool task_done);

// Makes STATE and STATE/tasks, and takes STATE/lock_name (flock, held by the returned fd): one
// daemon per state dir, its cells and output files its own.
Result<UniqueFd> LockStateDir(const std::string& state_dir, const std::string& lock_name);

// Why `group set` must be refused (a bad name, a caller who may not), or nothing.
std::optional<Refusal> CheckGroupSet(const Caller& caller, const std::string& group,
                                     bool valid_name);

}  // namespace corral::queue
