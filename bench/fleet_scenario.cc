// The `fleet` scenario: the hub's CPU and memory with 10,000 agents
// (--fleet-agents) heartbeating every 5 s (simulated in this process, real
// NATS traffic), against the idle hub, with the live feed (no consumer for
// a current agent) against one consumer per agent in the same run; and how
// long the hub takes to call a silent agent dead. With --fleet-replicas 3 the same on a 3-node cluster on
// loopback (testing/nats_cluster.h) with R3 streams and consumers, the
// broker's figures summed over its three nodes.

#include <algorithm>
#include <memory>
#include <thread>

#include "bench/bench_support.h"
#include "bench/log_tail.h"
#include "shared/names.h"
#include "testing/nats_cluster.h"
#include "testing/simulated_fleet.h"

namespace ds::bench {
namespace {

constexpr double kRegisterTimeoutS = 400;

// Fails when the hub declared any agent dead in these log lines: the window
// would then not measure a fleet of live agents.
Status expect_no_deaths(LogTail& log) {
  size_t dead = 0;
  std::string example;
  for (const std::string& line : log.new_lines()) {
    if (!is_dead_transition(line)) continue;
    ++dead;
    example = agent_of_transition(line);
  }
  if (dead > 0) {
    return Status::internal("the hub declared " + std::to_string(dead) + " answering agent(s) dead (e.g. " + example +
                            "): it did not keep up with the fleet's heartbeats");
  }
  return Status::ok();
}

Result<size_t> consumers_on_stream(const BenchContext& ctx) {
  DS_ASSIGN_OR_RETURN(auto nc, connect(ctx, "bench-fleet-consumers"));
  DS_ASSIGN_OR_RETURN(auto js, nc->jetstream(30000));
  DS_ASSIGN_OR_RETURN(std::vector<std::string> names, js->consumer_names(stream_name(kType)));
  return names.size();
}

struct Detection {
  double from_last_answer = 0;       // in heartbeat intervals
  double from_first_unanswered = 0;  // in heartbeat intervals
};

// One agent answers one more heartbeat and then none; waits (bounded) for
// the hub's "-> dead" line about it.
Result<Detection> detect_dead(ChildProcess& hub, SimulatedFleet& fleet, size_t agent, int64_t interval_ms) {
  LogTail log(hub.log_path());
  (void)log.new_lines();  // only what the hub says from now on
  fleet.fall_silent_after_next_answer(agent);
  const double interval_s = static_cast<double>(interval_ms) / 1000.0;
  const auto start = Clock::now();
  const auto poll = std::chrono::milliseconds(std::max<int64_t>(1, interval_ms / 200));
  for (;;) {
    for (const std::string& line : log.new_lines()) {
      if (!is_dead_transition(line) || agent_of_transition(line) != fleet.id(agent)) continue;
      const auto seen = Clock::now();
      const auto last = fleet.last_answer(agent);
      const auto first = fleet.first_unanswered(agent);
      if (!last || !first) return Status::internal("declared dead before it fell silent: " + line);
      return Detection{seconds_between(*last, seen) / interval_s, seconds_between(*first, seen) / interval_s};
    }
    if (seconds_since(start) > 12 * interval_s) {
      return Status::deadline_exceeded("the hub did not declare the silent agent " + fleet.id(agent) +
                                       " dead within 12 heartbeat intervals");
    }
    std::this_thread::sleep_for(poll);
  }
}

// One pass of the fleet: a hub of its own in `dir` (a fresh stream), N
// simulated agents that register and answer every heartbeat, then a window
// measured with them.
struct Pass {
  double register_s = 0;
  size_t consumers = 0;  // on the stream once every agent registered
  size_t on_feed = 0;    // agents the hub gave the live feed
  double answers_per_s = 0;
  std::vector<CpuWindow> loaded;  // hub, then the broker's processes
  std::unique_ptr<ChildProcess> hub;
  std::unique_ptr<SimulatedFleet> fleet;
};

Result<Pass> run_pass(const BenchContext& on_broker, const ScratchDir& dir, const HubOptions& hub_options,
                      const std::vector<pid_t>& brokers, size_t agents, bool live_feed, double window_s) {
  const double interval_s = static_cast<double>(hub_options.heartbeat_ms) / 1000.0;
  Pass pass;
  DS_ASSIGN_OR_RETURN(pass.hub, start_hub(on_broker, dir, hub_options));
  std::vector<pid_t> pids = {pass.hub->pid()};
  pids.insert(pids.end(), brokers.begin(), brokers.end());
  SimulatedFleet::Options fleet_options;
  fleet_options.nats_url = on_broker.nats_url;
  fleet_options.type = kType;
  fleet_options.id_prefix = "fleet-";
  fleet_options.agents = agents;
  fleet_options.live_feed = live_feed;
  DS_ASSIGN_OR_RETURN(pass.fleet, SimulatedFleet::start(fleet_options));
  const auto registering = Clock::now();
  DS_RETURN_IF_ERROR(pass.fleet->register_all(kRegisterTimeoutS));
  pass.register_s = seconds_since(registering);
  DS_ASSIGN_OR_RETURN(pass.consumers, consumers_on_stream(on_broker));
  pass.on_feed = pass.fleet->on_live_feed();
  // With the feed every agent is current (nothing was ingested): none has a
  // consumer. Without it every agent has one. (Checked, not reported: a
  // figure of 0 has no ratio.)
  const size_t want_consumers = live_feed ? 0 : agents;
  if (pass.consumers != want_consumers || pass.on_feed != agents - want_consumers) {
    return Status::internal(std::to_string(pass.consumers) + " consumers on the stream and " +
                            std::to_string(pass.on_feed) + " agents on the live feed for " + std::to_string(agents) +
                            " registered agents" + (live_feed ? " asking for the feed" : ""));
  }
  LogTail log(pass.hub->log_path());
  (void)log.new_lines();
  std::this_thread::sleep_for(std::chrono::duration<double>(interval_s));  // past the registration burst
  const uint64_t answers_before = pass.fleet->answers();
  DS_ASSIGN_OR_RETURN(pass.loaded, measure_cpu(pids, window_s));
  pass.answers_per_s = static_cast<double>(pass.fleet->answers() - answers_before) / window_s;
  DS_RETURN_IF_ERROR(expect_no_deaths(log));
  return pass;
}

}  // namespace

// A hub with the given heartbeat interval: CPU (% of one core) and RSS of
// the hub and of nats-server over a window while idle (no agent); then N
// simulated agents that ask for the live feed register and answer every
// heartbeat, and the same window is measured again (the design for large
// fleets: no consumer for a current agent); then one agent falls silent.
// The same-run baseline: the same fleet without the feed, one consumer per
// agent, on a hub and stream of their own (the broker measured after the
// first pass, so what that pass left counts against the feed, not for it).
Result<std::vector<Figure>> run_fleet(BenchContext& ctx) {
  ScratchDir dir(ctx.work_dir + "/fleet");
  ScratchDir baseline_dir(ctx.work_dir + "/fleet-consumers");
  HubOptions hub_options;
  hub_options.heartbeat_ms = ctx.smoke ? 200 : 5000;
  hub_options.stream_replicas = ctx.fleet_replicas;
  const double interval_s = static_cast<double>(hub_options.heartbeat_ms) / 1000.0;
  const size_t agents = ctx.fleet_agents;
  // At least 4 beats per window, so it holds whole heartbeat rounds.
  const double window_s = std::max(ctx.seconds, 4 * interval_s);
  // The broker: the benchmark's own, or a cluster of three of this run's.
  BenchContext on_broker = ctx;
  std::unique_ptr<NatsCluster> cluster;
  std::vector<pid_t> brokers = {ctx.nats_pid};
  if (ctx.fleet_replicas > 1) {
    DS_ASSIGN_OR_RETURN(cluster, start_cluster("fleet"));
    on_broker.nats_url = cluster->urls();
    on_broker.nats_pid = 0;
    brokers.clear();
    for (int i = 0; i < cluster->size(); ++i) brokers.push_back(cluster->node(i).pid());
  }
  // The broker's share: its processes' figures summed (w[1..]).
  const auto broker_sum = [](const std::vector<CpuWindow>& w) {
    CpuWindow sum;
    for (size_t i = 1; i < w.size(); ++i) {
      sum.cpu_percent += w[i].cpu_percent;
      sum.rss_mib += w[i].rss_mib;
    }
    return sum;
  };

  std::vector<CpuWindow> idle;
  {
    DS_ASSIGN_OR_RETURN(auto idle_hub, start_hub(on_broker, dir, hub_options));
    std::vector<pid_t> pids = {idle_hub->pid()};
    pids.insert(pids.end(), brokers.begin(), brokers.end());
    std::this_thread::sleep_for(std::chrono::duration<double>(interval_s));
    DS_ASSIGN_OR_RETURN(idle, measure_cpu(pids, window_s));
  }
  DS_ASSIGN_OR_RETURN(Pass feed, run_pass(on_broker, dir, hub_options, brokers, agents, true, window_s));
  DS_ASSIGN_OR_RETURN(Detection detection,
                      detect_dead(*feed.hub, *feed.fleet, agents / 2, hub_options.heartbeat_ms));
  feed.fleet.reset();
  feed.hub.reset();
  DS_ASSIGN_OR_RETURN(Pass consumers,
                      run_pass(on_broker, baseline_dir, hub_options, brokers, agents, false, window_s));

  const std::string n = std::to_string(agents);
  const std::string beat = " (heartbeat " + std::to_string(hub_options.heartbeat_ms) + " ms)";
  const std::string broker = cluster ? "nats-server x3 (R3)" : "nats-server";
  const CpuWindow broker_idle = broker_sum(idle);
  const CpuWindow broker_feed = broker_sum(feed.loaded);
  const CpuWindow broker_consumers = broker_sum(consumers.loaded);
  const std::string against = "; baseline: one consumer per agent";
  return std::vector<Figure>{
      {"fleet", "registration of " + n + " simulated agents (4 in flight; live feed" + against + ")", feed.register_s,
       "s", consumers.register_s},
      {"fleet", "registrations/s (live feed" + against + ")", static_cast<double>(agents) / feed.register_s,
       "agents/s", static_cast<double>(agents) / consumers.register_s},
      {"fleet", "heartbeat replies sent to the hub", feed.answers_per_s, "replies/s", std::nullopt},
      {"fleet", "hub CPU, idle (no agents)", idle[0].cpu_percent, "% of a core", std::nullopt},
      {"fleet", "hub CPU, " + n + " agents" + beat + " (live feed" + against + ")", feed.loaded[0].cpu_percent,
       "% of a core", consumers.loaded[0].cpu_percent},
      {"fleet", "hub RSS, idle", idle[0].rss_mib, "MiB", std::nullopt},
      {"fleet", "hub RSS, " + n + " agents (live feed" + against + ")", feed.loaded[0].rss_mib, "MiB",
       consumers.loaded[0].rss_mib},
      {"fleet", broker + " CPU, idle", broker_idle.cpu_percent, "% of a core", std::nullopt},
      {"fleet", broker + " CPU, " + n + " agents (live feed" + against + ")", broker_feed.cpu_percent, "% of a core",
       broker_consumers.cpu_percent},
      {"fleet", broker + " RSS, idle", broker_idle.rss_mib, "MiB", std::nullopt},
      {"fleet", broker + " RSS, " + n + " agents (live feed" + against + ")", broker_feed.rss_mib, "MiB",
       broker_consumers.rss_mib},
      {"fleet", "dead agent: its last answer -> hub says dead", detection.from_last_answer, "intervals",
       std::nullopt},
      {"fleet", "dead agent: first unanswered beat -> hub says dead", detection.from_first_unanswered, "intervals",
       std::nullopt}};
}

}  // namespace ds::bench
