#pragma once
// HubMetrics: the counters behind GET /metrics (Prometheus text format).
// Plain atomics, written by whichever thread does the work (ingest handlers,
// the writer thread, the publisher) and read by the HTTP thread; a reader may
// see one counter a moment ahead of another, never a torn value.

#include <atomic>
#include <cstdint>
#include <string>

namespace ds {

struct HubMetrics {
  std::atomic<uint64_t> ingest_batches{0};           // batches stored (new, not retries)
  std::atomic<uint64_t> ingest_records{0};           // records stored
  std::atomic<uint64_t> ingest_retries{0};           // (producer, seq) seen before
  std::atomic<uint64_t> ingest_rejected{0};          // batches rejected whole
  std::atomic<uint64_t> ingest_unavailable{0};       // replies "unavailable" (queue full, publish failed, stopping)
  std::atomic<uint64_t> commit_groups{0};            // SQLite transactions of the writer
  std::atomic<uint64_t> commit_micros_total{0};
  std::atomic<uint64_t> published_batches{0};        // delta batches acked by JetStream
  std::atomic<uint64_t> published_changes{0};
  std::atomic<uint64_t> publish_failures{0};
  std::atomic<uint64_t> publish_micros_total{0};     // commit-to-ack latency, summed per group
  std::atomic<uint64_t> publish_rounds{0};
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

  // The counters in Prometheus exposition format, names prefixed deltasync_hub_.
  std::string prometheus_text() const;
};

}  // namespace ds
