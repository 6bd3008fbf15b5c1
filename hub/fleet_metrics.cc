#include "hub/fleet_metrics.h"

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "hub/liveness_tracker.h"

namespace ds {

void write_fleet_metrics(PrometheusWriter& w, const FleetSnapshot& fleet, const std::vector<TypeConfig>& types,
                         const AgentServiceCounters& counters) {
  using Kind = PrometheusWriter::Kind;
  // One view for every family, the same one GET /v1/agents and `deltasync
  // agents` show.
  const nlohmann::json& agents = fleet.agents;
  std::map<std::string, uint64_t> by_state;
  for (AgentState st : {AgentState::kLive, AgentState::kSuspect, AgentState::kDead, AgentState::kRetired}) {
    by_state[std::string(agent_state_name(st))] = 0;
  }
  for (const auto& a : agents) by_state[a["state"].get<std::string>()]++;
  w.family("deltasync_hub_agents", Kind::kGauge, "Agents the hub knows, by liveness state.");
  for (const auto& [state, n] : by_state) w.sample("deltasync_hub_agents", {{"state", state}}, static_cast<double>(n));

  w.family("deltasync_hub_agent_state", Kind::kGauge,
           "1 for each agent, labelled with its liveness state (live, suspect, dead, retired).");
  for (const auto& a : agents) {
    w.sample("deltasync_hub_agent_state", {{"agent", a["id"].get<std::string>()}, {"state", a["state"].get<std::string>()}},
             1);
  }
  auto per_agent = [&](std::string_view name, std::string_view help, const char* field) {
    w.family(name, Kind::kGauge, help);
    for (const auto& a : agents) {
      if (a["state"] == "retired") continue;
      w.sample(name, {{"agent", a["id"].get<std::string>()}}, a[field].get<double>());
    }
  };
  per_agent("deltasync_hub_agent_quarantined",
            "Quarantine entries (changes, undecodable batches, hook batches) the agent reports (its last heartbeat).",
            "quarantined");
  per_agent("deltasync_hub_agent_pending", "Deliveries the agent reports pending (its last heartbeat).", "pending");

  // value(type object) -> sample value, or nullopt for no sample.
  auto per_type = [&](std::string_view name, Kind kind, std::string_view help,
                      const std::function<std::optional<double>(const nlohmann::json&)>& value) {
    w.family(name, kind, help);
    for (const auto& a : agents) {
      if (a["state"] == "retired") continue;
      for (const auto& [type, t] : a["types"].items()) {
        if (auto v = value(t)) w.sample(name, {{"agent", a["id"].get<std::string>()}, {"type", type}}, *v);
      }
    }
  };
  auto number = [](const nlohmann::json& j, double scale = 1) -> std::optional<double> {
    if (!j.is_number()) return std::nullopt;
    return j.get<double>() * scale;
  };
  auto flag = [](const nlohmann::json& j) -> std::optional<double> { return j.get<bool>() ? 1 : 0; };
  per_type("deltasync_hub_agent_lag_versions", Kind::kGauge,
           "Versions of the type the agent lacks (0 when it has every change of its partition; an upper bound for "
           "a partitioned subscription).",
           [&](const nlohmann::json& t) { return number(t["lag_versions"]); });
  per_type("deltasync_hub_agent_lag_seconds", Kind::kGauge,
           "Business time between the newest change of the agent's partition and the newest it applied.",
           [&](const nlohmann::json& t) { return number(t["lag_ms"], 0.001); });
  per_type("deltasync_hub_agent_staleness_seconds", Kind::kGauge,
           "Age of the oldest change of the agent's partition it had not applied, measured by the hub at the "
           "agent's latest report (live) or now (suspect, dead); 0 when it had every change.",
           [&](const nlohmann::json& t) { return number(t["staleness_ms"], 0.001); });
  per_type("deltasync_hub_freshness_breach", Kind::kGauge,
           "1 while the agent's staleness for the type is above the type's freshness objective.",
           [&](const nlohmann::json& t) { return flag(t["freshness_breach"]); });
  per_type("deltasync_hub_freshness_breaches_total", Kind::kCounter,
           "Times the agent entered a breach of the type's freshness objective since the hub started "
           "(checked once per heartbeat interval).",
           [&](const nlohmann::json& t) { return number(t["freshness_breaches"]); });
  per_type("deltasync_hub_agent_held_back", Kind::kGauge,
           "1 while the agent's deltas of the type are held back (its schema differs from the hub's).",
           [&](const nlohmann::json& t) { return flag(t["held_back"]); });
  per_type("deltasync_hub_agent_awaiting_snapshot", Kind::kGauge,
           "1 while the agent must load a snapshot of the type before deltas flow again.",
           [&](const nlohmann::json& t) { return flag(t["awaiting_snapshot"]); });
  per_type("deltasync_hub_agent_type_quarantined", Kind::kGauge,
           "Quarantine entries of the type the agent reports (its last heartbeat; absent for agents that report "
           "a total only).",
           [&](const nlohmann::json& t) { return number(t["quarantined"]); });

  uint64_t consumers = 0;
  uint64_t on_feed = 0;
  for (const auto& a : agents) {
    for (const auto& [type, t] : a["types"].items()) {
      consumers += t["consumer"].get<bool>() ? 1 : 0;
      on_feed += t.value("live_feed", false) ? 1 : 0;
    }
  }
  w.gauge("deltasync_hub_consumers", "Agent consumers the hub keeps open on the broker.", static_cast<double>(consumers));
  w.gauge("deltasync_hub_live_feed",
          "Agent subscriptions (agent x type) that take the live feed instead of a consumer.",
          static_cast<double>(on_feed));
  w.family("deltasync_hub_freshness_objective_seconds", Kind::kGauge,
           "The freshness objective of each type ([[types]] freshness_objective).");
  for (const TypeConfig& t : types) {
    w.sample("deltasync_hub_freshness_objective_seconds", {{"type", t.name}},
             static_cast<double>(t.freshness_objective_s));
  }
  w.counter("deltasync_hub_refused_beats_total",
            "Heartbeat replies refused because their body named an agent other than their sender.",
            static_cast<double>(counters.refused_beats));
  w.counter("deltasync_hub_late_registrations_total",
            "Registrations whose agent had stopped waiting (its reply timeout passed): dropped before they began, cut "
            "short, or finished too late; the agent registers again.",
            static_cast<double>(counters.late_registrations));
  w.counter("deltasync_hub_consumer_copy_repair_orders_total",
            "Orders to an agent to register again because a copy of one of its consumers stayed behind on a NATS "
            "node that is up (a replicated stream; the registration recreates the consumers).",
            static_cast<double>(counters.copy_repair_orders));
}

}  // namespace ds
