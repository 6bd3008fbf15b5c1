#pragma once
// Hub: the composition of deltasync-hub (docs/architecture.md, "Processes").
// start() brings the parts up in dependency order:
//
//   Authorizer ([auth] identities_file: what each agent and producer may do)
//   QueryStore (writer connection; creates/upgrades the tables)
//   NATS connection "deltasync-hub" (reconnects forever; when nats-server is
//     not up yet, cnats keeps trying in the background with capped backoff)
//   StreamPublisher and IngestWriter objects (not started), VerifyService +
//     HttpApi (when [http] listen is set; verify jobs run on their own
//     threads, hub/verify_service.h): /healthz and /readyz answer from here on;
//     /readyz and every other endpoint say 503 until the hub is up
//   -- waits until NATS is connected (each retry logged with the url, the
//      attempt and the next delay); a stop request ends the wait --
//   JetStream streams DS_<TYPE> (StreamPublisher::ensure_streams); with a
//     fence (HA takeover), every stream claimed (claim_streams)
//   AgentService (registration, heartbeats, consumers; its own connection
//                 to the same database file)
//   IngestWriter started (its first job: reconcile every stream with the log,
//                 taking back what a store restored from an older backup
//                 lacks; StreamPublisher, Recovery)
//   NatsIngestListener (ds.ingest.*.*), SnapshotServer (ds.hub.snapshot.*)
//   -- ready: /readyz 200 while NATS is connected --
//   MetricsServer ([metrics] listen, when set) starts before NATS is waited
//   for, with the HTTP API, so a scrape sees a hub that cannot connect
//
// After every broker reconnect the writer reconciles the streams again and
// the agent service recreates the consumers a broker restart dropped.
//
// stop() drains: no new ingests (the NATS ingest subscription is drained, so
// requests already received still reach the writer), the writer commits,
// publishes and answers everything queued, then the parts stop in reverse
// order (the HTTP API before the agent service, the writer and NATS). It is
// safe at any point of start(). Once started, the hub rides out broker
// outages; only a connection cnats closes for good (the server refused the
// credentials twice in a row) ends run_until() with an error.
//
// /readyz is 503, with the reason, while NATS is down (or the delta
// publisher's connection is), and whenever the ingest writer is not ready
// (IngestWriter::not_ready_reason): its thread is not running, the streams
// are being reconciled, the store is full, or a type's stream holds changes
// its store lacks and cannot give back.
//
// Thread-safety: start(), run_until() and stop() from one controlling thread
// (main); the stop token may be triggered from any thread.

#include <functional>
#include <memory>
#include <stop_token>
#include <string>

#include "hub/hub_metrics.h"
#include "hub/stream_publisher.h"
#include "shared/config.h"
#include "shared/status.h"

namespace ds {

class Hub {
 public:
  // Returns once every part is up. Fails when a part cannot start, when
  // NATS closes for good, or with Unavailable when `stop` is requested
  // before the hub is up (e.g. SIGTERM while NATS is still unreachable).
  //
  // `on_status`, when given, hears one line whenever the NATS connection
  // state changes: each retry while start() waits for nats-server, each
  // reconnect attempt later, and each (re)connect. It runs on cnats
  // threads; deltasync-hub passes the lines to the service manager
  // (shared/service_notify.h).
  using StatusListener = std::function<void(const std::string&)>;
  //
  // `fence`, for an HA hub that holds the lease (hub/lease_keeper.h): its
  // deltas name it, follow the stream's last sequence, stop when the lease
  // runs out, and it claims every stream before the first reconciliation
  // (hub/stream_publisher.h, "Fencing").
  static Result<std::unique_ptr<Hub>> start(HubConfig config, std::stop_token stop = {},
                                            StatusListener on_status = {}, PublishFence fence = {});
  ~Hub();

  // Blocks until `stop` is requested (OK) or the NATS connection is closed
  // for good (that error). Call stop() afterwards either way.
  Status run_until(std::stop_token stop);
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  // Graceful drain and stop; idempotent.
  void stop();

  const HubConfig& config() const;
  HubMetrics& metrics();
  // The whole GET /metrics text: HubMetrics, the agent service's fleet
  // series once it runs, and deltasync_hub_store_bytes. Thread-safe; served
  // by the HTTP API (token) and by [metrics] listen (no token), each on its
  // own thread.
  std::string metrics_text() const;

 private:
  struct Impl;
  explicit Hub(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ds
