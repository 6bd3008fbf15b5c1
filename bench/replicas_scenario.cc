// The `replicas` scenario: ingest throughput with the type's stream on three
// replicas ([streams] replicas = 3) against one, in the same run, on the same
// 3-node JetStream cluster on loopback (testing/nats_cluster.h). An
// acknowledged ingest waits for the hub's commit and for JetStream's publish
// acknowledgement, which on three replicas comes once two nodes stored the
// batch; the figure shows what that costs. The R1 figure on the cluster is
// the baseline; the `ingest` scenario's figures on the lone broker are the
// other point of comparison.
//
// Each replica count gets a fresh hub (its stream deleted first, so it is
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

  std::vector<Figure> out;
  std::vector<double> one_replica;  // per batch size, the baseline of the R3 figure
  for (int64_t replicas : {1, 3}) {
    ScratchDir dir(ctx.work_dir + "/replicas-" + std::to_string(replicas));
    DS_ASSIGN_OR_RETURN(auto hub, start_hub(on_cluster, dir, HubOptions{.stream_replicas = replicas}));
    for (size_t i = 0; i < batches.size(); ++i) {
      DS_ASSIGN_OR_RETURN(IngestLoad load, ingest_for(on_cluster, kProducers, batches[i], ctx.seconds));
      Figure f{"replicas",
               "batch " + std::to_string(batches[i]) + ", " + std::to_string(kProducers) + " producers, " +
                   std::to_string(replicas) + (replicas == 1 ? " replica" : " replicas"),
               load.records_per_s(), "records/s", std::nullopt};
      if (replicas == 1) {
        one_replica.push_back(f.value);
      } else {
        f.baseline = one_replica.at(i);
      }
      out.push_back(std::move(f));
    }
    hub->stop(SIGTERM, kStopGraceMs);
  }
  return out;
}

}  // namespace ds::bench
