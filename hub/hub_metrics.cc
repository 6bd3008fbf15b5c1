#include "hub/hub_metrics.h"

#include <fmt/format.h>

namespace ds {
namespace {

void counter(std::string& out, std::string_view name, std::string_view help, uint64_t value,
             std::string_view kind = "counter") {
  out += fmt::format("# HELP deltasync_hub_{0} {1}\n# TYPE deltasync_hub_{0} {2}\ndeltasync_hub_{0} {3}\n", name,
                     help, kind, value);
}

}  // namespace

std::string HubMetrics::prometheus_text() const {
  std::string out;
  counter(out, "ingest_batches_total", "Ingest batches stored.", ingest_batches.load());
  counter(out, "ingest_records_total", "Records stored by ingest.", ingest_records.load());
  counter(out, "ingest_retries_total", "Ingest batches whose (producer, seq) was already stored.",
          ingest_retries.load());
  counter(out, "ingest_rejected_total", "Ingest batches rejected whole by validation.", ingest_rejected.load());
  counter(out, "ingest_unavailable_total", "Ingest replies 'unavailable' (queue full, publish failed, stopping).",
          ingest_unavailable.load());
  counter(out, "ingest_queue_depth", "Ingest batches waiting for the writer.",
          static_cast<uint64_t>(std::max<int64_t>(0, ingest_queue_depth.load())), "gauge");
  counter(out, "commit_groups_total", "SQLite group-commit transactions.", commit_groups.load());
  counter(out, "commit_micros_total", "Time spent in group commits, microseconds.",
          commit_micros_total.load());
  counter(out, "published_batches_total", "Delta batches acknowledged by JetStream.", published_batches.load());
  counter(out, "published_changes_total", "Changes acknowledged by JetStream.", published_changes.load());
  counter(out, "publish_failures_total", "Publish rounds that failed (changes stay in the log).",
          publish_failures.load());
  counter(out, "publish_micros_total", "Sum over publish rounds of publish-to-last-ack time, microseconds.",
          publish_micros_total.load());
  counter(out, "publish_rounds_total", "Publish rounds (divide the latency sum by this).", publish_rounds.load());
  counter(out, "republished_batches_total", "Delta batches republished by reconciliation.",
          republished_batches.load());
  counter(out, "reconciliations_total", "Stream reconciliations run.", reconciliations.load());
  counter(out, "recovered_changes_total", "Changes taken back from a stream the restored store lacked.",
          recovered_changes.load());
  counter(out, "pruned_changes_total", "Change-log rows dropped by retention (superseded, or old deletes).",
          pruned_changes.load());
  counter(out, "pruned_tombstones_total", "Tombstones dropped by retention.", pruned_tombstones.load());
  counter(out, "pruned_retry_keys_total", "Producer retry keys dropped by retention.", pruned_retry_keys.load());
  counter(out, "snapshot_pages_total", "Snapshot pages served.", snapshot_pages.load());
  counter(out, "snapshot_errors_total", "Snapshot requests refused.", snapshot_errors.load());
  counter(out, "http_requests_total", "HTTP requests handled.", http_requests.load());
  counter(out, "http_unauthorized_total", "HTTP requests refused for a missing or wrong token.",
          http_unauthorized.load());
  return out;
}

}  // namespace ds
