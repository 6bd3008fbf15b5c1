#include "hub/ingest_writer.h"

#include <sys/statvfs.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include <sodium.h>

#include "shared/codec.h"
#include "shared/names.h"
#include "shared/sqlite.h"

namespace ds {
namespace {

// What a retry key is stored with (CommitBatch::digest): BLAKE2b-128 of the
// validated records encoded as an ingest request without producer and seq.
std::string content_digest(IngestRequest& request) {
  std::string producer = std::exchange(request.producer, {});
  const std::optional<uint64_t> seq = std::exchange(request.seq, std::nullopt);
  const std::string bytes = encode(request);
  request.producer = std::move(producer);
  request.seq = seq;
  std::string digest(16, '\0');
  crypto_generichash(reinterpret_cast<unsigned char*>(digest.data()), digest.size(),
                     reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), nullptr, 0);
  return digest;
}

// What the hub says when its store is full and when it is not any more
// (tests/faults look for these).
constexpr const char* kStoreFullMessage = "the hub's store is full";
constexpr const char* kStoreBackMessage = "the hub's store takes writes again";
// What an ingest is answered once the writer thread ended by itself.
constexpr const char* kWriterEndedMessage =
    "the hub's ingest writer is not running (its thread ended): ingest is refused until the hub is restarted";

}  // namespace

std::string ingest_reply_json(const IngestReply& reply) {
  nlohmann::json j;
  j["ok"] = reply.ok();
  if (reply.ok()) {
    j["first_version"] = reply.first_version;
    j["last_version"] = reply.last_version;
  } else {
    nlohmann::json e;
    e["code"] = std::string(status_code_name(reply.error->code));
    e["message"] = reply.error->message;
    if (reply.error->index) e["index"] = *reply.error->index;
    j["error"] = std::move(e);
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// ---- IngestWriter -------------------------------------------------------------

IngestWriter::IngestWriter(const HubConfig& config, QueryStore& store, StreamPublisher& publisher,
                           HubMetrics& metrics, Options options, const Clock& clock)
    : config_(config),
      store_(store),
      publisher_(publisher),
      metrics_(metrics),
      options_(options),
      clock_(clock),
      retention_(config, store, publisher, metrics) {}

IngestWriter::~IngestWriter() { stop(); }

void IngestWriter::start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable() || stopping_) return;
  accepting_ = true;
  reconcile_requested_ = true;
  thread_running_.store(true);
  thread_ = std::thread([this] { run(); });
}

void IngestWriter::reply_rejected(const IngestReplyFn& reply, const Status& status, std::optional<uint32_t> index) {
  IngestReply r;
  r.error = WireError::from(status, index);
  reply(r);
}

void IngestWriter::submit(const std::string& type, IngestRequest request, IngestReplyFn reply) {
  const TypeConfig* tc = config_.find_type(type);
  if (tc == nullptr) {
    spdlog::info("ingest {}: rejected: unknown business type", type);
    reply_rejected(reply, Status::not_found("unknown business type '" + type + "'"), std::nullopt);
    return;
  }
  if (auto bad = validate_ingest_records(*tc, request.records, publisher_.max_batch_bytes())) {
    spdlog::info("ingest {} from '{}' (seq {}): batch of {} rejected: {}", type, request.producer,
                 request.seq ? std::to_string(*request.seq) : "-", request.records.size(), bad->status.message());
    reply_rejected(reply, bad->status, bad->index);
    return;
  }
  std::string digest = request.seq && !request.producer.empty() ? content_digest(request) : std::string();
  Status refused;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!accepting_ && ended_) {
      refused = Status::unavailable(kWriterEndedMessage);
    } else if (!accepting_) {
      refused = Status::unavailable("the hub is not accepting ingests (starting or shutting down)");
    } else if (auto blocked = blocked_.find(type); blocked != blocked_.end()) {
      refused = Status::unavailable("type '" + type +
                                    "' takes no ingest: its stream holds changes the hub's store lacks and cannot "
                                    "take back (restored from an older backup?); an operator must act, see the "
                                    "hub's log");
    } else if (queue_.size() >= options_.max_queue) {
      refused = Status::unavailable("the ingest queue is full; retry later");
    } else {
      queue_.push_back(Pending{CommitBatch{type, std::move(request.producer), request.seq, std::move(request.records),
                                           std::move(digest)},
                               std::move(reply)});
      metrics_.ingest_queue_depth = static_cast<int64_t>(queue_.size());
    }
  }
  if (!refused.is_ok()) {
    reply_rejected(reply, refused, std::nullopt);
    return;
  }
  cv_.notify_one();
}

