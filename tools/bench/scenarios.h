#pragma once
// The benchmark scenarios of issue 6. Each runs against real processes
// (nats-server, deltasync-hub, deltasync-agent) for a bounded time and
// returns its figures; a scenario that cannot produce a figure fails.
//
// Not thread-safe: one driver thread runs the scenarios one after another
// (a scenario may use worker threads internally and joins them).

#include <optional>
#include <string>
#include <vector>

#include "shared/status.h"

namespace ds::bench {

struct Figure {
  std::string scenario;
  std::string figure;
  double value = 0;
  std::string unit;
  std::optional<double> baseline;  // same unit, measured in the same run
};

struct BenchContext {
  std::string nats_url;     // the driver's own nats-server
  std::string bin_dir;      // where deltasync-hub / deltasync-agent live
  std::string work_dir;     // scratch space (hub stores, replicas, logs)
  double seconds = 5;       // measuring time per figure
  bool smoke = false;       // tiny sizes: proves the path works, not the speed
  std::optional<double> raw_records_per_s;  // set once `raw` ran
};

// Names in the order --all runs them.
const std::vector<std::string>& scenario_names();
Result<std::vector<Figure>> run_scenario(const std::string& name, BenchContext& ctx);

}  // namespace ds::bench
