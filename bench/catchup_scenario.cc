// The `catchup` scenario: how long an agent that missed 1,000,000 updates
// takes to be current again, by stream replay and, from an empty replica, by
// snapshot; against SQLite's bulk insert rate of the same rows.

#include <signal.h>

#include "agent/replica.h"
#include "bench/bench_support.h"
#include "bench/proc_info.h"
#include "shared/names.h"

namespace ds::bench {
namespace {

constexpr int kProducers = 4;
// Records per ingest batch: big, but one request must stay under
// nats-server's default 1 MiB payload limit (~140 bytes a record).
constexpr uint64_t kBatch = 5000;
constexpr double kIngestTimeoutS = 400;
constexpr double kCatchupTimeoutS = 300;
// The snapshot half restarts the hub with this stream retention, so that
// the stream no longer holds its first message and an empty replica
// (checkpoint sequence 0) can only be served by a snapshot.
constexpr int64_t kSmallStreamBytes = 256 * 1024;

// Starts the agent and times it until its replica holds `version`.
Result<double> time_to_current(const BenchContext& ctx, const ScratchDir& dir, const std::string& id,
                               uint64_t version, std::unique_ptr<ChildProcess>* agent) {
  const auto start = Clock::now();
  DS_ASSIGN_OR_RETURN(*agent, spawn_agent(ctx, dir, id));
  DS_RETURN_IF_ERROR(wait_applied(agent_replica(dir, id), version, kCatchupTimeoutS));
  return seconds_since(start);
}

// SQLite alone: the same rows inserted into a table of the replica's own
// making (Replica::ensure_table, same file settings), one transaction, one
// prepared statement. Only binding, stepping and the commit are timed.
Result<double> bulk_insert_rate(const ScratchDir& dir, const TypeSchema& schema,
                                const std::vector<IngestRecord>& base, uint64_t batches) {
  DS_ASSIGN_OR_RETURN(auto replica, Replica::open(dir.file("bulk-baseline.db")));
  DS_RETURN_IF_ERROR(replica->ensure_table(kType, schema));
  Database& db = replica->db();
  std::string columns = quote_identifier(schema.key);
  std::string params = "?";
  for (const Column& c : schema.columns) {
    columns += ", " + quote_identifier(c.name);
    params += ", ?";
  }
  DS_ASSIGN_OR_RETURN(Statement insert, db.prepare("INSERT INTO " + quote_identifier(kType) + " (" + columns +
                                                   ", _version, _ts, _hub_ts) VALUES (" + params + ", ?, ?, ?)"));
  DS_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(db));
  Clock::duration timed{0};
  uint64_t version = 0;
  for (uint64_t b = 0; b < batches; ++b) {
    const std::vector<IngestRecord> rows = keyed_batch(base, b);
    const auto start = Clock::now();
    const int64_t now = wall_ms();
    for (const IngestRecord& r : rows) {
      int i = 1;
      insert.bind(i++, r.key);
      for (const Column& c : schema.columns) {
        auto f = r.fields.find(c.name);
        if (f == r.fields.end()) {
          insert.bind_null(i++);
        } else {
          insert.bind(i++, f->second);
        }
      }
      insert.bind(i, static_cast<int64_t>(++version));
      insert.bind(i + 1, r.ts.value_or(now));
      insert.bind(i + 2, now);
      DS_RETURN_IF_ERROR(insert.run());
      insert.reset();
    }
    timed += Clock::now() - start;
  }
  const auto start = Clock::now();
  DS_RETURN_IF_ERROR(tx.commit());
  timed += Clock::now() - start;
  return static_cast<double>(version) / std::chrono::duration<double>(timed).count();
}

// Which way the agent caught up, from its log: `needle` must (or must not) be there.
Status check_log(const ChildProcess& agent, const std::string& needle, bool wanted, const std::string& why) {
  if ((agent.log_text().find(needle) != std::string::npos) != wanted) {
    return Status::internal(why + " ('" + needle + "' " + (wanted ? "missing from " : "found in ") +
                            agent.log_path() + ")");
  }
  return Status::ok();
}

}  // namespace

