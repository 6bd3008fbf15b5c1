// The `fleet` scenario: the hub's CPU and memory with 10,000 agents
// (--fleet-agents) heartbeating every 5 s (simulated in this process, real
// NATS traffic), against the idle hub; and how long the hub takes to call a
// silent agent dead. With --fleet-replicas 3 the same on a 3-node cluster on
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

}  // namespace

// A hub with the given heartbeat interval: CPU (% of one core) and RSS of
// the hub and of nats-server over a window while idle (no agent); then N
// simulated agents register and answer every heartbeat, and the same window
// is measured again; then one agent falls silent.
Result<std::vector<Figure>> run_fleet(BenchContext& ctx) {
  ScratchDir dir(ctx.work_dir + "/fleet");
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
  DS_ASSIGN_OR_RETURN(auto hub, start_hub(on_broker, dir, hub_options));
  std::vector<pid_t> pids = {hub->pid()};
  pids.insert(pids.end(), brokers.begin(), brokers.end());
  // The broker's share: its processes' figures summed (pids[1..]).
  const auto broker_sum = [](const std::vector<CpuWindow>& w) {
    CpuWindow sum;
    for (size_t i = 1; i < w.size(); ++i) {
      sum.cpu_percent += w[i].cpu_percent;
      sum.rss_mib += w[i].rss_mib;
    }
    return sum;
  };

  std::this_thread::sleep_for(std::chrono::duration<double>(interval_s));
  DS_ASSIGN_OR_RETURN(std::vector<CpuWindow> idle, measure_cpu(pids, window_s));

  SimulatedFleet::Options fleet_options;
  fleet_options.nats_url = on_broker.nats_url;
  fleet_options.type = kType;
  fleet_options.id_prefix = "fleet-";
  fleet_options.agents = agents;
  DS_ASSIGN_OR_RETURN(auto fleet, SimulatedFleet::start(fleet_options));
  const auto registering = Clock::now();
  DS_RETURN_IF_ERROR(fleet->register_all(kRegisterTimeoutS));
  const double register_s = seconds_since(registering);
  DS_ASSIGN_OR_RETURN(size_t consumers, consumers_on_stream(on_broker));
  if (consumers != agents) {
    return Status::internal(std::to_string(consumers) + " consumers on the stream for " + std::to_string(agents) +
                            " registered agents");
  }

  LogTail log(hub->log_path());
  (void)log.new_lines();
  std::this_thread::sleep_for(std::chrono::duration<double>(interval_s));  // past the registration burst
  const uint64_t answers_before = fleet->answers();
  DS_ASSIGN_OR_RETURN(std::vector<CpuWindow> loaded, measure_cpu(pids, window_s));
  const double answers_per_s = static_cast<double>(fleet->answers() - answers_before) / window_s;
  DS_RETURN_IF_ERROR(expect_no_deaths(log));

  DS_ASSIGN_OR_RETURN(Detection detection, detect_dead(*hub, *fleet, agents / 2, hub_options.heartbeat_ms));

  const std::string n = std::to_string(agents);
  const std::string beat = " (heartbeat " + std::to_string(hub_options.heartbeat_ms) + " ms)";
  const std::string broker = cluster ? "nats-server x3 (R3)" : "nats-server";
  const CpuWindow broker_idle = broker_sum(idle);
  const CpuWindow broker_loaded = broker_sum(loaded);
  return std::vector<Figure>{
      {"fleet", "registration of " + n + " simulated agents (4 in flight)", register_s, "s", std::nullopt},
      {"fleet", "registrations/s", static_cast<double>(agents) / register_s, "agents/s", std::nullopt},
      {"fleet", "heartbeat replies sent to the hub", answers_per_s, "replies/s", std::nullopt},
      {"fleet", "hub CPU, idle (no agents)", idle[0].cpu_percent, "% of a core", std::nullopt},
      {"fleet", "hub CPU, " + n + " agents" + beat, loaded[0].cpu_percent, "% of a core", idle[0].cpu_percent},
      {"fleet", "hub RSS, idle", idle[0].rss_mib, "MiB", std::nullopt},
      {"fleet", "hub RSS, " + n + " agents", loaded[0].rss_mib, "MiB", idle[0].rss_mib},
      {"fleet", broker + " CPU, idle", broker_idle.cpu_percent, "% of a core", std::nullopt},
      {"fleet", broker + " CPU, " + n + " agents (" + n + " consumers)", broker_loaded.cpu_percent, "% of a core",
       broker_idle.cpu_percent},
      {"fleet", broker + " RSS, " + n + " agents", broker_loaded.rss_mib, "MiB", broker_idle.rss_mib},
      {"fleet", "dead agent: its last answer -> hub says dead", detection.from_last_answer, "intervals",
       std::nullopt},
      {"fleet", "dead agent: first unanswered beat -> hub says dead", detection.from_first_unanswered, "intervals",
       std::nullopt}};
}

}  // namespace ds::bench
