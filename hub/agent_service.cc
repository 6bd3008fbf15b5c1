#include "hub/agent_service.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <future>
#include <optional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "hub/agents_report.h"
#include "hub/commit_history.h"
#include "hub/consumer_copy_watch.h"
#include "hub/consumer_planner.h"
#include "hub/delivery_manager.h"
#include "hub/fleet_metrics.h"
#include "hub/liveness_tracker.h"
#include "hub/registration_handler.h"
#include "hub/registration_queue.h"
#include "shared/clock.h"
#include "shared/codec.h"
#include "shared/messaging.h"
#include "shared/names.h"
#include "shared/schema.h"
#include "shared/sqlite.h"

namespace ds {
namespace {

// What a failed registry flush is about: a full disk, else the status code
// and SQLite's own code when the message ends with one ("... (code 10)"),
// so that "database is locked" and "disk I/O error" are told apart.
std::string flush_failure_cause(const Status& s) {
  if (is_disk_full(s)) return "disk full";
  std::string cause(status_code_name(s.code()));
  const std::string& m = s.message();
  if (const size_t at = m.rfind(" (code "); at != std::string::npos && !m.empty() && m.back() == ')') {
    cause += m.substr(at);
  }
  return cause;
}

// How long tick() and order_snapshot() wait for the service thread.
constexpr auto kCallTimeout = std::chrono::seconds(30);

}  // namespace

struct AgentService::Impl {
  struct Freshness {
    bool breach = false;     // at the last evaluation
    uint64_t breaches = 0;   // entries into a breach since the hub started
  };

  Impl(const HubConfig& cfg, Messaging& conn, ConsumerControl& consumers, Clock& time, Authorizer& auth,
       std::unique_ptr<AgentRegistry> reg)
      : config(cfg),
        nc(conn),
        clocks(time),
        authorizer(auth),
        subjects(cfg.nats.subject_prefix),
        registry(std::move(reg)),
        tracker({.interval_ms = cfg.heartbeat_interval_ms, .dead_after = cfg.dead_after}),
        clock(tracker.interval_ms() / 2, clocks.now_steady_ms()),
        delivery(config, consumers),
        registration(config, authorizer, *registry, tracker, delivery, marks,
                     [this](const Transition& t) { apply_transition(t); }),
        history(cfg.types),
        work(asio::make_work_guard(io)),
        timer(io),
        snapshot_timer(io) {
    for (const TypeConfig& t : config.types) hub_hashes[t.name] = schema_hash(t.schema);
    check_period_ms = std::clamp<int64_t>(tracker.interval_ms() / 4, 10, 1000);
    beat_flush_timeout_ms = std::clamp<int64_t>(tracker.interval_ms() / 2, 50, 2000);
    next_beat_ms = clocks.now_steady_ms();
  }

  // ---- everything below runs on the service thread unless noted ----

  // AgentService::agents_json(); any thread (the registry returns copies).
  nlohmann::json build_agents_json() const;

  void restore_agents() {
    const int64_t now = clock.at(clocks.now_steady_ms());
    for (const AgentRecord& a : registry->all()) {
      tracker.restore(a.id, a.state, now);
      index_agent(a.id);
    }
  }

  // Rebuilds the type <-> agent index entries of one agent from the registry.
  void index_agent(const std::string& agent) {
    for (auto& [type, agents] : agents_by_type) agents.erase(agent);
    types_by_agent.erase(agent);
    auto a = registry->find(agent);
    if (!a) return;
    for (const auto& [type, sub] : a->subscriptions) {
      agents_by_type[type].insert(agent);
      types_by_agent[agent].push_back(type);
    }
  }

  // Consumers go before the new state is published, so whoever reads
  // "dead" or "retired" from the registry sees no consumer left.
  void apply_transition(const Transition& t) {
    spdlog::info("agent {}: {} -> {} ({})", t.agent, t.from ? agent_state_name(*t.from) : "new",
                 agent_state_name(t.to), t.reason);
    if (t.to == AgentState::kDead || t.to == AgentState::kRetired) {
      close_consumers(t.agent, std::string("agent ") + std::string(agent_state_name(t.to)));
    }
    if (Status s = registry->record_transition(t, clocks.now_system_ms()); !s.is_ok()) {
      spdlog::error("agent {}: store state change: {}", t.agent, s.to_string());
    }
  }

  void close_consumers(const std::string& agent, const std::string& why) {
    auto a = registry->find(agent);
    if (!a) return;
    for (const auto& [type, sub] : a->subscriptions) {
      // A consumer that could not be deleted may linger on the server;
      // reconnect/restart checks only live agents (carry_out warns).
      carry_out(*a, sub, PlanEvent::kGone, why);
    }
  }

