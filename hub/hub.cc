#include "hub/hub.h"

#include "shared/codec.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>

#include "hub/agent_service.h"
#include "hub/authorizer.h"
#include "hub/http_api.h"
#include "hub/ingest_writer.h"
#include "hub/query_store.h"
#include "hub/snapshot_server.h"
#include "hub/stream_publisher.h"
#include "hub/verify_service.h"
#include "shared/identities.h"
#include "shared/metrics_server.h"
#include "shared/names.h"
#include "shared/nats.h"
#include "shared/prometheus.h"

#include <sys/stat.h>

namespace ds {
namespace {

// The hub's delta publisher identity (shared/identities.h).
struct PublisherIdentity {
  std::string seed_file;
  std::string inbox_prefix;  // _INBOX_<hub>: what its permissions let it subscribe; "" on an open server
};

// The publisher's seed file lies beside the hub's own ([nats]
// nkey_seed_file), as `deltasync creds` writes both. nullopt when the hub
// publishes on its own connection: it authenticates otherwise (creds_file,
// user/password, an open server), or its registry predates publisher keys.
// An error when the registry gives the hub a publisher key whose seed file
// is missing or holds another key: publishing would be refused.
Result<std::optional<PublisherIdentity>> find_publisher_identity(const HubConfig& cfg) {
  if (cfg.nats.nkey_seed_file.empty()) return std::optional<PublisherIdentity>();
  const std::string seed_file = publisher_seed_file_for(cfg.nats.nkey_seed_file);
  std::optional<IdentityRegistry> registry;
  const Identity* hub = nullptr;
  if (!cfg.identities_file.empty()) {
    DS_ASSIGN_OR_RETURN(IdentityRegistry loaded, load_identities(cfg.identities_file));
    registry = std::move(loaded);
    DS_ASSIGN_OR_RETURN(std::string service_key, nkey_public_key_from_seed_file(cfg.nats.nkey_seed_file));
    for (const Identity& id : registry->identities) {
      if (id.role == IdentityRole::kHub && id.public_key == service_key) hub = &id;
    }
  }
  std::error_code ec;
  if (!std::filesystem::exists(seed_file, ec)) {
    if (hub != nullptr && !hub->publisher_public_key.empty()) {
      return Status::not_found(fmt::format(
          "hub '{}' has a delta publisher key in {}, but its seed file {} is missing: copy <hub>.publisher.nk "
          "from the credentials directory beside [nats] nkey_seed_file",
          hub->name, cfg.identities_file, seed_file));
    }
    return std::optional<PublisherIdentity>();
  }
  DS_ASSIGN_OR_RETURN(std::string key, nkey_public_key_from_seed_file(seed_file));
  PublisherIdentity out{seed_file, ""};
  if (registry) {
    if (hub == nullptr || hub->publisher_public_key != key) {
      return Status::permission_denied(fmt::format(
          "{}: its key {} is not the delta publisher key of {} in {} (an interrupted `deltasync creds rotate`? "
          "run it again and copy both of the hub's seed files)",
          seed_file, key, hub != nullptr ? "hub '" + hub->name + "'" : "the hub of [nats] nkey_seed_file",
          cfg.identities_file));
    }
    out.inbox_prefix = inbox_prefix(hub->name);
  }
  return std::optional<PublisherIdentity>(std::move(out));
}

}  // namespace

struct Hub::Impl {
  HubConfig config;
  HubMetrics metrics;
  Hub::StatusListener on_status;  // set before the connection exists; may be empty
  // Members in start order; stop() tears down in reverse, explicitly.
  std::unique_ptr<Authorizer> authorizer;  // outlives every part that asks it
  std::unique_ptr<QueryStore> store;
  std::unique_ptr<Connection> nc;
  std::unique_ptr<JetStream> js;
  // The delta publisher's own connection and JetStream context (its own key:
  // the only one allowed to publish into ds.delta.>); null when the hub has
  // no publisher seed, and then the publisher uses nc/js.
  std::unique_ptr<Connection> publisher_nc;
  std::unique_ptr<JetStream> publisher_js;
  std::unique_ptr<StreamPublisher> publisher;
  std::unique_ptr<IngestWriter> writer;  // constructed before the HTTP API, started after the agents
  std::unique_ptr<VerifyService> verify;  // used by the HTTP API; stopped after it, destroyed after it
  std::unique_ptr<HttpApi> http;
  std::unique_ptr<MetricsServer> metrics_server;  // [metrics] listen
  std::unique_ptr<AgentService> agents;
  std::unique_ptr<NatsIngestListener> ingest;
  std::unique_ptr<SnapshotServer> snapshots;

