#pragma once
// StreamPublisher: moves committed changes from the change log into the
// per-type streams DS_<TYPE> (docs/protocol.md, "Subjects and streams") and
// reconciles the streams with the log.
//
// Publication: every delta batch of the log after the type's published batch
// goes to ds.delta.<type>.<partition> with Nats-Msg-Id "<type>:<batch>", in
// ascending batch order; all but the last are published asynchronously, the
// last synchronously (its ack gives the stream sequence), then every ack is
// awaited; only then is the published mark advanced in the log. A batch's
// content is fixed at commit (see QueryStore), so publishing it again is
// always harmless: the stream's duplicate window drops it, and agents skip
// versions they hold.
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
// message actually in the stream names the last batch it holds. The log's
// published mark is moved to it (forward after a crash between publish and
// mark; backward when the broker lost acknowledged messages, as nats-server
// 2.9 may on a host crash), and everything after it is republished. A stream
// whose last message is gone (aged out) keeps the log's mark. Missing streams
// are created first, so a broker that lost its whole store is refilled from
// the log.
//
// Recovery (the store was restored from an older backup): when the stream's
// last batch is beyond the log's head, the stream holds acknowledged changes
// the store lacks. The publisher reads the stream's messages after the log's
// published sequence (each a delta batch carrying its changes whole), keeps
// the changes after the head, and, when they continue the head without a gap,
// stores them as their commit did (QueryStore::apply_recovered) and logs what
// it took back; the type then goes on as if never restored. When a version is
// missing (the stream aged it out, or was purged or recreated since the
// backup), nothing is stored and reconcile_type fails with DataLoss and a
// message saying what the operator must do; the ingest writer then refuses
// ingest of that type (a new commit would reuse versions the stream and the
// agents already hold) and /readyz says why. Memory: the recovered changes
// are held until stored (the changes acknowledged after the backup).
//
// Seam: the publisher reaches JetStream only through StreamAccess
// (shared/messaging.h), so the ingest writer's unit tests
// (tests/unit/ingest_writer_test.cc) run it over a fake broker.
//
// Thread-safety: none; used by the ingest writer thread only (it owns the
// writer QueryStore the publisher reads and marks).

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

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

class StreamPublisher {
 public:
  // Production: over `js`, which must outlive the publisher.
  StreamPublisher(JetStream& js, const HubConfig& config, HubMetrics& metrics);
  // Over an explicit seam, which must outlive the publisher.
  StreamPublisher(StreamAccess& streams, const HubConfig& config, HubMetrics& metrics);

  // The largest delta batch encoding publishable now (see above). Thread-safe.
  size_t max_batch_bytes() const;

  // Creates or updates DS_<TYPE> for every configured type: file storage,
  // subjects ds.delta.<type>.>, duplicate window 2 min, retention from config.
  Status ensure_streams();

  // Publishes the batches of `type` the stream has not acked yet and marks
  // them published. Unavailable when the broker does not ack; the changes
  // stay in the log for the next attempt.
  Status publish_pending(QueryStore& store, const std::string& type);

  // The stream's ack of the last of a run of published batches.
  struct Acked {
    uint64_t batch = 0;  // its first version (Nats-Msg-Id "<type>:<batch>")
    uint64_t seq = 0;    // its stream sequence
  };
  // Publishes `batches` of `type` (ascending; the successors of what the
  // stream holds; the ingest writer passes those a commit just created) and
  // returns the ack of the last one, for the caller to mark published in the
  // log. Unavailable when the broker does not ack; Internal, before
  // anything is sent, when a batch exceeds max_batch_bytes().
  Result<Acked> publish_batches(const std::string& type, const std::vector<const PendingBatch*>& batches);

  // Reconciles every type (see above); returns the first failure after
  // trying them all. `failures`, when given, receives each failed type's
  // status (DataLoss: the stream holds changes the store lacks and cannot
  // give back).
  Status reconcile(QueryStore& store, std::map<std::string, Status>* failures = nullptr);
  Status reconcile_type(QueryStore& store, const std::string& type);

  // The first batch the stream of `type` still holds (retention keeps the
  // log whole from there); nullopt when the stream holds no message.
  Result<std::optional<uint64_t>> first_stream_batch(const std::string& type);

  // Test-only fault hook (DELTASYNC_FAULT=exit_after_publish, see
  // ingest_writer.h): _exit(code) after the acks, before marking published.
  void set_exit_before_mark(int code) { exit_before_mark_ = code; }

 private:
  // Publishes the batches of one read of the log after `after_batch`, or
  // cuts again the first of them that is too large; *count is 0 when
  // nothing was left, else *last_batch is the last one acked (unchanged
  // after a re-cut).
  Status publish_round(QueryStore& store, const std::string& type, uint64_t after_batch, uint64_t* last_batch,
                       size_t* batches);

  // Takes back from the stream the changes of `type` after the log's head
  // (see Recovery above); `last_seq` is the stream's last sequence.
  Status recover_from_stream(QueryStore& store, const std::string& type, const TypeState& st, uint64_t first_seq,
                             uint64_t last_seq, uint64_t stream_batch);

  std::unique_ptr<StreamAccess> own_streams_;  // set by the JetStream constructor
  StreamAccess& js_;
  const HubConfig& config_;
  Subjects subjects_;
  HubMetrics& metrics_;
  int exit_before_mark_ = 0;
};

}  // namespace ds