std::string IngestWriter::not_ready_reason() const {
  if (!thread_running_.load()) {
    return "the ingest writer is not running (its thread ended): ingest is refused; restart the hub (see its log)";
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!first_reconcile_done_) return "reconciling the streams with the change log";
  if (store_full_.load()) {
    return std::string(kStoreFullMessage) + " (no space left on the filesystem of " + config_.store_path +
           "): batches that do not fit are refused; ready again once it has 1 MiB free";
  }
  if (!commit_failure_.empty()) {
    return "the hub's store refused the last commit (" + commit_failure_ +
           "): ready again once a commit succeeds (a producer's retry); check the store's file and disk (see the "
           "hub log)";
  }
  if (blocked_.empty()) return {};
  std::string types;
  for (const auto& [type, why] : blocked_) types += (types.empty() ? "'" : ", '") + type + "'";
  return "store behind stream for type " + types +
         ": the stream holds changes the store lacks and cannot take back (restored from an older backup?); "
         "ingest of it refused; see the hub log";
}

std::optional<uint64_t> IngestWriter::store_free_bytes_paced() {
  const int64_t now = clock_.now_steady_ms();
  if (now - space_checked_ms_ < 1000) return std::nullopt;
  space_checked_ms_ = now;
  struct statvfs st {};
  if (::statvfs(config_.store_path.c_str(), &st) != 0) return std::nullopt;
  const uint64_t blocks = ::geteuid() == 0 ? st.f_bfree : st.f_bavail;
  return blocks * st.f_frsize;
}

bool IngestWriter::store_has_space_again() {
  const std::optional<uint64_t> free = store_free_bytes_paced();
  return free.has_value() && *free >= kStoreFreeBytesToResume;
}

void IngestWriter::enter_store_full_when_nearly_full() {
  const std::optional<uint64_t> free = store_free_bytes_paced();
  if (!free.has_value() || *free >= kStoreFreeBytesNearlyFull) return;
  enter_store_full(Status::unavailable("only " + std::to_string(*free) + " bytes free on its filesystem"));
}

void IngestWriter::enter_store_full(const Status& cause) {
  // Transient and expected to last a while: one warning when the store
  // fills up, one line when it takes writes again, not one per batch.
  if (store_full_.exchange(true)) return;
  spdlog::warn("ingest: {}: {} ({}); batches that do not fit are refused (nothing of a refused batch is stored "
               "or acknowledged); ready again by itself once there is space",
               kStoreFullMessage, config_.store_path, cause.message());
}

void IngestWriter::clear_commit_failure() {
  if (!commit_failed_) return;
  commit_failed_ = false;
  commit_failed_for_lock_ = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    commit_failure_.clear();
  }
  spdlog::info("ingest: the hub's store takes commits again");
}

void IngestWriter::end_lock_failure_once_free() {
  if (!commit_failed_for_lock_) return;
  const int64_t now = clock_.now_steady_ms();
  if (now - lock_probed_ms_ < 1000) return;
  lock_probed_ms_ = now;
  if (store_.probe_write_lock().is_ok()) clear_commit_failure();
}

void IngestWriter::end_store_full_once_space_is_back() {
  if (!store_has_space_again()) return;
  store_full_.store(false);
  spdlog::info("ingest: {} ({} batch(es) were refused while it was full)", kStoreBackMessage, refused_while_full_);
  refused_while_full_ = 0;
}

void IngestWriter::request_reconcile() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    reconcile_requested_ = true;
  }
  cv_.notify_one();
}

void IngestWriter::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    accepting_ = false;
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void IngestWriter::run() {
  loop();
  // However the loop ended, nothing queued may wait for an answer, and
  // nothing more is taken.
  std::deque<Pending> left;
  bool stopping = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    accepting_ = false;
    left.swap(queue_);
    stopping = stopping_;
    ended_ = !stopping_;
    metrics_.ingest_queue_depth = 0;
  }
  thread_running_.store(false);
  for (Pending& p : left) {
    reply_rejected(p.reply, Status::unavailable(stopping ? "the hub is shutting down; retry later" : kWriterEndedMessage),
                   std::nullopt);
  }
  if (stopping) {
    spdlog::info("ingest writer: drained and stopped");
  } else {
    spdlog::critical("ingest writer: its thread ended while the hub runs: every ingest is refused until the hub "
                     "is restarted; /readyz says not ready");
  }
}

