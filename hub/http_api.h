#pragma once
// HttpApi: the hub's HTTP interface (docs/operations.md, "Hub";
// docs/security.md, "The hub's HTTP API").
//
//   GET  /healthz                              no token; {"ok":true} while the process serves HTTP
//   GET  /readyz                               no token; 200 {"ready":true} once the hub is up and
//        connected to NATS, else 503 {"ready":false,"reason":...} (e.g. "nats: not connected
//        (retrying, attempt 3)", "starting", "stopping"; "standby: ..." from a standby's
//        API, start_standby)
//   POST /v1/types/<type>/records              JSON array of records; producer
//        and seq from the query (?producer=&seq=) or the headers
//        Deltasync-Producer / Deltasync-Seq. Same validation and the same
//        writer as NATS ingest: 200 {ok,first_version,last_version};
//        400/404/503 {ok:false,error:{code,message,index?}}
//   GET  /v1/types                             types, versions, stream state
//   GET  /v1/types/<type>/records/<key>        one record (404 if absent or deleted)
//   GET  /v1/types/<type>/records?partition=&after=&limit=   live rows, keyset paged
//   GET  /v1/agents                            the agent service's view (its latest fleet snapshot)
//   POST /v1/agents/<id>/retire
//   POST /v1/verify[?repair=1]                 starts a verify job (hub/verify_service.h)
//        202 {id, state, ...}; 409 while a repair job runs (or any job, for a repair)
//   GET  /v1/verify/<id>                       the job's report: progress while it
//        runs, per agent and type rows once done
//   GET  /v1/verify                            (kept for older CLIs) runs a job and
//        answers with its report when it is done; the io thread never waits
//   GET  /                                     no token: the fleet dashboard (hub/dashboard/,
//   GET  /dashboard.js, /dashboard.css         compiled in); it asks for the token once and
//        sends it on every data request below
//   GET  /v1/fleet/agents?q=&state=&problems=&sort=&order=&offset=&limit=
//        one page of the fleet snapshot the agent service published last, filtered,
//        sorted and paged here (hub/fleet_view.h); 400 naming the parameter for
//        anything it does not accept
//   GET  /v1/fleet/rates                       ingest and delivery rates over the last
//        ten minutes, a point every 2 s (hub/rate_history.h)
//   GET  /metrics                              Prometheus text (Hub::metrics_text); token
//        required here like everywhere; [metrics] listen serves it without one
//
// Every endpoint but /healthz, /readyz and the dashboard's files needs
// "Authorization: Bearer <token>" (401 with a JSON error otherwise; the
// token is compared in constant time).
// The token is checked when the headers are in, before the body: a request
// with a body and without the token is answered 401 and its body never read;
// a token holder's body above [http] max_body_bytes gets 413, also unread
// (both close the connection). Connections and header sizes are capped. With
// [http] tls_cert_file/tls_key_file the listener speaks HTTPS only.
// The API listens before the hub is up (so /readyz can say why not); until
// ReadinessHooks::started says so, the other endpoints answer 503.
//
// Threads: one asio io_context on one thread of its own, so a slow client or a
// long page never delays ingest, heartbeats or the writer. Whatever would hold
// this thread for long runs elsewhere: verify jobs on the verify service's
// threads, the fleet's view and retiring an agent on the agent service's
// thread (AgentHooks), and on two threads of the API's own the answers that
// take long to make: GET /v1/types (JetStream requests, which a stalled
// broker holds for the JetStream timeout; one at a time, so a thread stays
// free), GET /metrics and GET /v1/agents (text that grows with the fleet). So /healthz, /readyz and the dashboard
// are not queued behind them; their answers are posted back to this thread. Reads use the API's
// own read-only QueryStore on that thread. An ingest is handed to the
// IngestWriter; its reply (from the writer thread) is posted back onto the
// io thread, which writes the response.

#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "hub/fleet_view.h"
#include "hub/hub_metrics.h"
#include "hub/ingest_writer.h"
#include "hub/verify_service.h"
#include "shared/config.h"
#include "shared/messages.h"
#include "shared/nats.h"
#include "shared/status.h"

namespace ds {

// What the API needs from the agent half of the hub.
struct AgentHooks {
  // The fleet as the agent service published it last (AgentService::
  // fleet_snapshot): GET /v1/agents and /v1/fleet/agents only serialize and
  // page it, so they never build the fleet's view on the io thread.
  std::function<std::shared_ptr<const FleetSnapshot>()> fleet;
  // Retires an agent; calls back once with the outcome, from any thread.
  std::function<void(const std::string&, std::function<void(Status)>)> retire;
  VerifyService* verify = nullptr;  // outlives the API; verify endpoints answer 503 without it
  std::function<std::string()> metrics_text;  // GET /metrics (Hub::metrics_text); 503 without it
};

// What the API asks the hub about its state (on the io thread). Empty
// functions mean "ready" and "started".
struct ReadinessHooks {
  std::function<std::string()> not_ready_reason;  // "" when ready
  std::function<bool()> started;  // every part the endpoints call into is up
};

class HttpApi {
 public:
  // Listens on config.http_listen ("host:port"). Unavailable when the address
  // cannot be bound; InvalidArgument when it is malformed, the token is
  // empty, or the TLS certificate or key cannot be loaded. `writer`, `js` and `metrics` must outlive the API.
  static Result<std::unique_ptr<HttpApi>> start(const HubConfig& config, IngestWriter& writer, JetStream& js,
                                                HubMetrics& metrics, AgentHooks agents,
                                                ReadinessHooks readiness = {});
  // The API of an HA hub that stands by (hub/standby.h), on the same
  // listener, token and TLS: /healthz answers, /readyz answers 503 with
  // "standby: " and what `standing_by` says (any thread may call it), the
  // dashboard's files are served, and every other endpoint answers 503
  // "hub not ready: standby: ..." after the token check, as a hub that is
  // starting does. So a load balancer sends traffic to the active hub only,
  // and a liveness probe sees the standby's process up. Stopped (or
  // destroyed) before the hub starts as the active one, which then listens
  // on the same address.
  static Result<std::unique_ptr<HttpApi>> start_standby(const HubConfig& config, HubMetrics& metrics,
                                                        std::function<std::string()> standing_by);
  ~HttpApi();
  // Closes the listener and connections and joins the thread. Idempotent.
  void stop();

 private:
  struct Impl;
  explicit HttpApi(std::unique_ptr<Impl> impl);
  // `writer` and `js` null: a standby's API (start_standby).
  static Result<std::unique_ptr<HttpApi>> open(const HubConfig& config, IngestWriter* writer, JetStream* js,
                                               HubMetrics& metrics, AgentHooks agents, ReadinessHooks readiness);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ds
