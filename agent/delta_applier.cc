#include "agent/delta_applier.h"

#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>

#include "shared/codec.h"
#include "shared/names.h"
#include "shared/sqlite.h"

namespace ds {
namespace {

// Items taken from the queue per drain: bounds one drain's memory and how
// long a posted task waits behind deltas.
constexpr size_t kMaxItemsPerDrain = 1000;

Checkpoint to_wire(const ReplicaCheckpoint& cp) { return Checkpoint{cp.version, cp.seq, cp.ts, cp.schema_hash}; }

// The first field of `batch` that is not a column of `schema`, or "".
std::string unknown_field(const TypeSchema& schema, const DeltaBatch& batch) {
  for (const Change& c : batch.changes) {
    for (const auto& [name, value] : c.f) {
      if (schema.find_column(name) == nullptr) return name;
    }
  }
  return "";
}

}  // namespace

DeltaApplier::DeltaApplier(Replica& replica, Messaging& messaging, CheckpointBoard& board, ApplierOptions options,
                           const Clock& clock)
    : replica_(replica),
      messaging_(messaging),
      board_(board),
      options_(std::move(options)),
      clock_(clock),
      hooks_(&stop_) {}

DeltaApplier::~DeltaApplier() { stop(); }

Status DeltaApplier::start() {
  DS_ASSIGN_OR_RETURN(auto cps, replica_.checkpoints());
  for (const auto& [type, cp] : cps) board_.set_checkpoint(type, to_wire(cp));
  std::map<std::string, DeliverySource::TypeStart> starts;
  for (const auto& [type, every] : options_.feed_types) {
    auto cp = cps.find(type);
    starts[type] = {every, cp == cps.end() ? 0 : cp->second.seq};
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    source_.emplace(starts);
  }
  DS_ASSIGN_OR_RETURN(auto quarantined, replica_.quarantine_counts());
  board_.set_quarantined(std::move(quarantined));
  thread_ = std::thread([this] { run(); });
  return Status::ok();
}

void DeltaApplier::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::deque<Item> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left.swap(queue_);
  }
  for (Item& item : left) {
    if (item.done) item.done->set_value(Status::unavailable("agent is stopping"));
  }
}

void DeltaApplier::expect_new_consumers() {
  std::lock_guard<std::mutex> lock(mu_);
  order_.expect_new_consumers();
}

void DeltaApplier::connection_lost() {
  std::lock_guard<std::mutex> lock(mu_);
  order_.expect_new_consumers();
  if (!source_) return;
  for (const auto& [type, every] : options_.feed_types) {
    source_->lost(type);
    board_.set_on_feed(type, source_->taking_feed(type));
  }
}

void DeltaApplier::on_push(const std::string& type, Envelope delivery) {
  // Not a $JS.ACK reply: handle_message logs and drops it.
  auto info = parse_ack_subject(delivery.reply);
  DeliveryOrder::Verdict verdict = DeliveryOrder::Verdict::kInOrder;
  uint64_t last = 0;
  bool retrigger = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (source_ && !source_->takes_consumer(type)) {
      // On the live feed: the hub removes this consumer once the heartbeat
      // says so; until then its deliveries are left unacked.
      spdlog::debug("{}: a delivery of the consumer dropped: the type is on the live feed", type);
      return;
    }
    if (info.is_ok()) {
      last = order_.last_in_order(type);
      verdict = order_.observe(type, info->consumer_seq);
      // The heartbeat is degraded from a gap until the new consumer's 1, or
      // the registration that recreated it (Registrar).
      if (info->consumer_seq == 1) board_.set_delivery_gap(type, false);
      if (verdict == DeliveryOrder::Verdict::kGap) {
        board_.set_delivery_gap(type, true);
        gap_triggered_ms_[type] = clock_.now_steady_ms();
      } else if (verdict == DeliveryOrder::Verdict::kRefused && info->delivered > 1) {
        // A redelivery refused: ack_wait passed without the new consumer's
        // 1, which may have been lost too; register again, once per burst.
        const int64_t now = clock_.now_steady_ms();
        auto [it, first] = gap_triggered_ms_.try_emplace(type, now);
        retrigger = first || now - it->second >= kGapRetriggerMs;
        if (retrigger) {
          it->second = now;
          board_.set_delivery_gap(type, true);  // still refused: the heartbeat says so again
        }
      }
    }
    if (verdict == DeliveryOrder::Verdict::kInOrder) {
      if (info.is_ok() && source_) source_->consumer_taken(type, info->stream_seq);
      queue_.push_back(Item{type, std::move(delivery), nullptr, nullptr});
      board_.set_queued(queue_.size());
    }
  }
  switch (verdict) {
    case DeliveryOrder::Verdict::kInOrder:
      cv_.notify_one();
      return;
    case DeliveryOrder::Verdict::kGap:
      spdlog::warn("{}: delivery {} of consumer {} came after {}: a delivery went missing on the way; nothing more of "
                   "this type is applied until the hub resumes the stream from the replica's checkpoint (registering "
                   "again)",
                   type, info->consumer_seq, info->consumer, last);
      if (options_.metrics != nullptr) {
        if (AgentMetrics::PerType* m = options_.metrics->type(type)) ++m->delivery_gaps;
      }
      if (options_.on_delivery_gap) options_.on_delivery_gap(type);
      return;
    case DeliveryOrder::Verdict::kRefused:
      spdlog::debug("{}: delivery {} (stream seq {}) refused: waiting for the consumer recreated after a gap", type,
                    info->consumer_seq, info->stream_seq);
      if (retrigger) {
        spdlog::info("{}: refused deliveries come again, but not a new consumer's first; registering again", type);
        if (options_.on_delivery_gap) options_.on_delivery_gap(type);
      }
      return;
  }
}