  // Brings the consumers of a live or suspect agent in line with what it
  // should have (the consumer planner's rules). `verify` also checks
  // believed-open consumers on the server (after a broker reconnect or a
  // hub restart).
  void ensure_consumers(const std::string& agent, bool verify) {
    auto a = registry->find(agent);
    if (!a) return;
    for (const auto& [type, sub] : a->subscriptions) {
      carry_out(*a, sub, verify ? PlanEvent::kReconnected : PlanEvent::kReported);
    }
  }

  // One subscription through the planner and the delivery manager; stores
  // the resulting delivery state.
  void carry_out(const AgentRecord& a, const SubscriptionState& sub, PlanEvent event, std::string gone_reason = {}) {
    PlanInput input{.event = event, .agent_state = a.state, .sub = sub};
    if (auto h = hub_hashes.find(sub.type); h != hub_hashes.end()) input.hub_hash = h->second;
    input.feed_filter = subjects.feed_filter(sub.type);
    input.partition_mark = marks.newest(sub.type, sub.partition);
    input.gone_reason = std::move(gone_reason);
    const ConsumerPlan plan = delivery.carry_out(a.id, input);
    if (plan.store) registry->set_delivery(a.id, sub.type, plan.state);
    if (plan.op == ConsumerOp::kOpen) copy_watch.opened({a.id, sub.type});
  }

  // Once per heartbeat interval, on replicated streams: reads from their
  // leaders the followers of the consumers of live and suspect agents that
  // this round's share names (hub/consumer_copy_watch.h: rechecks, then the
  // sweep), and orders the agent of a consumer whose copy on a node that
  // is up stays behind to register again, which recreates its consumers.
  // A consumer found missing is opened again at once, as after a
  // reconnect. The round holds the service thread for a quarter interval
  // (check_period_ms) at most: each read waits only for what is left of it,
  // and the round stops at its first failed read (a cluster electing
  // leaders answers slowly or not at all). It gives
  // kConsumerCopyOrdersPerRound orders at most (and at most one per agent
  // per interval: take_registration_order); a stuck consumer left without
  // one is ordered in a later round.
  void check_consumer_copies() {
    if (config.stream_replicas <= 1) return;
    std::vector<ConsumerCopyWatch::Key> open;
    for (const AgentRecord& a : registry->all()) {
      if (a.state != AgentState::kLive && a.state != AgentState::kSuspect) continue;
      for (const auto& [type, sub] : a.subscriptions) {
        if (sub.delivery.consumer_open) open.emplace_back(a.id, type);
      }
    }
    std::sort(open.begin(), open.end());
    const ConsumerCopyWatch::Round round = copy_watch.next(open, kConsumerCopyChecksPerRound);
    const int64_t deadline = clocks.now_steady_ms() + check_period_ms;
    int orders = 0;
    for (const ConsumerCopyWatch::Key& key : round.recheck) {
      if (!check_consumer_copy(key, deadline, orders)) return;
    }
    for (const ConsumerCopyWatch::Key& key : round.sweep) {
      if (clocks.now_steady_ms() >= deadline) return;
      const bool go_on = check_consumer_copy(key, deadline, orders);
      copy_watch.swept(key);
      if (!go_on) return;
    }
  }

  // One consumer of check_consumer_copies(); false: the round stops here.
  bool check_consumer_copy(const ConsumerCopyWatch::Key& key, int64_t deadline, int& orders) {
    const auto& [agent, type] = key;
    const int64_t left = deadline - clocks.now_steady_ms();
    if (left <= 0) return false;
    auto followers = delivery.followers(agent, type, left);
    if (!followers.is_ok()) {
      if (followers.status().code() != StatusCode::kNotFound) {
        spdlog::debug("agent {} type {}: consumer followers: {}", agent, type, followers.status().to_string());
        return false;
      }
      // Deleted behind the hub's back, or lost with a node: open it again.
      if (auto a = registry->find(agent); a && a->subscriptions.contains(type)) {
        carry_out(*a, a->subscriptions.at(type), PlanEvent::kReconnected);
      }
      return true;
    }
    const int64_t now = clocks.now_steady_ms();
    const CopyVerdict v = copy_watch.observe(key, *followers, now);
    if (v.kind != CopyVerdict::Kind::kStuck || orders >= kConsumerCopyOrdersPerRound ||
        !take_registration_order(agent)) {
      return true;
    }
    ++orders;
    copy_watch.ordered(key, now);
    copy_repair_orders++;
    spdlog::warn("agent {} type {}: the copy of consumer {} on NATS node {} has been behind for {} ms ({} "
                 "operations) although the node is up, which nats-server does not heal by itself; ordering the "
                 "agent to register again, which recreates its consumers",
                 agent, type, consumer_name(agent), v.node, v.behind_ms, v.lag);
    probe(agent, /*reregister=*/true);
    return true;
  }

