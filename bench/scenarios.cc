#include "bench/scenarios.h"

namespace ds::bench {

const std::vector<std::string>& scenario_names() {
  static const std::vector<std::string> names = {"raw",    "ingest", "footprint", "e2e",
                                                 "fanout", "dead",   "catchup",   "fleet", "retention", "replicas"};
  return names;
}

Result<std::vector<Figure>> run_scenario(const std::string& name, BenchContext& ctx) {
  if (name == "raw") return run_raw(ctx);
  if (name == "ingest") return run_ingest(ctx);
  if (name == "footprint") return run_footprint(ctx);
  if (name == "e2e") return run_e2e(ctx);
  if (name == "fanout") return run_fanout(ctx);
  if (name == "dead") return run_dead(ctx);
  if (name == "catchup") return run_catchup(ctx);
  if (name == "fleet") return run_fleet(ctx);
  if (name == "retention") return run_retention(ctx);
  if (name == "replicas") return run_replicas(ctx);
  return Status::invalid_argument("unknown scenario '" + name + "'");
}

}  // namespace ds::bench