void IngestWriter::loop() {
  for (;;) {
    std::vector<Pending> group;
    bool reconcile = false;
    bool idle = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Idle, the thread wakes every retention interval to prune a step.
      cv_.wait_for(lock, StoreRetention::kStepInterval,
                   [this] { return stopping_ || reconcile_requested_ || !queue_.empty(); });
      if (reconcile_requested_) {
        reconcile_requested_ = false;
        reconcile = true;
        reconciled_ = true;
      } else if (queue_.empty()) {
        if (stopping_) break;  // stopping, and everything queued was handled
        idle = true;
      } else {
        size_t records = 0;
        while (!queue_.empty() && (group.empty() || records + queue_.front().batch.records.size() <=
                                                        options_.max_group_records)) {
          records += queue_.front().batch.records.size();
          group.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        metrics_.ingest_queue_depth = static_cast<int64_t>(queue_.size());
      }
    }
    try {
      if (reconcile) {
        std::map<std::string, Status> failures;
        const uint64_t recovered_before = metrics_.recovered_changes.load();
        Status s = publisher_.reconcile(&failures);
        {
          // A type whose stream holds changes the store lacks and cannot
          // give back takes no ingest until an operator acts (see
          // StreamPublisher, Recovery); every other type is free again.
          // A type that could not be reconciled (a broker away) keeps what
          // an earlier reconciliation found.
          std::lock_guard<std::mutex> lock(mu_);
          first_reconcile_done_ = true;
          for (const TypeConfig& t : config_.types) {
            const auto failure = failures.find(t.name);
            if (failure == failures.end()) {
              blocked_.erase(t.name);
            } else if (failure->second.code() == StatusCode::kDataLoss) {
              blocked_[t.name] = failure->second.message();
            }
          }
        }
        enter_store_full_when_mark_refused();
        if (metrics_.recovered_changes.load() != recovered_before && on_committed_) {
          // Changes taken back from a stream move partitions' marks.
          auto marks = store_.partition_marks();
          if (marks.is_ok()) on_committed_(*marks);
        }
        if (!s.is_ok()) {
          // A broker that is away or electing leaders (a NATS cluster that
          // lost a node) is transient: the publisher's backlog republishes.
          spdlog::log(s.is_transient() ? spdlog::level::warn : spdlog::level::err,
                      "reconciliation incomplete: {} (retried after the next reconnect)", s.to_string());
        }
        if (at_fault_point(options_.faults, FaultPoint::kReconciled) == FaultAction::kEndThread) return;
      } else if (!idle) {
        process_group(group);
      } else {
        // Marks are retried once the store has space again.
        if (store_full_.load()) {
          end_store_full_once_space_is_back();
        } else {
          enter_store_full_when_nearly_full();
        }
        end_lock_failure_once_free();
        if (!store_full_.load() && publisher_.has_unwritten_marks()) {
          publisher_.write_unwritten_marks();
          enter_store_full_when_mark_refused();
        }
        at_fault_point(options_.faults, FaultPoint::kIdle);
      }
      // Between group commits, never before the first reconciliation.
      if (reconciled_) retention_.maybe_step(clock_.now_system_ms());
    } catch (const std::exception& e) {
      // Nothing here is expected to throw; if it does, fail the group's
      // producers rather than leave them waiting.
      spdlog::critical("ingest writer: unexpected exception: {}", e.what());
      for (Pending& p : group) reply_rejected(p.reply, Status::internal(e.what()), std::nullopt);
    }
  }
}