// 1. A hub (stream retention unlimited) and agent "catchup-replay", which
//    registers and is stopped. 2. N updates (N distinct keys) are ingested in
//    batches of 5,000. 3. The agent is started again; timed until its replica
//    holds the hub's last version (stream replay from its checkpoint).
// 4. The hub restarts with a stream retention so small that the stream no
//    longer holds its first message; a new agent "catchup-snapshot" with an
//    empty replica is started and timed the same way (the hub orders a
//    snapshot). 5. The SQLite baseline inserts the same N rows.
Result<std::vector<Figure>> run_catchup(BenchContext& ctx) {
  ScratchDir dir(ctx.work_dir + "/catchup");
  const uint64_t batches = (ctx.smoke ? 10000 : 1000000) / kBatch;
  const uint64_t total = batches * kBatch;
  DS_ASSIGN_OR_RETURN(std::vector<IngestRecord> base, base_records(kBatch));
  HubOptions hub_options;
  DS_ASSIGN_OR_RETURN(HubConfig config, hub_config(ctx, dir, hub_options));
  DS_ASSIGN_OR_RETURN(auto hub, start_hub(ctx, dir, hub_options));
  {
    DS_ASSIGN_OR_RETURN(auto agent, start_agent(ctx, dir, "catchup-replay"));
    agent->stop(SIGTERM, kStopGraceMs);
  }

  DS_ASSIGN_OR_RETURN(IngestLoad load,
                      ingest_load(
                          ctx, kProducers, [&base](uint64_t k) { return keyed_batch(base, k); }, kIngestTimeoutS,
                          batches));
  if (load.records != total) {
    return Status::deadline_exceeded("ingested " + std::to_string(load.records) + " of " + std::to_string(total) +
                                     " records within " + std::to_string(static_cast<int>(kIngestTimeoutS)) + " s");
  }

  std::unique_ptr<ChildProcess> replayer;
  DS_ASSIGN_OR_RETURN(double replay_s, time_to_current(ctx, dir, "catchup-replay", load.last_version, &replayer));
  DS_RETURN_IF_ERROR(check_log(*replayer, "loading a snapshot", false, "the agent was not caught up by replay"));
  DS_ASSIGN_OR_RETURN(ProcStats replayer_stats, proc_stats(replayer->pid()));
  replayer->stop(SIGTERM, kStopGraceMs);

  hub->stop(SIGTERM, kStopGraceMs);
  hub_options.max_bytes = kSmallStreamBytes;
  hub_options.fresh = false;
  DS_ASSIGN_OR_RETURN(hub, start_hub(ctx, dir, hub_options));
  {
    DS_ASSIGN_OR_RETURN(auto nc, connect(ctx, "bench-catchup"));
    DS_ASSIGN_OR_RETURN(auto js, nc->jetstream());
    DS_ASSIGN_OR_RETURN(StreamState stream, js->stream_state(stream_name(kType)));
    if (stream.first_seq <= 1) {
      return Status::internal("the stream still holds its first message after the retention was cut to " +
                              std::to_string(kSmallStreamBytes) + " bytes (" + std::to_string(stream.messages) +
                              " messages, " + std::to_string(stream.bytes) + " bytes): no snapshot would be needed");
    }
  }
  std::unique_ptr<ChildProcess> newcomer;
  DS_ASSIGN_OR_RETURN(double snapshot_s,
                      time_to_current(ctx, dir, "catchup-snapshot", load.last_version, &newcomer));
  DS_RETURN_IF_ERROR(check_log(*newcomer, "loading a snapshot", true, "the empty replica was not served a snapshot"));
  newcomer->stop(SIGTERM, kStopGraceMs);
  hub->stop(SIGTERM, kStopGraceMs);

  DS_ASSIGN_OR_RETURN(double bulk_rate, bulk_insert_rate(dir, config.types.front().schema, base, batches));
  const double n = static_cast<double>(total);
  const std::string count = std::to_string(total);
  return std::vector<Figure>{
      {"catchup", "ingest of the " + count + " updates, batch 5000", load.records_per_s(), "records/s",
       ctx.raw_records_per_s},
      {"catchup", "SQLite bulk insert of the same rows (one transaction)", bulk_rate, "records/s", std::nullopt},
      {"catchup", "replay: " + count + " missed updates, start to current", replay_s, "s", std::nullopt},
      {"catchup", "replay: records/s (baseline SQLite bulk insert)", n / replay_s, "records/s", bulk_rate},
      {"catchup", "replay: the agent's peak RSS", static_cast<double>(replayer_stats.peak_rss_kb) / 1024.0, "MiB",
       std::nullopt},
      {"catchup", "snapshot: " + count + " rows into an empty replica, start to current", snapshot_s, "s",
       std::nullopt},
      {"catchup", "snapshot: records/s (baseline SQLite bulk insert)", n / snapshot_s, "records/s", bulk_rate}};
}

}  // namespace ds::bench
