#include "hub/hub.h"

#include "shared/codec.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <mutex>

#include "hub/agent_service.h"
#include "hub/http_api.h"
#include "hub/ingest_writer.h"
#include "hub/query_store.h"
#include "hub/snapshot_server.h"
#include "hub/stream_publisher.h"
#include "hub/verify_service.h"
#include "shared/nats.h"

namespace ds {

struct Hub::Impl {
  HubConfig config;
  HubMetrics metrics;
  // Members in start order; stop() tears down in reverse, explicitly.
  std::unique_ptr<QueryStore> store;
  std::unique_ptr<Connection> nc;
  std::unique_ptr<JetStream> js;
  std::unique_ptr<StreamPublisher> publisher;
  std::unique_ptr<AgentService> agents;
  std::unique_ptr<IngestWriter> writer;
  std::unique_ptr<NatsIngestListener> ingest;
  std::unique_ptr<SnapshotServer> snapshots;
  std::unique_ptr<VerifyService> verify;  // used by the HTTP API; stopped after it, destroyed after it
  std::unique_ptr<HttpApi> http;

  // Reconnect events are acted on only while every part is up. The mutex
  // keeps stop() from tearing a part down under a running event handler.
  std::mutex events_mu;
  bool running = false;  // guarded by events_mu
  bool stopped = false;

  void on_reconnected() {
    std::lock_guard<std::mutex> lock(events_mu);
    if (!running) return;
    spdlog::info("nats: reconnected; reconciling streams and agent consumers");
    writer->request_reconcile();
    agents->on_reconnected();
  }

  void stop() {
    if (stopped) return;
    stopped = true;
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
    if (http) http->stop();
    // A job's end is posted to the HTTP io_context, which exists until
    // http.reset(): stop the jobs in between.
    if (verify) verify->stop();
    http.reset();
    verify.reset();
    snapshots.reset();
    if (agents) agents->stop();
    agents.reset();
    writer.reset();
    publisher.reset();
    js.reset();
    if (nc) (void)nc->flush(2000);
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

Result<std::unique_ptr<Hub>> Hub::start(HubConfig config) {
  auto impl = std::make_unique<Impl>();
  impl->config = std::move(config);
  Impl* im = impl.get();
  std::unique_ptr<Hub> hub(new Hub(std::move(impl)));  // stops what started if a later step fails
  const HubConfig& cfg = im->config;

  QueryStoreOptions store_options;
  store_options.publish_batch = cfg.publish_batch;
  DS_ASSIGN_OR_RETURN(im->store, QueryStore::open(cfg.store_path, cfg.types, store_options));

  ConnectOptions co;
  co.config = cfg.nats;
  co.name = "deltasync-hub";
  co.on_disconnected = [] { spdlog::warn("nats: disconnected; reconnecting"); };
  co.on_reconnected = [im] { im->on_reconnected(); };
  co.on_async_error = [](const std::string& e) { spdlog::error("nats: {}", e); };
  DS_ASSIGN_OR_RETURN(im->nc, Connection::connect(std::move(co)));
  DS_ASSIGN_OR_RETURN(im->js, im->nc->jetstream());

  im->publisher = std::make_unique<StreamPublisher>(*im->js, cfg, im->metrics);
  DS_RETURN_IF_ERROR(im->publisher->ensure_streams());

  DS_ASSIGN_OR_RETURN(im->agents, AgentService::start(cfg, *im->nc, *im->js));

  im->writer = std::make_unique<IngestWriter>(cfg, *im->store, *im->publisher, im->metrics);
  AgentService* agents = im->agents.get();
  DS_ASSIGN_OR_RETURN(std::vector<PartitionMark> marks, im->store->partition_marks());
  agents->restore_marks(marks);
  im->writer->set_on_committed([agents](const std::vector<PartitionMark>& m) { agents->on_committed(m); });
  im->writer->start();

  DS_ASSIGN_OR_RETURN(im->ingest, NatsIngestListener::start(*im->nc, cfg, *im->writer, im->metrics));
  DS_ASSIGN_OR_RETURN(im->snapshots, SnapshotServer::start(cfg, *im->nc, im->metrics));
  if (!cfg.http_listen.empty()) {
    AgentHooks hooks;
    hooks.agents_json = [agents] { return agents->agents_json(); };
    hooks.retire = [agents](const std::string& id) { return agents->retire(id); };
    Connection* nc = im->nc.get();
    const Subjects subjects(cfg.nats.subject_prefix);
    VerifyHooks verify;
    verify.agents_json = hooks.agents_json;
    verify.request_digest = [nc, subjects](const std::string& id, const DigestRequest& request,
                                           int64_t timeout_ms) -> Result<DigestReply> {
      DS_ASSIGN_OR_RETURN(Message m, nc->request(subjects.digest(id), encode(request), timeout_ms));
      DS_ASSIGN_OR_RETURN(DigestReply reply, decode_digest_reply(m.data()));
      if (reply.error) return reply.error->to_status();
      return reply;
    };
    verify.order_snapshot = [agents](const std::string& id, const std::string& type) {
      return agents->order_snapshot(id, type);
    };
    im->verify = std::make_unique<VerifyService>(cfg, std::move(verify));
    hooks.verify = im->verify.get();
    DS_ASSIGN_OR_RETURN(im->http, HttpApi::start(cfg, *im->writer, *im->js, im->metrics, std::move(hooks)));
  }
  // The broker has registered every subscription once this returns, so a
  // request sent after start() cannot meet "no responders".
  DS_RETURN_IF_ERROR(im->nc->flush(5000).with_context("flush subscriptions"));
  {
    std::lock_guard<std::mutex> lock(im->events_mu);
    im->running = true;
  }

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
