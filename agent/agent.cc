#include "agent/agent.h"

#include <spdlog/spdlog.h>

#include "shared/names.h"

namespace ds {

Agent::Agent(AgentConfig config) : config_(std::move(config)) {
  std::vector<std::string> types;
  for (const SubscriptionConfig& sub : config_.subscriptions) types.push_back(sub.type);
  metrics_ = std::make_unique<AgentMetrics>(types);
}

std::string Agent::metrics_text() const {
  return metrics_->text(board_, registrations(), config_.replica_path);
}

Agent::~Agent() { stop(); }

Status Agent::start() {
  DS_ASSIGN_OR_RETURN(replica_, Replica::open(config_.replica_path));

  ConnectOptions opts;
  opts.config = config_.nats;
  opts.name = "deltasync-agent " + config_.id;
  opts.inbox_prefix = inbox_prefix(config_.id);
  opts.retry_on_failed_connect = true;
  opts.max_reconnect_wait_ms = 5000;
  auto hooks = hooks_;
  // Called for the first successful connect too when it had to be retried
  // (retry_on_failed_connect); a first connect that succeeds at once calls
  // nothing (connected_once is set below).
  AgentMetrics* metrics = metrics_.get();
  auto connected_once = std::make_shared<std::atomic<bool>>(false);
  opts.on_reconnected = [hooks, metrics, connected_once] {
    if (connected_once->exchange(true)) ++metrics->nats_reconnects;
    spdlog::info("connected to NATS");
    hooks->trigger_registration();
  };
  // Deliveries in flight are lost with the connection, and the reconnect's
  // registration recreates every consumer: every type waits for its new
  // delivery 1 (agent/delivery_order.h), from here, not only from that
  // registration's start, so that the old consumer's later numbers are no
  // counted gap.
  opts.on_disconnected = [hooks] {
    spdlog::warn("disconnected from NATS; reconnecting");
    hooks->connection_lost();
  };
  const std::string feed_prefix = Subjects(config_.nats.subject_prefix).prefix() + ".feed.";
  opts.on_async_error = [feed_denied = feed_denied_, feed_prefix](const std::string& e) {
    if (e.find("Subscription to \"" + feed_prefix) != std::string::npos) {
      if (!feed_denied->exchange(true)) {
        spdlog::warn("NATS refused the live feed ({}): this agent's credentials were written before it existed; "
                     "it takes its deltas through consumers, as before. Run `deltasync creds` again for it to use "
                     "the feed (docs/security.md)",
                     e);
      }
      return;
    }
    spdlog::error("NATS: {}", e);
  };
  DS_ASSIGN_OR_RETURN(nc_, Connection::connect(std::move(opts)));
  if (nc_->connected()) connected_once->store(true);

  ApplierOptions applier_options;
  applier_options.tombstone_max_age_ms = config_.tombstone_max_age_s * 1000;
  applier_options.hub_clock = &hub_clock_;
  applier_options.metrics = metrics_.get();
  // A delivery went missing (agent/delivery_order.h): the hub recreates the
  // consumers from the replica's checkpoint when the agent registers again.
  applier_options.on_delivery_gap = [hooks](const std::string&) { hooks->trigger_registration(); };
  for (const SubscriptionConfig& sub : config_.subscriptions) {
    if (!sub.hook.empty()) applier_options.hooks[sub.type] = HookSpec{sub.hook, sub.hook_retries, sub.hook_timeout_ms};
    if (config_.live_feed) applier_options.feed_types[sub.type] = sub.partition == kAnyPartition;
  }
  messaging_ = std::make_unique<NatsMessaging>(*nc_);
  applier_ = std::make_unique<DeltaApplier>(*replica_, *messaging_, board_, std::move(applier_options));
  DS_RETURN_IF_ERROR(applier_->start());
  {
    std::lock_guard<std::mutex> lock(hooks_->mu);
    hooks_->applier = applier_.get();
  }

  const Subjects subjects(config_.nats.subject_prefix);
  std::vector<std::string> types;
  for (const SubscriptionConfig& sub : config_.subscriptions) types.push_back(sub.type);
  heartbeats_ = std::make_unique<HeartbeatResponder>(*nc_, subjects, config_.id, board_, hub_clock_, [hooks] { hooks->trigger_registration(); });
  DS_RETURN_IF_ERROR(heartbeats_->start(types));
  digests_ = std::make_unique<DigestResponder>(*nc_, config_);
  DS_RETURN_IF_ERROR(digests_->start());

  registrar_ = std::make_unique<Registrar>(*nc_, config_, *applier_, board_);
  registrar_->set_listener(registration_listener_);
  registrar_->set_on_registered([this] { return subscribe_deliveries(); });
  // Every registration recreates every consumer: from its start, each type
  // takes only its new consumer's delivery 1 (a delivery of the new one
  // that came before a lost 1 must not pass as the old one's last + 1).
  DeltaApplier* applier = applier_.get();
  registrar_->set_on_registering([applier] {
    applier->expect_new_consumers();
    applier->begin_registration();
  });
  registrar_->set_on_replied(
      [applier](const std::optional<std::vector<Delivery>>& deliveries,
                const std::map<std::string, uint64_t>& reported_seq) { applier->end_registration(deliveries, reported_seq); });
  if (config_.live_feed) {
    registrar_->set_feed_wanted([feed_denied = feed_denied_] { return !feed_denied->load(); });
    DS_RETURN_IF_ERROR(subscribe_feed());
  }
  {
    std::lock_guard<std::mutex> lock(hooks_->mu);
    hooks_->registrar = registrar_.get();
  }
  registrar_->start();
  if (!config_.metrics_listen.empty()) {
    DS_ASSIGN_OR_RETURN(metrics_server_, MetricsServer::start(metrics_listen_address(config_.metrics_listen),
                                                              [this] { return metrics_text(); }));
  }
  spdlog::info("agent {} started: {} subscription(s), replica {}", config_.id, config_.subscriptions.size(),
               config_.replica_path);
  return Status::ok();
}

void Agent::stop() {
  if (stopped_) return;
  stopped_ = true;
  {
    std::lock_guard<std::mutex> lock(hooks_->mu);
    hooks_->registrar = nullptr;
    hooks_->applier = nullptr;
  }
  // First: a scrape reads the registrar and the board.
  if (metrics_server_) metrics_server_->stop();
  metrics_server_.reset();
  if (registrar_) registrar_->stop();
  push_subs_.clear();
  feed_subs_.clear();
  if (applier_) applier_->stop();
  if (nc_ && nc_->connected()) (void)nc_->flush(2000);
  heartbeats_.reset();
  digests_.reset();
  registrar_.reset();
  applier_.reset();
  messaging_.reset();
  nc_.reset();
  replica_.reset();
}

Status Agent::subscribe_deliveries() {
  if (!push_subs_.empty()) return Status::ok();
  const Subjects subjects(config_.nats.subject_prefix);
  DeltaApplier* applier = applier_.get();
  std::vector<std::unique_ptr<MessagingSubscription>> subs;
  // One exact subscription per type: nats-server 2.9 does not count a
  // wildcard subscription (ds.push.<id>.>) as interest in a push consumer's
  // deliver subject, so nothing would be delivered to it.
  for (const SubscriptionConfig& sub : config_.subscriptions) {
    const std::string type = sub.type;
    DS_ASSIGN_OR_RETURN(auto push, messaging_->subscribe(subjects.push(config_.id, type), [applier, type](Envelope m) {
      applier->on_push(type, std::move(m));
    }));
    subs.push_back(std::move(push));
  }
  // nats-server has them before the registration counts.
  DS_RETURN_IF_ERROR(messaging_->flush(5000).with_context("push subscriptions"));
  push_subs_ = std::move(subs);
  return Status::ok();
}

Status Agent::subscribe_feed() {
  const Subjects subjects(config_.nats.subject_prefix);
  DeltaApplier* applier = applier_.get();
  for (const SubscriptionConfig& sub : config_.subscriptions) {
    const std::string type = sub.type;
    const std::string subject =
        sub.partition == kAnyPartition ? subjects.feed_filter(type) : subjects.feed(type, sub.partition);
    DS_ASSIGN_OR_RETURN(auto feed, nc_->subscribe(subject, [applier, type](Message m) {
      const std::optional<FeedStamp> stamp =
          feed_stamp(m.header(kStreamSequenceHeader), m.header(kLastSubjectSequenceHeader));
      applier->on_feed(type, Envelope{std::string(m.subject()), std::string(m.reply()), std::string(m.data())}, stamp);
    }));
    feed_subs_.push_back(std::move(feed));
  }
  // nats-server has them before the first registration reports a checkpoint
  // (while NATS is down, cnats sends them once connected, before the
  // registration that connect triggers).
  if (nc_->connected()) DS_RETURN_IF_ERROR(nc_->flush(5000).with_context("live-feed subscriptions"));
  return Status::ok();
}

bool Agent::wait_registered(uint64_t after, int64_t timeout_ms) {
  return registrar_ && registrar_->wait_registered(after, timeout_ms);
}

uint64_t Agent::registrations() const { return registrar_ ? registrar_->registrations() : 0; }

}  // namespace ds
