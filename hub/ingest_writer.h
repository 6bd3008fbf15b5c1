#pragma once
// The ingest path of the hub, in one place (docs/architecture.md, "Ingest"):
//
//   producer --ds.ingest.<type>--> NatsIngestListener (cnats thread)
//   HTTP POST /v1/types/<type>/records --> HttpApi (HTTP thread)
//        |  decode (msgpack, or JSON), validate_ingest_records: any bad
//        |  record rejects the whole batch at once, with its index
//        v
//   IngestWriter::submit --bounded queue--> the writer thread:
//        1. group commit: every queued batch in ONE SQLite transaction
//           (QueryStore::commit), so throughput grows with concurrency; the
//           commit also returns the delta batches it created;
//        2. on_committed(marks): the newest version and business time of
//           every partition that changed (the agent service refreshes stale
//           agents before the push and measures lag against them);
//        3. publish those delta batches to JetStream (from memory, or from
//           the log after the mark while the type is in the backlog), wait
//           for the acks and mark them published in the log
//           (StreamPublisher::publish, which owns the backlog and the mark);
//        4. only then reply to each producer {ok, first_version, last_version}.
//        Between groups (and every 100 ms when idle) one bounded retention
//        step (hub/store_retention.h) prunes the log and tombstones.
//
// A producer is told "ok" only after its changes are in SQLite (synchronous
// FULL) and acked by JetStream. When JetStream does not ack, the batch stays
// committed (the log is the source of truth) and the producer gets
// "unavailable"; the type goes into the publisher's backlog: its next
// publication reads the log after the published mark, so
// nothing is published out of order, and a retry with the same (producer,
// seq) is answered with the original range once published. The log is read
// back only then, at start and after a broker reconnect (reconciliation).
//
// An HA hub (its publisher has a fence: hub/stream_publisher.h, "Fencing")
// holds step 1's transaction open through step 3 (QueryStore::commit(hold))
// and commits it only then: a group the fence refused (the lease ran out,
// another hub publishes) is dropped and its producers told "unavailable",
// so the store never holds versions another hub may have used. That holds
// even when streams took part of the group (another of its types, or the
// first batches of a round before the other hub's claim): the hub steps
// down, and started again as a standby, its follower takes those versions
// back from the streams (hub/standby_follower.h). A group the broker
// failed otherwise is kept, as above (some of it may be in the stream).
// on_committed runs after that commit.
//
// Publishing is not overlapped with the next commit (no second thread): on
// the 2-core machine the hub is CPU-bound, and a pipelined publisher thread
// was no clear win (slower at batches of 1,000 under load, about 10% faster
// when lightly loaded; docs/benchmarks.md, "What bounds ingest").
//
// cnats callback threads and the HTTP thread never wait on SQLite or on
// JetStream: they decode, validate and enqueue; the writer thread replies.
// When the queue is full the batch is refused at once with "unavailable"
// (back-pressure). When the store's disk is full (SQLITE_FULL), the group's
// transaction rolls back and every producer in it gets "unavailable" naming
// the full store; nothing is acknowledged, the hub logs one warning for the
// whole episode and one info line when it ends (below): ingest resumes by
// itself once space is back (producers retry with the same seq).
// Until then not_ready_reason() names the full store (GET /readyz is 503): it
// is set by a commit refused with SQLITE_FULL, by a published mark the store
// refused with it (the batch is acknowledged all the same: it is stored and
// in the stream), or, while the writer is idle,
// by the store's filesystem having less than kStoreFreeBytesNearlyFull free
// (an idle hub on a full disk is not ready before its first refused batch),
// and cleared only once the filesystem has kStoreFreeBytesToResume free again
// (statvfs, checked at most every second, after commits and while idle; the
// bytes free to this process: root may use the filesystem's reserved blocks).
// A commit that succeeds meanwhile does not end the episode: SQLite can reuse
// the WAL space a refused commit had allocated, so on a full filesystem small
// commits succeed between refusals, and readiness must not flap with them.
// A commit that fails for another reason (the database locked by another
// process, an I/O error, a read-only file) is logged, refused to its
// producers and makes the hub not ready, naming the cause, until a commit
// succeeds again (producers retry) or, for a lock, until the idle writer
// can take the lock again.
//
// The writer thread ends only in stop(). Should it end otherwise (a bug in
// its loop), every queued and later batch is refused with "unavailable" and
// not_ready_reason() says the writer is not running: the hub must be
// restarted.
//
// Test-only fault points (hub/fault_hook.h, injected through Options):
// FaultPoint::kCommitted after a group commit, before anything of it is
// published; FaultPoint::kReconciled after a reconciliation, where the hook
// may end the writer thread (the process goes on, as after a bug in the
// loop: /readyz must say so); FaultPoint::kIdle after each idle round's
// checks (unit tests wait for rounds there).
//
// Seams: the writer reads time only through a Clock (shared/clock.h): the
// commit time stamped on the changes (hub_ts), retention's horizon and the
// free-space check's pace; it reaches JetStream only through its
// StreamPublisher, which a unit test builds over a fake broker
// (StreamAccess, shared/messaging.h). Its idle wake-up is a bounded
// condition wait; the commit-duration histogram is measured with
// std::chrono::steady_clock (a measurement, not a decision). Unit tests:
// tests/unit/ingest_writer_test.cc.
//
// Thread-safety: submit(), request_reconcile(), not_ready_reason() and stop()
// are thread-safe;
// everything else runs on the writer thread.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "hub/authorizer.h"
#include "hub/fault_hook.h"
#include "hub/hub_metrics.h"
#include "hub/ingest_validation.h"
#include "hub/query_store.h"
#include "hub/store_retention.h"
#include "hub/stream_publisher.h"
#include "shared/clock.h"
#include "shared/config.h"
#include "shared/messages.h"
#include "shared/nats.h"
#include "shared/status.h"