  // Reconnect events are acted on only while every part is up. The mutex
  // keeps stop() from tearing a part down under a running event handler.
  std::mutex events_mu;
  bool running = false;  // guarded by events_mu
  bool stopped = false;

  // Read by the HTTP io thread (/readyz, the gate of the other endpoints).
  // Every part is assigned before `started` is set (release), so a reader
  // that sees it set (acquire) may use them.
  std::atomic<bool> started{false};
  std::atomic<bool> stopping{false};
  std::atomic<int> nats_attempt{0};  // the retry cnats is waiting for; 0 before the first

  // NATS closed for good (cnats gave up); ends the start wait and run_until().
  std::mutex fatal_mu;
  std::condition_variable_any fatal_cv;
  std::optional<Status> fatal;  // guarded by fatal_mu

  void on_reconnected() {
    fatal_cv.notify_all();  // wakes the start wait at once
    std::lock_guard<std::mutex> lock(events_mu);
    if (!running) {
      // Not started: nothing subscribed yet that /readyz would vouch for
      // (and `nc` may not be set yet).
      if (on_status && !started.load()) on_status("connected to " + config.nats.url + "; starting");
      subscriptions_confirmed.store(true);
      return;
    }
    if (on_status) on_status("ready: reconnected to " + config.nats.url);
    if (publisher_nc) {
      spdlog::info("nats: reconnected; reconciling agent consumers");
    } else {
      spdlog::info("nats: reconnected; reconciling streams and agent consumers");
      writer->request_reconcile();
    }
    agents->on_reconnected();
    // cnats sent the subscriptions again on reconnecting; a round trip
    // proves the server took them (it answers in order), so a producer told
    // "ready" finds the ingest subscription (no "no responders"). A flush
    // that fails (disconnected again) leaves it to the next reconnect. Under
    // events_mu, so the hub's shutdown waits for it (at most its timeout).
    if (nc->flush(kResubscribeFlushMs).is_ok()) subscriptions_confirmed.store(true);
  }

  // The delta publisher's connection came back: the streams may have lost
  // or missed batches meanwhile.
  void on_publisher_reconnected() {
    fatal_cv.notify_all();
    std::lock_guard<std::mutex> lock(events_mu);
    if (!running) return;
    spdlog::info("nats: delta publisher reconnected; reconciling streams");
    writer->request_reconcile();
  }

  // The hub's subscriptions are known to the server: false from a
  // disconnect until the round trip after the reconnect (on_reconnected).
  static constexpr int64_t kResubscribeFlushMs = 5000;
  std::atomic<bool> subscriptions_confirmed{true};

  bool all_connected() const {
    return nc != nullptr && nc->connected() && (publisher_nc == nullptr || publisher_nc->connected());
  }

  void on_nats_retry(int attempt, int64_t delay_ms) {
    nats_attempt.store(attempt);
    if (started.load()) {
      spdlog::info("nats: reconnecting to {}: attempt {} in {} ms", config.nats.url, attempt, delay_ms);
      if (on_status) on_status(fmt::format("nats: reconnecting to {}: attempt {}", config.nats.url, attempt));
    } else {
      spdlog::warn("nats: cannot connect to {} yet: retry {} in {} ms (the hub is not ready until connected)",
                   config.nats.url, attempt, delay_ms);
      if (on_status) {
        on_status(fmt::format("not ready: waiting for NATS at {}: retry {} in {} ms", config.nats.url, attempt,
                              delay_ms));
      }
    }
  }

  void on_nats_closed(const Status& s) {
    {
      std::lock_guard<std::mutex> lock(fatal_mu);
      fatal = s;
    }
    fatal_cv.notify_all();
  }

