#include "tests/harness/fake_hub.h"

#include <nats/nats.h>

#include <chrono>
#include <thread>

#include <spdlog/spdlog.h>

#include "shared/codec.h"

namespace ds::testing {
namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

FakeHub::FakeHub(Connection& nc, std::vector<FakeType> types, std::string name)
    : nc_(nc), name_(std::move(name)) {
  for (FakeType& t : types) types_[t.name].schema = std::move(t.schema);
}

FakeHub::~FakeHub() {
  register_sub_.reset();
  snapshot_sub_.reset();
}

Status FakeHub::start() {
  DS_ASSIGN_OR_RETURN(js_, nc_.jetstream());
  for (const auto& [type, state] : types_) {
    StreamSpec spec;
    spec.name = stream_name(type);
    spec.subjects = {subjects_.delta_filter(type)};
    DS_RETURN_IF_ERROR(js_->ensure_stream(spec));
  }
  DS_ASSIGN_OR_RETURN(register_sub_,
                      nc_.subscribe(subjects_.register_wildcard(), [this](Message m) { on_register(m); }));
  DS_ASSIGN_OR_RETURN(snapshot_sub_,
                      nc_.subscribe(subjects_.snapshot_wildcard(), [this](Message m) { on_snapshot(m); }));
  return nc_.flush();
}

Result<uint64_t> FakeHub::commit(const std::string& type, const std::vector<IngestRecord>& records,
                                 size_t batch_size) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = types_.find(type);
  if (it == types_.end()) return Status::not_found("fake hub: unknown type " + type);
  TypeState& st = it->second;
  const int64_t hts = now_ms();
  // (partition, change) in commit order; published in runs of one partition.
  std::vector<std::pair<std::string, Change>> changes;
  for (const IngestRecord& r : records) {
    Row& row = st.rows[r.key];
    std::string partition = std::string(kAllPartitions);
    if (st.schema.partition) {
      auto pf = r.fields.find(*st.schema.partition);
      if (pf != r.fields.end() && std::holds_alternative<std::string>(pf->second)) {
        partition = std::get<std::string>(pf->second);
      } else if (r.partition) {
        partition = *r.partition;
      } else if (!row.partition.empty()) {
        partition = row.partition;
      } else {
        return Status::invalid_argument("fake hub: record " + r.key + " has no partition");
      }
    }
    Change c;
    c.v = ++st.version;
    c.key = r.key;
    c.op = r.op;
    c.ts = r.ts.value_or(hts);
    c.hts = hts;
    row.v = c.v;
    row.ts = c.ts;
    row.partition = partition;
    if (r.op == Op::kDelete) {
      row.deleted = true;
      row.f.clear();
    } else {
      if (row.deleted) row.f.clear();
      row.deleted = false;
      for (const auto& [name, value] : r.fields) row.f[name] = value;
      c.f = r.fields;
    }
    changes.emplace_back(partition, std::move(c));
  }
  size_t i = 0;
  while (i < changes.size()) {
    const std::string& partition = changes[i].first;
    DeltaBatch batch{type, {}};
    while (i < changes.size() && changes[i].first == partition && batch.changes.size() < batch_size) {
      batch.changes.push_back(changes[i].second);
      ++i;
    }
    DS_ASSIGN_OR_RETURN(PubAck ack, js_->publish(subjects_.delta(type, partition), encode(batch),
                                                 msg_id(type, batch.changes.front().v)));
    st.high_seq = ack.seq;
  }
  return st.version;
}

Status FakeHub::publish_raw(const std::string& type, const std::string& partition, const std::string& bytes,
                            const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  DS_ASSIGN_OR_RETURN(PubAck ack, js_->publish(subjects_.delta(type, partition), bytes, id));
  types_[type].high_seq = ack.seq;
  return Status::ok();
}

Status FakeHub::republish(const std::string& type, const std::string& partition, const DeltaBatch& batch) {
  static std::atomic<uint64_t> counter{0};
  return publish_raw(type, partition, encode(batch), type + ":again-" + std::to_string(++counter));
}

Status FakeHub::purge(const std::string& type) {
  const std::string name = stream_name(type);
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_PurgeStream(js_->raw(), name.c_str(), nullptr, &jerr);
  return nats_status(s, "purge " + name);
}

Digest FakeHub::digest(const std::string& type, const std::string& partition) const {
  std::lock_guard<std::mutex> lock(mu_);
  Digest d;
  auto it = types_.find(type);
  if (it == types_.end()) return d;
  for (const auto& [key, row] : it->second.rows) {
    if (row.deleted) continue;
    if (partition != "*" && row.partition != partition) continue;
    d.add(key, row.v);
  }
  return d;
}

uint64_t FakeHub::last_version(const std::string& type) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = types_.find(type);
  return it == types_.end() ? 0 : it->second.version;
}