  // Carries out the next batch of queued registrations: up to
  // kRegistrationsInFlight of distinct agents, their consumers opened
  // concurrently (RegistrationHandler::open_all), each stored and answered
  // as soon as its consumers are. The agent waits
  // kRegisterReplyTimeoutMs for the reply from when the request arrived,
  // then registers again. A request that waited longer in the queue
  // (registrations ahead of it slow while a NATS cluster elects leaders) is
  // dropped, and one that passes it while being carried out stops before
  // its next subscription (AgentWaits): carrying them out would recreate
  // the agent's consumers once more for nobody.
  void handle_registrations() {
    const auto waits_since = [this](int64_t received_ms) {
      return [this, received_ms] { return clocks.now_steady_ms() - received_ms <= kRegisterReplyTimeoutMs; };
    };
    std::vector<QueuedRegistration> batch = register_queue.take(kRegistrationsInFlight);
    std::erase_if(batch, [&](const QueuedRegistration& q) {
      if (waits_since(q.received_ms)()) return false;
      late_registrations++;
      spdlog::info("register {}: dropped unanswered: it waited {} ms for the hub, past the agent's {} ms reply "
                   "timeout; the agent registers again",
                   Subjects::last_token(q.msg.subject), clocks.now_steady_ms() - q.received_ms,
                   kRegisterReplyTimeoutMs);
      return true;
    });
    if (batch.empty()) return;
    std::vector<RegistrationHandler::Pending> pending;  // pending[i] is batch[i]'s
    for (const QueuedRegistration& q : batch) {
      pending.push_back(registration.begin(q.msg.subject, q.msg.data, clock.at(clocks.now_steady_ms()),
                                           clocks.now_system_ms(), waits_since(q.received_ms)));
    }
    registration.open_all(pending, [&](size_t i, const RegistrationHandler::Opened& opened) {
      const RegisterReply reply = registration.finish(pending[i], opened);
      const Envelope& msg = batch[i].msg;
      if (!pending[i].agent_waits()) late_registrations++;  // cut short, or finished after the agent gave up
      const std::string agent(Subjects::last_token(msg.subject));
      if (reply.ok()) index_agent(agent);
      // Its consumers were recreated, all or (a failed registration) some;
      // only replicated streams have copies to watch (check_consumer_copies).
      if (auto a = config.stream_replicas > 1 ? registry->find(agent) : std::nullopt) {
        for (const auto& [type, sub] : a->subscriptions) copy_watch.opened({agent, type});
      }
      if (Status s = nc.respond(msg, encode(reply)); !s.is_ok()) {
        spdlog::warn("register reply on {}: {}", msg.subject, s.to_string());
      }
    });
    fleet_changed();  // after the replies: a fleet build never delays a registration
  }

  // A reply published on ds.hub.beat.<sender>: `sender` is the subject's last
  // token, which only that agent's credentials may publish, so it is the only
  // identity the reply can speak for. A body naming someone else is refused
  // and never touches the agent it names.
  void handle_beat(const std::string& sender, HeartbeatReply reply) {
    if (!reply.agent.empty() && reply.agent != sender) {
      refused_beats++;
      const int64_t now = clocks.now_steady_ms();
      auto [it, first] = refusal_logged_ms.try_emplace(sender, now);
      if (first || now - it->second >= tracker.interval_ms()) {
        it->second = now;
        spdlog::warn("heartbeat reply on {} names agent {}: refused (a reply speaks only for its sender; {} "
                     "refused so far)",
                     subjects.hub_beat(sender), quoted_for_message(reply.agent), refused_beats.load());
      }
      return;
    }
    reply.agent = sender;
    handle_reply(reply);
    fleet_changed();
  }

  void handle_reply(const HeartbeatReply& reply) {
    if (!registry->find(reply.agent)) {
      order_unknown_to_register(reply.agent);
      return;
    }
    auto effect = tracker.on_reply(reply.agent, clock.at(clocks.now_steady_ms()));
    if (!effect.accepted) {
      spdlog::debug("heartbeat reply from retired agent '{}' ignored", reply.agent);
      return;
    }
    registry->record_beat(reply, clocks.now_system_ms());
    if (effect.transition) apply_transition(*effect.transition);
    ensure_consumers(reply.agent, false);
    order_registration_if_needed(reply.agent);
  }

  // A live agent that has no consumer because its checkpoint left the stream
  // (it came back from dead through a heartbeat) or whose schema is out of
  // date is told to register again: the reply to that registration orders
  // the snapshot, or carries the schema the agent then adopts in place. At
  // most once per interval per agent; not while it loads a snapshot a
  // registration reply ordered; a registration clears the condition.
  void order_registration_if_needed(const std::string& agent) {
    auto a = registry->find(agent);
    if (!a) return;
    const std::string reasons = registration_reasons(*a);
    if (reasons.empty()) return;
    if (!take_registration_order(agent)) return;
    spdlog::info("agent {}: ordering it to register again ({})", agent, reasons);
    probe(agent, /*reregister=*/true);
  }