namespace ds {

// An ingest reply as JSON text: {"ok":true,"first_version":..,"last_version":..}
// or {"ok":false,"error":{"code":..,"message":..,"index":..}}.
std::string ingest_reply_json(const IngestReply& reply);

using IngestReplyFn = std::function<void(const IngestReply&)>;
using CommittedFn = std::function<void(const std::vector<PartitionMark>&)>;

class IngestWriter {
 public:
  struct Options {
    size_t max_queue = 4096;            // batches waiting; beyond: "unavailable"
    size_t max_group_records = 50000;   // records per group commit (at least one batch)
    FaultHook faults;                   // test-only (hub/fault_hook.h); empty in production
  };

  // `store` is the writer connection; the writer thread is its only user
  // from start() to stop(). `config`, `store`, `publisher`, `metrics` and
  // `clock` must outlive the writer.
  IngestWriter(const HubConfig& config, QueryStore& store, StreamPublisher& publisher, HubMetrics& metrics,
               Options options, const Clock& clock = real_clock());
  IngestWriter(const HubConfig& config, QueryStore& store, StreamPublisher& publisher, HubMetrics& metrics)
      : IngestWriter(config, store, publisher, metrics, Options{}) {}
  ~IngestWriter();
  IngestWriter(const IngestWriter&) = delete;
  IngestWriter& operator=(const IngestWriter&) = delete;

  // Called on the writer thread after each commit that stored new versions,
  // with their partitions' marks. Set before start().
  void set_on_committed(CommittedFn fn) { on_committed_ = std::move(fn); }

  // Starts the writer thread; its first job is a reconciliation.
  void start();

  // Validates `request` for `type` and queues it; `reply` is called exactly
  // once: at once for a rejected batch (invalid, unknown type, queue full,
  // stopping), else from the writer thread after commit and publish.
  void submit(const std::string& type, IngestRequest request, IngestReplyFn reply);

  // Queues a reconciliation of every stream with the log (after a broker
  // reconnect). Runs before the next group commit.
  void request_reconcile();

  // Free bytes on the store's filesystem that end a store-full episode.
  static constexpr uint64_t kStoreFreeBytesToResume = 1u << 20;
  // Fewer free bytes than this start one while the writer is idle.
  static constexpr uint64_t kStoreFreeBytesNearlyFull = 256u << 10;

  // Why the writer is not ready ("" when it is), the first that holds of:
  // its thread is not running (never started, or ended other than by
  // stop()); the first reconciliation of every stream with the change log
  // has not run yet; the store is full (above); the last commit failed for
  // another reason (above); a type whose stream holds
  // changes the store lacks and could not give back (after a restore from an
  // older backup; StreamPublisher, Recovery). Thread-safe; for /readyz.
  std::string not_ready_reason() const;

  // Refuses new batches, finishes (commits, publishes, replies to) the
  // queued ones, and joins the thread. Idempotent.
  void stop();

 private:
  struct Pending {
    CommitBatch batch;
    IngestReplyFn reply;
  };

