#pragma once
// DeltaApplier: the agent's single writer. Push deliveries (on_push) and
// live-feed messages (on_feed) arrive on cnats threads, are judged on
// receipt (a consumer's numbering: agent/delivery_order.h; which source a
// type takes and the feed's stamps: agent/delivery_source.h), are queued,
// and ONE apply thread does everything that writes the replica, in arrival
// order:
//
//   1. takes whatever is queued (a backlog) and groups the delta batches by
//      type, so a backlog is applied with few transactions;
//   2. per type: Replica::apply (rows + checkpoint, one transaction), then
//      acks each consumer delivery of the group with "+ACK" (the consumers
//      ack explicitly: see hub/delivery_manager.h; live-feed messages need
//      no ack), then updates the CheckpointBoard heartbeats read;
//   3. runs the type's hook, if any, on the changes that applied (after the
//      ack; a hook failing past its retries quarantines the batch, the stream
//      keeps flowing);
//   4. runs tasks other components post() (ensure tables, snapshot pages,
//      row counts): the replica has exactly one writer thread.
//
// A crash between commit and ack only causes a replay, which the version rule
// makes harmless. A delivery that does not decode is quarantined and answered
// with "+TERM". Flow-control requests and idle heartbeats never get here: the
// subscription answers and drops them on receipt (shared/jetstream_push.h).
// A message whose reply subject is not a $JS.ACK subject is not a JetStream
// delivery: it is logged and dropped, neither applied nor acked. A delivery
// out of its consumer's numbering (agent/delivery_order.h: one went missing
// on the way) is refused on receipt, with every later one of its type,
// until the consumer the hub recreates from the checkpoint delivers;
// on_delivery_gap asks for that registration. After a lost connection and
// from the start of each registration (expect_new_consumers) every type
// waits so for its new consumer.
// Acks are published on each delivery's ack subject through Messaging
// (acknowledge in shared/jetstream_push.h, fire-and-forget). What slows
// the consumer down to the replica's pace is max_ack_pending: a group is
// acked only after its commit. Deliveries of
// a type whose table does not exist yet (the hub answered registration after
// creating the consumer), or that use a column the table lacks (the hub added
// it; the registration bringing the new schema is on its way), are held, with
// every later delivery of their type, until a posted task has run (such as
// Registrar's ensure_table), then retried in order. A transient replica
// failure (busy, disk full) retries the same group with backoff: later
// deliveries never overtake it, so the checkpoint never passes a gap, and
// nothing is acked that did not commit; when stop() ends the retries, nothing
// after the failed group is applied or acked either (it all comes again
// after the restart). A full disk is logged once (a
// warning when it starts, an info line when a commit succeeds again), not
// per retry; the agent keeps answering heartbeats meanwhile.
//
// Hooks run on the apply thread: a slow hook slows the stream (back-pressure
// through max_ack_pending) instead of queueing without bound. A batch for a
// hook is recorded in the replica's hook outbox in the apply transaction and
// removed once its hook succeeded or it was quarantined; outbox rows left by a
// crash or a shutdown run first at the next start. So hooks run at least once
// per applied change (possibly twice around a crash: hooks should be
// idempotent, e.g. keyed on the version "v").
//
// Seams (shared/clock.h, shared/messaging.h): the applier reads time only
// through a Clock (delivery delay, tombstone ages and their schedule, the
// full-disk episode, a hook quarantine's time) and publishes its acks only
// through Messaging; deliveries come in as Envelopes. Unit tests
// (tests/unit/delta_applier_test.cc) hand deliveries in by hand, read the
// acks off a fake broker and move time by hand. Its waits are bounded
// condition waits, not clock reads: the idle wake-up (every second) and the
// retry backoff (which stop() cuts short). The apply-duration histogram is
// measured with std::chrono::steady_clock: a measurement below a
// millisecond, not a decision.
//
// Thread-safety: on_push() and post() are thread-safe; start()/stop() belong
// to the owner's thread.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/agent_metrics.h"
#include "agent/checkpoint_board.h"
#include "agent/delivery_order.h"
#include "agent/delivery_source.h"
#include "agent/feed_order.h"
#include "agent/hook_runner.h"
#include "agent/hub_clock.h"
#include "agent/replica.h"
#include "shared/clock.h"
#include "shared/jetstream_push.h"
#include "shared/messaging.h"

namespace ds {

struct ApplierOptions {
  std::map<std::string, HookSpec> hooks;  // by type
  size_t max_changes_per_transaction = 20000;
  // [replica] tombstone_max_age in ms; 0 = tombstones are never pruned. When
  // idle, the apply thread drops older tombstones, kTombstonePruneRows at a
  // time, every half horizon (at least a second, at most a minute apart).
  int64_t tombstone_max_age_ms = 0;
  // The hub's time, against which tombstone ages are measured (their hub_ts
  // is the hub's), read at the applier Clock's steady time (observe() it
  // with that clock's steady time); must outlive the applier. Null, or no
  // heartbeat yet: nothing is pruned.
  const HubClock* hub_clock = nullptr;
  // Counted on the apply thread when set (agent/agent_metrics.h); must
  // outlive the applier.
  AgentMetrics* metrics = nullptr;
  // Called on the cnats thread of on_push when a delivery of `type` came out
  // of order (agent/delivery_order.h), and again at most every
  // kGapRetriggerMs while the type's refused deliveries come again; the
  // agent registers again. Thread-safe.
  std::function<void(const std::string& type)> on_delivery_gap;
  // The types whose live feed the agent hears (on_feed), each with whether
  // it takes every partition ("*"); agent/delivery_source.h.
  std::map<std::string, bool> feed_types;
};

class DeltaApplier {
 public:
  using Task = std::function<Status(Replica&)>;