void DeltaApplier::on_feed(const std::string& type, Envelope message, const std::optional<FeedStamp>& stamp) {
  DeliverySource::Take take = DeliverySource::Take::kDrop;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!source_ || stop_.load()) return;
    // Nothing bounds the live feed but this (a consumer has max_ack_pending):
    // a replica that cannot keep up (a full disk, a slow hook) turns the
    // overflow into a gap, and the consumer the next registration makes
    // paces it.
    if (queue_.size() < kMaxQueuedFeedMessages) {
      take = source_->feed_message(type, stamp);
    } else if (source_->taking_feed(type)) {
      source_->lost(type);
      take = DeliverySource::Take::kGap;
    }
    if (take == DeliverySource::Take::kApply || take == DeliverySource::Take::kSwitched) {
      queue_.push_back(Item{type, std::move(message), nullptr, nullptr, stamp->seq});
      board_.set_queued(queue_.size());
    }
    if (take == DeliverySource::Take::kSwitched) {
      board_.set_on_feed(type, true);
      board_.set_pending(type, 0);  // what its consumer still held is no longer pending
    }
    if (take == DeliverySource::Take::kGap || take == DeliverySource::Take::kGapAfterRegistration) {
      board_.set_delivery_gap(type, true);
      board_.set_on_feed(type, false);  // the hub must not remove a consumer it makes now
    }
  }
  switch (take) {
    case DeliverySource::Take::kApply:
      cv_.notify_one();
      return;
    case DeliverySource::Take::kSwitched:
      spdlog::info("{}: takes the live feed from stream seq {} on: it continues what the consumer brought", type,
                   stamp->seq);
      cv_.notify_one();
      return;
    case DeliverySource::Take::kDrop:
      return;
    case DeliverySource::Take::kGapAfterRegistration:
      spdlog::info("{}: the live feed's message {} follows {} on its subject, which was published while the "
                   "registration that gave the feed was under way: registering again for it",
                   type, stamp->seq, stamp->subject_last);
      if (options_.on_delivery_gap) options_.on_delivery_gap(type);
      return;
    case DeliverySource::Take::kGap:
      spdlog::warn("{}: live feed message {} came after a missing one (the previous on its subject is {}): nothing "
                   "more of this type is applied until the hub resumes it from the replica's checkpoint (registering "
                   "again)",
                   type, stamp ? std::to_string(stamp->seq) : std::string("without stamps"),
                   stamp ? std::to_string(stamp->subject_last) : std::string("unknown"));
      if (options_.metrics != nullptr) {
        if (AgentMetrics::PerType* m = options_.metrics->type(type)) ++m->delivery_gaps;
      }
      if (options_.on_delivery_gap) options_.on_delivery_gap(type);
      return;
  }
}

void DeltaApplier::begin_registration() {
  std::lock_guard<std::mutex> lock(mu_);
  if (source_) source_->registering();
}

void DeltaApplier::end_registration(const std::optional<std::vector<Delivery>>& deliveries,
                                    const std::map<std::string, uint64_t>& reported_seq) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!source_) return;
  if (deliveries) {
    for (const Delivery& d : *deliveries) {
      auto seq = reported_seq.find(d.type);
      source_->registered(d.type, d.feed, seq == reported_seq.end() ? 0 : seq->second);
      board_.set_on_feed(d.type, source_->taking_feed(d.type));
    }
  }
  source_->registration_done();
}

