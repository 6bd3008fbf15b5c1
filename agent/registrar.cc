#include "agent/registrar.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>

#include <spdlog/spdlog.h>

#include "shared/codec.h"
#include "shared/version.h"

namespace ds {
namespace {

constexpr int64_t kRequestTimeoutMs = 10000;
constexpr int64_t kWriterTimeoutMs = 120000;
constexpr int kMaxRoundsPerRegistration = 4;
constexpr int kSnapshotPageAttempts = 5;

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

}  // namespace

Registrar::Registrar(Connection& nc, const AgentConfig& config, DeltaApplier& applier, CheckpointBoard& board)
    : own_messaging_(std::make_unique<NatsMessaging>(nc)),
      nc_(*own_messaging_),
      config_(config),
      subjects_(config.nats.subject_prefix),
      post_([&applier](DeltaApplier::Task task) { return applier.post(std::move(task)); }),
      board_(board) {}

Registrar::Registrar(Messaging& messaging, const AgentConfig& config, PostTask post, CheckpointBoard& board,
                     int64_t first_backoff_ms)
    : nc_(messaging),
      config_(config),
      subjects_(config.nats.subject_prefix),
      post_(std::move(post)),
      board_(board),
      first_backoff_ms_(first_backoff_ms) {}

Registrar::~Registrar() { stop(); }

void Registrar::start() { thread_ = std::thread([this] { run(); }); }

void Registrar::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  stopping_.store(true);
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Registrar::trigger() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wanted_ = true;
  }
  cv_.notify_all();
}

bool Registrar::wait_registered(uint64_t after, int64_t timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                      [&] { return registrations_.load() > after || stop_; }) &&
         registrations_.load() > after;
}

void Registrar::run() {
  int64_t backoff_ms = first_backoff_ms_;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || wanted_; });
      if (stop_) return;
      wanted_ = false;
    }
    // Types refused after a gap before this registration: it recreates
    // their consumers (or orders a snapshot, which ends in that too).
    const CheckpointBoard::Gaps gaps = board_.delivery_gaps();
    if (on_registering_) on_registering_();
    Result<Registered> registered = register_once();
    if (on_replied_) {
      on_replied_(registered.is_ok() ? std::optional(registered->deliveries) : std::nullopt,
                  registered.is_ok() ? registered->reported_seq : std::map<std::string, uint64_t>{});
    }
    Status s = registered.status();
    if (s.is_ok() && on_registered_) s = on_registered_();
    if (s.is_ok()) {
      board_.clear_delivery_gaps(gaps);
      backoff_ms = first_backoff_ms_;
      {
        std::lock_guard<std::mutex> lock(mu_);
        registrations_.fetch_add(1);
      }
      cv_.notify_all();
      if (listener_) listener_(true, "registered with the hub");
      continue;
    }
    if (stopping_.load()) return;
    spdlog::warn("registration failed, retrying in {} ms: {}", backoff_ms, s.message());
    if (listener_) {
      listener_(false, fmt::format("registration failed, retrying in {} ms: {}", backoff_ms, s.message()));
    }
    std::unique_lock<std::mutex> lock(mu_);
    // A reconnect (trigger) during the wait retries at once.
    cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [this] { return stop_ || wanted_; });
    if (stop_) return;
    wanted_ = true;
    backoff_ms = std::min(backoff_ms * 2, kMaxBackoffMs);
  }
}

Status Registrar::run_on_writer(DeltaApplier::Task task) {
  auto done = post_(std::move(task));
  if (done.wait_for(std::chrono::milliseconds(kWriterTimeoutMs)) != std::future_status::ready) {
    return Status::deadline_exceeded("the replica writer did not run the task in time");
  }
  return done.get();
}

Result<RegisterRequest> Registrar::build_request() {
  RegisterRequest req;
  req.agent = config_.id;
  req.host = host_name();
  req.version = kVersion;
  std::map<std::string, uint64_t> rows;
  DS_RETURN_IF_ERROR(run_on_writer([this, &rows](Replica& replica) {
    for (const SubscriptionConfig& sub : config_.subscriptions) {
      auto n = replica.row_count(sub.type);
      rows[sub.type] = n.is_ok() ? *n : 0;
    }
    return Status::ok();
  }));
  const bool feed = feed_wanted_ && feed_wanted_();
  for (const SubscriptionConfig& sub : config_.subscriptions) {
    SubscriptionReport r;
    r.type = sub.type;
    r.partition = sub.partition;
    r.feed = feed;
    if (auto cp = board_.checkpoint(sub.type)) {
      r.version = cp->version;
      r.seq = cp->seq;
      r.ts = cp->ts;
    }
    r.rows = rows[sub.type];
    req.subscriptions.push_back(std::move(r));
  }
  return req;
}

