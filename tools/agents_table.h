#pragma once
// The table `deltasync agents` prints: one row per agent and type from the
// hub's GET /v1/agents (an agent without types gets one row of dashes).
//
// Per type it shows where the agent is (version, lag in versions and in
// business time, freshness against the type's objective) and why it gets
// no deltas when it does not (DELIVERY: "streaming", "held back (...)" for
// a schema the agent has not taken, "awaiting snapshot", or the hub's note),
// with the quarantine entries the agent last reported for the type.
//
// Thread-safety: pure functions.

#include <cstdint>

#include <nlohmann/json.hpp>

#include "tools/table.h"

namespace ds {

// `agents`: the array of GET /v1/agents (or an object holding it under
// "agents"); `now_ms`: wall time, for the LAST BEAT column.
Table agents_table(const nlohmann::json& agents, int64_t now_ms);

}  // namespace ds