std::future<Status> DeltaApplier::post(Task task) {
  auto done = std::make_shared<std::promise<Status>>();
  auto future = done->get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_.load()) {
      done->set_value(Status::unavailable("agent is stopping"));
      return future;
    }
    queue_.push_back(Item{std::string(), Envelope(), std::move(task), done});
  }
  cv_.notify_one();
  return future;
}

void DeltaApplier::ack(std::string_view reply, AckKind kind) {
  if (reply.empty()) return;
  // Fire-and-forget: a lost ack only causes a redelivery the version rule skips.
  if (Status s = acknowledge(messaging_, reply, kind); !s) spdlog::warn("ack {}: {}", reply, s.message());
}

void DeltaApplier::prune_tombstones() {
  if (options_.tombstone_max_age_ms <= 0) return;
  const int64_t now = clock_.now_steady_ms();
  if (now < next_tombstone_prune_ms_) return;
  // A tombstone's age is hub time (its hub_ts against the hub's clock as
  // heartbeats tell it), never this host's wall clock, which may be off.
  // Before the first heartbeat nothing is pruned.
  const std::optional<int64_t> hub_now =
      options_.hub_clock != nullptr ? options_.hub_clock->now(now) : std::nullopt;
  if (!hub_now) return;
  auto dropped = replica_.prune_tombstones(*hub_now - options_.tombstone_max_age_ms, kTombstonePruneRows);
  if (!dropped.is_ok()) {
    spdlog::warn("tombstone retention: {} (tried again in a minute)", dropped.status().to_string());
  } else if (*dropped > 0) {
    spdlog::debug("tombstone retention: dropped {} tombstone(s) older than {} ms", *dropped,
                  options_.tombstone_max_age_ms);
  }
  // More left: the next idle second goes on; else after half the horizon,
  // at least a second and at most a minute from now.
  const int64_t pause_ms = std::clamp<int64_t>(options_.tombstone_max_age_ms / 2, 1000, 60 * 1000);
  next_tombstone_prune_ms_ = dropped.is_ok() && *dropped == kTombstonePruneRows ? now : now + pause_ms;
}

void DeltaApplier::run() {
  run_pending_hooks();
  while (true) {
    std::vector<Item> items;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_.load() || !queue_.empty(); });
      if (stop_.load()) break;
      while (!queue_.empty() && items.size() < kMaxItemsPerDrain) {
        items.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      board_.set_queued(queue_.size() + items.size() + parked_.size());
    }
    if (items.empty()) {
      // Idle: pick up quarantine changes made by the CLI in another process.
      if (auto n = replica_.quarantine_counts(); n.is_ok()) board_.set_quarantined(std::move(*n));
      prune_tombstones();
      continue;
    }
    std::map<std::string, Group> groups;
    std::vector<std::string> order;
    bool ran_task = false;
    for (Item& item : items) {
      if (gave_up_) {
        // A commit gave up because the applier stops: nothing after it in
        // this drain is applied or acked (below), and tasks are answered.
        if (item.done) item.done->set_value(Status::unavailable("agent is stopping"));
        continue;
      }
      if (item.task) {
        flush(groups, order);
        Status s;
        try {
          s = item.task(replica_);
        } catch (const std::exception& e) {
          s = Status::internal(std::string("task threw: ") + e.what());
        }
        item.done->set_value(s);
        ran_task = true;
        continue;
      }
      handle_message(item, groups, order);
    }
    flush(groups, order);
    if (ran_task && !parked_.empty()) {
      // A task may have created the tables the held deliveries wait for.
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = parked_.rbegin(); it != parked_.rend(); ++it) {
        queue_.push_front(std::move(*it));
      }
      parked_.clear();
      parked_types_.clear();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      board_.set_queued(queue_.size() + parked_.size());
    }
  }
}

