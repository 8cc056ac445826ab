#include "scan/report_json.h"

namespace corral::scan {

namespace {

// Process names and command lines are arbitrary bytes; JSON needs valid UTF-8. Bytes that do
// not form UTF-8 become U+FFFD so that dump() never throws on a hostile comm.
std::string Utf8(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (static_cast<unsigned char>(s[i + k]) >> 6) == 2;
    }
    if (ok) {
      out.append(s, i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

double Round3(double v) { return static_cast<double>(static_cast<long long>(v * 1000)) / 1000; }

}  // namespace

nlohmann::json ReportToJson(const ScanReport& r) {
  using nlohmann::json;
  json zp = json::array();
  for (const auto& z : r.zombies_by_parent) {
    zp.push_back({{"pid", z.pid},
                  {"comm", Utf8(z.comm)},
                  {"cmdline", Utf8(z.cmdline)},
                  {"state", std::string(1, z.state)},
                  {"zombies", z.zombies},
                  {"oldest_s", Round3(z.oldest_s)},
                  {"sample_pids", z.sample},
                  {"advice", Utf8(z.advice)}});
  }
  json chains = json::array();
  for (const auto& c : r.zombie_chains) {
    chains.push_back({{"pid", c.pid},
                      {"comm", Utf8(c.comm)},
                      {"zombies", c.zombies},
                      {"reaper_pid", c.reaper},
                      {"reaper_comm", Utf8(c.reaper_comm)}});
  }
  json ds = json::array();
  for (const auto& d : r.dstate) {
    ds.push_back({{"pid", d.pid},
                  {"tid", d.tid},
                  {"ppid", d.ppid},
                  {"comm", Utf8(d.comm)},
                  {"wchan", Utf8(d.wchan)},
                  {"since_s", Round3(d.since_s)}});
  }
  json fds = json::array();
  for (const auto& f : r.fd_pressure) {
    fds.push_back({{"pid", f.pid},
                   {"comm", Utf8(f.comm)},
                   {"open_fds", f.open_fds},
                   {"soft_limit", f.soft_limit},
                   {"hard_limit", f.hard_limit}});
  }
  json cgs = json::array();
  for (const auto& c : r.pids.cgroups) {
    cgs.push_back({{"path", Utf8(c.path)},
                   {"hierarchy", c.hierarchy},
                   {"current", c.current},
                   {"max", c.max}});
  }
  json devs = json::array();
  for (const auto& d : r.gpu.devices) {
    json procs = json::array();
    for (const auto& p : d.processes) {
      procs.push_back({{"pid", p.pid},
                       {"comm", Utf8(p.comm)},
                       {"used_bytes", p.used_bytes},
                       {"state", p.state}});
    }
    devs.push_back({{"index", d.index},
                    {"name", Utf8(d.name)},
                    {"total_bytes", d.total_bytes},
                    {"used_bytes", d.used_bytes},
                    {"orphaned_bytes", d.orphaned_bytes},
                    {"processes", procs}});
  }
  json skipped = json::array();
  for (const auto& s : r.skipped) {
    skipped.push_back(
        {{"pid", s.pid}, {"comm", Utf8(s.comm)}, {"what", s.what}, {"why", Utf8(s.why)}});
  }
  json findings = json::array();
  for (const auto& f : r.findings) findings.push_back(Utf8(f));
  return json{{"timestamp", Round3(r.timestamp_s)},
              {"duration_s", r.duration_s},
              {"processes", r.processes},
              {"zombies", r.zombies},
              {"zombies_by_parent", zp},
              {"zombie_chains", chains},
              {"dstate_total", r.dstate_total},
              {"dstate", ds},
              {"fd_pressure", fds},
              {"fd_max_ratio", Round3(r.fd_max_ratio)},
              {"pids",
               {{"used", r.pids.used},
                {"max", r.pids.max},
                {"threads_max", r.pids.threads_max},
                {"processes", r.pids.processes},
                {"cgroups", cgs}}},
              {"gpu",
               {{"available", r.gpu.available},
                {"status", Utf8(r.gpu.status)},
                {"orphaned_bytes", r.gpu.orphaned_bytes},
                {"devices", devs}}},
              {"skipped", skipped},
              {"findings", findings},
              {"over_threshold", !r.findings.empty()}};
}

}  // namespace corral::scan
