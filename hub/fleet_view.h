#pragma once
// FleetView: one page of the fleet for the dashboard (GET /v1/fleet/agents),
// filtered, sorted and paged on the hub, so a browser watching 10,000 agents
// receives one page (at most kMaxFleetPageSize agents) per refresh, never
// the whole fleet.
//
//   q=<text>        agents whose id or host contains <text> (ASCII case-insensitive;
//                   an empty q matches every agent, as the page's empty search box)
//   state=<s>[,<s>] live, suspect, dead, retired (any of them)
//   problems=1      only agents needing attention: suspect or dead, degraded
//                   health, quarantined changes, or a type in freshness
//                   breach, held back or awaiting a snapshot
//   sort=<key>      id (default), host, state (dead, suspect, live, retired),
//                   last_beat, lag (largest lag_versions of its types),
//                   staleness (largest staleness_ms), quarantined
//   order=asc|desc  default asc; ties are broken by id, ascending, so pages
//                   do not overlap or skip while the fleet is unchanged
//   offset=<n>      agents skipped (an offset past the end gives an empty page)
//   limit=<n>       1 to kMaxFleetPageSize, default kDefaultFleetPageSize
//
// Any other parameter, a repeated one, or a value outside these is
// InvalidArgument with a message naming the parameter and what it accepts.
//
// Pure: no clock, thread or I/O; the caller passes the agents (the array
// AgentService::agents_json() returns) and the hub's wall time.

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "shared/config.h"
#include "shared/status.h"

namespace ds {

constexpr size_t kDefaultFleetPageSize = 50;
constexpr size_t kMaxFleetPageSize = 500;

enum class FleetSortKey { kId, kHost, kState, kLastBeat, kLag, kStaleness, kQuarantined };

struct FleetQuery {
  std::string text;              // q, lower-cased; "" matches every agent
  std::set<std::string> states;  // empty: every state
  bool problems_only = false;
  FleetSortKey sort = FleetSortKey::kId;
  bool descending = false;
  uint64_t offset = 0;
  size_t limit = kDefaultFleetPageSize;
};

// The query parameters of one request, in the order they came (already
// percent-decoded).
Result<FleetQuery> parse_fleet_query(const std::vector<std::pair<std::string, std::string>>& params);

// The page:
//   {now, total, matched, offset, limit, sort, order,
//    counts: {live, suspect, dead, retired},   // over the whole fleet
//    problems, breaches,                       // agents needing attention; agent x type pairs in breach
//    types: [{name, freshness_objective_ms}],
//    agents: [<agents_json() objects of this page>]}
nlohmann::json fleet_page(const nlohmann::json& agents, const FleetQuery& query,
                          const std::vector<TypeConfig>& types, int64_t now_ms);

}  // namespace ds
