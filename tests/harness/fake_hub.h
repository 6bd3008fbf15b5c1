#pragma once
// FakeHub: the smallest hub the agent's integration tests need, built only
// from shared/, so that those tests exercise the agent against the protocol
// (docs/protocol.md) and not against the hub's code: a hub bug can neither
// hide an agent bug nor fail an agent test. It follows the protocol:
//   - holds the current rows of each type in memory and assigns versions;
//   - publishes each commit as delta batches (at most `batch_size` changes,
//     one (type, partition) each) to ds.delta.<type>.<partition> in stream
//     DS_<TYPE>, with Nats-Msg-Id <type>:<first version>;
//   - answers ds.hub.register.<agent>: unknown type or bad partition refuses
//     the whole registration; otherwise per subscription it (re)creates the
//     push consumer ag_<agent> from the reported seq + 1, or, when that point
//     has left the stream and the type has data, orders a snapshot (and
//     creates no consumer);
//   - answers ds.hub.snapshot.<agent> from the in-memory rows (keyset pages,
//     high_version / high_seq of the latest publish);
//   - sends heartbeat requests and collects the replies.
//
// Thread-safety: every method is thread-safe (one mutex around the rows; the
// request handlers run on cnats threads).

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "shared/digest.h"
#include "shared/messages.h"
#include "shared/names.h"
#include "shared/nats.h"

namespace ds::testing {

struct FakeType {
  std::string name;
  TypeSchema schema;
};

class FakeHub {
 public:
  // `nc` is the hub's own connection; it must outlive the FakeHub.
  FakeHub(Connection& nc, std::vector<FakeType> types, std::string name = "fakehub");
  ~FakeHub();

  // Creates the streams and starts answering registrations and snapshots.
  Status start();

  // Commits `records` of `type` (versions assigned in order) and publishes
  // them. Returns the last version.
  Result<uint64_t> commit(const std::string& type, const std::vector<IngestRecord>& records,
                          size_t batch_size = 500);
  // Publishes raw bytes into the type's stream (e.g. an undecodable delta).
  Status publish_raw(const std::string& type, const std::string& partition, const std::string& bytes,
                     const std::string& msg_id);
  // Re-publishes an already published batch under a new message id: a
  // duplicate delivery of versions the agent already has.
  Status republish(const std::string& type, const std::string& partition, const DeltaBatch& batch);
  // Drops every message of the type's stream (so a reported checkpoint has
  // "left the stream").
  Status purge(const std::string& type);

  // The digest of the live rows the agent of `partition` ("*" = all) takes.
  Digest digest(const std::string& type, const std::string& partition = "*") const;
  uint64_t last_version(const std::string& type) const;

  // Publishes one heartbeat request on ds.hb.<type> (or, with `agent`, the
  // direct probe), without a reply subject, and collects the replies
  // published on ds.hub.beat.<agent> for `wait_ms`.
  std::vector<HeartbeatReply> heartbeat(const std::string& type, int64_t wait_ms,
                                        const std::string& agent = {});

  std::vector<RegisterRequest> registrations() const;
  uint64_t snapshot_pages_served() const;

 private:
  struct Row {
    uint64_t v = 0;
    Fields f;
    int64_t ts = 0;
    std::string partition;
    bool deleted = false;
  };
  struct TypeState {
    TypeSchema schema;
    uint64_t version = 0;
    uint64_t high_seq = 0;  // stream seq of the last published batch
    std::map<std::string, Row> rows;
  };

  void on_register(const Message& msg);
  void on_snapshot(const Message& msg);
  Result<RegisterReply> handle_register(const RegisterRequest& req);

  Connection& nc_;
  std::unique_ptr<JetStream> js_;
  Subjects subjects_;
  std::string name_;
  mutable std::mutex mu_;
  std::map<std::string, TypeState> types_;  // guarded by mu_
  std::vector<RegisterRequest> registrations_;  // guarded by mu_
  std::map<std::string, std::string> agent_partition_;  // "<agent>/<type>" -> partition; guarded by mu_
  uint64_t snapshot_pages_ = 0;  // guarded by mu_
  std::unique_ptr<Subscription> register_sub_;
  std::unique_ptr<Subscription> snapshot_sub_;
};

}  // namespace ds::testing
