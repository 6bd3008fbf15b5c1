#include "agent/agent_metrics.h"

#include <sys/stat.h>

#include <functional>

namespace ds {

AgentMetrics::AgentMetrics(const std::vector<std::string>& types) {
  for (const std::string& t : types) types_.try_emplace(t);
}

AgentMetrics::PerType* AgentMetrics::type(const std::string& type) {
  auto it = types_.find(type);
  return it == types_.end() ? nullptr : &it->second;
}

std::string AgentMetrics::text(const CheckpointBoard& board, uint64_t registrations,
                               const std::string& replica_path) const {
  using Kind = PrometheusWriter::Kind;
  PrometheusWriter w;
  auto per_type = [&](std::string_view name, Kind kind, std::string_view help,
                      const std::function<double(const PerType&)>& value) {
    w.family(name, kind, help);
    for (const auto& [type, t] : types_) w.sample(name, {{"type", type}}, value(t));
  };
  per_type("deltasync_agent_applied_batches_total", Kind::kCounter,
           "Delta batches applied to the replica (committed, then acked).",
           [](const PerType& t) { return static_cast<double>(t.applied_batches.load()); });
  per_type("deltasync_agent_applied_changes_total", Kind::kCounter, "Changes that changed the replica.",
           [](const PerType& t) { return static_cast<double>(t.applied_changes.load()); });
  per_type("deltasync_agent_skipped_changes_total", Kind::kCounter,
           "Changes not applied because the replica held that key at that version or newer (replays).",
           [](const PerType& t) { return static_cast<double>(t.skipped_changes.load()); });
  per_type("deltasync_agent_quarantined_total", Kind::kCounter,
           "Changes or batches this process set aside in the quarantine (undecodable, apply, hook).",
           [](const PerType& t) { return static_cast<double>(t.quarantined.load()); });
  per_type("deltasync_agent_hook_failures_total", Kind::kCounter,
           "Hook runs that failed past their retries (the batch is then quarantined).",
           [](const PerType& t) { return static_cast<double>(t.hook_failures.load()); });
  per_type("deltasync_agent_delivery_gaps_total", Kind::kCounter,
           "Deliveries out of their consumer's numbering: one went missing on the way, and the agent "
           "registered again to resume from its checkpoint.",
           [](const PerType& t) { return static_cast<double>(t.delivery_gaps.load()); });

  w.family("deltasync_agent_apply_duration_seconds", Kind::kHistogram,
           "One apply transaction (rows and checkpoint) of a group of deliveries.");
  for (const auto& [type, t] : types_) t.apply_duration.write(w, "deltasync_agent_apply_duration_seconds", {{"type", type}});
  w.family("deltasync_agent_delivery_delay_seconds", Kind::kHistogram,
           "Hub commit of the newest change of an applied group to its apply, by the agent's clock minus the hub's "
           "(clock skew between the hosts adds to it).");
  for (const auto& [type, t] : types_) t.delivery_delay.write(w, "deltasync_agent_delivery_delay_seconds", {{"type", type}});

  const auto checkpoints = board.checkpoints();
  w.family("deltasync_agent_checkpoint_version", Kind::kGauge, "The newest version of the type the replica holds.");
  for (const auto& [type, t] : types_) {
    auto cp = checkpoints.find(type);
    w.sample("deltasync_agent_checkpoint_version", {{"type", type}},
             cp == checkpoints.end() ? 0 : static_cast<double>(cp->second.version));
  }
  w.family("deltasync_agent_checkpoint_timestamp_seconds", Kind::kGauge,
           "Business time of the newest change of the type the replica holds (Unix seconds; 0 before any).");
  for (const auto& [type, t] : types_) {
    auto cp = checkpoints.find(type);
    w.sample("deltasync_agent_checkpoint_timestamp_seconds", {{"type", type}},
             cp == checkpoints.end() ? 0 : static_cast<double>(cp->second.ts) / 1000.0);
  }
  w.gauge("deltasync_agent_quarantine_entries", "Entries in the replica's quarantine now (all types).",
          static_cast<double>(board.quarantined()));
  w.counter("deltasync_agent_apply_errors_total", "Apply transactions that failed and were retried (busy, disk full).",
            static_cast<double>(apply_errors.load()));
  w.counter("deltasync_agent_nats_reconnects_total", "Reconnects to NATS after a lost connection.",
            static_cast<double>(nats_reconnects.load()));
  w.counter("deltasync_agent_registrations_total", "Successful registrations with the hub since the agent started.",
            static_cast<double>(registrations));
  uint64_t bytes = 0;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    struct stat st {};
    if (::stat((replica_path + suffix).c_str(), &st) == 0) bytes += static_cast<uint64_t>(st.st_size);
  }
  w.gauge("deltasync_agent_replica_bytes", "Size of the replica: the SQLite file with its -wal and -shm.",
          static_cast<double>(bytes));
  return w.take();
}

}  // namespace ds
