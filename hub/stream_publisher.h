#pragma once
// StreamPublisher: moves committed changes from the change log into the
// per-type streams DS_<TYPE> (docs/protocol.md, "Subjects and streams") and
// reconciles the streams with the log.
//
// Publication: every delta batch of the log after the type's published batch
// goes to ds.delta.<type>.<partition> with Nats-Msg-Id "<type>:<batch>" and
// the retry keys whose last version it holds (header Ds-Retry-Keys,
// hub/retry_key_header.h), in ascending batch order; all are published asynchronously, then every ack is
// awaited (the last one gives the stream sequence); only then is the
// published mark advanced in the log. A batch's content is fixed at commit
// (see QueryStore), so publishing it again is always harmless: the stream's
// duplicate window drops it, and agents skip versions they hold.
//
// The publisher owns, per type, what the stream is known to hold:
//   - the published mark, written in the log (QueryStore::mark_published)
//     by this class alone: after each publication's acks, and by the
//     reconciliation (below);
//   - the backlog: a type whose log may hold batches the stream has not
//     acked (before its first reconciliation, after a failed publication or
//     reconciliation) is published from the log after its mark, in order;
//     any other type straight from the batches its commit just created, in
//     memory;
//   - the marks the log could not take (a full disk, a lock another process
//     holds): an acked mark, or the stream's last batch a reconciliation
//     found; kept in memory and used as the mark meanwhile (so acked
//     batches are not published again, and those a broker lost are), written
//     again before the type's next publication and whenever the writer is
//     idle with space on the store's disk (write_unwritten_marks). Such a
//     failure fails no publication: what it records is what the stream
//     holds, and a restart's reconciliation sets the mark from the stream.
//     mark_failure() says why for the writer (a full disk starts its
//     store-full episode); other causes are warned once per episode.
//
// Size: no delta batch larger than max_batch_bytes() is published: the
// max_payload of the server the connection is on now (read at every call, so
// a reconnect to a server with another limit counts at once), less headroom
// (message_body_limit, shared/codec.h). The commit cuts batches under it; a
// stored batch that does not fit (the limit shrank since, or an older hub
// stored it) is cut again in the log (QueryStore::recut_batch) before it is
// published; a single change that can never fit stops the type's publication
// with an error saying how large max_payload must be (ingest refuses such
// records, so only a change stored before, or a shrunken limit, gets there).
//
// Reconciliation (start-up and every broker reconnect): per type, the last
// message actually in the stream names the last batch it holds (none for an
// empty stream). The published mark is moved to it, replacing a mark held in
// memory (forward after a crash between publish and mark; backward when the
// broker lost acknowledged messages, as nats-server 2.9 may on a host
// crash), and everything after it is republished. A stream whose last
// message is gone (aged out) keeps the mark. Missing streams are created
// first, so a broker that lost its whole store is refilled from the log.
//
// Recovery (the store was restored from an older backup): when the stream's
// last batch is beyond the log's head, the stream holds acknowledged changes
// the store lacks. The publisher reads the stream's messages after the log's
// published sequence (each a delta batch carrying its changes whole), keeps
// the changes after the head, and, when they continue the head without a gap,
// stores them as their commit did, with the retry keys the messages carry
// (QueryStore::apply_recovered; read by hub/stream_changes.h), and logs what
// it took back; the type then goes on as if never restored. When a version is
// missing (the stream aged it out, or was purged or recreated since the
// backup), nothing is stored and reconcile_type fails with DataLoss and a
// message saying what the operator must do; the ingest writer then refuses
// ingest of that type (a new commit would reuse versions the stream and the
// agents already hold) and /readyz says why. Memory: the recovered changes
// are held until stored (the changes acknowledged after the backup).
//
// Fencing (an HA hub: set_fence; docs/operations.md, "High availability"):
// two hubs must never both publish. With a PublishFence:
//   - every delta carries the hub's lease holder name (header Ds-Hub), and
//     its Nats-Msg-Id ends with it ("<type>:<batch>:<holder>"): JetStream
//     checks duplicates before expectations, so two hubs continuing from
//     the same head must not share ids;
//   - the first message of a round carries Nats-Expected-Last-Sequence (the
//     mark's sequence), every other one Nats-Expected-Last-Msg-Id (the
//     message before it): JetStream takes the round whole or, from the
//     first message it refuses, nothing more;
//   - nothing is published while the lease's own view says it ran out (and
//     the hub then steps down: PublishFence::fenced);
//   - a new active claims every stream before its first reconciliation
//     (claim_streams: its last batch again under its name, header
//     Ds-Claim), so an old active that was only paused finds its next
//     publication refused; publish() then reads every message after its
//     mark: all its own (acks lost: reconcile), or one of another hub's
//     (fenced: the hub steps down). A reconciliation that finds another
//     hub's message last is fenced the same way.
// Not covered: a stream whose last message aged out or was purged cannot
// be claimed (nothing to copy); an old active's publication there is
// refused only once the new active published, and one of them then
// steps down.
//
// Seam: the publisher reaches JetStream only through StreamAccess
// (shared/messaging.h), so the ingest writer's unit tests
// (tests/unit/ingest_writer_test.cc) run it over a fake broker.
//
// Test-only fault point (hub/fault_hook.h): FaultPoint::kPublished, after
// the acks of a publication and before its mark is written.
//
// Thread-safety: none, but max_batch_bytes(); used by the ingest writer
// thread only (it owns the writer QueryStore the publisher reads and marks),
// after ensure_streams() at the hub's start, before the writer starts.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "hub/fault_hook.h"
#include "hub/hub_metrics.h"
#include "hub/query_store.h"
#include "shared/config.h"
#include "shared/messaging.h"
#include "shared/names.h"
#include "shared/nats.h"
#include "shared/status.h"

