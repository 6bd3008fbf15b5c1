#include "tests/harness/fake_env.h"

#include <chrono>
#include <utility>

namespace ds::testing {

bool subject_matches(std::string_view pattern, std::string_view subject) {
  while (true) {
    const size_t pd = pattern.find('.');
    const size_t sd = subject.find('.');
    const std::string_view pt = pattern.substr(0, pd);
    const std::string_view st = subject.substr(0, sd);
    if (pt == ">") return !subject.empty();
    if (pt != "*" && pt != st) return false;
    if (pd == std::string_view::npos || sd == std::string_view::npos) {
      return pd == std::string_view::npos && sd == std::string_view::npos;
    }
    pattern.remove_prefix(pd + 1);
    subject.remove_prefix(sd + 1);
  }
}

class FakeMessaging::Handle final : public MessagingSubscription {
 public:
  Handle(FakeMessaging& owner, uint64_t id) : owner_(owner), id_(id) {}
  ~Handle() override {
    // Waits for a running delivery, as a real subscription does (a handler
    // destroying its own subscription holds the lock already: recursive).
    std::lock_guard deliver(owner_.deliver_mu_);
    std::lock_guard lock(owner_.mu_);
    owner_.subs_.erase(id_);
  }

 private:
  FakeMessaging& owner_;
  uint64_t id_;
};

Status FakeMessaging::publish(std::string_view subject, std::string_view data) {
  if (!connected_) return Status::unavailable("fake broker: not connected");
  {
    std::lock_guard lock(mu_);
    published_.push_back({std::string(subject), std::string(data)});
  }
  cv_.notify_all();
  return Status::ok();
}

Result<std::string> FakeMessaging::request(std::string_view subject, std::string_view data, int64_t /*timeout_ms*/) {
  Responder responder;
  {
    std::lock_guard lock(mu_);
    requests_.push_back({std::string(subject), std::string(data)});
    responder = responder_;
  }
  cv_.notify_all();
  if (!connected_) return Status::unavailable("fake broker: not connected");
  if (!responder) return Status::unavailable("fake broker: no responders on " + std::string(subject));
  return responder(std::string(subject), std::string(data));
}

Result<std::unique_ptr<MessagingSubscription>> FakeMessaging::subscribe(std::string_view subject,
                                                                        EnvelopeHandler handler) {
  std::lock_guard lock(mu_);
  const uint64_t id = next_sub_++;
  subs_[id] = std::make_shared<Sub>(Sub{std::string(subject), std::move(handler)});
  return std::unique_ptr<MessagingSubscription>(std::make_unique<Handle>(*this, id));
}

Status FakeMessaging::flush(int64_t /*timeout_ms*/) {
  if (!connected_) return Status::unavailable("fake broker: not connected");
  std::lock_guard lock(mu_);
  return flush_status_;
}

void FakeMessaging::set_responder(Responder r) {
  std::lock_guard lock(mu_);
  responder_ = std::move(r);
}

void FakeMessaging::set_flush_status(Status s) {
  std::lock_guard lock(mu_);
  flush_status_ = std::move(s);
}

int FakeMessaging::deliver(const Envelope& m) {
  std::lock_guard deliver(deliver_mu_);
  std::vector<std::shared_ptr<Sub>> targets;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, sub] : subs_) {
      if (subject_matches(sub->subject, m.subject)) targets.push_back(sub);
    }
  }
  for (const auto& sub : targets) sub->handler(m);
  return static_cast<int>(targets.size());
}

std::vector<FakeMessaging::Published> FakeMessaging::published() const {
  std::lock_guard lock(mu_);
  return published_;
}

std::vector<FakeMessaging::Published> FakeMessaging::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

std::optional<FakeMessaging::Published> FakeMessaging::wait_published(const std::string& subject,
                                                                      int64_t timeout_ms) const {
  std::unique_lock lock(mu_);
  std::optional<Published> found;
  cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
    for (const Published& p : published_) {
      if (p.subject == subject) {
        found = p;
        return true;
      }
    }
    return false;
  });
  return found;
}

Result<StreamState> FakeConsumerControl::stream_state(std::string_view stream) {
  std::lock_guard lock(mu_);
  auto it = streams_.find(std::string(stream));
  if (it == streams_.end()) return Status::not_found("fake broker: no stream " + std::string(stream));
  return it->second;
}

Result<StoredMessage> FakeConsumerControl::get_message(std::string_view stream, uint64_t seq) {
  std::lock_guard lock(mu_);
  auto it = messages_.find({std::string(stream), seq});
  if (it == messages_.end()) return Status::not_found("fake broker: no message " + std::to_string(seq));
  return it->second;
}

