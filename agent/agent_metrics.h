#pragma once
// AgentMetrics: what deltasync-agent exposes on [metrics] listen (Prometheus
// text, shared/prometheus.h; prefix deltasync_agent_; every series is listed
// in docs/operations.md, "Monitoring").
//
// Threads, explicitly:
//   - writers: the apply thread (DeltaApplier: batches, changes, apply
//     latency, delay, quarantines, hook failures), cnats' delivery threads
//     (delivery gaps) and cnats' connection thread (reconnects). They touch only atomics and lock-free histograms.
//     The per-type series sit in a map built in the constructor from the
//     configured subscriptions and never changed afterwards, so finding a
//     type's counters needs no lock.
//   - the reader: the MetricsServer's io thread (shared/metrics_server.h),
//     which serves HTTP and calls write() for each scrape. write() reads the
//     atomics, the CheckpointBoard (its own mutex: checkpoints, quarantine
//     count) and stats the replica files. It never touches SQLite, so a
//     scrape never waits for an apply and an apply never waits for a scrape.
// A scrape may see one series a moment ahead of another, never a torn value.

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "agent/checkpoint_board.h"
#include "shared/prometheus.h"

namespace ds {

class AgentMetrics {
 public:
  struct PerType {
    std::atomic<uint64_t> applied_batches{0};   // delta deliveries applied (committed and acked)
    std::atomic<uint64_t> applied_changes{0};   // changes that changed the replica
    std::atomic<uint64_t> skipped_changes{0};   // not newer than the key's version (replays)
    std::atomic<uint64_t> quarantined{0};       // changes or batches set aside, all kinds
    std::atomic<uint64_t> hook_failures{0};     // hook runs that failed past their retries
    std::atomic<uint64_t> delivery_gaps{0};     // deliveries out of order (agent/delivery_order.h)
    Histogram apply_duration{Histogram::latency_seconds()};  // one transaction of a group
    Histogram delivery_delay{Histogram::latency_seconds()};  // hub commit -> applied, newest change of a group
  };

  explicit AgentMetrics(const std::vector<std::string>& types);

  // nullptr for a type not configured (never happens for a subscription).
  PerType* type(const std::string& type);
  std::atomic<uint64_t> nats_reconnects{0};
  std::atomic<uint64_t> apply_errors{0};        // failed apply transactions (retried)

  // The whole exposition text: the series above plus, read at scrape time,
  // each type's checkpoint (board), the quarantine count, the number of
  // registrations and the replica's size on disk.
  std::string text(const CheckpointBoard& board, uint64_t registrations, const std::string& replica_path) const;

 private:
  std::map<std::string, PerType> types_;  // const shape after construction
};

}  // namespace ds
