#include "hub/commit_history.h"

#include <algorithm>

#include "shared/names.h"

namespace ds {

CommitHistory::CommitHistory(const std::vector<TypeConfig>& types) {
  for (const TypeConfig& t : types) {
    const int64_t objective_ms = t.freshness_objective_s * 1000;
    grains_[t.name] = Grain{std::max<int64_t>(10, objective_ms / 16), 4 * objective_ms};
  }
}

void CommitHistory::record_line(Line& line, const Grain& grain, uint64_t version, int64_t hub_ms) {
  if (version <= line.newest) return;  // known already (marks after a recovery repeat old ones)
  line.newest = version;
  if (!line.steps.empty() && hub_ms - line.steps.back().hub_ms < grain.resolution_ms) {
    line.steps.back().version = version;
  } else {
    line.steps.push_back(Step{version, hub_ms});
  }
  while (line.steps.size() > 1 &&
         (line.steps.size() > kMaxSteps || line.steps.front().hub_ms < hub_ms - grain.horizon_ms)) {
    line.floor = line.steps.front();
    line.steps.pop_front();
  }
}

void CommitHistory::record(const PartitionMark& m) {
  auto grain = grains_.find(m.type);
  if (grain == grains_.end() || m.hub_ts <= 0) return;
  std::lock_guard lock(mu_);
  record_line(lines_[{m.type, m.partition}], grain->second, m.version, m.hub_ts);
  record_line(lines_[{m.type, std::string(kAnyPartition)}], grain->second, m.version, m.hub_ts);
}

void CommitHistory::seed(const PartitionMark& m) {
  if (grains_.count(m.type) == 0 || m.hub_ts <= 0) return;
  std::lock_guard lock(mu_);
  for (const std::string& partition : {m.partition, std::string(kAnyPartition)}) {
    Line& line = lines_[{m.type, partition}];
    if (m.version <= line.newest) continue;
    line.newest = m.version;
    line.floor = Step{m.version, m.hub_ts};
    line.steps.clear();
  }
}

int64_t CommitHistory::staleness_ms(const std::string& type, const std::string& partition, uint64_t applied,
                                    int64_t as_of_ms) const {
  std::lock_guard lock(mu_);
  auto it = lines_.find({type, partition});
  if (it == lines_.end()) return 0;
  const Line& line = it->second;
  if (applied >= line.newest) return 0;
  // A step's time is its first commit: one that starts after `as_of_ms` was
  // all committed after it.
  if (line.floor && applied < line.floor->version) return std::max<int64_t>(0, as_of_ms - line.floor->hub_ms);
  for (const Step& s : line.steps) {
    if (s.version > applied) return std::max<int64_t>(0, as_of_ms - s.hub_ms);
  }
  return line.floor ? std::max<int64_t>(0, as_of_ms - line.floor->hub_ms) : 0;
}

}  // namespace ds
