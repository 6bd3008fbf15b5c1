#pragma once
// StoreRetention: prunes the hub's change log, tombstones and producer retry
// keys by the rule of docs/operations.md "Retention", in small steps on the
// ingest writer thread (the store's one writer), between group commits.
//
// The rule, per type. keep_from = the lower of the first batch the type's
// stream still holds and the log's published batch (when the stream holds
// nothing: the published version + 1). Changes at or above keep_from are
// kept whole: they are what reconciliation republishes after the broker
// lost messages, and what publishing still needs. Below it:
//   - a change whose key has a newer change is dropped (compaction: the log
//     keeps the latest change per key, so a stream rebuilt from it still
//     brings every agent to the current state);
//   - a tombstone (a deleted row) whose delete is older than
//     [retention] tombstone_max_age is dropped, with that delete; an agent
//     that needs that delete and has not got it is one whose checkpoint has
//     left the stream, and such an agent is always ordered a snapshot
//     (the resume rule of hub/consumer_planner.h), which never holds deleted keys;
//   - producer retry keys whose versions are all below keep_from are dropped:
//     a retry older than the stream's retention is stored as new records.
//
// A pass walks the log's rows below keep_from in steps of kStepRows rows
// (one short transaction each, no fsync), round-robin over the types; a
// stretch compacted by an earlier pass is about one row per key, so a pass
// costs about (keys + new changes) / kStepRows steps. keep_from is read
// from the stream (two JetStream API calls) at the start of each pass.
//
// Thread-safety: none; the ingest writer thread only.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "hub/hub_metrics.h"
#include "hub/query_store.h"
#include "hub/stream_publisher.h"
#include "shared/config.h"

namespace ds {

class StoreRetention {
 public:
  static constexpr size_t kStepRows = 5000;
  // At most one step per interval while ingest keeps the writer busy.
  static constexpr std::chrono::milliseconds kStepInterval{100};
  // After the stream could not be asked (broker away), before trying again.
  static constexpr std::chrono::seconds kPauseAfterFailure{30};

  StoreRetention(const HubConfig& config, QueryStore& store, StreamPublisher& publisher, HubMetrics& metrics)
      : config_(config), store_(store), publisher_(publisher), metrics_(metrics) {}

  // One step when the interval has passed since the last one; `now_ms` is
  // the wall clock (tombstone ages are hub times).
  void maybe_step(int64_t now_ms);
  // One step of the next type, now. Failures are logged (at warn: pruning
  // waits for the next pass) and never reach ingest.
  void step(int64_t now_ms);

 private:
  struct Pass {
    uint64_t keep_from = 0;  // 0: not started
    uint64_t cursor = 0;
  };
  const HubConfig& config_;
  QueryStore& store_;
  StreamPublisher& publisher_;
  HubMetrics& metrics_;
  std::map<std::string, Pass> passes_;
  size_t next_type_ = 0;
  std::chrono::steady_clock::time_point last_step_{};
  std::chrono::steady_clock::time_point paused_until_{};
};

}  // namespace ds
