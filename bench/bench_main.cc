// deltasync-bench: runs the benchmark scenarios of issue 6 against its own
// nats-server and its own hub/agent processes (found next to this binary),
// then prints a table (or JSON) of figures with their same-run baselines.

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/proc_info.h"
#include "bench/scenarios.h"
#include "shared/nats.h"
#include "testing/nats_server_process.h"
#include "testing/temp_dir.h"
#include "tools/table.h"

namespace {

std::string format_number(double v) {
  char buf[64];
  if (v >= 100) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.3g", v);
  }
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  ds::NatsLibrary nats_library;
  CLI::App app{"deltasync-bench: throughput, latency and footprint benchmarks with same-run baselines"};
  std::vector<std::string> scenarios;
  bool all = false;
  bool json = false;
  bool smoke = false;
  double seconds = 5;
  size_t fleet_agents = 10000;
  int fleet_replicas = 1;
  std::string names;
  for (const auto& n : ds::bench::scenario_names()) names += (names.empty() ? "" : ", ") + n;
  app.add_option("--scenario", scenarios, "a scenario to run (repeatable): " + names);
  app.add_flag("--all", all, "run every scenario");
  app.add_option("--seconds", seconds, "measuring time per figure")->capture_default_str()->check(
      CLI::Range(0.1, 600.0));
  app.add_option("--fleet-agents", fleet_agents, "simulated agents in the fleet scenario (the capacity runs of "
                                                 "docs/scaling.md)")
      ->capture_default_str()
      ->check(CLI::Range(static_cast<size_t>(1), static_cast<size_t>(200000)));
  app.add_option("--fleet-replicas", fleet_replicas, "1, or 3: the fleet scenario on its own 3-node cluster with "
                                                     "replicated streams and consumers")
      ->capture_default_str()
      ->check(CLI::IsMember({1, 3}));
  app.add_flag("--json", json, "print the figures as JSON instead of a table");
  app.add_flag("--smoke", smoke, "tiny sizes and 1 s per figure: proves every scenario runs, measures nothing");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  const auto& known = ds::bench::scenario_names();
  if (all || scenarios.empty()) scenarios = known;
  for (const auto& s : scenarios) {
    if (std::find(known.begin(), known.end(), s) == known.end()) {
      std::fprintf(stderr, "deltasync-bench: unknown scenario '%s'\n", s.c_str());
      return 2;
    }
  }
  // Ratios need the baseline of the same run: `raw` goes first whenever a
  // scenario compares with it.
  if (std::find(scenarios.begin(), scenarios.end(), "raw") == scenarios.end()) {
    scenarios.insert(scenarios.begin(), "raw");
  } else {
    std::stable_partition(scenarios.begin(), scenarios.end(), [](const std::string& s) { return s == "raw"; });
  }

  // The work dir and the broker are made once, here at start-up: failing to
  // make their directories throws.
  std::unique_ptr<ds::TempDir> work;
  std::unique_ptr<ds::NatsServerProcess> nats;
  try {
    work = std::make_unique<ds::TempDir>("deltasync-bench");
    nats = std::make_unique<ds::NatsServerProcess>();
  } catch (const std::runtime_error& e) {
    std::fprintf(stderr, "deltasync-bench: %s\n", e.what());
    return 1;
  }
  if (ds::Status s = nats->start(); !s.is_ok()) {
    std::fprintf(stderr, "deltasync-bench: nats-server: %s\n", s.to_string().c_str());
    return 1;
  }
  ds::bench::BenchContext ctx;
  ctx.nats_url = nats->url();
  ctx.nats_pid = nats->pid();
  ctx.bin_dir = ds::bench::self_dir();
  ctx.work_dir = work->path();
  ctx.smoke = smoke;
  // A smoke run: 50 agents, 6 on R3 (registration there runs at about 2 a second).
  ctx.fleet_agents = !smoke ? fleet_agents : fleet_replicas > 1 ? 6 : 50;
  ctx.fleet_replicas = fleet_replicas;
  ctx.seconds = smoke ? std::min(seconds, 1.0) : seconds;

  std::vector<ds::bench::Figure> figures;
  int failures = 0;
  for (const auto& name : scenarios) {
    std::fprintf(stderr, "deltasync-bench: running %s\n", name.c_str());
    auto r = ds::bench::run_scenario(name, ctx);
    if (!r.is_ok()) {
      std::fprintf(stderr, "deltasync-bench: %s failed: %s\n", name.c_str(), r.status().to_string().c_str());
      ++failures;
      continue;
    }
    for (auto& f : *r) figures.push_back(std::move(f));
  }

  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& f : figures) {
      nlohmann::json j = {{"scenario", f.scenario}, {"figure", f.figure}, {"value", f.value}, {"unit", f.unit}};
      if (f.baseline) {
        j["baseline"] = *f.baseline;
        if (*f.baseline > 0) j["ratio"] = f.value / *f.baseline;  // none against a zero baseline
      }
      out.push_back(std::move(j));
    }
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    ds::Table table({"scenario", "figure", "value", "unit", "baseline", "ratio"});
    for (const auto& f : figures) {
      table.add({f.scenario, f.figure, format_number(f.value), f.unit,
                 f.baseline ? format_number(*f.baseline) : "-",
                 f.baseline && *f.baseline > 0 ? format_number(f.value / *f.baseline) : "-"});
    }
    table.print();
  }
  return failures == 0 ? 0 : 1;
}