Status FakeConsumerControl::add_consumer(std::string_view stream, const ConsumerSpec& spec) {
  std::unique_lock lock(mu_);
  if (!streams_.contains(std::string(stream))) return Status::not_found("fake broker: no stream " + std::string(stream));
  if (lingering_.erase({std::string(stream), spec.durable}) > 0) {
    return Status::already_exists("fake broker: consumer name already in use (jetstream error 10013)");
  }
  consumers_[{std::string(stream), spec.durable}] = spec;
  delivered_.erase({std::string(stream), spec.durable});
  ++added_;
  const std::function<void()> hook = after_add_;
  const bool time_out = std::exchange(time_out_next_add_, false);
  lock.unlock();
  if (hook) hook();
  if (time_out) return Status::deadline_exceeded("fake broker: add consumer " + spec.durable + ": Timeout");
  return Status::ok();
}

Status FakeConsumerControl::delete_consumer(std::string_view stream, std::string_view name) {
  std::lock_guard lock(mu_);
  if (consumers_.erase({std::string(stream), std::string(name)}) == 0) {
    return Status::not_found("fake broker: no consumer " + std::string(name));
  }
  if (linger_next_delete_) {
    linger_next_delete_ = false;
    lingering_.insert({std::string(stream), std::string(name)});
  }
  ++deleted_;
  if (std::exchange(time_out_next_delete_, false)) {
    return Status::deadline_exceeded("fake broker: delete consumer " + std::string(name) + ": Timeout");
  }
  return Status::ok();
}

Result<std::optional<ConsumerInfo>> FakeConsumerControl::consumer_info(std::string_view stream,
                                                                       std::string_view name, int64_t timeout_ms) {
  std::lock_guard lock(mu_);
  ++info_reads_;
  if (timeout_ms > 0) {
    ++timed_reads_;
    if (!timed_failure_.is_ok()) return timed_failure_;
  }
  const std::pair<std::string, std::string> key{std::string(stream), std::string(name)};
  auto it = consumers_.find(key);
  if (it == consumers_.end()) return std::optional<ConsumerInfo>();
  ConsumerInfo info;
  info.spec = it->second;
  if (auto d = delivered_.find(key); d != delivered_.end()) info.delivered = d->second;
  if (auto f = followers_.find(key); f != followers_.end()) info.followers = f->second;
  return std::optional<ConsumerInfo>(std::move(info));
}

void FakeConsumerControl::deliver(const std::string& stream, const std::string& name, uint64_t count) {
  std::lock_guard lock(mu_);
  delivered_[{stream, name}] += count;
}

void FakeConsumerControl::time_out_next_add() {
  std::lock_guard lock(mu_);
  time_out_next_add_ = true;
}

void FakeConsumerControl::time_out_next_delete() {
  std::lock_guard lock(mu_);
  time_out_next_delete_ = true;
}

void FakeConsumerControl::set_followers(const std::string& stream, const std::string& name,
                                        std::vector<StreamFollower> followers) {
  std::lock_guard lock(mu_);
  followers_[{stream, name}] = std::move(followers);
}

void FakeConsumerControl::fail_timed_reads(Status failure) {
  std::lock_guard lock(mu_);
  timed_failure_ = std::move(failure);
}

int FakeConsumerControl::timed_reads() const {
  std::lock_guard lock(mu_);
  return timed_reads_;
}

int FakeConsumerControl::info_reads() const {
  std::lock_guard lock(mu_);
  return info_reads_;
}

void FakeConsumerControl::set_stream(const std::string& stream, StreamState state) {
  std::lock_guard lock(mu_);
  streams_[stream] = state;
}

void FakeConsumerControl::put_message(const std::string& stream, StoredMessage m) {
  std::lock_guard lock(mu_);
  messages_[{stream, m.seq}] = std::move(m);
}

void FakeConsumerControl::after_add(std::function<void()> hook) {
  std::lock_guard lock(mu_);
  after_add_ = std::move(hook);
}

void FakeConsumerControl::linger_next_delete() {
  std::lock_guard lock(mu_);
  linger_next_delete_ = true;
}

void FakeConsumerControl::lose_consumers() {
  std::lock_guard lock(mu_);
  consumers_.clear();
}

std::optional<ConsumerSpec> FakeConsumerControl::consumer(const std::string& stream, const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = consumers_.find({stream, name});
  if (it == consumers_.end()) return std::nullopt;
  return it->second;
}

int FakeConsumerControl::added() const {
  std::lock_guard lock(mu_);
  return added_;
}

int FakeConsumerControl::deleted() const {
  std::lock_guard lock(mu_);
  return deleted_;
}

Status FakeStreamAccess::ensure_stream(const StreamSpec& spec) {
  std::lock_guard lock(mu_);
  streams_[spec.name].spec = spec;
  return Status::ok();
}

FakeStreamAccess::Stream* FakeStreamAccess::stream_for(std::string_view subject) {
  for (auto& [name, stream] : streams_) {
    for (const std::string& pattern : stream.spec.subjects) {
      if (subject_matches(pattern, subject)) return &stream;
    }
  }
  return nullptr;
}

