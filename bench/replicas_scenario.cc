// The `replicas` scenario: ingest throughput with the type's stream on three
// replicas ([streams] replicas = 3) against one, in the same run, on the same
// 3-node JetStream cluster on loopback (testing/nats_cluster.h). An
// acknowledged ingest waits for the hub's commit and for JetStream's publish
// acknowledgement, which on three replicas comes once two nodes stored the
// batch; the figure shows what that costs. The R1 figure on the cluster is
// the baseline; the `ingest` scenario's figures on the lone broker are the
// other point of comparison.
//
// Then the same on three replicas with [ha] enabled: a hub of an HA pair
// (alone here, so it is active once it holds the lease) holds each group
// commit open until the streams acknowledged the group and publishes
// batches of consecutive versions only, with fencing headers
// (docs/architecture.md, "High availability: a standby hub"); its figure's
// baseline is the plain R3 figure of the same run.
//
// Each configuration gets a fresh hub (its stream deleted first, so it is
// created with that count) and 4 producers sending batches of 100 and of
// 1,000 records for --seconds each (--smoke: batches of 10 for 1 s).

#include <csignal>
#include <optional>
#include <string>

#include "bench/bench_support.h"
#include "testing/nats_cluster.h"

namespace ds::bench {

Result<std::vector<Figure>> run_replicas(BenchContext& ctx) {
  constexpr int kProducers = 4;
  DS_ASSIGN_OR_RETURN(std::unique_ptr<NatsCluster> cluster, start_cluster("replicas"));
  BenchContext on_cluster = ctx;
  on_cluster.nats_url = cluster->urls();
  on_cluster.nats_pid = 0;  // three brokers: no one process to measure
  const std::vector<uint64_t> batches = ctx.smoke ? std::vector<uint64_t>{10} : std::vector<uint64_t>{100, 1000};

  struct Setup {
    int64_t replicas;
    bool ha;
    std::string label;
  };
  const std::vector<Setup> setups = {{1, false, "1 replica"}, {3, false, "3 replicas"}, {3, true, "3 replicas, HA"}};
  std::vector<Figure> out;
  std::vector<std::vector<double>> figures;  // per setup, per batch size
  for (size_t s = 0; s < setups.size(); ++s) {
    const Setup& setup = setups[s];
    ScratchDir dir(ctx.work_dir + "/replicas-" + std::to_string(setup.replicas) + (setup.ha ? "-ha" : ""));
    DS_ASSIGN_OR_RETURN(auto hub,
                        start_hub(on_cluster, dir, HubOptions{.stream_replicas = setup.replicas, .ha = setup.ha}));
    figures.emplace_back();
    for (size_t i = 0; i < batches.size(); ++i) {
      DS_ASSIGN_OR_RETURN(IngestLoad load, ingest_for(on_cluster, kProducers, batches[i], ctx.seconds));
      Figure f{"replicas",
               "batch " + std::to_string(batches[i]) + ", " + std::to_string(kProducers) + " producers, " + setup.label,
               load.records_per_s(), "records/s", std::nullopt};
      // R3 against R1; HA against plain R3.
      if (s > 0) f.baseline = figures.at(s - 1).at(i);
      figures.back().push_back(f.value);
      out.push_back(std::move(f));
    }
    hub->stop(SIGTERM, kStopGraceMs);
  }
  return out;
}

}  // namespace ds::bench
