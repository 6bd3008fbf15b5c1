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
//
// Then whether a standby keeps up: a fresh HA hub on three replicas takes
// batches of one record from 16 producers for --seconds, then a second HA
// hub (the same name, an empty store) starts beside it and stands by; the
// figure is the versions it stored per second from its start until it
// logs that it caught up with every stream, against the active's rate of
// the same batches. A standby must follow faster than its active commits,
// or it can never take over in time (docs/reliability.md, "A NATS
// cluster").
//
// Then what an agent's registration costs the broker: creates per second of
// consumers as the hub makes them (push, memory storage, as many copies as
// their stream), on a scratch stream of one replica, then of three, one at
// a time as the hub makes them today, and on three with 8 in flight. On
// nats-server 2.9.10 a new replicated consumer answers its create once its
// Raft group elected a leader, and its preferred node campaigns after a
// random 100-800 ms (raft.go, randCampaignTimeout): creates of different
// consumers wait for that independently, which the last figure shows
// (docs/scaling.md, "What one consumer per agent costs").
//
// Last, what the hub makes of it: as many simulated agents as creates above
// register with a fresh hub on three replicas, 32 registrations in flight;
// registrations per second against the one-at-a-time creates, which is
// what the hub made when it created consumers in turn.

#include <atomic>
#include <csignal>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_support.h"
#include "shared/names.h"
#include "testing/nats_cluster.h"
#include "testing/simulated_fleet.h"

namespace ds::bench {

namespace {

// Creates `count` consumers on a scratch stream of `replicas` copies,
// `in_flight` at a time (each worker on a JetStream context of its own);
// creates per second. The stream, and with it the consumers, is deleted
// afterwards.
Result<double> consumer_creates_per_s(const BenchContext& ctx, int replicas, size_t count, size_t in_flight) {
  DS_ASSIGN_OR_RETURN(auto nc, connect(ctx, "deltasync-bench-creates"));
  DS_ASSIGN_OR_RETURN(auto js, nc->jetstream());
  const std::string stream = "BENCH_CREATES_R" + std::to_string(replicas);
  StreamSpec spec{.name = stream, .subjects = {"bench.creates.>"}, .replicas = replicas};
  DS_RETURN_IF_ERROR(js->ensure_stream(spec));
  std::atomic<size_t> next{0};
  std::vector<Status> failures(in_flight);
  const auto t0 = Clock::now();
  {
    std::vector<std::jthread> workers;
    for (size_t w = 0; w < in_flight; ++w) {
      workers.emplace_back([&, w] {
        auto mine = nc->jetstream(30000);  // a create can wait for a whole election
        if (!mine.is_ok()) {
          failures[w] = mine.status();
          return;
        }
        for (size_t i = next++; i < count; i = next++) {
          ConsumerSpec c;
          c.durable = "bench_" + std::to_string(i);
          c.filter_subject = "bench.creates.>";
          c.deliver_subject = "bench.push." + std::to_string(i);
          c.replicas = replicas;
          if (Status s = (*mine)->add_consumer(stream, c); !s.is_ok()) {
            failures[w] = s;
            return;
          }
        }
      });
    }
  }
  const double elapsed_s = seconds_since(t0);
  DS_RETURN_IF_ERROR(js->delete_stream(stream));
  for (const Status& f : failures) DS_RETURN_IF_ERROR(f.with_context("create consumers on " + stream));
  return static_cast<double>(count) / elapsed_s;
}

}  // namespace

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

  {
    constexpr int kStandbyProducers = 16;
    ScratchDir active_dir(ctx.work_dir + "/replicas-standby-active");
    ScratchDir standby_dir(ctx.work_dir + "/replicas-standby");
    const HubOptions ha{.stream_replicas = 3, .ha = true};
    DS_ASSIGN_OR_RETURN(auto active, start_hub(on_cluster, active_dir, ha));
    DS_ASSIGN_OR_RETURN(IngestLoad load, ingest_for(on_cluster, kStandbyProducers, 1, ctx.seconds));
    // Group commit may put several producers' records into one message.
    DS_ASSIGN_OR_RETURN(auto nc, connect(on_cluster, "deltasync-bench-standby"));
    DS_ASSIGN_OR_RETURN(auto js, nc->jetstream());
    DS_ASSIGN_OR_RETURN(StreamState stream, js->stream_state(stream_name(kType)));
    const auto spawned = Clock::now();
    HubOptions beside = ha;
    beside.fresh = false;  // the active's stream is what it follows
    DS_ASSIGN_OR_RETURN(auto standby, spawn_hub(on_cluster, standby_dir, beside));
    Status caught_up = standby->wait_for_log("ha: standby: caught up with every stream", 120000);
    const double follow_s = seconds_since(spawned);
    standby->stop(SIGTERM, kStopGraceMs);  // first, so it does not take over from the active
    active->stop(SIGTERM, kStopGraceMs);
    DS_RETURN_IF_ERROR(caught_up);
    out.push_back({"replicas", "batch 1, " + std::to_string(kStandbyProducers) + " producers, 3 replicas, HA",
                   load.records_per_s(), "records/s", std::nullopt});
    out.push_back({"replicas",
                   "a standby's catch-up from its start (" + std::to_string(load.last_version) + " versions in " +
                       std::to_string(stream.messages) + " messages)",
                   static_cast<double>(load.last_version) / follow_s, "versions/s", load.records_per_s()});
  }

  const size_t creates = ctx.smoke ? 4 : 40;
  constexpr size_t kInFlight = 8;
  DS_ASSIGN_OR_RETURN(double r1, consumer_creates_per_s(on_cluster, 1, creates, 1));
  DS_ASSIGN_OR_RETURN(double r3, consumer_creates_per_s(on_cluster, 3, creates, 1));
  DS_ASSIGN_OR_RETURN(double r3_parallel, consumer_creates_per_s(on_cluster, 3, creates, kInFlight));
  const std::string of = std::to_string(creates) + " consumer creates";
  out.push_back({"replicas", of + ", 1 replica, one at a time", r1, "creates/s", std::nullopt});
  out.push_back({"replicas", of + ", 3 replicas, one at a time", r3, "creates/s", r1});
  out.push_back({"replicas", of + ", 3 replicas, " + std::to_string(kInFlight) + " in flight", r3_parallel,
                 "creates/s", r3});

  {
    // More registrations in flight than the hub takes at once, so the
    // hub's batches are the bound, not the agents.
    constexpr size_t kRegistering = 32;
    ScratchDir dir(ctx.work_dir + "/replicas-register");
    DS_ASSIGN_OR_RETURN(auto hub, start_hub(on_cluster, dir, HubOptions{.stream_replicas = 3}));
    SimulatedFleet::Options fleet_options;
    fleet_options.nats_url = on_cluster.nats_url;
    fleet_options.type = kType;
    fleet_options.id_prefix = "replicas-";
    fleet_options.agents = creates;
    fleet_options.connections = kRegistering;
    DS_ASSIGN_OR_RETURN(auto fleet, SimulatedFleet::start(fleet_options));
    const auto registering = Clock::now();
    const Status registered = fleet->register_all(120);
    const double register_s = seconds_since(registering);
    hub->stop(SIGTERM, kStopGraceMs);
    DS_RETURN_IF_ERROR(registered);
    out.push_back({"replicas",
                   "registration of " + std::to_string(creates) + " simulated agents with the hub, 3 replicas (" +
                       std::to_string(kRegistering) + " in flight)",
                   static_cast<double>(creates) / register_s, "agents/s", r3});
  }
  return out;
}

}  // namespace ds::bench
