// shared/nats.h, JetStream: the context of a connection, streams,
// consumers, synchronous and asynchronous publishing, reading stored
// messages. What a push consumer's subscriber does (acks, flow control) is
// in jetstream_push.cc.
#include "shared/nats.h"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>

#include "shared/nats_internal.h"

namespace ds {

using namespace nats_detail;

// What became of the async publishes since the last wait_published():
// written by cnats' reply thread (the ack handler) and publish_async(),
// read and reset by wait_published().
struct JetStream::AsyncErrors {
  std::mutex mu;
  std::optional<Status> first;          // the first failure; guarded by mu
  std::map<std::string, PubAck> acked;  // by Nats-Msg-Id; guarded by mu
  // The connection's reconnect count when the first of them was sent, so
  // wait_published() knows when their acks went with a lost connection.
  std::optional<uint64_t> reconnects_at_send;  // guarded by mu
};

namespace {

// cnats' ack handler: an ack is recorded by the message's Nats-Msg-Id, the
// first failure kept. The message is ours to destroy.
void on_async_publish_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
  auto* errors = static_cast<JetStream::AsyncErrors*>(closure);
  NatsMsgPtr owned(msg);
  guarded("async publish ack handler", [&] {
    const char* id = nullptr;
    if (msg == nullptr || natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) != NATS_OK) id = nullptr;
    if (pae == nullptr) {
      if (pa == nullptr || id == nullptr) return;
      std::lock_guard<std::mutex> lock(errors->mu);
      errors->acked[id] = PubAck{pa->Sequence, pa->Duplicate};
      return;
    }
    std::string subject = msg != nullptr && natsMsg_GetSubject(msg) != nullptr ? natsMsg_GetSubject(msg) : "?";
    std::string context = "async publish to " + subject;
    if (id != nullptr) context += std::string(" (Nats-Msg-Id ") + id + ")";
    if (pae->ErrText != nullptr && *pae->ErrText) context += std::string(": ") + pae->ErrText;
    Status st = make_status(pae->Err, static_cast<int>(pae->ErrCode), context);
    std::lock_guard<std::mutex> lock(errors->mu);
    if (!errors->first) errors->first = std::move(st);
  });
}

// How often the connection has reconnected (cnats' statistics).
uint64_t reconnect_count(natsConnection* nc) {
  natsStatistics* raw = nullptr;
  if (natsStatistics_Create(&raw) != NATS_OK || raw == nullptr) return 0;
  const NatsStatisticsPtr stats(raw);
  uint64_t reconnects = 0;
  if (natsConnection_GetStats(nc, stats.get()) == NATS_OK) {
    (void)natsStatistics_GetCounts(stats.get(), nullptr, nullptr, nullptr, nullptr, &reconnects);
  }
  return reconnects;
}

// The replicas other than the leader, as the leader reports them.
std::vector<StreamFollower> followers_of(const jsClusterInfo& cluster) {
  std::vector<StreamFollower> out;
  for (int i = 0; i < cluster.ReplicasLen; ++i) {
    const jsPeerInfo* p = cluster.Replicas[i];
    if (p == nullptr) continue;
    out.push_back(
        {.name = p->Name != nullptr ? p->Name : "", .current = p->Current, .offline = p->Offline, .lag = p->Lag});
  }
  return out;
}

// wait_published() waits in slices of this, to notice a reconnect.
constexpr int64_t kAckPollMs = 100;

Result<StoredMessage> stored_message(natsMsg* raw) {
  NatsMsgPtr m(raw);
  StoredMessage out;
  out.seq = natsMsg_GetSequence(m.get());
  const char* subj = natsMsg_GetSubject(m.get());
  out.subject = subj != nullptr ? subj : "";
  const char* d = natsMsg_GetData(m.get());
  const int n = natsMsg_GetDataLength(m.get());
  if (d != nullptr && n > 0) out.data.assign(d, static_cast<size_t>(n));
  const char* id = nullptr;
  if (natsMsgHeader_Get(m.get(), "Nats-Msg-Id", &id) == NATS_OK && id != nullptr) out.msg_id = id;
  const char** keys = nullptr;
  int count = 0;
  if (natsMsgHeader_Keys(m.get(), &keys, &count) == NATS_OK && keys != nullptr) {
    for (int i = 0; i < count; ++i) {
      const std::string_view name(keys[i]);
      const char* value = nullptr;
      if (name.starts_with("Nats-") || natsMsgHeader_Get(m.get(), keys[i], &value) != NATS_OK) continue;
      out.headers.emplace_back(std::string(name), value != nullptr ? value : "");
    }
    free(static_cast<void*>(keys));  // the array is the caller's; its strings are the message's
  }
  return out;
}

