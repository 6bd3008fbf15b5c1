#pragma once
// What the benchmark scenarios share: hub and agent processes configured for
// the benchmark's one type, replica probes, and producers that load a hub.
//
// Every hub runs with one type, `products` (the sample catalogue of
// tools/sample_data.h). Every wait is bounded and fails with a clear error.
//
// Thread-safety: none beyond what each function says; the driver's thread
// owns the processes. ingest_load() runs its own producer threads and joins
// them before it returns.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench/scenarios.h"
#include "shared/config.h"
#include "shared/messages.h"
#include "shared/nats.h"
#include "shared/sqlite.h"
#include "shared/status.h"
#include "testing/child_process.h"
#include "testing/nats_cluster.h"

namespace ds::bench {

using Clock = std::chrono::steady_clock;
inline constexpr char kType[] = "products";
// How long a hub or agent may take to stop after SIGTERM before it is killed.
inline constexpr int64_t kStopGraceMs = 5000;

double seconds_since(Clock::time_point since);
double seconds_between(Clock::time_point from, Clock::time_point to);
int64_t wall_ms();

Result<std::unique_ptr<Connection>> connect(const BenchContext& ctx, const std::string& name);

// `n` distinct sample records of the benchmark's type.
Result<std::vector<IngestRecord>> base_records(uint64_t n);
// The records with one field changed per call, so that no batch repeats an
// earlier one (a hub may skip unchanged rows; the benchmark must not let it).
std::vector<IngestRecord> fresh_batch(const std::vector<IngestRecord>& base, uint64_t counter);
// The records under keys of their own ("<key>/<index>"): batches with
// different indexes never share a key, so n batches make n x base.size() rows.
std::vector<IngestRecord> keyed_batch(const std::vector<IngestRecord>& base, uint64_t index);

// A scratch subdirectory of the context's work dir, removed afterwards.
struct ScratchDir {
  explicit ScratchDir(std::string p);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string file(const std::string& name) const { return path + "/" + name; }
  // A log file of its own for each start of a process: "<stem>.log", then
  // "<stem>-2.log", ... (a restart must not find the last run's lines).
  std::string new_log(const std::string& stem) const;
  std::string path;
};

Status write_text(const std::string& path, const std::string& text);

struct HubOptions {
  int64_t heartbeat_ms = 1000;
  int64_t dead_after = 3;
  int64_t max_bytes = -1;  // the type's stream retention (-1 = unlimited)
  bool retention = true;   // [retention] enabled: the store is pruned
  int64_t stream_replicas = 1;  // [streams] replicas (3 needs a JetStream cluster)
  bool ha = false;              // [ha] enabled: an HA hub, alone, so active once it holds the lease
  // True: a new hub, so its stream is deleted first (versions restart at 1,
  // and a fresh agent would otherwise replay an earlier scenario's deltas).
  // False: a restart of the hub whose store is in the scratch dir.
  bool fresh = true;
};

// The hub's configuration for the benchmark (also parsed for the schema).
std::string hub_toml(const BenchContext& ctx, const ScratchDir& dir, const HubOptions& options);
Result<HubConfig> hub_config(const BenchContext& ctx, const ScratchDir& dir, const HubOptions& options);
// Starts deltasync-hub (store and log in `dir`) and waits until it serves.
Result<std::unique_ptr<ChildProcess>> start_hub(const BenchContext& ctx, const ScratchDir& dir,
                                                const HubOptions& options = {});
// Starts deltasync-hub (store and log in `dir`) without waiting and without
// deleting the stream: with `ha`, beside an active hub, it stands by.
Result<std::unique_ptr<ChildProcess>> spawn_hub(const BenchContext& ctx, const ScratchDir& dir,
                                                const HubOptions& options);

// An agent taking the benchmark type (partition "*"), replica in `dir`.
std::string agent_replica(const ScratchDir& dir, const std::string& id);
// Starts deltasync-agent without waiting for anything.
Result<std::unique_ptr<ChildProcess>> spawn_agent(const BenchContext& ctx, const ScratchDir& dir,
                                                  const std::string& id);
// Waits until the agent's log says it registered (stream resume).
Status wait_registered(ChildProcess& agent);
// spawn_agent + wait_registered.
Result<std::unique_ptr<ChildProcess>> start_agent(const BenchContext& ctx, const ScratchDir& dir,
                                                  const std::string& id);

// Reads an agent's applied version of the benchmark type from its replica
// (read-only; the agent keeps writing). 0 before the first apply.
class ReplicaProbe {
 public:
  static Result<std::unique_ptr<ReplicaProbe>> open(const std::string& path);
  Result<uint64_t> version();

 private:
  explicit ReplicaProbe(std::unique_ptr<Database> db) : db_(std::move(db)) {}
  std::unique_ptr<Database> db_;
};

// Waits (bounded) until the replica has applied `version`; the file may not
// exist yet when the wait starts (an agent just spawned).
Status wait_applied(const std::string& replica, uint64_t version, double timeout_s);

// Sends one ingest batch and returns its reply; a rejected batch is an error.
Result<IngestReply> ingest_once(Connection& nc, const std::vector<IngestRecord>& records);

// What a producer does after each acknowledged batch (e.g. what a naive hub
// would also do before acknowledging); its error stops the load.
using AfterAck = std::function<Status(Connection&, const std::vector<IngestRecord>&, const IngestReply&)>;

struct IngestLoad {
  uint64_t records = 0;          // acknowledged (and passed through after_ack)
  double seconds = 0;            // from the first send to the last producer's end
  uint64_t last_version = 0;     // highest version acknowledged
  Clock::time_point start;
  double records_per_s() const { return seconds > 0 ? static_cast<double>(records) / seconds : 0; }
};

// `threads` producers, one connection each, sending batches back to back.
// Batch k (counted over all producers) is make_batch(k); the load ends when
// `seconds` have passed or `batches` were taken, whichever comes first.
using BatchMaker = std::function<std::vector<IngestRecord>(uint64_t)>;
Result<IngestLoad> ingest_load(const BenchContext& ctx, int threads, const BatchMaker& make_batch, double seconds,
                               uint64_t batches, const AfterAck& after_ack = {});
// Acknowledged records/s of fresh batches of `batch` records for `seconds`.
Result<IngestLoad> ingest_for(const BenchContext& ctx, int threads, uint64_t batch, double seconds,
                              const AfterAck& after_ack = {});

// The "-> dead" transitions the hub logged (agent_service.cc logs every
// state change as "agent <id>: <from> -> <to> (<reason>)").
bool is_dead_transition(const std::string& log_line);
std::string agent_of_transition(const std::string& log_line);

// Process accounting over a window: % of one core (utime + stime over the
// window's wall time) and RSS at its end.
struct CpuWindow {
  double cpu_percent = 0;
  double rss_mib = 0;
};
// One window of `seconds` for all `pids` at once, in their order.
Result<std::vector<CpuWindow>> measure_cpu(const std::vector<pid_t>& pids, double seconds);

// A 3-node JetStream cluster on loopback of this run's own (the `replicas`
// scenario, `fleet` with --fleet-replicas 3), started; `scenario` names it
// in the failure.
Result<std::unique_ptr<NatsCluster>> start_cluster(const std::string& scenario);

}  // namespace ds::bench