namespace ds {

// The batch (first version) a stored delta message carries: from its
// Nats-Msg-Id "<type>:<batch>", or else from its first change; nullopt
// for a message that is not a delta batch.
std::optional<uint64_t> batch_of(const StoredMessage& m);

// Every delta message of an HA hub names it (PublishFence::holder); a
// takeover's claim says so.
inline constexpr std::string_view kHubHeader = "Ds-Hub";
inline constexpr std::string_view kClaimHeader = "Ds-Claim";
inline constexpr std::string_view kExpectedLastSeqHeader = "Nats-Expected-Last-Sequence";
inline constexpr std::string_view kExpectedLastMsgIdHeader = "Nats-Expected-Last-Msg-Id";

// An HA hub's fence (see Fencing above), from its LeaseKeeper.
struct PublishFence {
  std::string holder;                                      // "<hub>/<instance>"; "" = one hub, no fence
  std::function<bool()> lease_valid;                       // LeaseKeeper::valid
  std::function<void(const std::string& why)> fenced;      // another hub publishes: step down
};

class StreamPublisher {
 public:
  // Production: over `js`. `js` and `store` (the writer's connection) must
  // outlive the publisher; `faults` is the test-only hook (usually empty).
  StreamPublisher(JetStream& js, QueryStore& store, const HubConfig& config, HubMetrics& metrics,
                  FaultHook faults = {});
  // Over an explicit seam, which must outlive the publisher.
  StreamPublisher(StreamAccess& streams, QueryStore& store, const HubConfig& config, HubMetrics& metrics,
                  FaultHook faults = {});

  // The largest delta batch encoding publishable now (see above). Thread-safe.
  size_t max_batch_bytes() const;

  // Turns the fence on (HA); before the first publication.
  void set_fence(PublishFence fence) { fence_ = std::move(fence); }
  bool has_fence() const { return fenced(); }
  // Whether the fence refused the last publish(): the lease had run out,
  // or another hub published into the stream; the hub steps down. The
  // batches of the round before the first refused one may be in the
  // stream (another hub's claim can land between two of them, see
  // Fencing); none after it is.
  bool fence_refused() const { return fence_refused_; }
  // The writer found it cannot go on as the active hub (its store refused
  // a group the streams already hold): the hub steps down, for `why`.
  void give_up_lease(const std::string& why);
  // HA takeover, before the first reconciliation: publishes into every
  // stream that holds a message a copy of its last message under this hub
  // (see Fencing), after the stream's last sequence as read. Retried when
  // the old active publishes meanwhile (a few times). OK without a fence.
  Status claim_streams();

  // Creates or updates DS_<TYPE> for every configured type: file storage,
  // subjects ds.delta.<type>.>, duplicate window 2 min, retention from config.
  Status ensure_streams();

  // Publishes what the stream of `type` lacks, in order, and marks it
  // published: from `created` (the delta batches a commit just made, of
  // every type; others are skipped) when the stream holds everything
  // before them, else from the log after the mark (these included). An
  // error means they are not known to be in the stream (the broker did not
  // ack, a batch can never fit, or the log could not be read): the type
  // goes into the backlog and nothing is lost (the log holds it). A mark the
  // log cannot take is no error (see above).
  Status publish(const std::string& type, const std::vector<PendingBatch>& created);