Status FakeStreamAccess::publish_async(std::string_view subject, std::string_view data, std::string_view msg_id,
                                       const Headers& headers) {
  std::lock_guard lock(mu_);
  if (!ack_failure_.is_ok()) return Status::ok();  // sent; its ack never comes
  Stream* stream = stream_for(subject);
  if (stream == nullptr) return Status::not_found("fake broker: no stream takes " + std::string(subject));
  PubAck ack;
  for (const StoredMessage& m : stream->messages) {
    if (m.msg_id && *m.msg_id == msg_id) {
      ack.seq = m.seq;
      ack.duplicate = true;
    }
  }
  // As JetStream: a duplicate is acked before any expectation is checked;
  // then the expected last sequence and last message id are, and the
  // server's own headers are not kept with the stored message.
  const uint64_t last = stream->first_seq + stream->messages.size() - 1;
  const std::string last_id =
      stream->messages.empty() ? std::string() : stream->messages.back().msg_id.value_or(std::string());
  Headers kept;
  for (const auto& [name, value] : headers) {
    const bool wrong = !ack.duplicate && ((name == "Nats-Expected-Last-Sequence" && value != std::to_string(last)) ||
                                          (name == "Nats-Expected-Last-Msg-Id" && value != last_id));
    if (wrong) {
      if (refused_.is_ok()) refused_ = Status::already_exists("fake broker: wrong last sequence or message id");
      return Status::ok();
    }
    if (!name.starts_with("Nats-")) kept.emplace_back(name, value);
  }
  if (!ack.duplicate) {
    ack.seq = last + 1;
    stream->messages.push_back(
        StoredMessage{ack.seq, std::string(subject), std::string(data), std::string(msg_id), std::move(kept)});
  }
  unclaimed_[std::string(msg_id)] = ack;
  return Status::ok();
}

Status FakeStreamAccess::wait_published(int64_t /*timeout_ms*/, std::map<std::string, PubAck>* acks) {
  std::lock_guard lock(mu_);
  ++wait_calls_;
  std::map<std::string, PubAck> taken = std::exchange(unclaimed_, {});
  if (!ack_failure_.is_ok()) return ack_failure_;
  if (Status refused = std::exchange(refused_, Status::ok()); !refused.is_ok()) return refused;
  if (acks != nullptr) *acks = std::move(taken);
  return Status::ok();
}

int64_t FakeStreamAccess::max_payload() const {
  std::lock_guard lock(mu_);
  return max_payload_;
}

Result<StreamState> FakeStreamAccess::stream_state(std::string_view name) {
  std::lock_guard lock(mu_);
  auto it = streams_.find(std::string(name));
  if (it == streams_.end()) return Status::not_found("fake broker: no stream " + std::string(name));
  const Stream& s = it->second;
  StreamState st;
  st.messages = s.messages.size();
  st.first_seq = s.messages.empty() ? s.first_seq : s.messages.front().seq;
  st.last_seq = s.messages.empty() ? s.first_seq - 1 : s.messages.back().seq;
  for (const StoredMessage& m : s.messages) st.bytes += m.data.size();
  return st;
}

Result<StoredMessage> FakeStreamAccess::get_message(std::string_view name, uint64_t seq) {
  std::lock_guard lock(mu_);
  auto it = streams_.find(std::string(name));
  if (it == streams_.end()) return Status::not_found("fake broker: no stream " + std::string(name));
  for (const StoredMessage& m : it->second.messages) {
    if (m.seq == seq) return m;
  }
  return Status::not_found("fake broker: no message " + std::to_string(seq) + " in " + std::string(name));
}

void FakeStreamAccess::set_ack_failure(Status s) {
  std::lock_guard lock(mu_);
  ack_failure_ = std::move(s);
}

void FakeStreamAccess::set_max_payload(int64_t bytes) {
  std::lock_guard lock(mu_);
  max_payload_ = bytes;
}

void FakeStreamAccess::append(const std::string& name, StoredMessage m) {
  std::lock_guard lock(mu_);
  Stream& s = streams_[name];
  if (s.spec.name.empty()) s.spec.name = name;
  m.seq = s.first_seq + s.messages.size();
  s.messages.push_back(std::move(m));
}

void FakeStreamAccess::age_out(const std::string& name, size_t n) {
  std::lock_guard lock(mu_);
  Stream& s = streams_[name];
  n = std::min(n, s.messages.size());
  s.first_seq += n;
  s.messages.erase(s.messages.begin(), s.messages.begin() + static_cast<std::ptrdiff_t>(n));
}

void FakeStreamAccess::delete_stream(const std::string& name) {
  std::lock_guard lock(mu_);
  streams_.erase(name);
}

std::vector<StoredMessage> FakeStreamAccess::messages(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = streams_.find(name);
  return it == streams_.end() ? std::vector<StoredMessage>{} : it->second.messages;
}

int FakeStreamAccess::wait_calls() const {
  std::lock_guard lock(mu_);
  return wait_calls_;
}

}  // namespace ds::testing