constexpr int64_t kNanosPerMilli = 1000000;

// What add_consumer() asked for, read back from the server's configuration.
ConsumerSpec spec_of(const jsConsumerConfig& cc) {
  ConsumerSpec spec;
  spec.durable = cc.Durable != nullptr ? cc.Durable : "";
  spec.filter_subject = cc.FilterSubject != nullptr ? cc.FilterSubject : "";
  spec.deliver_subject = cc.DeliverSubject != nullptr ? cc.DeliverSubject : "";
  spec.start_seq = cc.DeliverPolicy == js_DeliverByStartSequence ? cc.OptStartSeq : 0;
  switch (cc.AckPolicy) {
    case js_AckAll: spec.ack_policy = AckPolicy::kAll; break;
    case js_AckNone: spec.ack_policy = AckPolicy::kNone; break;
    default: spec.ack_policy = AckPolicy::kExplicit; break;
  }
  spec.ack_wait_ms = cc.AckWait / kNanosPerMilli;
  spec.max_ack_pending = cc.MaxAckPending;
  spec.max_deliver = cc.MaxDeliver;
  spec.flow_control = cc.FlowControl;
  spec.idle_heartbeat_ms = cc.Heartbeat / kNanosPerMilli;
  spec.memory_storage = cc.MemoryStorage;
  spec.replicas = static_cast<int>(cc.Replicas);
  return spec;
}

}  // namespace

std::optional<std::string> StoredMessage::header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return v;
  }
  return std::nullopt;
}

Result<std::unique_ptr<JetStream>> Connection::jetstream(int64_t timeout_ms) {
  auto errors = std::make_unique<JetStream::AsyncErrors>();
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = timeout_ms;
  jo.PublishAsync.MaxPending = 4096;
  jo.PublishAsync.AckHandler = on_async_publish_ack;
  jo.PublishAsync.AckHandlerClosure = errors.get();
  std::unique_ptr<JetStream> js(new JetStream(nc_.get(), std::move(errors)));
  jsCtx* raw = nullptr;
  natsStatus s = natsConnection_JetStream(&raw, nc_.get(), &jo);
  js->js_.reset(raw);
  if (s != NATS_OK) return make_status(s, 0, "jetstream context");
  return js;
}

JetStream::JetStream(natsConnection* nc, std::unique_ptr<AsyncErrors> errors)
    : nc_(nc), async_errors_(std::move(errors)) {}

JetStream::~JetStream() {
  if (!js_) return;
  // cnats calls the async error handler before it counts a publish as
  // done, so once nothing is pending the handler cannot touch AsyncErrors.
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 5000;
  if (js_PublishAsyncComplete(js_.get(), &po) != NATS_OK) {
    spdlog::warn("nats: jetstream context destroyed with unacknowledged async publishes");
    (void)async_errors_.release();  // the handler may still run; leak rather than dangle
  }
  js_.reset();
}

Status JetStream::api_status(int s, int js_err, std::string_view context, std::string_view stream) const {
  Status st = make_status(static_cast<natsStatus>(s), js_err, context);
  if (!st.is_transient()) return st;
  // A denied publish to the JetStream API is dropped by the server, which
  // reports the violation asynchronously; the request then just times out.
  const char* last = nullptr;
  if (natsConnection_GetLastError(nc_, &last) == NATS_NOT_PERMITTED && last != nullptr &&
      contains_nocase(last, "permissions violation") && std::strstr(last, "$JS.API") != nullptr &&
      (stream.empty() || std::string_view(last).find(stream) != std::string_view::npos)) {
    return Status::permission_denied(std::string(context) + ": " + last);
  }
  return st;
}

