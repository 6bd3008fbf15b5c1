#pragma once
// Agent: the composition of deltasync-agent's service loop.
//
//   config -> Replica (the local SQLite file)
//          -> Connection (name "deltasync-agent <id>", inbox prefix _INBOX_<id>,
//             reconnect forever, retry_on_failed_connect so the agent starts
//             while NATS is down)
//          -> DeltaApplier (the one writer thread: apply, ack, hooks)
//          -> HeartbeatResponder (ds.hb.<type>, ds.agent.<id>.hb)
//          -> Registrar (register at start and on every (re)connect; snapshots)
//          -> push subscriptions ds.push.<id>.<type> feeding the applier,
//             made once the first registration succeeded (below)
//          -> live-feed subscriptions ds.feed.<type>.<partition> feeding the
//             applier, made before the first registration: a type the hub
//             finds current takes its deltas there instead of from a
//             consumer (agent/delivery_source.h)
//          -> MetricsServer ([metrics] listen, when set: GET /metrics on a
//             thread of its own; agent/agent_metrics.h says what it reads)
//
// Why the push subscriptions wait for the first registration: the consumers
// of the previous run of this agent may still exist, with deliveries it
// received and never applied (it was killed); nats-server sends those again
// only after ack_wait (30 s), and meanwhile goes on with later ones. Applied,
// those later deliveries would move the checkpoint past the lost ones, and
// the registration would then recreate the consumer after them: changes
// lost for good (the chaos soak found it). A push consumer delivers only
// while its deliver subject has a subscriber, so until this run subscribes
// the old consumer sends nothing; the registration replaces it with one that
// starts after this replica's own checkpoint. The same loss within a run (a
// delivery in flight when the connection dropped) is caught by the
// applier's delivery numbering (agent/delivery_order.h): a gap makes the
// agent register again, and a lost connection or a registration (which
// recreates every consumer) makes every type wait for its new consumer's
// delivery 1.
//
// stop() is the graceful path (SIGTERM/SIGINT in main): stop registering,
// unsubscribe the push deliveries and the live feed, let the applier finish
// and ack the batch under way, flush the acks, close the connection.
// Deliveries not yet applied come again after a restart, from the replica's
// checkpoint (through a consumer, or the feed if the agent is current).
//
// Thread-safety: start()/stop() from one owner thread; board() is thread-safe.

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/agent_metrics.h"
#include "agent/checkpoint_board.h"
#include "agent/delta_applier.h"
#include "agent/digest_responder.h"
#include "agent/heartbeat_responder.h"
#include "agent/hub_clock.h"
#include "agent/registrar.h"
#include "agent/replica.h"
#include "shared/config.h"
#include "shared/messaging.h"
#include "shared/metrics_server.h"
#include "shared/nats.h"

namespace ds {

class Agent {
 public:
  explicit Agent(AgentConfig config);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Opens the replica and starts every component. Fails only for local
  // problems (replica cannot be opened, bad connect options); NATS or the hub
  // being down is not a failure.
  Status start();
  void stop();
  // Hears every registration's outcome (Registrar::OutcomeListener); before start().
  void set_registration_listener(Registrar::OutcomeListener listener) {
    registration_listener_ = std::move(listener);
  }
  // cnats closed the NATS connection for good (it does after the server
  // refused the credentials twice in a row): the agent can no longer work;
  // deltasync-agent then stops and exits with an error for its supervisor.
  bool nats_closed() const { return nc_ != nullptr && nc_->closed(); }

  CheckpointBoard& board() { return board_; }
  // The [metrics] text (also without a listener, for tests). Thread-safe.
  std::string metrics_text() const;
  // Waits until the agent has registered (more times than `after`).
  bool wait_registered(uint64_t after, int64_t timeout_ms);
  uint64_t registrations() const;

 private:
  // The push subscriptions, once (the registrar's thread; see above).
  Status subscribe_deliveries();
  // The live-feed subscriptions (start()).
  Status subscribe_feed();

  AgentConfig config_;
  CheckpointBoard board_;
  HubClock hub_clock_;  // fed by heartbeats; read by the applier's tombstone retention
  std::unique_ptr<AgentMetrics> metrics_;  // created in the constructor; outlives every writer
  std::unique_ptr<MetricsServer> metrics_server_;
  std::unique_ptr<Replica> replica_;
  std::unique_ptr<Connection> nc_;
  std::unique_ptr<NatsMessaging> messaging_;  // over nc_: the applier's acks and the push subscriptions
  std::unique_ptr<DeltaApplier> applier_;     // after messaging_, which it holds a reference to
  // Made on the registrar thread after the first registration; cleared by
  // stop() after that thread has been joined.
  std::vector<std::unique_ptr<MessagingSubscription>> push_subs_;
  // The live feed of each subscription (ds.feed.<type>.<partition>), made at
  // start before the first registration, so that it hears every batch
  // published after the checkpoint that registration reports; cleared by
  // stop() before the applier stops.
  std::vector<std::unique_ptr<Subscription>> feed_subs_;
  // The server refused a live-feed subscription (credentials written before
  // the feed existed): registrations stop asking for it. cnats threads.
  std::shared_ptr<std::atomic<bool>> feed_denied_ = std::make_shared<std::atomic<bool>>(false);
  std::unique_ptr<HeartbeatResponder> heartbeats_;
  std::unique_ptr<DigestResponder> digests_;
  std::unique_ptr<Registrar> registrar_;
  // What callbacks on other threads (the connection's, the heartbeat
  // responder's, the applier's gap callback) reach: set once the applier and
  // the registrar exist, cleared first by stop(). They are used under the
  // mutex, so once stop() has cleared them no callback is still inside
  // either, however late cnats runs it.
  struct Hooks {
    std::mutex mu;
    DeltaApplier* applier = nullptr;  // guarded by mu
    Registrar* registrar = nullptr;   // guarded by mu
    // The connection dropped: every type waits for its recreated consumer,
    // or for the registration that gives it the live feed again.
    void connection_lost() {
      std::lock_guard<std::mutex> lock(mu);
      if (applier != nullptr) applier->connection_lost();
    }
    void trigger_registration() {
      std::lock_guard<std::mutex> lock(mu);
      if (registrar != nullptr) registrar->trigger();
    }
  };
  std::shared_ptr<Hooks> hooks_ = std::make_shared<Hooks>();
  Registrar::OutcomeListener registration_listener_;
  bool stopped_ = false;
};

}  // namespace ds