  // Whether `agent` may be ordered to register now (at most once per
  // interval, may_order_registration); if so, counts this order.
  bool take_registration_order(const std::string& agent) {
    const int64_t now = clocks.now_steady_ms();
    auto last = register_ordered_ms.find(agent);
    if (!may_order_registration(last == register_ordered_ms.end() ? std::nullopt : std::optional(last->second), now,
                                tracker.interval_ms())) {
      return false;
    }
    register_ordered_ms[agent] = now;
    return true;
  }

  // An agent the hub does not know answers heartbeats: the hub lost its
  // registry (a new disk, a store restored without hub.agents.db) while
  // the agent kept running, so it would not register again by itself. It
  // is told to, at most once a minute (an agent whose registration the hub
  // refuses stays unknown: one order and its refusal a minute, not one per
  // heartbeat); the registration makes it known. (The reply's sender is the
  // agent its credentials name: attribution.)
  void order_unknown_to_register(const std::string& agent) {
    const int64_t now = clocks.now_steady_ms();
    // An entry a minute old holds nothing back any more: dropped (once a
    // minute), so agents that went away or registered since do not pile up.
    if (now - unknown_pruned_ms >= kUnknownOrderEveryMs) {
      std::erase_if(unknown_ordered_ms, [now](const auto& e) { return now - e.second >= kUnknownOrderEveryMs; });
      unknown_pruned_ms = now;
    }
    auto [last, first] = unknown_ordered_ms.try_emplace(agent, now);
    if (!first) {
      if (now - last->second < kUnknownOrderEveryMs) return;
      last->second = now;
    }
    spdlog::info("agent {}: unknown to this hub but answering heartbeats; ordering it to register", agent);
    publish_probe(agent, HeartbeatRequest{config.name, clocks.now_system_ms(), {}, /*reregister=*/true});
  }

  // Runs one tick, then publishes a fleet snapshot (always when `force`,
  // else within the budget): silent agents age, and their staleness with them.
  void tick(bool force_snapshot) {
    tick();
    snapshot_dirty = true;
    if (force_snapshot) {
      publish_snapshot();
    } else {
      publish_when_allowed();
    }
  }

  // Liveness counts accountable time only (AccountableClock): this tick's
  // steady-time step counts when the connection is up, was not lost since
  // the last tick, and the last beat round was confirmed at the broker.
  void tick() {
    const int64_t steady = clocks.now_steady_ms();
    const bool connected = nc.connected();
    const int64_t now = clock.tick(steady, connected && !outage_since_tick && beats_confirmed);
    outage_since_tick = false;
    if (!connected) return;  // nobody can hear the beats; judge again once back
    for (const Transition& t : tracker.evaluate(now)) apply_transition(t);
    if (steady >= next_beat_ms) {
      send_heartbeats();
      confirm_beats();
      evaluate_freshness();
      check_consumer_copies();
      // Keep the phase (no drift of a tick per beat), unless we fell behind.
      next_beat_ms = std::max(next_beat_ms + tracker.interval_ms(), clocks.now_steady_ms() + 1);
    }
    flush_registry();
  }

  // Stores the heartbeats taken since the last tick. A failure (a full disk)
  // keeps them for the next tick, and is said once, not every tick, until a
  // flush succeeds again or fails for another cause (flush_failure_cause:
  // the message itself names the statement and may vary).
  void flush_registry() {
    Status s = registry->flush();
    if (s.is_ok()) {
      if (failed_flushes > 0) {
        spdlog::info("agent registry: heartbeats stored again after {} failed attempt(s)", failed_flushes);
      }
      failed_flushes = 0;
      last_flush_cause.clear();
      return;
    }
    ++failed_flushes;
    std::string cause = flush_failure_cause(s);
    if (cause != last_flush_cause) spdlog::warn("{} (kept in memory and retried every tick)", s.to_string());
    last_flush_cause = std::move(cause);
  }