Status JetStream::ensure_stream(const StreamSpec& spec) {
  std::vector<const char*> subjects;
  for (const auto& subj : spec.subjects) subjects.push_back(subj.c_str());
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = spec.name.c_str();
  cfg.Subjects = subjects.data();
  cfg.SubjectsLen = static_cast<int>(subjects.size());
  cfg.Storage = spec.memory_storage ? js_MemoryStorage : js_FileStorage;
  cfg.Replicas = spec.replicas;
  cfg.MaxAge = spec.max_age_ms * kNanosPerMilli;
  cfg.MaxBytes = spec.max_bytes;
  // The server refuses a duplicate window longer than the retention.
  int64_t duplicates_ms = spec.duplicate_window_ms;
  if (spec.max_age_ms > 0) duplicates_ms = std::min(duplicates_ms, spec.max_age_ms);
  cfg.Duplicates = duplicates_ms * kNanosPerMilli;
  jsRePublish republish;
  jsRePublish_Init(&republish);
  if (!spec.republish_destination.empty()) {
    republish.Source = spec.republish_source.c_str();
    republish.Destination = spec.republish_destination.c_str();
    cfg.RePublish = &republish;
  }

  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_AddStream(&si, js_.get(), &cfg, nullptr, &jerr);
  (void)JsStreamInfoPtr(si);  // the info is not needed
  if (s == NATS_OK) return Status::ok();
  if (jerr != JSStreamNameExistErr) {
    return replica_status(api_status(s, jerr, "create stream " + spec.name, spec.name), jerr, spec);
  }
  // It exists with another config: bring it to ours. Storage type cannot
  // change in place; the server rejects that and we report it. A replica
  // count change is applied by a clustered server (it adds or removes
  // peers, and moves the stream's durable consumers to the new peer set).
  // Its republish cannot change either (nats-server 2.9 refuses any update
  // that does), so the update carries the one the stream has.
  si = nullptr;
  jerr = static_cast<jsErrCode>(0);
  s = js_GetStreamInfo(&si, js_.get(), spec.name.c_str(), nullptr, &jerr);
  const JsStreamInfoPtr existing(si);
  if (s != NATS_OK) return api_status(s, jerr, "stream info " + spec.name, spec.name);
  cfg.RePublish = existing->Config != nullptr ? existing->Config->RePublish : nullptr;
  jerr = static_cast<jsErrCode>(0);
  si = nullptr;
  s = js_UpdateStream(&si, js_.get(), &cfg, nullptr, &jerr);
  (void)JsStreamInfoPtr(si);  // the info is not needed
  if (s == NATS_OK) return Status::ok();
  return replica_status(api_status(s, jerr, "update stream " + spec.name, spec.name), jerr, spec);
}

Status JetStream::replica_status(Status st, int js_err, const StreamSpec& spec) {
  if (js_err == JSStreamReplicasNotSupportedErr) {
    return Status::invalid_argument(st.message() + ": " + std::to_string(spec.replicas) +
                                    " replicas need a JetStream cluster, and this nats-server runs alone: use 1 "
                                    "replica, or list the nodes of a 3-node JetStream cluster as the servers");
  }
  if (js_err == JSClusterNoPeersErr) {
    return Status::unavailable(st.message() + ": the JetStream cluster has fewer than " +
                               std::to_string(spec.replicas) +
                               " nodes with JetStream up to hold the replicas: start the missing nodes");
  }
  return st;
}

Status JetStream::delete_stream(std::string_view name) {
  const std::string n = str(name);
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_DeleteStream(js_.get(), n.c_str(), nullptr, &jerr);
  return s == NATS_OK ? Status::ok() : api_status(s, jerr, "delete stream " + n, n);
}

Result<StreamState> JetStream::stream_state(std::string_view name) {
  const std::string n = str(name);
  jsStreamInfo* raw = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&raw, js_.get(), n.c_str(), nullptr, &jerr);
  if (s != NATS_OK) return api_status(s, jerr, "stream info " + n, n);
  const JsStreamInfoPtr si(raw);
  StreamState out;
  out.first_seq = si->State.FirstSeq;
  out.last_seq = si->State.LastSeq;
  out.messages = si->State.Msgs;
  out.bytes = si->State.Bytes;
  if (si->Config != nullptr) {
    out.replicas = static_cast<int>(si->Config->Replicas);
    const jsRePublish* rp = si->Config->RePublish;
    if (rp != nullptr && rp->Destination != nullptr) out.republish_destination = rp->Destination;
  }
  if (si->Cluster != nullptr) {
    if (si->Cluster->Leader != nullptr) out.leader = si->Cluster->Leader;
    out.followers = followers_of(*si->Cluster);
  }
  return out;
}

Result<PubAck> JetStream::publish(std::string_view subject, std::string_view data, std::string_view msg_id,
                                  int64_t timeout_ms) {
  const std::string subj = str(subject);
  const std::string id = str(msg_id);
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = timeout_ms;
  if (!id.empty()) po.MsgId = id.c_str();
  jsPubAck* pa = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_Publish(&pa, js_.get(), subj.c_str(), data.data(), static_cast<int>(data.size()), &po, &jerr);
  const JsPubAckPtr owned(pa);
  if (s != NATS_OK) return api_status(s, jerr, "jetstream publish to " + subj);
  return PubAck{owned->Sequence, owned->Duplicate};
}

