#include "cell/result_json.h"

#include "sys/pidfd.h"

namespace corral {

const char* CellStateName(CellState s) {
  switch (s) {
    case CellState::kExited: return "exited";
    case CellState::kTimedOut: return "timed_out";
    case CellState::kKilled: return "killed";
    case CellState::kCancelled: return "cancelled";
    case CellState::kFailedToStart: return "failed_to_start";
  }
  return "exited";
}

int CellResult::ShellExitCode() const {
  switch (state) {
    case CellState::kTimedOut: return 124;
    case CellState::kFailedToStart: return exit_code.value_or(125);
    default: break;
  }
  if (exit_code) return *exit_code;
  if (signal) return 128 + *signal;
  return 125;
}

nlohmann::json ResultToJson(const CellResult& r) {
  using nlohmann::json;
  json j;
  j["id"] = r.id;
  j["argv"] = r.argv;
  j["state"] = CellStateName(r.state);
  j["exit_code"] = r.exit_code ? json(*r.exit_code) : json(nullptr);
  j["signal"] = r.signal ? json(SignalName(*r.signal)) : json(nullptr);
  j["duration_s"] = r.duration_s;
  j["stdout"] = r.stdout_data;
  j["stderr"] = r.stderr_data;
  j["stdout_truncated"] = r.stdout_truncated;
  j["stderr_truncated"] = r.stderr_truncated;
  j["stdout_bytes"] = r.stdout_bytes;
  j["stderr_bytes"] = r.stderr_bytes;
  j["peak_memory_bytes"] = r.peak_memory_bytes ? json(*r.peak_memory_bytes) : json(nullptr);
  j["cpu_user_s"] = r.cpu_user_s ? json(*r.cpu_user_s) : json(nullptr);
  j["cpu_system_s"] = r.cpu_system_s ? json(*r.cpu_system_s) : json(nullptr);
  j["pids_peak"] = r.pids_peak ? json(*r.pids_peak) : json(nullptr);
  json stuck = json::array();
  for (const StuckProcess& s : r.stuck) {
    stuck.push_back({{"pid", s.pid},
                     {"comm", s.comm},
                     {"state", std::string(1, s.state)},
                     {"wchan", s.wchan},
                     {"holds_output", s.holds_output}});
  }
  j["leftover"] = {{"killed", r.leftover_killed},
                   {"stuck", static_cast<int>(r.stuck.size())},
                   {"stuck_processes", stuck}};
  j["containment"] = r.containment;
  j["reason"] = r.reason.empty() ? json(nullptr) : json(r.reason);
  j["limits_hit"] = r.limits_hit;
  j["error"] = r.error.empty() ? json(nullptr) : json(r.error);
  return j;
}

std::string DumpJson(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace corral