  // Once per heartbeat interval: which subscriptions are in breach of their
  // type's freshness objective; counts each entry into a breach.
  void evaluate_freshness() {
    const int64_t now = clocks.now_system_ms();
    std::map<std::pair<std::string, std::string>, Freshness> next;
    for (const AgentRecord& a : registry->all()) {
      if (a.state == AgentState::kRetired) continue;
      for (const auto& [type, s] : a.subscriptions) {
        const TypeConfig* tc = config.find_type(type);
        if (tc == nullptr) continue;
        const bool breach =
            history.staleness_ms(type, s.partition, s.version, staleness_as_of(a, now)) > tc->freshness_objective_s * 1000;
        next[{a.id, type}].breach = breach;
      }
    }
    std::lock_guard lock(freshness_mu);
    for (auto& [key, f] : next) {
      auto old = freshness.find(key);
      f.breaches = old == freshness.end() ? 0 : old->second.breaches;
      if (f.breach && (old == freshness.end() || !old->second.breach)) {
        ++f.breaches;
        spdlog::info("agent {} type {}: freshness objective breached (oldest unapplied change older than {} s)",
                     key.first, key.second, config.find_type(key.second)->freshness_objective_s);
      }
    }
    freshness = std::move(next);
  }

  Freshness freshness_of(const std::string& agent, const std::string& type) const {
    std::lock_guard lock(freshness_mu);
    auto it = freshness.find({agent, type});
    return it == freshness.end() ? Freshness{} : it->second;
  }

  // A flush round trip (PING/PONG) after the beats: they reached the broker.
  // Until one succeeds again, accountable time stands still.
  void confirm_beats() {
    const Status s = nc.flush(beat_flush_timeout_ms);
    if (s.is_ok() && !beats_confirmed) {
      spdlog::info("agent service: heartbeats confirmed by the broker again: liveness time runs again");
    } else if (!s.is_ok() && beats_confirmed) {
      spdlog::warn("agent service: heartbeats not confirmed by the broker within {} ms ({}): liveness time "
                   "stands still until they are",
                   beat_flush_timeout_ms, s.to_string());
    }
    beats_confirmed = s.is_ok();
  }

  // One broadcast per configured type, whether the hub knows agents of it
  // or not: an agent it does not know (a lost registry) answers, and is
  // told to register (order_unknown_to_register).
  void send_heartbeats() {
    const int64_t wall = clocks.now_system_ms();
    for (const TypeConfig& tc : config.types) {
      const std::string& type = tc.name;
      HeartbeatRequest req{config.name, wall, {type}};
      if (Status s = nc.publish(subjects.heartbeat(type), encode(req)); !s.is_ok()) {
        spdlog::warn("heartbeat on {}: {}", subjects.heartbeat(type), s.to_string());
      }
    }
    for (const std::string& agent : tracker.probe_targets()) probe(agent);
  }

  void probe(const std::string& agent, bool reregister = false) {
    publish_probe(agent, HeartbeatRequest{config.name, clocks.now_system_ms(), types_by_agent[agent], reregister});
    tracker.record_probe(agent, clock.at(clocks.now_steady_ms()));
  }

  // A heartbeat request on the agent's direct subject (ds.agent.<id>.hb).
  void publish_probe(const std::string& agent, const HeartbeatRequest& req) {
    if (Status s = nc.publish(subjects.probe(agent), encode(req)); !s.is_ok()) {
      spdlog::warn("probe {}: {}", subjects.probe(agent), s.to_string());
    }
  }

  // Scans a type's agents at most once per check period: commits come far
  // more often under load, and a scan walks every agent of the type (dead
  // ones included). An agent is not probed twice within a check period
  // anyway, so a skipped scan delays a probe by less than one period.
  void refresh_types(const std::vector<std::string>& types) {
    const int64_t now = clocks.now_steady_ms();
    for (const std::string& type : types) {
      auto it = agents_by_type.find(type);
      if (it == agents_by_type.end()) continue;
      auto [scanned, first] = refreshed_ms.try_emplace(type, now);
      if (!first) {
        if (now - scanned->second < check_period_ms) continue;
        scanned->second = now;
      }
      for (const std::string& agent : it->second) {
        if (tracker.needs_refresh(agent, clock.at(clocks.now_steady_ms()))) probe(agent);
      }
    }
  }

  // ---- the fleet snapshot (header, "Fleet snapshot") ----

  // Something a page shows may have changed: publish now or when the budget allows.
  void fleet_changed() {
    snapshot_dirty = true;
    publish_when_allowed();
  }

  void publish_when_allowed() {
    if (!snapshot_dirty || stopping) return;
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_snapshot) {
      publish_snapshot();
      return;
    }
    if (snapshot_timer_set) return;
    snapshot_timer_set = true;
    snapshot_timer.expires_at(next_snapshot);
    snapshot_timer.async_wait([this](const std::error_code& ec) {
      snapshot_timer_set = false;
      if (ec == asio::error::operation_aborted || stopping) return;
      publish_when_allowed();
    });
  }