int64_t JetStream::max_payload() const { return natsConnection_GetMaxPayload(nc_); }

Status JetStream::publish_async(std::string_view subject, std::string_view data, std::string_view msg_id,
                                const Headers& headers) {
  const std::string subj = str(subject);
  const std::string id = str(msg_id);
  jsPubOptions po;
  jsPubOptions_Init(&po);
  if (!id.empty()) po.MsgId = id.c_str();  // copied into the message header by cnats
  {
    std::lock_guard<std::mutex> lock(async_errors_->mu);
    if (!async_errors_->reconnects_at_send) async_errors_->reconnects_at_send = reconnect_count(nc_);
  }
  if (headers.empty()) {
    natsStatus s = js_PublishAsync(js_.get(), subj.c_str(), data.data(), static_cast<int>(data.size()), &po);
    return make_status(s, 0, "jetstream async publish to " + subj);
  }
  DS_ASSIGN_OR_RETURN(NatsMsgPtr msg, build_msg(subj, {}, data, headers));
  natsMsg* handed = msg.get();
  natsStatus s = js_PublishMsgAsync(js_.get(), &handed, &po);
  if (handed == nullptr) (void)msg.release();  // cnats took it (it sets the pointer to NULL then)
  return make_status(s, 0, "jetstream async publish to " + subj);
}

Status JetStream::wait_published(int64_t timeout_ms, std::map<std::string, PubAck>* acks) {
  std::optional<uint64_t> reconnects_at_send;
  {
    std::lock_guard<std::mutex> lock(async_errors_->mu);
    reconnects_at_send = async_errors_->reconnects_at_send;
  }
  // In slices: an ack the server sent while the connection was down is
  // lost, and cnats would wait out the whole timeout for it (a 10 s stall
  // of the caller after a broker restart of a second). Once the connection
  // is back after a reconnect that came after the first send, whatever is
  // still pending will not be acknowledged: give it up now.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  natsStatus s = NATS_OK;
  bool lost_with_connection = false;
  for (;;) {
    const int64_t left = std::chrono::duration_cast<std::chrono::milliseconds>(
                             deadline - std::chrono::steady_clock::now()).count();
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = std::clamp<int64_t>(left, 1, kAckPollMs);
    s = js_PublishAsyncComplete(js_.get(), &po);
    if (s != NATS_TIMEOUT || left <= kAckPollMs) break;
    if (reconnects_at_send && reconnect_count(nc_) > *reconnects_at_send &&
        natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED) {
      lost_with_connection = true;
      break;
    }
  }
  int pending_count = 0;
  if (s == NATS_TIMEOUT) {
    // An ack lost with a broker restart never arrives, and cnats keeps its
    // message pending for good: every later wait would time out as well.
    // Give the pending messages up; the caller republishes what it has no
    // ack for, and the same Nats-Msg-Id makes one that did arrive a duplicate.
    natsMsgList pending{};
    if (js_PublishAsyncGetPendingList(&pending, js_.get()) == NATS_OK) {
      const nats_detail::NatsMsgListContentsPtr given_up(&pending);  // destroys the messages, not the struct
      pending_count = pending.Count;
    }
  }
  std::map<std::string, PubAck> acked;
  {
    std::lock_guard<std::mutex> lock(async_errors_->mu);
    acked.swap(async_errors_->acked);
    async_errors_->reconnects_at_send.reset();
  }
  if (acks != nullptr) *acks = std::move(acked);
  std::optional<Status> first;
  {
    std::lock_guard<std::mutex> lock(async_errors_->mu);
    first.swap(async_errors_->first);
  }
  if (first) return *first;
  if (lost_with_connection) {
    return Status::unavailable("wait for jetstream publish acks: the connection to NATS was lost and re-established "
                               "while " + std::to_string(pending_count) +
                               " publish(es) awaited their acks, which went with it; publish them again");
  }
  return make_status(s, 0, "wait for jetstream publish acks");
}

