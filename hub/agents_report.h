#pragma once
// The agents as the hub reports them: GET /v1/agents, the fleet snapshot
// built from it (hub/fleet_view.h) and deltasync verify all read this
// report (its fields: AgentService::agents_json in hub/agent_service.h).
// Each agent's registry record, and per type its lag against the newest
// change committed in its partition, its staleness against the commit
// history, and whether it meets the type's freshness objective.
//
// PartitionMarks holds what lag is measured against: the newest change the
// hub committed per (type, partition) and per type. The ingest writer's
// thread updates it after each commit while the agent service's, the HTTP
// and the verify threads read it: thread-safe. agents_report() reads only
// its inputs, on whichever thread needs the report.

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "hub/agent_registry.h"
#include "hub/commit_history.h"
#include "shared/config.h"
#include "shared/messages.h"

namespace ds {

class PartitionMarks {
 public:
  void update(const std::vector<PartitionMark>& marks);
  // The mark of one partition, or of all of the type's for "*"; nullopt when
  // it has no change yet. `type_version` gets the type's newest version.
  std::optional<PartitionMark> find(const std::string& type, const std::string& partition,
                                    uint64_t& type_version) const;
  // The version of find()'s mark; 0 when there is none.
  uint64_t newest(const std::string& type, const std::string& partition) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, PartitionMark> by_partition_;  // guarded by mu_
  std::map<std::string, PartitionMark> by_type_;                               // guarded by mu_
};

// Staleness is measured at the agent's latest report while it is live (a
// later apply is not known yet, an earlier one is certain), and at `now`
// once it is suspect or dead (silent for 1.5 intervals or more): so a live
// agent is never reported staler than it was, and a silent one ages.
int64_t staleness_as_of(const AgentRecord& a, int64_t now);

struct AgentsReportInputs {
  const HubConfig& config;
  const std::map<std::string, std::string>& hub_hashes;  // type -> the hub's schema hash
  const PartitionMarks& marks;
  const CommitHistory& history;
  // How often the agent's subscription of the type entered a breach of its
  // freshness objective since the hub started.
  std::function<uint64_t(const std::string& agent, const std::string& type)> freshness_breaches;
  int64_t now_system_ms = 0;
};

// One JSON object per agent, in the order given.
nlohmann::json agents_report(const std::vector<AgentRecord>& agents, const AgentsReportInputs& in);

}  // namespace ds
