#pragma once
// HubMetrics: the hub's own counters and histograms behind GET /metrics
// (Prometheus text, shared/prometheus.h; every series is listed in
// docs/operations.md, "Monitoring"). Names follow Prometheus conventions:
// prefix deltasync_hub_, base units (seconds, bytes), counters end in _total.
//
// What the hub knows about its agents (by state, lag, freshness, quarantine,
// consumers) is not kept here: AgentService::write_metrics() writes it from
// the agent registry at scrape time, and Hub composes the two
// (Hub::metrics_text()).
//
// Threads: plain atomics and lock-free histograms, written by whichever thread
// does the work (cnats ingest handlers, the writer thread, the HTTP io thread)
// and read by the thread that renders a scrape (the HTTP io thread or the
// [metrics] listener's); a reader may see one series a moment ahead of
// another, never a torn value.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "shared/messages.h"
#include "shared/prometheus.h"

namespace ds {

enum class IngestTransport { kNats = 0, kHttp = 1 };

struct HubMetrics {
  std::atomic<uint64_t> ingest_batches{0};           // batches stored (new, not retries)
  std::atomic<uint64_t> ingest_records{0};           // records stored
  std::atomic<uint64_t> ingest_retries{0};           // (producer, type, seq) seen before
  std::atomic<uint64_t> ingest_dropped{0};           // dropped unanswered: reply subject not the producer's inbox
  std::atomic<uint64_t> published_batches{0};        // delta batches acked by JetStream
  std::atomic<uint64_t> published_changes{0};
  std::atomic<uint64_t> publish_failures{0};
  std::atomic<uint64_t> republished_batches{0};      // by reconciliation
  std::atomic<uint64_t> reconciliations{0};
  std::atomic<uint64_t> recovered_changes{0};        // taken back from a stream after a restore
  std::atomic<uint64_t> pruned_changes{0};           // change-log rows dropped by retention
  std::atomic<uint64_t> pruned_tombstones{0};        // tombstones dropped by retention
  std::atomic<uint64_t> pruned_retry_keys{0};        // producer retry keys dropped by retention
  std::atomic<uint64_t> snapshot_pages{0};
  std::atomic<uint64_t> snapshot_errors{0};
  std::atomic<uint64_t> http_requests{0};
  std::atomic<uint64_t> http_unauthorized{0};
  std::atomic<int64_t> ingest_queue_depth{0};

  // Request received -> reply sent, per transport; every reply, ok or not.
  Histogram ingest_latency_nats{Histogram::latency_seconds()};
  Histogram ingest_latency_http{Histogram::latency_seconds()};
  // Records per stored batch (new batches, not retries).
  Histogram ingest_batch_records{Histogram::sizes()};
  // One SQLite group commit: its duration and the records it held.
  Histogram commit_duration{Histogram::latency_seconds()};
  Histogram commit_group_records{Histogram::sizes()};
  // One publish round: first publish to last JetStream ack.
  Histogram publish_duration{Histogram::latency_seconds()};

  // One ingest reply: counts it by transport and code ("ok" or the error
  // code, docs/protocol.md) and observes its latency since `received`.
  void record_ingest_reply(IngestTransport transport, const IngestReply& reply,
                           std::chrono::steady_clock::time_point received);

  // Writes every series above (deltasync_hub_*).
  void write(PrometheusWriter& w) const;

 private:
  static constexpr size_t kCodes = static_cast<size_t>(StatusCode::kInternal) + 1;
  std::array<std::array<std::atomic<uint64_t>, kCodes>, 2> ingest_replies_{};  // [transport][code]
};

}  // namespace ds