void DeltaApplier::handle_message(Item& item, std::map<std::string, Group>& groups, std::vector<std::string>& order) {
  const std::string& type = item.type;
  Envelope& msg = item.msg;
  const std::string_view reply = msg.reply;
  // Where it sits in the stream, and what the consumer still holds: from
  // the ack subject of a consumer's delivery, from the broker's stamp of a
  // live-feed message (which needs no ack).
  uint64_t seq = 0;
  uint64_t pending = 0;
  if (item.feed_seq) {
    seq = *item.feed_seq;
  } else {
    auto info = parse_ack_subject(reply);
    if (!info.is_ok()) {
      spdlog::warn("push: ignoring a message on {}: {}", msg.subject, info.status().message());
      return;
    }
    seq = info->stream_seq;
    pending = info->pending;
  }
  const TypeSchema* schema = replica_.schema(type);
  if (schema == nullptr || parked_types_.count(type) != 0) {
    park(item);
    return;
  }
  auto batch = decode_delta_batch(msg.data);
  if (!batch.is_ok() || batch->type != type) {
    const std::string why = batch.is_ok()
                                ? "delta batch names type '" + batch->type + "' but came from the consumer of '" + type + "'"
                                : batch.status().message();
    // The quarantine row and the +TERM must not overtake this type's earlier
    // deliveries still waiting in `groups`.
    flush(groups, order);
    if (gave_up_) return;
    quarantine_undecodable(type, msg, seq, why);
    return;
  }
  if (const std::string field = unknown_field(*schema, *batch); !field.empty()) {
    // The hub added a column this replica does not have yet: its schema
    // arrives with the registration the hub orders (heartbeat "register").
    spdlog::info("{}: delta uses column '{}' the replica lacks: held until the new schema arrives", type, field);
    flush(groups, order);
    if (gave_up_) return;
    park(item);
    return;
  }
  auto [it, inserted] = groups.try_emplace(type);
  if (inserted) order.push_back(type);
  Group& g = it->second;
  for (Change& c : batch->changes) g.changes.push_back(std::move(c));
  g.last_seq = seq;
  ++g.messages;
  if (!reply.empty()) g.replies.emplace_back(reply);
  g.pending = pending;
  if (g.changes.size() >= options_.max_changes_per_transaction) {
    commit_group(type, g);
    g = Group{};
  }
}

void DeltaApplier::park(Item& item) {
  parked_types_.insert(item.type);
  parked_.push_back(std::move(item));
}

void DeltaApplier::flush(std::map<std::string, Group>& groups, std::vector<std::string>& order) {
  for (const std::string& type : order) {
    if (gave_up_) break;
    Group& g = groups[type];
    if (g.messages > 0) commit_group(type, g);
  }
  groups.clear();
  order.clear();
}

void DeltaApplier::commit_group(const std::string& type, Group& group) {
  int64_t backoff_ms = 100;
  AgentMetrics::PerType* m = options_.metrics != nullptr ? options_.metrics->type(type) : nullptr;
  while (true) {
    const auto t0 = std::chrono::steady_clock::now();
    auto out = replica_.apply(type, group.changes, group.last_seq, has_hook(type));
    if (out.is_ok() && m != nullptr) {
      m->apply_duration.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      m->applied_batches += group.messages;
      m->applied_changes += out->applied;
      m->skipped_changes += out->skipped;
      m->quarantined += out->quarantined;
      if (!group.changes.empty() && group.changes.back().hts > 0) {
        m->delivery_delay.observe(
            std::max<double>(0, static_cast<double>(clock_.now_system_ms() - group.changes.back().hts) / 1000.0));
      }
    }
    if (out.is_ok()) {
      if (full_since_ms_.has_value()) {
        spdlog::info("{}: the replica takes writes again after {} s; applying resumes", type,
                     (clock_.now_steady_ms() - *full_since_ms_) / 1000);
        full_since_ms_.reset();
      }
      for (const std::string& reply : group.replies) ack(reply, AckKind::kAck);
      board_.set_checkpoint(type, to_wire(out->checkpoint));
      board_.set_pending(type, group.pending);
      if (out->quarantined > 0) {
        board_.add_quarantined(type, out->quarantined);
        spdlog::warn("{}: {} change(s) quarantined (see deltasync-agent quarantine list)", type, out->quarantined);
      }
      board_.set_error(std::nullopt);
      if (out->hook_entry != 0) run_hook(type, out->hooked, out->hook_entry);
      return;
    }
    // Not acked: the same group is retried before anything later, so the
    // checkpoint can never pass a batch that did not commit.
    if (options_.metrics != nullptr) ++options_.metrics->apply_errors;
    if (!is_disk_full(out.status())) {
      spdlog::error("{}: applying {} change(s) failed, retrying in {} ms: {}", type, group.changes.size(), backoff_ms,
                    out.status().message());
    } else if (!full_since_ms_.has_value()) {
      // Expected to last until an operator frees space: said once, not per retry.
      full_since_ms_ = clock_.now_steady_ms();
      spdlog::warn("{}: the replica's disk is full ({}): applying paused, nothing more is acknowledged; it resumes "
                   "by itself once there is space ({})",
                   type, replica_.db().path(), out.status().message());
    }
    board_.set_error(type + ": " + out.status().message());
    {
      // A bounded wait that stop() cuts short (not a clock read: nothing is
      // decided by how much time passed).
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [this] { return stop_.load(); })) {
        // Not acked: replayed after the restart. Nothing later may commit
        // now (a later group of this type would move the checkpoint past
        // this one): the rest of the drain is dropped, unacked.
        gave_up_ = true;
        return;
      }
    }
    backoff_ms = std::min<int64_t>(backoff_ms * 2, 5000);
  }
}

