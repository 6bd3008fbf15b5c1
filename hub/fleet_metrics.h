#pragma once
// The fleet series of the hub's GET /metrics (deltasync_hub_agents,
// deltasync_hub_agent_*, deltasync_hub_freshness_*, deltasync_hub_consumers,
// deltasync_hub_refused_beats_total, deltasync_hub_late_registrations_total,
// deltasync_hub_consumer_copy_repair_orders_total; docs/operations.md,
// "Monitoring"),
// written from one FleetSnapshot (hub/fleet_view.h): every family reads the
// same view GET /v1/agents and `deltasync agents` show, and a scrape costs
// the HTTP thread the writing, never a build of the view.
//
// Thread-safety: a pure function of its arguments.

#include <cstdint>
#include <vector>

#include "hub/fleet_view.h"
#include "shared/config.h"
#include "shared/prometheus.h"

namespace ds {

// AgentService's counters of the same names.
struct AgentServiceCounters {
  uint64_t refused_beats = 0;
  uint64_t late_registrations = 0;
  uint64_t copy_repair_orders = 0;
};

// `types`: the hub's configured types (their freshness objectives).
void write_fleet_metrics(PrometheusWriter& w, const FleetSnapshot& fleet, const std::vector<TypeConfig>& types,
                         const AgentServiceCounters& counters);

}  // namespace ds