  void run();
  void loop();
  // The store refused a write for lack of space (a commit, or a published
  // mark): starts the store-full episode (one warning; /readyz not ready)
  // unless one is on.
  void enter_store_full(const Status& cause);
  // The bytes free on the store's filesystem to this process; nullopt when
  // statvfs fails or when asked again within a second (the pace of both
  // checks below).
  std::optional<uint64_t> store_free_bytes_paced();
  // While the store is full: whether its filesystem has space again.
  bool store_has_space_again();
  // While idle and not full: starts the store-full episode when the
  // filesystem has less than kStoreFreeBytesNearlyFull free.
  void enter_store_full_when_nearly_full();
  // A commit succeeded: the store takes commits (ready, as far as it goes).
  void clear_commit_failure();
  // While idle after a commit refused for a lock another connection held:
  // clears it once the store can be locked again (probed at most every
  // second), so an idle hub is not left not ready for a lock long gone.
  // Other failures (I/O errors, a read-only file) wait for a commit.
  void end_lock_failure_once_free();
  // Ends the store-full episode (ready again, one info line) once
  // store_has_space_again().
  void end_store_full_once_space_is_back();
  void process_group(std::vector<Pending>& group);
  // The publisher could not write an acked mark for lack of space: starts
  // the store-full episode (the batch is acknowledged all the same).
  void enter_store_full_when_mark_refused();
  void reply_rejected(const IngestReplyFn& reply, const Status& status, std::optional<uint32_t> index);

  const HubConfig& config_;
  QueryStore& store_;
  StreamPublisher& publisher_;
  HubMetrics& metrics_;
  const Options options_;
  const Clock& clock_;
  StoreRetention retention_;  // writer thread only
  bool reconciled_ = false;   // writer thread only
  CommittedFn on_committed_;
  // Batches refused in the current store-full episode; 0 outside one.
  // Writer thread only.
  uint64_t refused_while_full_ = 0;
  // When store_free_bytes_paced() last looked (steady ms). Writer thread only.
  int64_t space_checked_ms_ = 0;
  // The last commit failed (commit_failure_ says why), for a lock; when the
  // lock was last probed. Writer thread only.
  bool commit_failed_ = false;
  bool commit_failed_for_lock_ = false;
  int64_t lock_probed_ms_ = 0;
  // Read by not_ready_reason() on any thread.
  std::atomic<bool> store_full_{false};
  std::atomic<bool> thread_running_{false};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::string> blocked_;  // type -> why; guarded by mu_
  bool first_reconcile_done_ = false;            // guarded by mu_
  // Why the last commit failed, other than for space; "" once one succeeds.
  std::string commit_failure_;  // guarded by mu_
  std::deque<Pending> queue_;        // guarded by mu_
  bool accepting_ = false;           // guarded by mu_
  bool stopping_ = false;            // guarded by mu_
  bool ended_ = false;               // the thread ended other than by stop(); guarded by mu_
  bool reconcile_requested_ = false; // guarded by mu_
  std::thread thread_;
};

// Subscribes ds.ingest.*.* and feeds the writer: msgpack bodies, or JSON
// when the request has header Content-Type: application/json (then the reply
// is JSON too). The producer is the subject's last token, which NATS
// permissions bind to the producer's credentials: it keys idempotent retries,
// and a body `producer` other than it is refused (permission_denied), as is a
// type beyond the producer's grants (Authorizer::may_ingest). A request whose
// reply subject is not the producer's own inbox is dropped unanswered and
// unstored (Authorizer::may_reply). Replies to malformed requests at once.
// The destructor unsubscribes; call drain() first to let requests already
// received reach the writer.
class NatsIngestListener {
 public:
  // `authorizer` must outlive the listener.
  static Result<std::unique_ptr<NatsIngestListener>> start(Connection& nc, const HubConfig& config,
                                                           Authorizer& authorizer, IngestWriter& writer,
                                                           HubMetrics& metrics);
  // Stops taking new requests; those already delivered are still handled.
  Status drain();
  ~NatsIngestListener();

 private:
  NatsIngestListener(Connection& nc, const HubConfig& config, Authorizer& authorizer, IngestWriter& writer,
                     HubMetrics& metrics)
      : nc_(nc), subjects_(config.nats.subject_prefix), authorizer_(authorizer), writer_(writer), metrics_(metrics) {}
  void on_message(Message msg);

  Connection& nc_;
  const Subjects subjects_;
  Authorizer& authorizer_;
  IngestWriter& writer_;
  HubMetrics& metrics_;
  std::unique_ptr<Subscription> sub_;
};

}  // namespace ds
