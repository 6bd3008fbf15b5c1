#pragma once
// SnapshotServer: serves snapshot pages on ds.hub.snapshot.<agent>
// (docs/protocol.md "Snapshot"). A request {type, partition, after_key?,
// limit} is answered with the live rows of that type (and partition; "*" =
// all) with key > after_key, ascending, at most limit (capped at
// kMaxSnapshotPage, and to what fits in one message under the max_payload of
// the server the hub is connected to: message_body_limit in shared/codec.h),
// `done` on the last page, and high_version / high_seq =
// the type's published version and its stream sequence at the time of the
// page. Refused with {error}: an agent id that is not valid, a malformed
// request, a type the hub does not know, a partition that is not valid for
// the type (a partition value for an unpartitioned type, or a bad token),
// a type or partition beyond the agent's grants (permission_denied,
// Authorizer::may_take). A request whose reply subject is not the agent's
// own inbox is dropped unanswered (Authorizer::may_reply).
//
// Threads: the subscription's cnats delivery thread reads the page from the
// server's own read-only QueryStore (a page is bounded, so this delays only
// other snapshot requests, never ingest or heartbeats); a mutex keeps that
// connection to one thread at a time. The destructor unsubscribes and waits
// for a running handler.

#include <memory>
#include <mutex>

#include "hub/authorizer.h"
#include "hub/hub_metrics.h"
#include "hub/query_store.h"
#include "shared/config.h"
#include "shared/messages.h"
#include "shared/nats.h"
#include "shared/status.h"

namespace ds {

class SnapshotServer {
 public:
  // `authorizer` must outlive the server.
  static Result<std::unique_ptr<SnapshotServer>> start(const HubConfig& config, Connection& nc,
                                                       Authorizer& authorizer, HubMetrics& metrics);
  ~SnapshotServer();

  // The page for `agent`'s request, or why it is refused. Exposed for tests.
  Result<SnapshotReply> page(const std::string& agent, const SnapshotRequest& request);

 private:
  SnapshotServer(const HubConfig& config, Connection& nc, Authorizer& authorizer, HubMetrics& metrics,
                 std::unique_ptr<QueryStore> store)
      : config_(config), nc_(nc), authorizer_(authorizer), metrics_(metrics), store_(std::move(store)) {}
  void on_message(Message msg);

  const HubConfig& config_;
  Connection& nc_;
  Authorizer& authorizer_;
  HubMetrics& metrics_;
  std::mutex mu_;
  std::unique_ptr<QueryStore> store_;  // guarded by mu_
  std::unique_ptr<Subscription> sub_;  // declared last: unsubscribed first
};

}  // namespace ds
