#pragma once
// CommitHistory: when the hub committed the versions of each (type,
// partition), kept just finely enough to measure freshness: the age of the
// oldest change of an agent's partition that the agent has not applied
// (docs/operations.md, "Freshness").
//
// Per (type, partition), and per (type, "*") for subscriptions to every
// partition, it keeps steps (version, hub time): the versions up to `version`
// were committed at or after `hub time`, the start of the step. A commit
// within objective/16 of the last step's start joins that step, so the
// measured age is at most objective/16 too high. Steps older than four
// objectives (counted back from the newest commit) fold into one floor
// step: an agent whose oldest unapplied change is that old is reported as
// the floor's age, which is then a lower bound and always above four
// objectives, so its breach is still exact. At most 64 steps per key, plus
// the floor: memory is bounded by the number of partitions, not by the rate.
//
// After a hub restart nothing is known of commit times but each partition's
// newest change (seed()); an agent already behind then is reported as the
// age of that newest change, a lower bound, until it catches up.
//
// Thread-safety: all methods take one internal mutex (record() on the
// writer thread, staleness_ms() on the agent service and scrape threads).

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "hub/query_store.h"
#include "shared/config.h"

namespace ds {

class CommitHistory {
 public:
  explicit CommitHistory(const std::vector<TypeConfig>& types);

  // A commit: the newest change of `m.partition` of `m.type` is m.version,
  // committed at m.hub_ts (hub wall-clock ms). Counts for "*" too.
  void record(const PartitionMark& m);
  // At start, from the store: the newest change of each partition.
  void seed(const PartitionMark& m);

  // The age at `as_of_ms` of the oldest change of (type, partition) -- "*"
  // for every partition -- with a version above `applied` that was committed
  // by then; 0 when there is none.
  int64_t staleness_ms(const std::string& type, const std::string& partition, uint64_t applied,
                       int64_t as_of_ms) const;

 private:
  struct Step {
    uint64_t version = 0;
    int64_t hub_ms = 0;
  };
  struct Line {
    std::deque<Step> steps;
    std::optional<Step> floor;
    uint64_t newest = 0;
  };
  struct Grain {
    int64_t resolution_ms = 0;
    int64_t horizon_ms = 0;
  };
  static constexpr size_t kMaxSteps = 64;

  void record_line(Line& line, const Grain& grain, uint64_t version, int64_t hub_ms);

  std::map<std::string, Grain> grains_;  // by type; const after construction
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, Line> lines_;  // guarded by mu_
};

}  // namespace ds
