#include "hub/agents_report.h"

#include <algorithm>

#include "shared/names.h"

namespace ds {

void PartitionMarks::update(const std::vector<PartitionMark>& marks) {
  const auto raise = [](PartitionMark& have, const PartitionMark& m, const std::string& partition) {
    have.type = m.type;
    have.partition = partition;
    have.version = std::max(have.version, m.version);
    have.ts = std::max(have.ts, m.ts);
  };
  std::lock_guard lock(mu_);
  for (const PartitionMark& m : marks) {
    raise(by_partition_[{m.type, m.partition}], m, m.partition);
    raise(by_type_[m.type], m, std::string(kAnyPartition));
  }
}

std::optional<PartitionMark> PartitionMarks::find(const std::string& type, const std::string& partition,
                                                  uint64_t& type_version) const {
  std::lock_guard lock(mu_);
  auto all = by_type_.find(type);
  type_version = all == by_type_.end() ? 0 : all->second.version;
  if (partition == kAnyPartition) {
    if (all == by_type_.end()) return std::nullopt;
    return all->second;
  }
  auto one = by_partition_.find({type, partition});
  if (one == by_partition_.end()) return std::nullopt;
  return one->second;
}

uint64_t PartitionMarks::newest(const std::string& type, const std::string& partition) const {
  uint64_t type_version = 0;
  const std::optional<PartitionMark> mark = find(type, partition, type_version);
  return mark ? mark->version : 0;
}

int64_t staleness_as_of(const AgentRecord& a, int64_t now) {
  return a.state == AgentState::kLive ? std::min(a.last_beat, now) : now;
}

nlohmann::json agents_report(const std::vector<AgentRecord>& agents, const AgentsReportInputs& in) {
  const int64_t now = in.now_system_ms;
  nlohmann::json out = nlohmann::json::array();
  for (const AgentRecord& a : agents) {
    nlohmann::json types = nlohmann::json::object();
    for (const auto& [type, s] : a.subscriptions) {
      const TypeConfig* tc = in.config.find_type(type);
      auto hh = in.hub_hashes.find(type);
      nlohmann::json lag_versions = nullptr;
      nlohmann::json lag_ms = nullptr;
      uint64_t type_version = 0;
      if (auto mark = in.marks.find(type, s.partition, type_version)) {
        if (s.version >= mark->version) {
          lag_versions = 0;
          lag_ms = 0;
        } else {
          lag_versions = type_version - s.version;
          if (s.ts > 0) lag_ms = std::max<int64_t>(0, mark->ts - s.ts);
        }
      } else if (type_version > 0) {
        lag_versions = 0;  // the type has changes, none in this partition
        lag_ms = 0;
      }
      const bool live = a.state == AgentState::kLive;
      const int64_t objective_ms = tc == nullptr ? 0 : tc->freshness_objective_s * 1000;
      const int64_t staleness = in.history.staleness_ms(type, s.partition, s.version, staleness_as_of(a, now));
      const bool breach = tc != nullptr && staleness > objective_ms;
      const bool fresh = live && !s.delivery.held_back && tc != nullptr && !breach;
      types[type] = {
          {"partition", s.partition},
          {"version", s.version},
          {"seq", s.seq},
          {"ts", s.ts},
          {"rows", s.rows},
          {"lag_versions", lag_versions},
          {"lag_ms", lag_ms},
          {"schema_hash", s.schema_hash},
          {"schema_ok", s.schema_hash.empty() || (hh != in.hub_hashes.end() && hh->second == s.schema_hash)},
          {"consumer", s.delivery.consumer_open},
          {"live_feed", s.delivery.on_feed},
          {"held_back", s.delivery.held_back},
          {"awaiting_snapshot", s.delivery.awaiting_snapshot},
          {"quarantined", s.quarantined ? nlohmann::json(*s.quarantined) : nlohmann::json()},
          {"note", s.delivery.note},
          {"staleness_ms", staleness},
          {"freshness_objective_ms", objective_ms},
          {"freshness_breach", breach},
          {"freshness_breaches", in.freshness_breaches(a.id, type)},
          {"freshness_ok", fresh},
      };
    }
    out.push_back({
        {"id", a.id},
        {"host", a.host},
        {"version", a.version},
        {"state", std::string(agent_state_name(a.state))},
        {"registered_at", a.registered_at},
        {"registrations", a.registrations},
        {"last_beat", a.last_beat},
        {"health", a.health == AgentHealth::kOk ? "ok" : "degraded"},
        {"pending", a.pending},
        {"quarantined", a.quarantined},
        {"last_error", a.last_error},
        {"types", std::move(types)},
    });
  }
  return out;
}

}  // namespace ds
