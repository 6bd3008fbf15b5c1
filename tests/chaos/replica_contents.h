#pragma once
// replica_contents(): what an agent's replica (agent/replica.h) holds of one
// type, read straight from its SQLite file, read-only, while the agent runs:
// key -> fields as JSON, with the values converted by the column types the
// replica recorded (bool as true/false, json columns parsed) and null
// fields left out, the same shape as tests/e2e RecordModel and
// Fleet::hub_records, so the chaos soak compares values, not only keys.
// NotFound when the replica has no table for the type yet.

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "shared/status.h"

namespace ds::testing {

Result<std::map<std::string, nlohmann::json>> replica_contents(const std::string& replica_path,
                                                               const std::string& type);

}  // namespace ds::testing
