#pragma once
// VerifyService: `deltasync verify` as a background job of the hub, so a
// verify of thousands of agents never runs on the HTTP thread (GET /healthz
// and /metrics answer throughout) and reports its progress while it runs.
//
// A job, in phases (the report's "phase"):
//   digests  the hub's digests of every (type, partition) the agents take
//            are computed first (their row counts set each agent's request
//            timeout, VerifyOptions), then every non-retired, non-dead agent
//            is asked for its digests (DigestRequest on ds.agent.<id>.digest)
//            by kConcurrency worker threads, each with at most one request
//            in flight: 1,000 agents take about 1,000 x (round trip + the
//            agent's table scan) / 16. agents_done / agents_total count the
//            answers (or failures).
//   compare  per agent and type, the agent's content digest against the
//            hub's for the agent's partition (computed once per type and
//            partition per job, in the digests phase, on the job's own
//            read-only QueryStore). An
//            agent that predates the content digest is compared by its keys
//            digest and the row says content_checked: false.
//   locate   for up to kMaxLocated differing agent x type pairs: bucket
//            digests (shared/digest.h; about 128 rows per bucket), then the
//            (key, content hash) rows of at most kMaxListedBuckets differing
//            buckets, from the agent and from the hub; the row gets
//            "differences": [{key, problem}] (at most kMaxNamedKeys).
//   repair   (repair jobs) for each differing agent x type the agent
//            service orders a snapshot (AgentService::order_snapshot); the
//            job waits until each is back (consumer open or on the live feed, no snapshot
//            awaited, registered after the order: the agent's registration
//            count went up, no wall clock involved) or repair_timeout_ms
//            (monotonic),
//            then the repaired agents go through digests/compare/locate
//            again. The report keeps the rows before repair in
//            "before_repair" and lists each order in "repairs".
//
// A job may be limited to some agents (VerifyOptions::agents, e.g. the one
// host a rollout just upgraded): only they are asked and compared, and each
// named agent the hub does not know (never registered, or retired) is a row
// of its own with match false, so a limited job never passes vacuously.
//
// At most one job runs at a time: start() while a plain job for the same
// agents runs returns that job's id (a repair job never joins a plain one,
// nor a job for other agents: AlreadyExists while any job runs). The last
// kKeptJobs reports are kept.
//
// Threads: one runner thread per job plus its digest workers, all joined by
// the job itself or by stop(). start() and report() are thread-safe (the
// HTTP thread calls them); the hooks are called from the job's threads and
// must be thread-safe (AgentService's are; Connection::request is).

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "shared/clock.h"
#include "shared/config.h"
#include "shared/messages.h"
#include "shared/status.h"

namespace ds {

// What a verify job needs from the rest of the hub.
struct VerifyHooks {
  // AgentService::agents_json().
  std::function<nlohmann::json()> agents_json;
  // One request/reply on ds.agent.<agent>.digest; an agent's error reply
  // becomes the Status.
  std::function<Result<DigestReply>(const std::string& agent, const DigestRequest& request, int64_t timeout_ms)>
      request_digest;
  // AgentService::order_snapshot().
  std::function<Status(const std::string& agent, const std::string& type)> order_snapshot;
};

struct VerifyOptions {
  bool repair = false;
  std::set<std::string> agents;        // only these agents; empty: every agent
  // A digest request waits agent_timeout_ms plus agent_timeout_per_million_rows_ms
  // per million rows the agent should hold (the hub's rows of its types'
  // partitions): the agent scans every row for each request.
  int64_t agent_timeout_ms = 2000;
  int64_t agent_timeout_per_million_rows_ms = 30000;
  int64_t repair_timeout_ms = 300000;  // for every ordered snapshot together
};

class VerifyService {
 public:
  static constexpr size_t kConcurrency = 16;
  static constexpr size_t kMaxLocated = 100;
  static constexpr size_t kMaxListedBuckets = 64;
  static constexpr size_t kMaxNamedKeys = 20;
  static constexpr size_t kKeptJobs = 16;

  // `config` and `clock` must outlive the service (its store path and types
  // are read by every job; the clock times the jobs and bounds the repair
  // wait, repair_timeout_ms).
  VerifyService(const HubConfig& config, VerifyHooks hooks, const Clock& clock = real_clock());
  ~VerifyService();
  VerifyService(const VerifyService&) = delete;
  VerifyService& operator=(const VerifyService&) = delete;

  // Starts a job (or joins the running plain one, see above); returns its
  // id. `on_done`, when given, is called once on the job's runner thread
  // with the final report. Unavailable after stop().
  Result<std::string> start(const VerifyOptions& options,
                            std::function<void(const nlohmann::json&)> on_done = nullptr);
  // The job's report so far (complete once "state" is "done" or "failed"):
  //   {id, state: running|done|failed, phase, repair, agents? (the
  //    limit, when given), agents_total,
  //    agents_done, started_at (wall ms), elapsed_ms, ok (when done),
  //    rows: [{agent, state, type, partition, hub_version, hub_rows,
  //            hub_digest, agent_version, agent_rows, agent_digest,
  //            lag_ms, content_checked, match, error?, differences?,
  //            different_rows?, differences_truncated?,
  //            agent_digest_ms (the agent's answer, its scan of every type
  //            it takes included), agent_timeout_ms (what it was given),
  //            hub_digest_ms (the hub's scan of the partition)}],
  //    repairs?: [{agent, type, ordered, done, error?}], before_repair?: [...],
  //    error? (state failed)}
  // NotFound for an id that is unknown or no longer kept.
  Result<nlohmann::json> report(const std::string& id) const;

  // Cancels a running job (it ends "failed") and joins its threads;
  // idempotent. on_done callbacks run before stop() returns.
  void stop();

 private:
  struct Job;
  void run(std::shared_ptr<Job> job);

  const HubConfig& config_;
  VerifyHooks hooks_;
  const Clock& clock_;

  mutable std::mutex mu_;
  std::deque<std::shared_ptr<Job>> jobs_;  // guarded by mu_; newest last
  std::shared_ptr<Job> running_;           // guarded by mu_
  std::thread runner_;                     // guarded by mu_; the latest job's thread
  uint64_t next_id_ = 1;                   // guarded by mu_
  bool stopped_ = false;                   // guarded by mu_
  std::atomic<bool> cancel_{false};
};

}  // namespace ds