  // Builds the view and its snapshot and swaps it in. The budget is CPU
  // time actually spent, so it is measured in real steady time, not the
  // service's Clock.
  void publish_snapshot() {
    const auto started = std::chrono::steady_clock::now();
    std::shared_ptr<FleetSnapshot> next = FleetSnapshot::build(build_agents_json(), clocks.now_system_ms());
    const auto took = std::chrono::steady_clock::now() - started;
    next->build_ms = std::chrono::duration_cast<std::chrono::milliseconds>(took).count();
    {
      std::lock_guard lock(snapshot_mu);
      snapshot = std::move(next);
    }
    snapshot_dirty = false;
    next_snapshot = started + took * kSnapshotDutyFactor;
  }

  // The timer fires every check period, and exactly at the next beat, so
  // the broadcast period does not stretch by the check granularity.
  void schedule_tick() {
    const int64_t now = clocks.now_steady_ms();
    const int64_t delay = std::clamp<int64_t>(std::min(now + check_period_ms, next_beat_ms) - now, 0,
                                              check_period_ms);
    timer.expires_after(std::chrono::milliseconds(delay));
    timer.async_wait([this](const std::error_code& ec) {
      if (ec == asio::error::operation_aborted || stopping) return;
      tick(/*force_snapshot=*/false);
      schedule_tick();
    });
  }

  // Set by the production start() (adapters over its Connection and
  // JetStream); declared first so they outlive everything that uses them.
  std::unique_ptr<Messaging> own_messaging;
  std::unique_ptr<ConsumerControl> own_consumers;
  const HubConfig& config;
  Messaging& nc;
  Clock& clocks;
  Authorizer& authorizer;
  Subjects subjects;
  std::unique_ptr<AgentRegistry> registry;
  LivenessTracker tracker;
  AccountableClock clock;  // service thread only
  DeliveryManager delivery;
  PartitionMarks marks;  // thread-safe; before the registration handler, which reads it
  RegistrationHandler registration;
  RegistrationQueue register_queue;                                  // thread-safe
  std::map<std::string, std::string> hub_hashes;                   // type -> schema hash; const after construction
  std::map<std::string, std::set<std::string>> agents_by_type;      // service thread only
  std::map<std::string, std::vector<std::string>> types_by_agent;   // service thread only
  std::map<std::string, int64_t> register_ordered_ms;               // service thread only: last order per agent
  std::map<std::string, int64_t> unknown_ordered_ms;                // service thread only: last order per unknown agent
  int64_t unknown_pruned_ms = 0;                                    // service thread only: when it was last pruned
  static constexpr int64_t kUnknownOrderEveryMs = 60000;
  std::map<std::string, int64_t> refreshed_ms;                      // service thread only: last scan per type
  std::map<std::string, int64_t> refusal_logged_ms;                 // service thread only: last warning per sender
  std::atomic<uint64_t> refused_beats{0};                            // written by the service thread
  std::atomic<uint64_t> late_registrations{0};                       // written by the service thread
  ConsumerCopyWatch copy_watch;                                      // service thread only
  std::atomic<uint64_t> copy_repair_orders{0};                       // written by the service thread
  CommitHistory history;                                             // thread-safe
  mutable std::mutex freshness_mu;
  std::map<std::pair<std::string, std::string>, Freshness> freshness;  // guarded by freshness_mu; (agent, type)
  int64_t check_period_ms = 0;
  int64_t next_beat_ms = 0;                // steady clock
  int64_t beat_flush_timeout_ms = 0;
  bool beats_confirmed = true;             // service thread only: the last beat round reached the broker
  bool outage_since_tick = false;          // service thread only: a reconnect happened since the last tick
  uint64_t failed_flushes = 0;             // service thread only: registry flushes failed in a row
  std::string last_flush_cause;            // service thread only: the cause last warned about
  bool stopping = false;  // service thread only
  // The fleet snapshot: built and swapped on the service thread; the pointer
  // is guarded by snapshot_mu, the snapshot itself is immutable.
  mutable std::mutex snapshot_mu;
  std::shared_ptr<const FleetSnapshot> snapshot;        // guarded by snapshot_mu
  bool snapshot_dirty = false;                            // service thread only
  bool snapshot_timer_set = false;                        // service thread only
  std::chrono::steady_clock::time_point next_snapshot{};  // service thread only: earliest next build

  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  asio::steady_timer timer;
  asio::steady_timer snapshot_timer;
  std::thread thread;
  bool own_timer = true;  // const after start(): false = ticks only through AgentService::tick()
  std::unique_ptr<MessagingSubscription> register_sub;
  std::unique_ptr<MessagingSubscription> beat_sub;
  std::atomic<bool> stopped{false};
  std::mutex stop_mu;
};

AgentService::AgentService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

AgentService::~AgentService() { stop(); }

Result<std::unique_ptr<AgentService>> AgentService::start(const HubConfig& config, Connection& nc,
                                                          JetStream& js, Authorizer& authorizer) {
  auto messaging = std::make_unique<NatsMessaging>(nc);
  auto consumers = std::make_unique<NatsConsumerControl>(js);
  AgentServiceEnv env{.messaging = *messaging, .consumers = *consumers, .clock = real_clock()};
  return start(config, env, authorizer, std::move(messaging), std::move(consumers));
}