Result<Registrar::Registered> Registrar::register_once() {
  for (int round = 0; round < kMaxRoundsPerRegistration; ++round) {
    DS_ASSIGN_OR_RETURN(RegisterRequest req, build_request());
    DS_ASSIGN_OR_RETURN(std::string msg,
                        nc_.request(subjects_.register_agent(config_.id), encode(req), kRegisterReplyTimeoutMs));
    DS_ASSIGN_OR_RETURN(RegisterReply reply, decode_register_reply(msg));
    if (!reply.ok()) {
      Status refused = reply.error->to_status().with_context("the hub refused the registration");
      board_.set_error(refused.message());
      return refused;
    }
    bool snapshot_taken = false;
    for (const Delivery& d : reply.deliveries) {
      DS_RETURN_IF_ERROR(run_on_writer([&d](Replica& replica) { return replica.ensure_table(d.type, d.schema); }));
      // The board keeps the schema hash heartbeats report.
      if (auto cp = board_.checkpoint(d.type)) {
        cp->schema_hash = d.schema_hash;
        board_.set_checkpoint(d.type, *cp);
      } else {
        board_.set_checkpoint(d.type, Checkpoint{0, 0, 0, d.schema_hash});
      }
    }
    for (const Delivery& d : reply.deliveries) {
      if (d.resume != Resume::kSnapshot) continue;
      std::string partition = "*";
      for (const SubscriptionConfig& sub : config_.subscriptions) {
        if (sub.type == d.type) partition = sub.partition;
      }
      DS_RETURN_IF_ERROR(load_snapshot(d, partition));
      snapshot_taken = true;
    }
    if (!snapshot_taken) {
      size_t on_feed = 0;
      for (const Delivery& d : reply.deliveries) on_feed += d.feed ? 1 : 0;
      spdlog::info("registered with the hub: {} deliveries ({} on the live feed), heartbeat every {} ms",
                   reply.deliveries.size(), on_feed, reply.heartbeat_ms);
      board_.set_error(std::nullopt);
      Registered done;
      done.deliveries = std::move(reply.deliveries);
      for (const SubscriptionReport& s : req.subscriptions) done.reported_seq[s.type] = s.seq;
      return done;
    }
    // Register again, reporting the snapshots' marks, to get resume: stream.
  }
  return Status::internal("the hub kept ordering snapshots");
}

Status Registrar::load_snapshot(const Delivery& delivery, const std::string& partition) {
  const std::string& type = delivery.type;
  spdlog::info("{}: loading a snapshot from the hub", type);
  DS_RETURN_IF_ERROR(run_on_writer([&type](Replica& replica) { return replica.begin_snapshot(type); }));
  std::optional<std::string> after_key;
  uint64_t high_version = 0;
  uint64_t high_seq = 0;
  uint64_t rows = 0;
  for (int page = 1;; ++page) {
    if (stopping_.load()) return Status::unavailable("agent is stopping");
    SnapshotRequest req;
    req.type = type;
    req.partition = partition;
    req.after_key = after_key;
    req.limit = kSnapshotPageLimit;
    // Pages are idempotent (keyset paging), so a lost one is simply asked again.
    Result<std::string> msg = Status::unavailable("not asked yet");
    for (int attempt = 1; attempt <= kSnapshotPageAttempts; ++attempt) {
      msg = nc_.request(subjects_.snapshot(config_.id), encode(req), kRequestTimeoutMs);
      if (msg.is_ok() || stopping_.load()) break;
    }
    if (!msg.is_ok()) return msg.status().with_context(type + ": snapshot page " + std::to_string(page));
    DS_ASSIGN_OR_RETURN(SnapshotReply reply, decode_snapshot_reply(*msg));
    if (reply.error) return reply.error->to_status().with_context(type + ": snapshot");
    if (page == 1) {
      // Later pages may hold newer rows; the stream resumes after the first
      // page's mark and the version rule skips what the pages already hold.
      high_version = reply.high_version;
      high_seq = reply.high_seq;
    }
    rows += reply.records.size();
    auto records = std::make_shared<std::vector<SnapshotRecord>>(std::move(reply.records));
    if (!records->empty()) after_key = records->back().key;
    DS_RETURN_IF_ERROR(run_on_writer(
        [&type, records](Replica& replica) { return replica.stage_snapshot_page(type, *records); }));
    if (page % kProgressPages == 0) spdlog::info("{}: snapshot: {} pages, {} rows so far", type, page, rows);
    if (reply.done || records->empty()) break;
  }
  auto finish = [this, &type, high_version, high_seq](Replica& replica) -> Status {
    DS_RETURN_IF_ERROR(replica.finish_snapshot(type, high_version, high_seq));
    DS_ASSIGN_OR_RETURN(auto cps, replica.checkpoints());
    const ReplicaCheckpoint& cp = cps[type];
    board_.set_checkpoint(type, Checkpoint{cp.version, cp.seq, cp.ts, cp.schema_hash});
    return Status::ok();
  };
  DS_RETURN_IF_ERROR(run_on_writer(finish));
  spdlog::info("{}: snapshot loaded: {} rows at version {} (stream seq {})", type, rows, high_version, high_seq);
  return Status::ok();
}

}  // namespace ds