void IngestWriter::process_group(std::vector<Pending>& group) {
  {
    // Batches queued before a reconciliation blocked their type.
    std::lock_guard<std::mutex> lock(mu_);
    if (!blocked_.empty()) {
      std::vector<Pending> kept;
      for (Pending& p : group) {
        if (blocked_.count(p.batch.type) == 0) {
          kept.push_back(std::move(p));
          continue;
        }
        reply_rejected(p.reply,
                       Status::unavailable("type '" + p.batch.type +
                                           "' takes no ingest: its stream holds changes the hub's store lacks; "
                                           "see the hub's log"),
                       std::nullopt);
      }
      group = std::move(kept);
    }
  }
  if (group.empty()) return;
  std::vector<CommitBatch> batches;
  batches.reserve(group.size());
  for (Pending& p : group) batches.push_back(std::move(p.batch));

  // Delta batches are cut under the max_payload of the server the hub is on now.
  store_.set_max_batch_bytes(publisher_.max_batch_bytes());
  const auto t0 = std::chrono::steady_clock::now();
  // An HA hub keeps a group only once the stream has it (see the header).
  const bool hold = publisher_.has_fence();
  auto committed = store_.commit(batches, clock_.now_system_ms(), hold);
  // Whatever leaves this function early (an exception included), a held
  // group never stays open: the next commit could not begin.
  struct HeldGroup {
    QueryStore& store;
    ~HeldGroup() { (void)store.end_commit(false); }
  } held_group{store_};
  metrics_.commit_duration.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  size_t group_records = 0;
  for (const CommitBatch& b : batches) group_records += b.records.size();
  metrics_.commit_group_records.observe(static_cast<double>(group_records));
  if (!committed.is_ok()) {
    Status refused = committed.status();
    if (is_disk_full(refused)) {
      enter_store_full(refused);
      refused_while_full_ += group.size();
      refused = Status::unavailable(std::string(kStoreFullMessage) + " (no space left on its filesystem): batch not "
                                    "stored; retry later with the same producer and seq");
    } else {
      spdlog::error("ingest: group commit of {} batch(es) failed: {}", batches.size(), refused.to_string());
      commit_failed_ = true;
      commit_failed_for_lock_ = is_locked(refused);
      std::lock_guard<std::mutex> lock(mu_);
      commit_failure_ = refused.message();
    }
    for (Pending& p : group) {
      reply_rejected(p.reply, refused, std::nullopt);
    }
    return;
  }
  clear_commit_failure();
  if (store_full_.load()) end_store_full_once_space_is_back();
  at_fault_point(options_.faults, FaultPoint::kCommitted);
  const std::vector<BatchOutcome>* outcomes = &committed->outcomes;

  std::set<std::string> to_publish; // types whose producers wait for acks
  for (size_t i = 0; i < outcomes->size(); ++i) {
    if ((*outcomes)[i].status.is_ok()) to_publish.insert(batches[i].type);
  }
  if (!hold && !committed->batches.empty() && on_committed_) on_committed_(partition_marks_of(committed->batches));
  std::map<std::string, Status> published;
  std::optional<Status> fence_refused;  // the first publication the fence refused
  for (const std::string& type : to_publish) {
    if (fence_refused) {
      published[type] = *fence_refused;  // the hub steps down: publish nothing more
      continue;
    }
    published[type] = publisher_.publish(type, committed->batches);
    if (publisher_.fence_refused()) fence_refused = published[type];
    enter_store_full_when_mark_refused();
  }
  if (hold) {
    // Dropped whenever the fence refused it, even when streams took part of
    // it: the hub steps down, and its store must hold nothing a stream
    // lacks (see the header).
    const bool keep = !fence_refused;
    Status ended = store_.end_commit(keep);
    if (!ended.is_ok()) {
      // The streams hold what the store refused: this hub cannot go on as
      // the active one; a standby takes the streams over, and this hub,
      // started again, takes them back from the streams.
      spdlog::error("ingest: the commit of a group failed after it was published: {}; stepping down",
                    ended.to_string());
      publisher_.give_up_lease("the store refused a group the streams hold: " + ended.message());
    }
    if (!keep || !ended.is_ok()) {
      const Status refused = Status::unavailable(
          (!ended.is_ok() ? "the commit failed after publishing: " + ended.message()
                          : "this hub is no longer the active one (HA): " + fence_refused->message()) +
          "; retry with the same producer and seq");
      for (Pending& p : group) reply_rejected(p.reply, refused, std::nullopt);
      return;
    }
    if (!committed->batches.empty() && on_committed_) on_committed_(partition_marks_of(committed->batches));
  }

  for (size_t i = 0; i < group.size(); ++i) {
    const BatchOutcome& o = (*outcomes)[i];
    const CommitBatch& b = batches[i];
    if (!o.status.is_ok()) {
      spdlog::info("ingest {} from '{}': batch of {} rejected at commit: {}", b.type, b.producer, b.records.size(),
                   o.status.message());
      reply_rejected(group[i].reply, o.status, o.index);
      continue;
    }
    if (const Status& p = published[b.type]; !p.is_ok()) {
      // While the store is full this is part of its one warning's episode.
      spdlog::log(store_full_.load() ? spdlog::level::debug : spdlog::level::warn,
                  "ingest {}: versions {}..{} stored but not yet published: {}", b.type, o.first_version,
                   o.last_version, p.message());
      reply_rejected(group[i].reply,
                     Status::unavailable("stored as versions " + std::to_string(o.first_version) + ".." +
                                         std::to_string(o.last_version) +
                                         " but not yet published (" + p.message() +
                                         "); retry with the same producer and seq"),
                     std::nullopt);
      continue;
    }
    if (o.retried) {
      ++metrics_.ingest_retries;
    } else {
      ++metrics_.ingest_batches;
      metrics_.ingest_records += b.records.size();
      metrics_.ingest_batch_records.observe(static_cast<double>(b.records.size()));
    }
    IngestReply r;
    r.first_version = o.first_version;
    r.last_version = o.last_version;
    group[i].reply(r);
  }
}