  // Reconciles every type (see above) and sets its backlog: out of it when
  // reconciled, in it when not; returns the first failure after trying them
  // all. `failures`, when given, receives the status of every type not
  // reconciled (all of them when the streams could not be ensured; DataLoss:
  // the stream holds changes the store lacks and cannot give back).
  Status reconcile(std::map<std::string, Status>* failures = nullptr);

  // Whether acked marks wait to be written; writes them (see above).
  bool has_unwritten_marks() const { return !unwritten_marks_.empty(); }
  void write_unwritten_marks();
  // Why the log refused a mark in the last call of publish(), reconcile()
  // or write_unwritten_marks(); ok when it took every mark it was given there.
  const Status& mark_failure() const { return mark_failure_; }

  // The first batch the stream of `type` still holds (retention keeps the
  // log whole from there); nullopt when the stream holds no message.
  Result<std::optional<uint64_t>> first_stream_batch(const std::string& type);

 private:
  // The stream's ack of the last of a run of published batches.
  struct Acked {
    uint64_t batch = 0;  // its first version (Nats-Msg-Id "<type>:<batch>")
    uint64_t seq = 0;    // its stream sequence
  };

  // Publishes the batches of `type` the stream has not acked yet, from the
  // log, and marks them published. Unavailable when the broker does not
  // ack; the changes stay in the log for the next attempt.
  Status publish_pending(const std::string& type);
  // Publishes `batches` of `type` (ascending; the successors of what the
  // stream holds) and returns the ack of the last one. Unavailable when the
  // broker does not ack; Internal, before anything is sent, when a batch
  // exceeds max_batch_bytes().
  Result<Acked> publish_batches(const std::string& type, const std::vector<const PendingBatch*>& batches);
  // Publishes the batches of one read of the log after `after_batch`, or
  // cuts again the first of them that is too large; *count is 0 when
  // nothing was left, else *last_batch is the last one acked (unchanged
  // after a re-cut).
  Status publish_round(const std::string& type, uint64_t after_batch, uint64_t* last_batch, size_t* count);
  // The mark of `type`: the one held in memory, else the log's (`st`).
  Acked mark_of(const std::string& type, const TypeState& st) const;
  // The last batch the stream of `type` is known to hold: mark_of's.
  Result<uint64_t> published_batch(const std::string& type);
  // Records `mark` (what the stream holds) as the published mark of `type`:
  // in the log, or, when the log refuses it, in unwritten_marks_ (see
  // above).
  void write_mark(const std::string& type, const Acked& mark);

  Status reconcile_type(const std::string& type);
  // publish() without the fence's handling of a refused sequence.
  Status publish_now(const std::string& type, const std::vector<PendingBatch>& created);
  // With a fence, the stream refused a publication (`refused`) because it
  // moved past this hub's mark: by this hub's own messages (acks lost:
  // reconcile), or by another hub (fenced: step down).
  Status after_stream_moved(const std::string& type, const Status& refused);
  // Fenced: `m`, a message of `stream` from another hub (or from no hub),
  // is where this hub's publications should be. Logs it, has the hub step
  // down (PublishFence::fenced) and returns Unavailable; `context` says
  // where it was found.
  Status another_hub_published(const std::string& context, const std::string& stream, const StoredMessage& m);
  bool fenced() const { return !fence_.holder.empty(); }
  // Nats-Msg-Id of `batch`: "<type>:<batch>", with a fence
  // "<type>:<batch>:<holder>" (see Fencing).
  std::string delta_msg_id(const std::string& type, uint64_t batch) const;
  // Takes back from the stream the changes of `type` after the log's head
  // (see Recovery above); `last_seq` is the stream's last sequence.
  Status recover_from_stream(const std::string& type, const TypeState& st, uint64_t first_seq, uint64_t last_seq,
                             uint64_t stream_batch);

  StreamPublisher(std::unique_ptr<StreamAccess> own, QueryStore& store, const HubConfig& config, HubMetrics& metrics,
                  FaultHook faults);

  std::unique_ptr<StreamAccess> own_streams_;  // set by the JetStream constructor
  StreamAccess& js_;
  QueryStore& store_;
  const HubConfig& config_;
  Subjects subjects_;
  HubMetrics& metrics_;
  const FaultHook faults_;
  // Types published from the log (see above); every type until reconciled.
  std::set<std::string> backlog_;
  // Marks the log has not taken yet, by type (see above).
  std::map<std::string, Acked> unwritten_marks_;
  Status mark_failure_;
  PublishFence fence_;
  bool fence_refused_ = false;  // see fence_refused()
};

}  // namespace ds
