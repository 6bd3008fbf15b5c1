// The `dead` scenario: what registered dead agents cost the ingest path, and,
// for contrast, what a naive hub that pushes every change to every
// registered agent would pay.

#include <set>
#include <thread>

#include "bench/bench_support.h"
#include "bench/log_tail.h"
#include "shared/codec.h"
#include "shared/names.h"
#include "testing/simulated_fleet.h"

namespace ds::bench {
namespace {

constexpr int64_t kHeartbeatMs = 200;
constexpr int kProducers = 4;

// Waits (bounded) until the hub has logged every agent of the fleet dead.
Result<double> wait_all_dead(ChildProcess& hub, const SimulatedFleet& fleet, double timeout_s) {
  LogTail log(hub.log_path());
  std::set<std::string> dead;
  const auto start = Clock::now();
  while (dead.size() < fleet.size()) {
    for (const std::string& line : log.new_lines()) {
      if (is_dead_transition(line)) dead.insert(agent_of_transition(line));
    }
    if (dead.size() >= fleet.size()) break;
    if (seconds_since(start) > timeout_s) {
      return Status::deadline_exceeded("the hub declared " + std::to_string(dead.size()) + " of " +
                                       std::to_string(fleet.size()) + " silent agents dead within " +
                                       std::to_string(static_cast<int>(timeout_s)) + " s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return seconds_since(start);
}

// docs/architecture.md ("Heartbeat"): dead agents lose their consumers. Asked
// of the server, not of the hub.
Status check_no_consumers_left(const BenchContext& ctx) {
  DS_ASSIGN_OR_RETURN(auto nc, connect(ctx, "bench-dead-consumers"));
  DS_ASSIGN_OR_RETURN(auto js, nc->jetstream());
  DS_ASSIGN_OR_RETURN(std::vector<std::string> names, js->consumer_names(stream_name(kType)));
  if (!names.empty()) {
    return Status::internal(std::to_string(names.size()) + " consumer(s) of dead agents remain on " +
                            stream_name(kType) + ", e.g. " + names.front());
  }
  return Status::ok();
}

// The naive hub's extra work per acknowledged batch: the batch's changes as
// one delta batch, published to the deliver subject of every registered
// agent (ds.push.<agent>.<type>), then a flush so the server has taken them
// all. Core NATS publishes: nobody listens (the agents are dead), so the
// server drops them; per-agent durable copies would cost more.
AfterAck naive_push_to(std::vector<std::string> agents) {
  return [agents = std::move(agents)](Connection& nc, const std::vector<IngestRecord>& records,
                                      const IngestReply& reply) -> Status {
    DeltaBatch batch;
    batch.type = kType;
    const int64_t now = wall_ms();
    uint64_t v = reply.first_version;
    for (const IngestRecord& r : records) {
      batch.changes.push_back(Change{v++, r.key, r.op, r.fields, r.ts.value_or(now), now});
    }
    const std::string bytes = encode(batch);
    const Subjects subjects;
    for (const std::string& agent : agents) DS_RETURN_IF_ERROR(nc.publish(subjects.push(agent, kType), bytes));
    return nc.flush(30000);
  };
}

}  // namespace

// Ingest rate (4 producers) on a hub with no agents; then `dead` simulated
// agents register and never answer a heartbeat, the hub declares them dead
// (and must have deleted their consumers), and the same load runs again;
// then once more with the naive push to every registered agent.
Result<std::vector<Figure>> run_dead(BenchContext& ctx) {
  ScratchDir dir(ctx.work_dir + "/dead");
  HubOptions hub_options;
  hub_options.heartbeat_ms = kHeartbeatMs;
  DS_ASSIGN_OR_RETURN(auto hub, start_hub(ctx, dir, hub_options));
  const uint64_t batch = ctx.smoke ? 20 : 100;
  DS_ASSIGN_OR_RETURN(IngestLoad live, ingest_for(ctx, kProducers, batch, ctx.seconds));

  SimulatedFleet::Options fleet_options;
  fleet_options.nats_url = ctx.nats_url;
  fleet_options.type = kType;
  fleet_options.id_prefix = "dead-";
  fleet_options.agents = ctx.smoke ? 20 : 1000;
  fleet_options.answer_heartbeats = false;
  DS_ASSIGN_OR_RETURN(auto fleet, SimulatedFleet::start(fleet_options));
  DS_RETURN_IF_ERROR(fleet->register_all(120));
  DS_ASSIGN_OR_RETURN(double detect_s, wait_all_dead(*hub, *fleet, 120));
  DS_RETURN_IF_ERROR(check_no_consumers_left(ctx));
  DS_ASSIGN_OR_RETURN(IngestLoad with_dead, ingest_for(ctx, kProducers, batch, ctx.seconds));

  std::vector<std::string> agents;
  for (size_t i = 0; i < fleet->size(); ++i) agents.push_back(fleet->id(i));
  DS_ASSIGN_OR_RETURN(IngestLoad naive, ingest_for(ctx, kProducers, batch, ctx.seconds, naive_push_to(agents)));

  const std::string n = std::to_string(fleet->size());
  const std::string b = ", batch " + std::to_string(batch);
  return std::vector<Figure>{
      {"dead", "0 dead agents" + b, live.records_per_s(), "records/s", std::nullopt},
      {"dead", n + " dead agents" + b, with_dead.records_per_s(), "records/s", live.records_per_s()},
      {"dead", "naive push to all " + n + " registered agents" + b, naive.records_per_s(), "records/s",
       live.records_per_s()},
      {"dead", "time until all " + n + " declared dead (heartbeat 200 ms)", detect_s, "s", std::nullopt}};
}

}  // namespace ds::bench