  std::string metrics_text() const {
    PrometheusWriter w;
    metrics.write(w);
    // The agent service exists once `started` is set (release/acquire, as for the API).
    if (started.load(std::memory_order_acquire)) agents->write_metrics(w);
    uint64_t bytes = 0;
    for (const char* suffix : {"", "-wal", "-shm"}) {
      struct stat st {};
      if (::stat((config.store_path + suffix).c_str(), &st) == 0) bytes += static_cast<uint64_t>(st.st_size);
    }
    w.gauge("deltasync_hub_store_bytes", "Size of the hub's store: the SQLite file with its -wal and -shm.",
            static_cast<double>(bytes));
    w.gauge("deltasync_hub_ready", "1 while GET /readyz answers 200.", not_ready_reason().empty() ? 1 : 0);
    w.gauge("deltasync_hub_ha_active", "1: this hub is the active one (a standby hub says 0).", 1);
    return w.take();
  }

  // Why the hub is not ready ("" when it is), for GET /readyz.
  std::string not_ready_reason() const {
    if (stopping.load()) return "stopping";
    const bool connected = all_connected();
    if (started.load()) {
      if (nc == nullptr || !nc->connected()) return "nats: disconnected (reconnecting)";
      if (!subscriptions_confirmed.load()) return "nats: reconnected; confirming the hub's subscriptions";
      if (!connected) return "nats: the delta publisher's connection is down (reconnecting)";
      return writer->not_ready_reason();
    }
    if (connected) return "starting";
    const int attempt = nats_attempt.load();
    if (attempt == 0) return "nats: not connected (connecting)";
    return "nats: not connected (retrying, attempt " + std::to_string(attempt) + ")";
  }

  // Waits until NATS is connected. Bounded by `stop` and by cnats closing
  // the connection for good.
  Status wait_for_nats(const std::stop_token& stop) {
    std::unique_lock<std::mutex> lock(fatal_mu);
    for (;;) {
      if (fatal) return *fatal;
      if (all_connected()) return Status::ok();
      if (stop.stop_requested()) return Status::unavailable("stopped before NATS was reachable");
      fatal_cv.wait_for(lock, stop, std::chrono::milliseconds(100), [this] { return fatal.has_value(); });
    }
  }

  // Creates or updates every type's stream. A transient refusal (a NATS
  // cluster starting with the hub has not yet heard what each node offers,
  // and cannot place replicated streams) is retried every second: a hub
  // started with its cluster waits for it instead of exiting. Said at the
  // first refusal and every 30 s after.
  Status wait_for_streams(const std::stop_token& stop) {
    Status s = publisher->ensure_streams();
    std::unique_lock<std::mutex> lock(fatal_mu);
    for (int retries = 0; !s.is_ok() && s.is_transient(); ++retries) {
      if (retries % 30 == 0) spdlog::warn("hub: streams not ready yet, retrying every second: {}", s.to_string());
      if (fatal_cv.wait_for(lock, stop, std::chrono::seconds(1), [this] { return fatal.has_value(); })) {
        return *fatal;
      }
      if (stop.stop_requested()) return Status::unavailable("stopped before the streams were ready");
      lock.unlock();
      s = publisher->ensure_streams();
      lock.lock();
    }
    return s;
  }

