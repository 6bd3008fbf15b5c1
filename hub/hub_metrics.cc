#include "hub/hub_metrics.h"

#include <algorithm>

#include "shared/status.h"

namespace ds {

void HubMetrics::record_ingest_reply(IngestTransport transport, const IngestReply& reply,
                                     std::chrono::steady_clock::time_point received) {
  const StatusCode code = reply.error ? reply.error->code : StatusCode::kOk;
  const size_t t = static_cast<size_t>(transport);
  const size_t c = std::min(static_cast<size_t>(code), kCodes - 1);
  ingest_replies_[t][c].fetch_add(1, std::memory_order_relaxed);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - received).count();
  (transport == IngestTransport::kNats ? ingest_latency_nats : ingest_latency_http).observe(seconds);
}

void HubMetrics::write(PrometheusWriter& w) const {
  using Kind = PrometheusWriter::Kind;
  const char* transports[] = {"nats", "http"};

  w.family("deltasync_hub_ingest_requests_total", Kind::kCounter,
           "Ingest requests answered, by transport and reply code (ok, or the error code: invalid_argument, "
           "not_found, already_exists, permission_denied, unavailable, ...).");
  for (size_t t = 0; t < 2; ++t) {
    for (size_t c = 0; c < kCodes; ++c) {
      const std::string code(c == 0 ? std::string_view("ok") : status_code_name(static_cast<StatusCode>(c)));
      w.sample("deltasync_hub_ingest_requests_total", {{"transport", transports[t]}, {"code", code}},
               static_cast<double>(ingest_replies_[t][c].load(std::memory_order_relaxed)));
    }
  }
  w.family("deltasync_hub_ingest_latency_seconds", Kind::kHistogram,
           "Ingest request received to reply sent (after the SQLite commit and the JetStream acks), per transport.");
  ingest_latency_nats.write(w, "deltasync_hub_ingest_latency_seconds", {{"transport", "nats"}});
  ingest_latency_http.write(w, "deltasync_hub_ingest_latency_seconds", {{"transport", "http"}});
  w.family("deltasync_hub_ingest_batch_records", Kind::kHistogram, "Records per ingest batch stored (not retries).");
  ingest_batch_records.write(w, "deltasync_hub_ingest_batch_records");
  w.counter("deltasync_hub_ingest_batches_total", "Ingest batches stored (not retries).",
            static_cast<double>(ingest_batches.load()));
  w.counter("deltasync_hub_ingest_records_total", "Records stored by ingest.", static_cast<double>(ingest_records.load()));
  w.counter("deltasync_hub_ingest_retries_total", "Ingest batches whose (producer, type, seq) was already stored.",
            static_cast<double>(ingest_retries.load()));
  w.counter("deltasync_hub_ingest_dropped_total",
            "Ingest requests dropped unanswered and unstored: the reply subject was not the producer's own inbox.",
            static_cast<double>(ingest_dropped.load()));
  w.gauge("deltasync_hub_ingest_queue_depth", "Ingest batches waiting for the writer thread.",
          static_cast<double>(std::max<int64_t>(0, ingest_queue_depth.load())));

  w.family("deltasync_hub_commit_duration_seconds", Kind::kHistogram, "SQLite group commits of the writer thread.");
  commit_duration.write(w, "deltasync_hub_commit_duration_seconds");
  w.family("deltasync_hub_commit_group_records", Kind::kHistogram, "Records per SQLite group commit.");
  commit_group_records.write(w, "deltasync_hub_commit_group_records");

  w.family("deltasync_hub_publish_duration_seconds", Kind::kHistogram,
           "Publish rounds: first publish to the last JetStream ack.");
  publish_duration.write(w, "deltasync_hub_publish_duration_seconds");
  w.counter("deltasync_hub_published_batches_total", "Delta batches acknowledged by JetStream.",
            static_cast<double>(published_batches.load()));
  w.counter("deltasync_hub_published_changes_total", "Changes acknowledged by JetStream.",
            static_cast<double>(published_changes.load()));
  w.counter("deltasync_hub_publish_failures_total", "Publish rounds that failed (the changes stay in the log).",
            static_cast<double>(publish_failures.load()));
  w.counter("deltasync_hub_republished_batches_total", "Delta batches republished by reconciliation.",
            static_cast<double>(republished_batches.load()));
  w.counter("deltasync_hub_reconciliations_total", "Stream reconciliations run.",
            static_cast<double>(reconciliations.load()));
  w.counter("deltasync_hub_recovered_changes_total", "Changes taken back from a stream the restored store lacked.",
            static_cast<double>(recovered_changes.load()));
  w.counter("deltasync_hub_pruned_changes_total", "Change-log rows dropped by retention (superseded, or old deletes).",
            static_cast<double>(pruned_changes.load()));
  w.counter("deltasync_hub_pruned_tombstones_total", "Tombstones dropped by retention.",
            static_cast<double>(pruned_tombstones.load()));
  w.counter("deltasync_hub_pruned_retry_keys_total", "Producer retry keys dropped by retention.",
            static_cast<double>(pruned_retry_keys.load()));
  w.counter("deltasync_hub_snapshot_pages_total", "Snapshot pages served.", static_cast<double>(snapshot_pages.load()));
  w.counter("deltasync_hub_snapshot_errors_total", "Snapshot requests refused.",
            static_cast<double>(snapshot_errors.load()));
  w.counter("deltasync_hub_http_requests_total", "HTTP API requests handled.",
            static_cast<double>(http_requests.load()));
  w.counter("deltasync_hub_http_unauthorized_total", "HTTP API requests refused for a missing or wrong token.",
            static_cast<double>(http_unauthorized.load()));
}

}  // namespace ds