void IngestWriter::enter_store_full_when_mark_refused() {
  if (const Status& refused = publisher_.mark_failure(); is_disk_full(refused)) enter_store_full(refused);
}

// ---- NatsIngestListener ---------------------------------------------------------

Result<std::unique_ptr<NatsIngestListener>> NatsIngestListener::start(Connection& nc, const HubConfig& config,
                                                                      Authorizer& authorizer, IngestWriter& writer,
                                                                      HubMetrics& metrics) {
  std::unique_ptr<NatsIngestListener> l(new NatsIngestListener(nc, config, authorizer, writer, metrics));
  NatsIngestListener* self = l.get();
  DS_ASSIGN_OR_RETURN(l->sub_, nc.subscribe(l->subjects_.ingest_wildcard(),
                                            [self](Message m) { self->on_message(std::move(m)); }));
  return l;
}

Status NatsIngestListener::drain() {
  if (!sub_) return Status::ok();
  return sub_->drain();
}

NatsIngestListener::~NatsIngestListener() = default;

void NatsIngestListener::on_message(Message msg) {
  const auto received = std::chrono::steady_clock::now();
  const std::optional<IngestSubject> subject = subjects_.parse_ingest(msg.subject());
  if (!subject) return;  // not of our form: the wildcard cannot deliver one
  const std::string& type = subject->type;
  const std::string& producer = subject->producer;
  const std::string reply_to(msg.reply());
  if (!reply_to.empty()) {
    if (Status s = authorizer_.may_reply(producer, reply_to); !s.is_ok()) {
      ++metrics_.ingest_dropped;
      spdlog::warn("ingest on {} dropped unanswered and unstored: {}", msg.subject(), s.message());
      return;
    }
  }
  const auto content_type = msg.header("Content-Type");
  const bool json = content_type && content_type->rfind("application/json", 0) == 0;
  Connection& nc = nc_;
  HubMetrics& metrics = metrics_;
  IngestReplyFn reply = [&nc, &metrics, reply_to, json, received](const IngestReply& r) {
    metrics.record_ingest_reply(IngestTransport::kNats, r, received);
    if (reply_to.empty()) return;
    Status s = json ? nc.publish(reply_to, ingest_reply_json(r), {{"Content-Type", "application/json"}})
                    : nc.publish(reply_to, encode(r));
    if (!s.is_ok()) spdlog::warn("ingest: reply to {} failed: {}", reply_to, s.to_string());
  };
  std::optional<uint32_t> bad_record;  // the record a decode error is in
  auto request =
      json ? decode_ingest_request_json(msg.data(), &bad_record) : decode_ingest_request(msg.data(), &bad_record);
  Status refused = request.status();
  if (refused.is_ok() && !request->producer.empty() && request->producer != producer) {
    refused = Status::permission_denied(fmt::format(
        "producer: the request names producer {} but was sent as {} (the subject's last token, which the "
        "credentials bind); leave `producer` out or make it {}",
        quoted_for_message(request->producer), quoted_for_message(producer), quoted_for_message(producer)));
  }
  if (refused.is_ok()) refused = validate_agent_id(producer).with_context("producer (the subject's last token)");
  if (refused.is_ok()) refused = authorizer_.may_ingest(producer, type);
  if (!refused.is_ok()) {
    spdlog::info("ingest {} from {}: request rejected: {}", type, quoted_for_message(producer), refused.message());
    IngestReply r;
    r.error = WireError::from(refused, request.is_ok() ? std::nullopt : bad_record);
    reply(r);
    return;
  }
  request->producer = producer;
  writer_.submit(type, std::move(request).value(), std::move(reply));
}

}  // namespace ds
