#pragma once
// Hub: the composition of deltasync-hub (DESIGN.md §2). start() brings the
// parts up in dependency order:
//
//   QueryStore (writer connection; creates/upgrades the tables)
//   NATS connection "deltasync-hub" (reconnects forever) + JetStream
//   streams DS_<TYPE> (StreamPublisher::ensure_streams)
//   AgentService (registration, heartbeats, consumers; its own connection
//                 to the same database file)
//   IngestWriter (its first job: reconcile every stream with the log)
//   NatsIngestListener (ds.ingest.*), SnapshotServer (ds.hub.snapshot.*)
//   VerifyService + HttpApi (when [http] listen is set; verify jobs run on
//                 their own threads, hub/verify_service.h)
//
// After every broker reconnect the writer reconciles the streams again and
// the agent service recreates the consumers a broker restart dropped.
//
// stop() drains: no new ingests (the NATS ingest subscription is drained, so
// requests already received still reach the writer), the writer commits,
// publishes and answers everything queued, then the parts stop in reverse
// order. The hub needs the broker at start (it creates streams); after that
// it rides out broker outages.
//
// Thread-safety: start() and stop() from one controlling thread (main).

#include <memory>

#include "hub/hub_metrics.h"
#include "shared/config.h"
#include "shared/status.h"

namespace ds {

class Hub {
 public:
  static Result<std::unique_ptr<Hub>> start(HubConfig config);
  ~Hub();
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  // Graceful drain and stop; idempotent.
  void stop();

  const HubConfig& config() const;
  HubMetrics& metrics();

 private:
  struct Impl;
  explicit Hub(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ds