void DeltaApplier::quarantine_undecodable(const std::string& type, const Envelope& msg, uint64_t seq,
                                          const std::string& why) {
  QuarantineEntry e;
  e.type = type;
  e.kind = "undecodable";
  e.seq = seq;
  e.at = clock_.now_system_ms();
  e.reason = "undecodable delta batch: " + why;
  e.payload = msg.data;
  auto id = replica_.quarantine(e);
  if (!id.is_ok()) {
    // Without a quarantine row the delivery must not be terminated: leave it
    // unacked so it comes again.
    spdlog::error("{}: cannot quarantine stream seq {}: {}", type, seq, id.status().message());
    board_.set_error(type + ": " + id.status().message());
    return;
  }
  spdlog::warn("{}: stream seq {} quarantined as entry {}: {}", type, seq, *id, e.reason);
  board_.add_quarantined(type, 1);
  if (options_.metrics != nullptr) {
    if (auto* m = options_.metrics->type(type)) ++m->quarantined;
  }
  ack(msg.reply, AckKind::kTerm);
}

bool DeltaApplier::has_hook(const std::string& type) const {
  auto it = options_.hooks.find(type);
  return it != options_.hooks.end() && !it->second.command.empty();
}

void DeltaApplier::run_pending_hooks() {
  auto pending = replica_.pending_hooks();
  if (!pending.is_ok()) {
    spdlog::error("hook outbox: {}", pending.status().message());
    board_.set_error(pending.status().message());
    return;
  }
  if (!pending->empty()) {
    spdlog::info("running {} hook batch(es) left unfinished by the last run", pending->size());
  }
  for (HookBatch& h : *pending) {
    if (stop_.load()) return;
    if (!has_hook(h.batch.type)) {
      spdlog::warn("{}: hook outbox entry {} dropped: the type has no hook configured any more", h.batch.type, h.id);
      if (Status s = replica_.hook_done(h.id); !s.is_ok()) spdlog::error("hook outbox: {}", s.message());
      continue;
    }
    run_hook(h.batch.type, h.batch.changes, h.id);
  }
}

void DeltaApplier::run_hook(const std::string& type, const std::vector<Change>& applied, int64_t outbox_id) {
  const HookSpec& spec = options_.hooks.at(type);
  Status s = hooks_.run(spec, type, applied);
  if (!s.is_ok() && stop_.load()) {
    // Cut short by shutdown: the outbox row stays, the hook runs after the restart.
    spdlog::warn("{}: hook interrupted by shutdown; it runs again at the next start", type);
    return;
  }
  if (s.is_ok()) {
    if (Status done = replica_.hook_done(outbox_id); !done.is_ok()) {
      spdlog::error("{}: hook outbox: {}", type, done.message());  // the hook runs once more after a restart
    }
    return;
  }
  if (options_.metrics != nullptr) {
    if (auto* m = options_.metrics->type(type)) ++m->hook_failures;
  }
  QuarantineEntry e;
  e.type = type;
  e.kind = "hook";
  e.version = applied.front().v;
  e.key = applied.front().key;
  e.reason = s.message();
  e.payload = encode(DeltaBatch{type, applied});
  e.at = clock_.now_system_ms();
  auto id = replica_.quarantine(e);
  if (!id.is_ok()) {
    spdlog::error("{}: hook failed and the batch could not be quarantined: {}; {}", type, s.message(),
                  id.status().message());
    board_.set_error(type + ": " + s.message());
    return;
  }
  spdlog::warn("{}: hook failed for versions {}..{}, quarantined as entry {}: {}", type, applied.front().v,
               applied.back().v, *id, s.message());
  board_.add_quarantined(type, 1);
  if (options_.metrics != nullptr) {
    if (auto* m = options_.metrics->type(type)) ++m->quarantined;
  }
  if (Status done = replica_.hook_done(outbox_id); !done.is_ok()) spdlog::error("{}: hook outbox: {}", type, done.message());
}

}  // namespace ds
