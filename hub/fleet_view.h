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
// Two steps, split by cost and by thread:
//   - FleetSnapshot::build takes the whole fleet's view (the array
//     AgentService::agents_json() returns) and computes once what every page
//     needs: each agent's sort keys, lower-cased id and host, whether it needs
//     attention, and the fleet-wide counts. It is the expensive step (the view
//     itself costs the most; about 120 ms at 10,000 agents on a loaded 2-core
//     machine) and runs on the agent service's thread, which publishes the
//     result (hub/agent_service.h, "Fleet snapshot").
//   - fleet_page only filters, sorts and pages a snapshot and serializes the
//     agents of one page: what the HTTP thread does per request.
// A snapshot is immutable once built (shared as std::shared_ptr<const
// FleetSnapshot>), so any number of threads may read it without a lock.
//
// Pure: no clock, thread or I/O; the caller passes the hub's wall time.

#include <cstddef>
#include <cstdint>
#include <memory>
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

// The fleet as the agent service saw it at one moment; immutable once built.
struct FleetSnapshot {
  // One agent: its view and what filtering and sorting need, computed once.
  struct Row {
    size_t index = 0;  // into `agents`
    std::string id;
    std::string host;
    std::string id_lower;
    std::string host_lower;
    std::string state;
    int state_rank = 0;         // dead 0, suspect 1, live 2, retired 3
    int64_t last_beat = 0;
    int64_t max_lag = -1;       // largest lag_versions of its types; -1 when none is known
    int64_t max_staleness = -1;  // largest staleness_ms; -1 without types
    int64_t quarantined = 0;
    bool attention = false;
  };

  // `agents`: the array AgentService::agents_json() returns (taken, not
  // copied); `now_ms`: the hub's wall time it describes. The builder may
  // still set build_ms before it shares the snapshot as const.
  static std::shared_ptr<FleetSnapshot> build(nlohmann::json agents, int64_t now_ms);

  nlohmann::json agents = nlohmann::json::array();  // as passed to build()
  std::vector<Row> rows;  // one per agent, in the order of `agents`
  int64_t now_ms = 0;
  // How long the view and this snapshot took to make, reported with each
  // page: what building a page per request would cost the serving thread.
  int64_t build_ms = 0;
  uint64_t live = 0, suspect = 0, dead = 0, retired = 0;
  uint64_t problems = 0;  // agents needing attention
  uint64_t breaches = 0;  // agent x type pairs in freshness breach
};

// The page, as JSON text:
//   {now, built_ms, total, matched, offset, limit, sort, order,
//    counts: {live, suspect, dead, retired},   // over the whole fleet
//    problems, breaches,                       // agents needing attention; agent x type pairs in breach
//    types: [{name, freshness_objective_ms}],
//    agents: [<agents_json() objects of this page>]}
// now is the snapshot's time (the hub's wall time when it was built),
// built_ms how long building it took.
std::string fleet_page(const FleetSnapshot& fleet, const FleetQuery& query, const std::vector<TypeConfig>& types);

// The whole fleet (GET /v1/agents) as JSON text: the snapshot's array.
std::string fleet_agents_text(const FleetSnapshot& fleet);

}  // namespace ds
