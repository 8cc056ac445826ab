// What the tools share: the JSON Schemas of their arguments and answers, and the JSON views of a
// command (summary, status) built from the Supervisor's listing of it.
#include <cstdio>

#include "api/mcp/tool.h"
#include "cell/result_json.h"
#include "sys/clock.h"

namespace corral::mcp {
namespace {

// Nullable JSON Schema types (draft 2020-12 / 07 both accept a type array).
json Nullable(const char* type) { return json{{"type", json::array({type, "null"})}}; }

}  // namespace

// The result object of DESIGN.md, as ResultToJson writes it.
json ResultSchema() {
  json props = {
      {"id", {{"type", "string"}}},
      {"argv", {{"type", "array"}, {"items", {{"type", "string"}}}}},
      {"state",
       {{"type", "string"},
        {"enum", {"exited", "timed_out", "killed", "cancelled", "failed_to_start"}}}},
      {"exit_code", Nullable("integer")},
      {"signal", Nullable("string")},
      {"duration_s", {{"type", "number"}}},
      {"stdout", {{"type", "string"}}},
      {"stderr", {{"type", "string"}}},
      {"stdout_truncated", {{"type", "boolean"}}},
      {"stderr_truncated", {{"type", "boolean"}}},
      {"stdout_bytes", {{"type", "integer"}}},
      {"stderr_bytes", {{"type", "integer"}}},
      {"peak_memory_bytes", Nullable("integer")},
      {"cpu_user_s", Nullable("number")},
      {"cpu_system_s", Nullable("number")},
      {"pids_peak", Nullable("integer")},
      {"leftover",
       {{"type", "object"},
        {"properties", {{"killed", {{"type", "integer"}}}, {"stuck", {{"type", "integer"}}}}},
        {"required", {"killed", "stuck"}}}},
      {"containment", {{"type", "string"}}},
      {"reason", Nullable("string")},
      {"limits_hit", {{"type", "array"}, {"items", {{"type", "string"}}}}},
      {"error", Nullable("string")},
  };
  return {{"type", "object"},
          {"properties", props},
          {"required",
           {"id", "argv", "state", "exit_code", "signal", "duration_s", "stdout", "stderr",
            "stdout_truncated", "stderr_truncated", "stdout_bytes", "stderr_bytes", "leftover",
            "containment", "reason"}}};
}

json CommandInputSchema() {
  return {{"type", "object"},
          {"properties",
           {{"command",
             {{"type", "string"},
              {"description", "a shell command line, run with /bin/sh -c (give this or argv)"}}},
            {"argv",
             {{"type", "array"},
              {"items", {{"type", "string"}}},
              {"minItems", 1},
              {"description", "the program and its arguments, no shell (give this or command)"}}},
            {"cwd", {{"type", "string"}, {"description", "working directory"}}},
            {"env",
             {{"type", "object"},
              {"additionalProperties", {{"type", "string"}}},
              {"description", "variables to set, on top of the few the server passes through"}}},
            {"stdin", {{"type", "string"}, {"description", "bytes for stdin (default: empty)"}}},
            {"timeout_s",
             {{"type", "number"},
              {"exclusiveMinimum", 0},
              {"description",
               "end the whole process tree after this many seconds (default: the server's)"}}},
            {"max_output_bytes",
             {{"type", "integer"},
              {"minimum", 0},
              {"description", "keep at most this many bytes per stream; the rest is counted"}}}}},
          {"additionalProperties", false}};
}

json IdInputSchema(const json& extra) {
  json props = {{"id", {{"type", "string"}, {"description", "the id start_command returned"}}}};
  props.update(extra);
  return {{"type", "object"},
          {"properties", props},
          {"required", json::array({"id"})},
          {"additionalProperties", false}};
}

json StatusSchema() {
  return {{"type", "object"},
          {"properties",
           {{"id", {{"type", "string"}}},
            {"done", {{"type", "boolean"}}},
            {"state", {{"type", "string"}}},
            {"running_s", {{"type", "number"}}},
            {"result", {{"anyOf", json::array({ResultSchema(), {{"type", "null"}}})}}}}},
          {"required", {"id", "done", "state", "result"}}};
}

json SummarySchema() {
  return {{"type", "object"},
          {"properties",
           {{"id", {{"type", "string"}}},
            {"argv", {{"type", "array"}, {"items", {{"type", "string"}}}}},
            {"state", {{"type", "string"}}},
            {"pid", Nullable("integer")},
            {"background", {{"type", "boolean"}}},
            {"running_s", {{"type", "number"}}},
            {"stdout_bytes", {{"type", "integer"}}},
            {"stderr_bytes", {{"type", "integer"}}}}},
          {"required", {"id", "argv", "state"}}};
}

std::string LimitsText(const McpOptions& o) {
  char limits[200];
  if (o.default_timeout_ns > 0) {
    std::snprintf(limits, sizeof limits, "Default timeout %g s", NsToSeconds(o.default_timeout_ns));
  } else {
    std::snprintf(limits, sizeof limits, "No default timeout");
  }
  std::string text = limits;
  if (o.max_timeout_ns > 0) {
    std::snprintf(limits, sizeof limits, ", at most %g s", NsToSeconds(o.max_timeout_ns));
    text += limits;
  }
  text += "; output kept up to " + std::to_string(o.max_output_bytes) + " bytes per stream.";
  return text;
}

json CommandSummary(const Supervisor::Listing& l) {
  json j = {{"id", l.id},
            {"argv", l.argv},
            {"background", l.kept},
            {"pid", l.leader_pid > 0 ? json(l.leader_pid) : json(nullptr)},
            {"state", l.state},
            {"stdout_bytes", l.stdout_bytes},
            {"stderr_bytes", l.stderr_bytes}};
  if (l.result) {
    j["running_s"] = l.result->duration_s;
    if (!l.result->error.empty()) j["error"] = l.result->error;
  } else {
    j["running_s"] = l.age_s;
  }
  return j;
}

json CommandStatus(const CellResult& r) {
  return {{"id", r.id},
          {"done", true},
          {"state", CellStateName(r.state)},
          {"running_s", r.duration_s},
          {"result", ResultToJson(r)}};
}

json CommandStatus(const Supervisor::Listing& l) {
  if (l.result) return CommandStatus(*l.result);
  return {{"id", l.id},
          {"done", false},
          {"state", l.state},
          {"running_s", l.age_s},
          {"result", nullptr}};
}

std::string NoCommand(const Supervisor& sup, const std::string& id) {
  return "no command `" + id +
         "` (ids come from start_command; finished ones are kept for the last " +
         std::to_string(sup.options().keep_finished) + ")";
}

}  // namespace corral::mcp
