#pragma once
// The benchmark scenarios of issue 6. Each runs against real processes
// (nats-server, deltasync-hub, deltasync-agent) for a bounded time and
// returns its figures; a scenario that cannot produce a figure fails.
//
// Not thread-safe: one driver thread runs the scenarios one after another
// (a scenario may use worker threads internally and joins them).

#include <sys/types.h>

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
  pid_t nats_pid = 0;       // its process (CPU and memory of the broker)
  std::string bin_dir;      // where deltasync-hub / deltasync-agent live
  std::string work_dir;     // scratch space (hub stores, replicas, logs)
  double seconds = 5;       // measuring time per figure
  bool smoke = false;       // tiny sizes: proves the path works, not the speed
  size_t fleet_agents = 10000;  // simulated agents in `fleet` (--fleet-agents; a smoke run: 50, 6 on R3)
  int fleet_replicas = 1;       // 3: `fleet` on its own 3-node cluster with R3 streams (--fleet-replicas)
  std::optional<double> raw_records_per_s;  // set once `raw` ran
};

// Names in the order --all runs them.
const std::vector<std::string>& scenario_names();
Result<std::vector<Figure>> run_scenario(const std::string& name, BenchContext& ctx);

// The scenarios run_scenario() dispatches to (docs/benchmarks.md says what
// each measures and how). `raw` sets ctx.raw_records_per_s.
Result<std::vector<Figure>> run_raw(BenchContext& ctx);        // throughput_scenarios.cc
Result<std::vector<Figure>> run_ingest(BenchContext& ctx);     // throughput_scenarios.cc
Result<std::vector<Figure>> run_e2e(BenchContext& ctx);        // throughput_scenarios.cc
Result<std::vector<Figure>> run_footprint(BenchContext& ctx);  // footprint_scenario.cc
Result<std::vector<Figure>> run_fanout(BenchContext& ctx);     // fanout_scenario.cc
Result<std::vector<Figure>> run_dead(BenchContext& ctx);       // dead_scenario.cc
Result<std::vector<Figure>> run_catchup(BenchContext& ctx);    // catchup_scenario.cc
Result<std::vector<Figure>> run_fleet(BenchContext& ctx);      // fleet_scenario.cc
Result<std::vector<Figure>> run_retention(BenchContext& ctx);  // retention_scenario.cc
Result<std::vector<Figure>> run_replicas(BenchContext& ctx);   // replicas_scenario.cc

}  // namespace ds::bench