std::vector<RegisterRequest> FakeHub::registrations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return registrations_;
}

uint64_t FakeHub::snapshot_pages_served() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_pages_;
}

Result<RegisterReply> FakeHub::handle_register(const RegisterRequest& req) {
  RegisterReply reply;
  reply.heartbeat_ms = 1000;
  std::lock_guard<std::mutex> lock(mu_);
  registrations_.push_back(req);
  for (const SubscriptionReport& sub : req.subscriptions) {
    if (!types_.count(sub.type)) return Status::invalid_argument("unknown type '" + sub.type + "'");
    if (sub.partition != kAnyPartition) DS_RETURN_IF_ERROR(validate_partition(sub.partition));
  }
  for (const SubscriptionReport& sub : req.subscriptions) {
    const TypeState& st = types_[sub.type];
    const std::string stream = stream_name(sub.type);
    DS_ASSIGN_OR_RETURN(StreamState state, js_->stream_state(stream));
    Delivery d;
    d.type = sub.type;
    d.subject = subjects_.push(req.agent, sub.type);
    d.schema = st.schema;
    d.schema_hash = schema_hash(st.schema);
    if (state.first_seq > 0 && sub.seq + 1 < state.first_seq && st.version > 0) {
      d.resume = Resume::kSnapshot;
      (void)js_->delete_consumer(stream, consumer_name(req.agent));
    } else {
      d.resume = Resume::kStream;
      Status del = js_->delete_consumer(stream, consumer_name(req.agent));
      if (!del.is_ok() && del.code() != StatusCode::kNotFound) return del;
      ConsumerSpec spec;
      spec.durable = consumer_name(req.agent);
      spec.filter_subject = (sub.partition == kAnyPartition || !st.schema.partition)
                                ? subjects_.delta_filter(sub.type)
                                : subjects_.delta(sub.type, sub.partition);
      spec.deliver_subject = d.subject;
      spec.start_seq = sub.seq + 1;
      DS_RETURN_IF_ERROR(js_->add_consumer(stream, spec));
    }
    reply.deliveries.push_back(std::move(d));
  }
  return reply;
}

void FakeHub::on_register(const Message& msg) {
  RegisterReply reply;
  auto req = decode_register_request(msg.data());
  if (!req.is_ok()) {
    reply.error = WireError::from(req.status());
  } else {
    auto handled = handle_register(*req);
    if (handled.is_ok()) reply = std::move(handled).value();
    else reply.error = WireError::from(handled.status());
  }
  if (Status s = nc_.respond(msg, encode(reply)); !s) spdlog::warn("fake hub: register reply: {}", s.message());
}

void FakeHub::on_snapshot(const Message& msg) {
  SnapshotReply reply;
  auto req = decode_snapshot_request(msg.data());
  if (!req.is_ok()) {
    reply.error = WireError::from(req.status());
  } else {
    std::lock_guard<std::mutex> lock(mu_);
    ++snapshot_pages_;
    auto it = types_.find(req->type);
    if (it == types_.end()) {
      reply.error = WireError::from(Status::not_found("unknown type " + req->type));
    } else {
      const TypeState& st = it->second;
      reply.high_version = st.version;
      reply.high_seq = st.high_seq;
      auto row = req->after_key ? st.rows.upper_bound(*req->after_key) : st.rows.begin();
      for (; row != st.rows.end() && reply.records.size() < req->limit; ++row) {
        if (row->second.deleted) continue;
        if (req->partition != kAnyPartition && row->second.partition != req->partition) continue;
        reply.records.push_back(SnapshotRecord{row->second.v, row->first, row->second.f, row->second.ts});
      }
      reply.done = row == st.rows.end();
    }
  }
  if (Status s = nc_.respond(msg, encode(reply)); !s) spdlog::warn("fake hub: snapshot reply: {}", s.message());
}

std::vector<HeartbeatReply> FakeHub::heartbeat(const std::string& type, int64_t wait_ms, const std::string& agent) {
  std::mutex mu;
  std::vector<HeartbeatReply> replies;
  auto sub = nc_.subscribe(subjects_.hub_beat_wildcard(), [&](Message m) {
    auto r = decode_heartbeat_reply(m.data());
    if (!r.is_ok()) return;
    if (r->agent != Subjects::last_token(m.subject())) return;  // a reply speaks for its sender only
    std::lock_guard<std::mutex> lock(mu);
    replies.push_back(std::move(r).value());
  });
  if (!sub.is_ok()) return {};
  HeartbeatRequest req{name_, now_ms(), {type}};
  const std::string subject = agent.empty() ? subjects_.heartbeat(type) : subjects_.probe(agent);
  if (!nc_.flush().is_ok() || !nc_.publish(subject, encode(req)).is_ok()) return {};
  std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
  sub->reset();
  std::lock_guard<std::mutex> lock(mu);
  return replies;
}

}  // namespace ds::testing