  // `messaging` is used for acks; all references must outlive the applier.
  DeltaApplier(Replica& replica, Messaging& messaging, CheckpointBoard& board, ApplierOptions options,
               const Clock& clock = real_clock());
  ~DeltaApplier();
  DeltaApplier(const DeltaApplier&) = delete;
  DeltaApplier& operator=(const DeltaApplier&) = delete;

  // Publishes the replica's checkpoints and quarantine count to the board and
  // starts the apply thread.
  Status start();
  // Finishes the batch under way (commit + ack), then joins. Deliveries still
  // queued are neither applied nor acked: they come again after a restart.
  void stop();

  // Called on cnats threads for every message of the subscription on
  // ds.push.<agent>.<type>. The type comes from the subscription: a JetStream
  // delivery keeps its original subject (ds.delta.<type>.<partition>); its
  // reply subject is the delivery's ack subject.
  void on_push(const std::string& type, Envelope delivery);
  // Called on cnats threads for every message of the live feed of `type`
  // (ds.feed.<type>.<partition>), with the broker's stamps (nullopt: none
  // valid). Taken, dropped or a gap by agent/delivery_source.h's rule; a
  // gap asks for a registration (on_delivery_gap).
  void on_feed(const std::string& type, Envelope message, const std::optional<FeedStamp>& stamp);
  // A registration begins (after expect_new_consumers()): no type moves
  // onto the live feed by itself meanwhile. Thread-safe.
  void begin_registration();
  // Its reply: per delivery whether it is the live feed, from the sequence
  // the registration reported for its type (`reported_seq`); nullopt when
  // the registration failed. Thread-safe.
  void end_registration(const std::optional<std::vector<Delivery>>& deliveries,
                        const std::map<std::string, uint64_t>& reported_seq);
  // The NATS connection was lost (deliveries may have been lost with it), or
  // a registration begins (the hub recreates every consumer, and the new
  // one's first deliveries may be lost): every type that has had deliveries
  // takes nothing until a delivery numbered 1
  // (DeliveryOrder::expect_new_consumers). Thread-safe.
  void expect_new_consumers();
  // The NATS connection was lost: expect_new_consumers(), and every type on
  // the live feed stops taking it until the registration the reconnect
  // brings (what the feed sent meanwhile is lost; that is no surprise, so
  // not warned about as a gap). Thread-safe.
  void connection_lost();
  // A refused redelivery asks for another registration at most this often
  // per type (refused deliveries come again one ack_wait after each was
  // sent, so they come in bursts).
  static constexpr int64_t kGapRetriggerMs = 5000;
  // Live-feed messages are not queued past this many queued items: the
  // type's feed then counts as broken (agent/delivery_source.h, lost()).
  static constexpr size_t kMaxQueuedFeedMessages = 10000;
  // Runs `task` on the apply thread; the future holds its Status (Unavailable
  // when the applier stops first).
  std::future<Status> post(Task task);

  const std::atomic<bool>& stopping() const { return stop_; }

 private:
  struct Item {
    std::string type;
    Envelope msg;
    Task task;
    std::shared_ptr<std::promise<Status>> done;
    std::optional<uint64_t> feed_seq{};  // a live-feed message: its stream sequence (no ack subject)
  };
  // Consecutive deliveries of one type within one drain.
  struct Group {
    std::vector<Change> changes;
    uint64_t last_seq = 0;
    size_t messages = 0;
    std::vector<std::string> replies;  // ack subjects, in delivery order (none for live-feed messages)
    uint64_t pending = 0;
  };

  void run();
  void handle_message(Item& item, std::map<std::string, Group>& groups, std::vector<std::string>& order);
  void flush(std::map<std::string, Group>& groups, std::vector<std::string>& order);
  void commit_group(const std::string& type, Group& group);
  // Holds a delivery (and so every later one of its type) until a task ran.
  void park(Item& item);
  void quarantine_undecodable(const std::string& type, const Envelope& msg, uint64_t seq, const std::string& why);
  bool has_hook(const std::string& type) const;
  // Runs the hook of an applied batch recorded in the hook outbox, then
  // removes the outbox row (also when the batch is quarantined).
  void run_hook(const std::string& type, const std::vector<Change>& applied, int64_t outbox_id);
  // At start: the hooks a crash or a shutdown interrupted.
  void run_pending_hooks();
  void ack(std::string_view reply, AckKind kind);

  Replica& replica_;
  Messaging& messaging_;
  CheckpointBoard& board_;
  ApplierOptions options_;
  const Clock& clock_;
  // A commit that failed gave up its retries because the applier stops:
  // nothing after it is applied or acked. Apply thread only.
  bool gave_up_ = false;
  static constexpr size_t kTombstonePruneRows = 10000;
  int64_t next_tombstone_prune_ms_ = 0;  // steady ms; apply thread only
  // One bounded step of tombstone retention (ApplierOptions); apply thread.
  void prune_tombstones();
  HookRunner hooks_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;  // guarded by mu_
  DeliveryOrder order_;     // guarded by mu_: judged on receipt, in arrival order
  std::optional<DeliverySource> source_;  // guarded by mu_: set by start()
  std::map<std::string, int64_t> gap_triggered_ms_;  // guarded by mu_: steady ms of a type's last on_delivery_gap
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<Item> parked_;           // apply thread only: held deliveries, in arrival order
  std::set<std::string> parked_types_;  // apply thread only: types with a held delivery
  // Since when (steady ms) the replica's disk has been full (SQLITE_FULL);
  // apply thread only.
  std::optional<int64_t> full_since_ms_;
};

}  // namespace ds