Result<std::unique_ptr<AgentService>> AgentService::start(const HubConfig& config, AgentServiceEnv env,
                                                          Authorizer& authorizer) {
  return start(config, env, authorizer, nullptr, nullptr);
}

Result<std::unique_ptr<AgentService>> AgentService::start(const HubConfig& config, AgentServiceEnv env,
                                                          Authorizer& authorizer,
                                                          std::unique_ptr<Messaging> own_messaging,
                                                          std::unique_ptr<ConsumerControl> own_consumers) {
  DS_ASSIGN_OR_RETURN(auto registry, AgentRegistry::open(agent_registry_path(config.store_path), config.store_path));
  auto impl = std::make_unique<Impl>(config, env.messaging, env.consumers, env.clock, authorizer, std::move(registry));
  Impl* p = impl.get();
  p->own_messaging = std::move(own_messaging);
  p->own_consumers = std::move(own_consumers);
  p->own_timer = env.own_timer;
  Messaging& nc = env.messaging;
  p->restore_agents();
  p->publish_snapshot();  // before the thread runs: fleet_snapshot() is never null

  // Handlers decode on the cnats thread and post; they never block.
  DS_ASSIGN_OR_RETURN(p->beat_sub, nc.subscribe(p->subjects.hub_beat_wildcard(), [p](Envelope msg) {
    std::string sender(Subjects::last_token(msg.subject));
    if (!validate_agent_id(sender).is_ok()) return;  // not an agent's subject: nobody to attribute it to
    auto reply = decode_heartbeat_reply(msg.data);
    if (!reply.is_ok()) {
      spdlog::debug("malformed heartbeat reply on {} ignored: {}", msg.subject, reply.status().message());
      return;
    }
    asio::post(p->io, [p, sender = std::move(sender), r = std::move(reply).value()]() mutable {
      p->handle_beat(sender, std::move(r));
    });
  }));
  DS_ASSIGN_OR_RETURN(p->register_sub, nc.subscribe(p->subjects.register_wildcard(), [p](Envelope msg) {
    const std::string_view agent = Subjects::last_token(msg.subject);
    if (Status s = p->authorizer.may_reply(agent, msg.reply); !s.is_ok()) {
      spdlog::warn("registration on {} dropped unanswered: {}", msg.subject, s.message());
      return;
    }
    p->register_queue.push({std::move(msg), p->clocks.now_steady_ms()});
    asio::post(p->io, [p] { p->handle_registrations(); });  // one per push: each finds its own batch or none
  }));

  // Subscriptions are in place at the server when start() returns.
  DS_RETURN_IF_ERROR(nc.flush(5000));
  std::unique_ptr<AgentService> service(new AgentService(std::move(impl)));
  // Consumers of restored live agents may be gone (broker restarted with us).
  asio::post(p->io, [p] {
    for (const auto& [agent, types] : p->types_by_agent) p->ensure_consumers(agent, true);
    p->fleet_changed();
  });
  if (p->own_timer) p->schedule_tick();
  p->thread = std::thread([p] {
    try {
      p->io.run();
    } catch (const std::exception& e) {
      spdlog::critical("agent service thread: {}", e.what());
    }
  });
  spdlog::info("agent service: heartbeat every {} ms, dead after {} missed beats, replies on {}",
               config.heartbeat_interval_ms, config.dead_after, p->subjects.hub_beat_wildcard());
  return service;
}

void AgentService::on_committed(const std::vector<PartitionMark>& marks) {
  Impl* p = impl_.get();
  p->marks.update(marks);
  for (const PartitionMark& m : marks) p->history.record(m);
  if (p->stopped) return;
  std::vector<std::string> types;
  for (const PartitionMark& m : marks) {
    if (types.empty() || types.back() != m.type) types.push_back(m.type);
  }
  asio::post(p->io, [p, types = std::move(types)] {
    p->refresh_types(types);
    p->fleet_changed();  // lag follows the new marks
  });
}

void AgentService::restore_marks(const std::vector<PartitionMark>& marks) {
  Impl* p = impl_.get();
  p->marks.update(marks);
  for (const PartitionMark& m : marks) p->history.seed(m);
  if (!p->stopped) asio::post(p->io, [p] { p->fleet_changed(); });
}

void AgentService::on_reconnected() {
  Impl* p = impl_.get();
  if (p->stopped) return;
  asio::post(p->io, [p] {
    spdlog::info("agent service: broker reconnected: checking live agents' consumers");
    p->outage_since_tick = true;
    p->tracker.excuse_silence(p->clock.at(p->clocks.now_steady_ms()));
    for (const auto& [agent, types] : p->types_by_agent) p->ensure_consumers(agent, true);
    p->fleet_changed();
  });
}

