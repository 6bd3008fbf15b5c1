#pragma once
// Messaging, ConsumerControl and StreamAccess (both StreamReaders): the
// narrow NATS seams of the services that talk to the broker (the hub's
// AgentService, DeliveryManager and StreamPublisher, the agent's Registrar
// and DeltaApplier), as interfaces (leveldb's Env is the model): what they
// call and nothing more, so unit tests pass fakes (tests/harness/fake_env.h)
// and drive messages and broker answers by hand.
//
// Production implementations adapt the public API of shared/nats.h and own
// nothing: NatsMessaging over a Connection, NatsConsumerControl and
// NatsStreamAccess (sharing NatsStreamReader) over a JetStream context,
// which must outlive them. Their contracts are those of the wrapped calls
// (nats.h); the differences are stated here.
//
// Thread-safety: implementations are thread-safe as the wrapped calls are.
// Handlers run on a library thread (a fake: the thread that delivers), one
// message at a time per subscription; destroying a subscription unsubscribes
// and waits until its handler is no longer running.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "shared/nats.h"
#include "shared/status.h"

namespace ds {

// An inbound message as these services use it: copied out of the library's
// message, so it carries no handle and cannot be acked.
struct Envelope {
  std::string subject;
  std::string reply;  // "" when none
  std::string data;
};
using EnvelopeHandler = std::function<void(Envelope)>;

// Unsubscribes when destroyed (after waiting for a running handler).
class MessagingSubscription {
 public:
  virtual ~MessagingSubscription() = default;
};

class Messaging {
 public:
  virtual ~Messaging() = default;
  virtual Status publish(std::string_view subject, std::string_view data) = 0;
  // Request/reply with a fresh inbox; the reply's body. DeadlineExceeded or
  // Unavailable (no responders) when nobody answers in time.
  virtual Result<std::string> request(std::string_view subject, std::string_view data, int64_t timeout_ms) = 0;
  virtual Result<std::unique_ptr<MessagingSubscription>> subscribe(std::string_view subject,
                                                                   EnvelopeHandler handler) = 0;
  // A round trip to the server: everything published before it arrived.
  virtual Status flush(int64_t timeout_ms) = 0;
  virtual bool connected() const = 0;

  // Answers `request` on its reply subject; OK without doing anything when
  // it has none (as Connection::respond).
  Status respond(const Envelope& request, std::string_view data) {
    if (request.reply.empty()) return Status::ok();
    return publish(request.reply, data);
  }
};

// The JetStream calls that read a stream, which both seams below take. A
// plain (non-virtual) base: no class implements both seams.
class StreamReader {
 public:
  virtual ~StreamReader() = default;
  // NotFound when the stream does not exist.
  virtual Result<StreamState> stream_state(std::string_view stream) = 0;
  // NotFound when the stream or the message does not exist.
  virtual Result<StoredMessage> get_message(std::string_view stream, uint64_t seq) = 0;
};

// The JetStream calls that manage agents' push consumers.
class ConsumerControl : public StreamReader {
 public:
  virtual Status add_consumer(std::string_view stream, const ConsumerSpec& spec) = 0;
  // NotFound when it does not exist.
  virtual Status delete_consumer(std::string_view stream, std::string_view name) = 0;
  // nullopt when it does not exist; answered within `timeout_ms`, or the
  // JetStream context's timeout when 0 (JetStream::consumer_info).
  virtual Result<std::optional<ConsumerInfo>> consumer_info(std::string_view stream, std::string_view name,
                                                            int64_t timeout_ms) = 0;
};

// The JetStream calls that fill and read back the hub's streams: the
// contracts of the JetStream methods of the same names (nats.h).
class StreamAccess : public StreamReader {
 public:
  virtual Status ensure_stream(const StreamSpec& spec) = 0;
  // Publishes with Nats-Msg-Id `msg_id` (duplicate detection) and
  // `headers`; the ack is collected by the next wait_published().
  virtual Status publish_async(std::string_view subject, std::string_view data, std::string_view msg_id,
                               const Headers& headers) = 0;
  // Waits for the acks of everything published since the previous wait;
  // `acks`, when given, receives them by Nats-Msg-Id.
  virtual Status wait_published(int64_t timeout_ms, std::map<std::string, PubAck>* acks = nullptr) = 0;
  // The largest message the server accepts now.
  virtual int64_t max_payload() const = 0;
};

class NatsMessaging final : public Messaging {
 public:
  explicit NatsMessaging(Connection& nc) : nc_(nc) {}
  Status publish(std::string_view subject, std::string_view data) override;
  Result<std::string> request(std::string_view subject, std::string_view data, int64_t timeout_ms) override;
  Result<std::unique_ptr<MessagingSubscription>> subscribe(std::string_view subject,
                                                           EnvelopeHandler handler) override;
  Status flush(int64_t timeout_ms) override;
  bool connected() const override;

 private:
  Connection& nc_;
};

// StreamReader's calls over a JetStream context, for either seam.
template <class Seam>
class NatsStreamReader : public Seam {
 public:
  explicit NatsStreamReader(JetStream& js) : js_(js) {}
  Result<StreamState> stream_state(std::string_view stream) override { return js_.stream_state(stream); }
  Result<StoredMessage> get_message(std::string_view stream, uint64_t seq) override {
    return js_.get_message(stream, seq);
  }

 protected:
  JetStream& js_;
};

class NatsConsumerControl final : public NatsStreamReader<ConsumerControl> {
 public:
  using NatsStreamReader::NatsStreamReader;
  Status add_consumer(std::string_view stream, const ConsumerSpec& spec) override;
  Status delete_consumer(std::string_view stream, std::string_view name) override;
  Result<std::optional<ConsumerInfo>> consumer_info(std::string_view stream, std::string_view name,
                                                    int64_t timeout_ms) override;
};

class NatsStreamAccess final : public NatsStreamReader<StreamAccess> {
 public:
  using NatsStreamReader::NatsStreamReader;
  Status ensure_stream(const StreamSpec& spec) override { return js_.ensure_stream(spec); }
  Status publish_async(std::string_view subject, std::string_view data, std::string_view msg_id,
                       const Headers& headers) override {
    return js_.publish_async(subject, data, msg_id, headers);
  }
  Status wait_published(int64_t timeout_ms, std::map<std::string, PubAck>* acks) override {
    return js_.wait_published(timeout_ms, acks);
  }
  int64_t max_payload() const override { return js_.max_payload(); }
};

}  // namespace ds
