// The `fanout` scenario: aggregate applied records/s when 1, 10 and 50 agent
// processes take the same type, against `raw` x agents.

#include <algorithm>
#include <thread>

#include "bench/bench_support.h"

namespace ds::bench {
namespace {

constexpr int kProducers = 4;
constexpr uint64_t kBatch = 1000;
constexpr double kApplyTimeoutS = 240;

// Hub + `agent_count` agents; producers ingest as fast as the hub
// acknowledges for ctx.seconds while the agents apply; then the time until
// the last agent's replica holds the last acknowledged version.
Result<std::vector<Figure>> run_fanout_with(BenchContext& ctx, int agent_count) {
  ScratchDir dir(ctx.work_dir + "/fanout-" + std::to_string(agent_count));
  DS_ASSIGN_OR_RETURN(auto hub, start_hub(ctx, dir));
  std::vector<std::string> ids;
  std::vector<std::unique_ptr<ChildProcess>> agents;
  for (int i = 0; i < agent_count; ++i) {
    ids.push_back("fanout-agent-" + std::to_string(i));
    DS_ASSIGN_OR_RETURN(auto a, spawn_agent(ctx, dir, ids.back()));
    agents.push_back(std::move(a));
  }
  for (auto& a : agents) DS_RETURN_IF_ERROR(wait_registered(*a));
  std::vector<std::unique_ptr<ReplicaProbe>> probes;
  for (const std::string& id : ids) {
    DS_ASSIGN_OR_RETURN(auto probe, ReplicaProbe::open(agent_replica(dir, id)));
    probes.push_back(std::move(probe));
  }

  DS_ASSIGN_OR_RETURN(IngestLoad load, ingest_for(ctx, kProducers, kBatch, ctx.seconds));
  std::vector<bool> current(probes.size(), false);
  size_t behind = probes.size();
  Clock::time_point all_current = load.start;
  while (behind > 0) {
    for (size_t i = 0; i < probes.size(); ++i) {
      if (current[i]) continue;
      auto v = probes[i]->version();
      if (v.is_ok() && *v >= load.last_version) {
        current[i] = true;
        --behind;
        all_current = Clock::now();
      }
    }
    if (behind > 0 && seconds_since(load.start) > ctx.seconds + kApplyTimeoutS) {
      return Status::deadline_exceeded(std::to_string(behind) + " of " + std::to_string(agent_count) +
                                       " agents did not reach version " + std::to_string(load.last_version));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const double applied = static_cast<double>(load.records) * agent_count;
  const double rate = applied / seconds_between(load.start, all_current);
  const std::string who = std::to_string(agent_count) + (agent_count == 1 ? " agent" : " agents");
  std::optional<double> baseline;
  if (ctx.raw_records_per_s) baseline = *ctx.raw_records_per_s * agent_count;
  return std::vector<Figure>{
      {"fanout", who + ": applied records/s, all agents (baseline raw x agents)", rate, "records/s", baseline},
      {"fanout", who + ": ingest acknowledged meanwhile, batch 1000", load.records_per_s(), "records/s",
       ctx.raw_records_per_s}};
}

}  // namespace

Result<std::vector<Figure>> run_fanout(BenchContext& ctx) {
  std::vector<Figure> out;
  const std::vector<int> counts = ctx.smoke ? std::vector<int>{1, 2} : std::vector<int>{1, 10, 50};
  for (int agents : counts) {
    DS_ASSIGN_OR_RETURN(auto figures, run_fanout_with(ctx, agents));
    for (auto& f : figures) out.push_back(std::move(f));
  }
  return out;
}

}  // namespace ds::bench