void AgentService::retire(const std::string& agent, std::function<void(Status)> done) {
  Impl* p = impl_.get();
  if (p->stopped) return done(Status::unavailable("agent service stopped"));
  asio::post(p->io, [p, agent, done = std::move(done)] {
    auto t = p->tracker.retire(agent, p->clock.at(p->clocks.now_steady_ms()));
    if (!t.is_ok()) return done(t.status());
    if (*t) p->apply_transition(**t);
    p->fleet_changed();
    done(Status::ok());
  });
}

Status AgentService::tick() {
  Impl* p = impl_.get();
  if (p->stopped) return Status::unavailable("agent service stopped");
  auto done = std::make_shared<std::promise<void>>();
  auto result = done->get_future();
  asio::post(p->io, [p, done] {
    p->tick(/*force_snapshot=*/true);
    done->set_value();
  });
  if (result.wait_for(kCallTimeout) != std::future_status::ready) {
    return Status::deadline_exceeded("tick: agent service did not answer");
  }
  return Status::ok();
}

Status AgentService::order_snapshot(const std::string& agent, const std::string& type) {
  Impl* p = impl_.get();
  if (p->stopped) return Status::unavailable("agent service stopped");
  auto done = std::make_shared<std::promise<Status>>();
  auto result = done->get_future();
  asio::post(p->io, [p, agent, type, done] {
    auto a = p->registry->find(agent);
    if (!a) return done->set_value(Status::not_found("no agent '" + agent + "'"));
    auto sub = a->subscriptions.find(type);
    if (sub == a->subscriptions.end()) {
      return done->set_value(Status::not_found("agent '" + agent + "' does not take type '" + type + "'"));
    }
    if (a->state != AgentState::kLive && a->state != AgentState::kSuspect) {
      return done->set_value(Status::unavailable("agent '" + agent + "' is " +
                                                 std::string(agent_state_name(a->state)) + ": it cannot reload now"));
    }
    p->registration.order_snapshot(agent, type);
    const DeliveryState d = repair_ordered(sub->second.delivery);
    p->registry->set_delivery(agent, type, d);
    spdlog::info("agent {} type {}: {}", agent, type, d.note);
    p->register_ordered_ms.erase(agent);  // order it now, not after the rate limit
    p->order_registration_if_needed(agent);
    p->fleet_changed();
    done->set_value(Status::ok());
  });
  if (result.wait_for(kCallTimeout) != std::future_status::ready) {
    return Status::deadline_exceeded("order snapshot " + agent + ": agent service did not answer");
  }
  return result.get();
}

void AgentService::stop() {
  Impl* p = impl_.get();
  std::lock_guard lock(p->stop_mu);
  if (p->stopped.exchange(true)) return;
  // Destroying a subscription waits for a running handler, so nothing posts
  // after these two lines.
  p->register_sub.reset();
  p->beat_sub.reset();
  asio::post(p->io, [p] {
    p->stopping = true;
    p->timer.cancel();
    p->snapshot_timer.cancel();
    if (Status s = p->registry->flush(); !s.is_ok()) spdlog::warn("{}", s.to_string());
    p->work.reset();
  });
  if (p->thread.joinable()) p->thread.join();
}

const AgentRegistry& AgentService::registry() const { return *impl_->registry; }

uint64_t AgentService::refused_beats() const { return impl_->refused_beats.load(); }
uint64_t AgentService::late_registrations() const { return impl_->late_registrations.load(); }
uint64_t AgentService::copy_repair_orders() const { return impl_->copy_repair_orders.load(); }

void AgentService::write_metrics(PrometheusWriter& w) const {
  write_fleet_metrics(w, *fleet_snapshot(), impl_->config.types,
                      {.refused_beats = refused_beats(),
                       .late_registrations = late_registrations(),
                       .copy_repair_orders = copy_repair_orders()});
}

std::shared_ptr<const FleetSnapshot> AgentService::fleet_snapshot() const {
  std::lock_guard lock(impl_->snapshot_mu);
  return impl_->snapshot;
}

nlohmann::json AgentService::agents_json() const { return impl_->build_agents_json(); }

nlohmann::json AgentService::Impl::build_agents_json() const {
  return agents_report(registry->all(), AgentsReportInputs{.config = config,
                                                           .hub_hashes = hub_hashes,
                                                           .marks = marks,
                                                           .history = history,
                                                           .freshness_breaches =
                                                               [this](const std::string& agent, const std::string& type) {
                                                                 return freshness_of(agent, type).breaches;
                                                               },
                                                           .now_system_ms = clocks.now_system_ms()});
}

}  // namespace ds