Status JetStream::add_consumer(std::string_view stream, const ConsumerSpec& spec) {
  const std::string st = str(stream);
  jsConsumerConfig cc;
  jsConsumerConfig_Init(&cc);
  cc.Durable = spec.durable.c_str();
  if (!spec.filter_subject.empty()) cc.FilterSubject = spec.filter_subject.c_str();
  if (!spec.deliver_subject.empty()) cc.DeliverSubject = spec.deliver_subject.c_str();
  if (spec.start_seq > 0) {
    cc.DeliverPolicy = js_DeliverByStartSequence;
    cc.OptStartSeq = spec.start_seq;
  } else {
    cc.DeliverPolicy = js_DeliverAll;
  }
  switch (spec.ack_policy) {
    case AckPolicy::kExplicit: cc.AckPolicy = js_AckExplicit; break;
    case AckPolicy::kAll: cc.AckPolicy = js_AckAll; break;
    case AckPolicy::kNone: cc.AckPolicy = js_AckNone; break;
  }
  cc.AckWait = spec.ack_wait_ms * kNanosPerMilli;
  cc.MaxAckPending = spec.max_ack_pending;
  cc.MaxDeliver = spec.max_deliver;
  if (!spec.deliver_subject.empty() && spec.flow_control) {
    cc.FlowControl = true;
    cc.Heartbeat = spec.idle_heartbeat_ms * kNanosPerMilli;
  } else if (!spec.deliver_subject.empty() && spec.idle_heartbeat_ms > 0) {
    cc.Heartbeat = spec.idle_heartbeat_ms * kNanosPerMilli;
  }
  cc.MemoryStorage = spec.memory_storage;
  cc.Replicas = spec.replicas;

  jsConsumerInfo* ci = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_AddConsumer(&ci, js_.get(), st.c_str(), &cc, nullptr, &jerr);
  (void)JsConsumerInfoPtr(ci);  // the info is not needed
  if (s != NATS_OK) return api_status(s, jerr, "add consumer " + spec.durable + " on " + st, st);
  return Status::ok();
}

Status JetStream::delete_consumer(std::string_view stream, std::string_view name) {
  const std::string st = str(stream);
  const std::string n = str(name);
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_DeleteConsumer(js_.get(), st.c_str(), n.c_str(), nullptr, &jerr);
  return s == NATS_OK ? Status::ok() : api_status(s, jerr, "delete consumer " + n + " on " + st, st);
}

Result<std::optional<ConsumerInfo>> JetStream::consumer_info(std::string_view stream, std::string_view name,
                                                             int64_t timeout_ms) {
  const std::string st = str(stream);
  const std::string n = str(name);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = timeout_ms;  // 0: the context's
  jsConsumerInfo* raw = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetConsumerInfo(&raw, js_.get(), st.c_str(), n.c_str(), timeout_ms > 0 ? &jo : nullptr, &jerr);
  const JsConsumerInfoPtr ci(raw);
  if (s != NATS_OK && jerr == JSConsumerNotFoundErr) return std::optional<ConsumerInfo>();
  if (s != NATS_OK) return api_status(s, jerr, "consumer info " + n + " on " + st, st);
  ConsumerInfo out;
  if (ci->Config != nullptr) out.spec = spec_of(*ci->Config);
  out.delivered = ci->Delivered.Consumer;
  if (ci->Cluster != nullptr) out.followers = followers_of(*ci->Cluster);
  return std::optional<ConsumerInfo>(std::move(out));
}

Result<bool> JetStream::consumer_exists(std::string_view stream, std::string_view name) {
  DS_ASSIGN_OR_RETURN(std::optional<ConsumerInfo> info, consumer_info(stream, name));
  return info.has_value();
}

Result<std::vector<std::string>> JetStream::consumer_names(std::string_view stream) {
  const std::string st = str(stream);
  jsConsumerNamesList* list = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_ConsumerNames(&list, js_.get(), st.c_str(), nullptr, &jerr);
  const JsConsumerNamesListPtr names(list);
  std::vector<std::string> out;
  // cnats reports an empty list as NATS_NOT_FOUND without a JetStream error.
  if (s == NATS_NOT_FOUND && jerr == 0) return out;
  if (s != NATS_OK) return api_status(s, jerr, "consumer names on " + st, st);
  for (int i = 0; i < names->Count; ++i) out.emplace_back(names->List[i]);
  return out;
}

Result<StoredMessage> JetStream::get_message(std::string_view stream, uint64_t seq) {
  const std::string st = str(stream);
  natsMsg* m = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetMsg(&m, js_.get(), st.c_str(), seq, nullptr, &jerr);
  if (s != NATS_OK) return api_status(s, jerr, "get message " + std::to_string(seq) + " from " + st, st);
  return stored_message(m);
}

Result<StoredMessage> JetStream::get_last_message(std::string_view stream, std::string_view subject) {
  const std::string st = str(stream);
  const std::string subj = str(subject);
  natsMsg* m = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetLastMsg(&m, js_.get(), st.c_str(), subj.c_str(), nullptr, &jerr);
  if (s != NATS_OK) return api_status(s, jerr, "get last message on " + subj + " from " + st, st);
  return stored_message(m);
}

}  // namespace ds