  void stop() {
    if (stopped) return;
    stopped = true;
    stopping.store(true);
    {
      std::lock_guard<std::mutex> lock(events_mu);
      running = false;
    }
    spdlog::info("hub: shutting down: draining ingests");
    if (ingest) {
      if (Status s = ingest->drain(); !s.is_ok()) spdlog::warn("hub: drain ingest subscription: {}", s.to_string());
    }
    if (writer) writer->stop();  // answers everything queued
    ingest.reset();
    if (metrics_server) metrics_server->stop();
    if (http) http->stop();
    // A job's end and a retire's answer are posted to the HTTP io_context,
    // which exists until http.reset(): stop the jobs and the agent service
    // in between.
    if (verify) verify->stop();
    if (agents) agents->stop();
    http.reset();
    verify.reset();
    metrics_server.reset();
    snapshots.reset();
    agents.reset();
    writer.reset();
    publisher.reset();
    publisher_js.reset();
    if (publisher_nc && publisher_nc->connected()) (void)publisher_nc->flush(2000);
    publisher_nc.reset();
    js.reset();
    if (nc && nc->connected()) (void)nc->flush(2000);
    nc.reset();
    store.reset();
    spdlog::info("hub: stopped");
  }
};

Hub::Hub(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Hub::~Hub() { stop(); }
void Hub::stop() { impl_->stop(); }
const HubConfig& Hub::config() const { return impl_->config; }
HubMetrics& Hub::metrics() { return impl_->metrics; }
std::string Hub::metrics_text() const { return impl_->metrics_text(); }

Status Hub::run_until(std::stop_token stop) {
  Impl& im = *impl_;
  std::unique_lock<std::mutex> lock(im.fatal_mu);
  im.fatal_cv.wait(lock, stop, [&im] { return im.fatal.has_value(); });
  return im.fatal ? *im.fatal : Status::ok();
}

Result<std::unique_ptr<Hub>> Hub::start(HubConfig config, std::stop_token stop, StatusListener on_status,
                                        PublishFence fence) {
  auto impl = std::make_unique<Impl>();
  impl->config = std::move(config);
  impl->on_status = std::move(on_status);
  Impl* im = impl.get();
  std::unique_ptr<Hub> hub(new Hub(std::move(impl)));  // stops what started if a later step fails
  const HubConfig& cfg = im->config;

  DS_ASSIGN_OR_RETURN(im->authorizer, Authorizer::open(cfg));
  if (im->authorizer->open_mode()) {
    spdlog::warn("auth: no [auth] identities_file: every agent and producer may take and send every type "
                 "(an open NATS server, for development only)");
  }

  QueryStoreOptions store_options;
  store_options.publish_batch = cfg.publish_batch;
  DS_ASSIGN_OR_RETURN(im->store, QueryStore::open(cfg.store_path, cfg.types, store_options));

  ConnectOptions co;
  co.config = cfg.nats;
  co.name = "deltasync-hub";
  // At boot nats-server may come up after the hub: keep trying.
  co.retry_on_failed_connect = true;
  co.on_disconnected = [im] {
    im->subscriptions_confirmed.store(false);
    spdlog::warn("nats: disconnected; reconnecting");
  };
  co.on_reconnected = [im] { im->on_reconnected(); };  // also the first connect
  co.on_async_error = [](const std::string& e) { spdlog::error("nats: {}", e); };
  co.on_retry = [im](int attempt, int64_t delay_ms) { im->on_nats_retry(attempt, delay_ms); };
  co.on_closed = [im](const Status& s) { im->on_nats_closed(s); };
  DS_ASSIGN_OR_RETURN(im->nc, Connection::connect(std::move(co)));
  if (!im->nc->connected()) {
    spdlog::warn("nats: cannot connect to {} yet; retrying in the background", cfg.nats.url);
  }
  DS_ASSIGN_OR_RETURN(im->js, im->nc->jetstream());
  DS_ASSIGN_OR_RETURN(std::optional<PublisherIdentity> publisher_identity, find_publisher_identity(cfg));
  if (!publisher_identity && !cfg.nats.nkey_seed_file.empty()) {
    spdlog::warn("nats: no delta publisher seed {} beside {}: deltas are published on the hub's own connection, "
                 "whose permissions must then allow {}.delta.> (`deltasync creds rotate` issues the publisher key; "
                 "docs/security.md)",
                 publisher_seed_file_for(cfg.nats.nkey_seed_file), cfg.nats.nkey_seed_file,
                 cfg.nats.subject_prefix);
  }
  if (publisher_identity) {
    ConnectOptions po;
    po.config = cfg.nats;
    po.config.nkey_seed_file = publisher_identity->seed_file;
    po.name = "deltasync-hub-publisher";
    po.inbox_prefix = publisher_identity->inbox_prefix;
    po.retry_on_failed_connect = true;
    po.on_disconnected = [] { spdlog::warn("nats: delta publisher disconnected; reconnecting"); };
    po.on_reconnected = [im] { im->on_publisher_reconnected(); };
    po.on_async_error = [](const std::string& e) { spdlog::error("nats: delta publisher: {}", e); };
    po.on_closed = [im](const Status& s) { im->on_nats_closed(s.with_context("delta publisher")); };
    DS_ASSIGN_OR_RETURN(im->publisher_nc, Connection::connect(std::move(po)));
    DS_ASSIGN_OR_RETURN(im->publisher_js, im->publisher_nc->jetstream());
  }
  // The test-only fault points (hub/fault_hook.h) of the writer and the publisher.
  const FaultHook faults = fault_hook_from_env();
  im->publisher = std::make_unique<StreamPublisher>(im->publisher_js ? *im->publisher_js : *im->js, *im->store, cfg,
                                                    im->metrics, faults);
  const bool claims = !fence.holder.empty();
  im->publisher->set_fence(std::move(fence));
  IngestWriter::Options writer_options;
  writer_options.faults = faults;
  im->writer = std::make_unique<IngestWriter>(cfg, *im->store, *im->publisher, im->metrics, writer_options);

  if (!cfg.http_listen.empty()) {
    // The hooks run on the HTTP io thread, only once `started` is set (the
    // API answers 503 before), so im->agents exists by then.
    AgentHooks hooks;
    hooks.fleet = [im] { return im->agents->fleet_snapshot(); };
    hooks.retire = [im](const std::string& id, std::function<void(Status)> done) {
      im->agents->retire(id, std::move(done));
    };
    hooks.metrics_text = [im] { return im->metrics_text(); };
    Connection* nc = im->nc.get();
    const Subjects subjects(cfg.nats.subject_prefix);
    VerifyHooks verify;
    verify.agents_json = [im] { return im->agents->agents_json(); };  // on the verify runner's thread
    verify.request_digest = [nc, subjects](const std::string& id, const DigestRequest& request,
                                           int64_t timeout_ms) -> Result<DigestReply> {
      DS_ASSIGN_OR_RETURN(Message m, nc->request(subjects.digest(id), encode(request), timeout_ms));
      DS_ASSIGN_OR_RETURN(DigestReply reply, decode_digest_reply(m.data()));
      if (reply.error) return reply.error->to_status();
      return reply;
    };
    verify.order_snapshot = [im](const std::string& id, const std::string& type) {
      return im->agents->order_snapshot(id, type);
    };
    im->verify = std::make_unique<VerifyService>(cfg, std::move(verify));
    hooks.verify = im->verify.get();
    ReadinessHooks readiness;
    readiness.not_ready_reason = [im] { return im->not_ready_reason(); };
    readiness.started = [im] { return im->started.load(std::memory_order_acquire); };
    DS_ASSIGN_OR_RETURN(im->http, HttpApi::start(cfg, *im->writer, *im->js, im->metrics, std::move(hooks),
                                                 std::move(readiness)));
  }

  if (!cfg.metrics_listen.empty()) {
    DS_ASSIGN_OR_RETURN(im->metrics_server, MetricsServer::start(metrics_listen_address(cfg.metrics_listen),
                                                                 [im] { return im->metrics_text(); }));
  }

  DS_RETURN_IF_ERROR(im->wait_for_nats(stop));
  DS_RETURN_IF_ERROR(im->wait_for_streams(stop));
  if (claims) DS_RETURN_IF_ERROR(im->publisher->claim_streams());

  DS_ASSIGN_OR_RETURN(im->agents, AgentService::start(cfg, *im->nc, *im->js, *im->authorizer));
  AgentService* agents = im->agents.get();
  DS_ASSIGN_OR_RETURN(std::vector<PartitionMark> marks, im->store->partition_marks());
  agents->restore_marks(marks);
  im->writer->set_on_committed([agents](const std::vector<PartitionMark>& m) { agents->on_committed(m); });
  im->writer->start();

  DS_ASSIGN_OR_RETURN(im->ingest, NatsIngestListener::start(*im->nc, cfg, *im->authorizer, *im->writer, im->metrics));
  DS_ASSIGN_OR_RETURN(im->snapshots, SnapshotServer::start(cfg, *im->nc, *im->authorizer, im->metrics));
  // The broker has registered every subscription once this returns, so a
  // request sent after start() cannot meet "no responders".
  DS_RETURN_IF_ERROR(im->nc->flush(5000).with_context("flush subscriptions"));
  {
    std::lock_guard<std::mutex> lock(im->events_mu);
    im->running = true;
  }
  im->started.store(true, std::memory_order_release);

  std::string types;
  for (const TypeConfig& t : cfg.types) {
    if (!types.empty()) types += ", ";
    types += t.name;
    if (t.schema.partition) types += " (partition " + *t.schema.partition + ")";
  }
  spdlog::info("hub '{}' started: nats {}, store {}, http {}, {} type(s): {}", cfg.name, cfg.nats.url,
               cfg.store_path, cfg.http_listen.empty() ? std::string("off") : cfg.http_listen, cfg.types.size(),
               types);
  return hub;
}

}  // namespace ds
