// The scan report as the JSON object of DESIGN.md "Host scan": zombies_by_parent, dstate,
// fd_pressure, pids, gpu, skipped — plus totals, zombie_chains and findings.
#pragma once

#include <nlohmann/json.hpp>

#include "scan/host_scan.h"

namespace corral::scan {

nlohmann::json ReportToJson(const ScanReport& r);

}  // namespace corral::scan
