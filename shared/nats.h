#pragma once
// RAII around cnats: the library guard, connections (with reconnect options),
// messages, subscriptions and a JetStream context. natsStatus and
// nats_GetLastError are converted to Status here, once.
//
// Implemented along its seams: nats.cc (the library guard, Status
// conversion, Message, Subscription), nats_connection.cc (connect and
// reconnect, with the cnats 3.4.1 traps they work around; publishing and
// requests), jetstream.cc (streams, consumers, JetStream publishing),
// nonce_signing.h (nkey seed and creds file signing). A push consumer's
// deliveries are taken with Connection::subscribe and acked through
// jetstream_push.h. Every cnats handle is held by its nats_handles.h owner.
//
// Threads: cnats calls message handlers and connection callbacks on its own
// threads. Handlers given here must not throw (exceptions are caught and
// logged at the boundary) and should hand long work to their owner's thread.
// Connection and JetStream methods are thread-safe (cnats locks inside).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shared/config.h"
#include "shared/nats_handles.h"
#include "shared/nonce_signing.h"
#include "shared/status.h"

namespace ds {

// Opens the cnats library in its constructor and closes it in its destructor
// (nats_CloseAndWait, bounded at 5 s): declare one first thing in main() so
// it is destroyed last, after every connection.
class NatsLibrary {
 public:
  NatsLibrary();
  ~NatsLibrary();
  NatsLibrary(const NatsLibrary&) = delete;
  NatsLibrary& operator=(const NatsLibrary&) = delete;
};

// Converts a natsStatus (int) to a Status, with nats_GetLastError detail:
// "<context>: <status text>: <detail>". Call it on the thread that made the
// failing cnats call (the detail is thread-local).
Status nats_status(int s, std::string_view context);

using Headers = std::vector<std::pair<std::string, std::string>>;

// Owns one natsMsg. Not thread-safe; move it to the thread that handles it.
//
// A push consumer's deliveries are taken with a plain Connection::subscribe
// on the consumer's exact deliver subject (one subscription per deliver
// subject: nats-server 2.9.10 does not deliver to a wildcard, see
// ConsumerSpec::deliver_subject); they are acked by publishing to the
// message's "$JS.ACK..." reply through the connection (jetstream_push.h),
// which needs nothing of the Subscription, so a delivery may be acked after
// its Subscription is gone.
class Message {
 public:
  Message() = default;
  explicit Message(natsMsg* m) : msg_(m) {}

  bool valid() const { return msg_ != nullptr; }
  std::string_view subject() const;
  std::string_view reply() const;  // "" when none
  std::string_view data() const;
  std::optional<std::string> header(const char* name) const;

  natsMsg* raw() const { return msg_.get(); }

 private:
  NatsMsgPtr msg_;
};

using MessageHandler = std::function<void(Message)>;

// Owns a subscription; the destructor unsubscribes and waits until the
// handler is no longer running, so the handler may capture `this` of the
// subscription's owner safely. The handler runs on one cnats thread, one
// message at a time. Destroying the Subscription from inside its own handler
// is allowed (it then does not wait for itself).
class Subscription {
 public:
  struct State;  // opaque; defined in nats.cc (the cnats callbacks' closure)

  ~Subscription();
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  // Stops delivery after pending messages were handled.
  Status drain();
  bool valid() const;

 private:
  friend class Connection;
  explicit Subscription(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

struct ConnectOptions {
  NatsConfig config;
  std::string name;                 // client name shown by the server
  std::string inbox_prefix;         // "" = cnats default
  int64_t connect_timeout_ms = 2000;
  int64_t reconnect_wait_ms = 250;  // first delay; doubles up to the max
  int64_t max_reconnect_wait_ms = 5000;
  // When no server answers at connect(): false = fail with Unavailable;
  // true = return a connection that keeps trying in the background and
  // calls on_reconnected once it first gets through.
  bool retry_on_failed_connect = false;
  // Called on a cnats thread; must be quick and must not call back into the
  // Connection's destructor. Not called while the Connection is destroyed.
  std::function<void()> on_disconnected;
  std::function<void()> on_reconnected;
  std::function<void(const std::string&)> on_async_error;  // e.g. permission violations
  // Before each (re)connect attempt while not connected: the attempt's
  // number (1, 2, ... since the last loss of the server) and the wait
  // before it. For logging and readiness reports.
  std::function<void(int attempt, int64_t delay_ms)> on_retry;
  // The connection was closed for good by cnats, not by the destructor:
  // cnats 3.4 gives up reconnecting when the server refuses the credentials
  // twice in a row (see Connection), or on a server -ERR it does not know.
  // Nothing is delivered or sent any more; the owner should stop (and be
  // restarted by its supervisor) rather than run on without a broker.
  std::function<void(const Status&)> on_closed;
};

class JetStream;

// One connection to nats-server. Reconnects forever (capped exponential
// backoff with jitter); publishes made while disconnected are buffered by
// cnats. Thread-safe. Destroy subscriptions and JetStream contexts made from
// it before the Connection itself.
//
// nkey authentication (NatsConfig::nkey_seed_file) and JWT credentials
// (NatsConfig::creds_file, shared/creds_file.h): at every connect and
// reconnect the file is read again (for a creds file: its JWT, handed to
// cnats for CONNECT, and its seed) and the server's nonce is signed by
// NonceSigner (nonce_signing.h) with libsodium, one signing callback for
// both; cnats then base64-encodes the signature into CONNECT. A creds file
// that does not parse, or whose JWT has expired, fails connect() naming the
// file.
// cnats 3.4.1's encoder yields nothing when the first input byte is zero
// (nats.c PR #705, fixed in a later release), so a signature beginning with
// 0x00 (1 nonce in 256; ed25519 is deterministic, so it is the nonce that
// decides) would go out empty and nats-server 2.9 answers "Authorization
// Violation". Two such refusals in a row while reconnecting make cnats 3.4
// close the connection for good (it aborts on the same auth error twice,
// and 3.4 has no option to turn that off). So the signing callback never
// hands cnats such a signature: it fails that attempt locally, before
// CONNECT is sent, which cnats treats as an ordinary failed attempt (not an
// auth error). A new attempt is a new TCP connection with a new nonce:
// connect() retries at once (bounded, see kMaxSignatureAttempts in
// nonce_signing.h, which owns the signing), the reconnect loop after its
// usual delay.
class Connection {
 public:
  struct Callbacks;  // opaque; defined in nats_connection.cc (the cnats callbacks' closure)

  static Result<std::unique_ptr<Connection>> connect(ConnectOptions opts);
  ~Connection();

  Status publish(std::string_view subject, std::string_view data, const Headers& headers = {});
  // Publishes with a reply subject (e.g. a heartbeat whose answers arrive on
  // a subscription the caller holds).
  Status publish_request(std::string_view subject, std::string_view reply, std::string_view data);
  // Replies to a request message; NotFound-free no-op when it has no reply.
  Status respond(const Message& request, std::string_view data, const Headers& headers = {});
  Result<Message> request(std::string_view subject, std::string_view data, int64_t timeout_ms,
                          const Headers& headers = {});

  // The handler gets every message except JetStream flow-control requests
  // and idle heartbeats (a push consumer delivering here), which are
  // answered on receipt as the JetStream protocol requires
  // (jetstream_push.h, classify_push_control).
  Result<std::unique_ptr<Subscription>> subscribe(std::string_view subject, MessageHandler handler);
  Result<std::unique_ptr<Subscription>> queue_subscribe(std::string_view subject, std::string_view queue,
                                                        MessageHandler handler);

  Status flush(int64_t timeout_ms = 5000);
  bool connected() const;
  // The largest message (headers + body) the server this connection is on
  // (or was last on) accepts: its INFO max_payload, updated by cnats at every
  // reconnect, so it can change (e.g. another server of a cluster).
  int64_t max_payload() const;
  // Closed for good by cnats (ConnectOptions::on_closed); never reopens.
  bool closed() const;
  // A new unique inbox subject under this connection's prefix.
  std::string new_inbox() const;
  Result<std::unique_ptr<JetStream>> jetstream(int64_t timeout_ms = 5000);

  natsConnection* raw() const { return nc_.get(); }

 private:
  Connection() = default;
  // Declared before nc_: the destructor resets nc_ only once cnats is done
  // with callbacks_ (see nats_connection.cc).
  std::unique_ptr<Callbacks> callbacks_;
  NatsConnectionPtr nc_;
  std::string inbox_prefix_;
};

struct StreamSpec {
  std::string name;
  std::vector<std::string> subjects;
  int64_t max_age_ms = 0;             // 0 = unlimited
  int64_t max_bytes = -1;             // -1 = unlimited
  int64_t duplicate_window_ms = 120000;  // capped at max_age_ms (the server requires it)
  bool memory_storage = false;        // file storage by default
  int replicas = 1;
  // When set: the server publishes every message the stream stored again,
  // its subject mapped from `republish_source` (a subset of `subjects`) to
  // `republish_destination` (e.g. ds.delta.prices.> -> ds.feed.prices.>),
  // adding the headers Nats-Stream, Nats-Subject, Nats-Sequence and
  // Nats-Last-Sequence (the sequence of the stream's previous message on the
  // same subject; 0 for none). Only stored messages are republished: not a
  // duplicate, nor one an expectation header refused. nats-server 2.9 cannot
  // change a stream's republish in place: ensure_stream keeps the one an
  // existing stream has (StreamState::republish_destination says which).
  std::string republish_source{};
  std::string republish_destination{};
};

// One replica of a clustered stream (or consumer) other than its leader,
// as the leader sees it.
struct StreamFollower {
  std::string name;       // the nats-server's server_name
  bool current = false;   // caught up with the leader
  bool offline = false;
  uint64_t lag = 0;       // operations it is behind
};

struct StreamState {
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;
  uint64_t messages = 0;
  uint64_t bytes = 0;
  int replicas = 1;                       // the stream's configured replica count
  std::string leader = {};                // server_name of its leader; "" on a lone server
  std::vector<StreamFollower> followers = {};  // empty on a lone server and for 1 replica
  std::string republish_destination = {};  // "" when the stream republishes nothing
};

enum class AckPolicy { kExplicit, kAll, kNone };

struct ConsumerSpec {
  std::string durable;                // ag_<agent>
  std::string filter_subject;         // ds.delta.<type>.<partition> or ds.delta.<type>.>
  // ds.push.<agent>.<type>; "" = pull consumer. nats-server 2.9.10 only
  // delivers once a subscription on exactly this subject exists: a wildcard
  // (ds.push.<agent>.>) does not count as interest. Delivered messages keep
  // their stream subject (ds.delta.<type>.<partition>), not this one.
  std::string deliver_subject;
  uint64_t start_seq = 0;             // 0 = from the first message
  AckPolicy ack_policy = AckPolicy::kExplicit;
  int64_t ack_wait_ms = 30000;
  int64_t max_ack_pending = 1000;
  int64_t max_deliver = 5;
  bool flow_control = true;           // push only; needs idle_heartbeat_ms
  int64_t idle_heartbeat_ms = 5000;
  bool memory_storage = true;
  int replicas = 1;

  bool operator==(const ConsumerSpec&) const = default;
};

// A consumer as its leader reports it: the configuration it was created
// with (the fields ConsumerSpec names) and how far it has delivered.
struct ConsumerInfo {
  ConsumerSpec spec;
  uint64_t delivered = 0;                // consumer sequence of its last delivery; 0: none yet
  std::vector<StreamFollower> followers; // its replicas other than the leader (none for one replica)
};

struct PubAck {
  uint64_t seq = 0;
  bool duplicate = false;
};

struct StoredMessage {
  uint64_t seq = 0;
  std::string subject;
  std::string data;
  std::optional<std::string> msg_id;  // Nats-Msg-Id header
  Headers headers{};                  // every header but JetStream's own (Nats-*)
  // The value of header `name`; nullopt when the message has none.
  std::optional<std::string> header(std::string_view name) const;
};

// A JetStream context of one connection. Thread-safe, except that
// publish_async/wait_published pairs from several threads share one error
// slot. API calls wait up to the timeout given to Connection::jetstream();
// a request the server's permissions drop shows as PermissionDenied when the
// connection saw the matching violation, else DeadlineExceeded.
class JetStream {
 public:
  struct AsyncErrors;  // opaque; defined in jetstream.cc (the cnats callbacks' closure)

  ~JetStream();
  JetStream(const JetStream&) = delete;
  JetStream& operator=(const JetStream&) = delete;

  // Creates the stream, or updates it when it exists with another config
  // (a clustered server changes its replica count in place). Replicas the
  // server cannot place: InvalidArgument on a lone server (no cluster),
  // Unavailable when too few cluster nodes are up; the message says which.
  Status ensure_stream(const StreamSpec& spec);
  Status delete_stream(std::string_view name);
  // NotFound when the stream does not exist.
  Result<StreamState> stream_state(std::string_view name);

  // Synchronous publish with Nats-Msg-Id (duplicate detection).
  Result<PubAck> publish(std::string_view subject, std::string_view data, std::string_view msg_id,
                         int64_t timeout_ms = 5000);
  // Asynchronous publish; wait_published() waits for every ack and reports
  // the first failure since the previous wait; `acks`, when given, receives
  // the acks of the messages published since the previous wait, by
  // Nats-Msg-Id. When it times out, or the connection was re-established
  // after the first of them was sent (Unavailable as soon as it is back: an
  // ack the server sent meanwhile is lost), the messages still without an
  // ack are forgotten: the caller must publish them again.
  // `headers` go with the message; JetStream's own count too, e.g.
  // Nats-Expected-Last-Sequence: the stream refuses the message when its
  // last sequence is another (wait_published: AlreadyExists).
  Status publish_async(std::string_view subject, std::string_view data, std::string_view msg_id,
                       const Headers& headers = {});
  Status wait_published(int64_t timeout_ms = 10000, std::map<std::string, PubAck>* acks = nullptr);
  // Connection::max_payload of the connection this context publishes on.
  int64_t max_payload() const;

  Status add_consumer(std::string_view stream, const ConsumerSpec& spec);
  // NotFound when it does not exist.
  Status delete_consumer(std::string_view stream, std::string_view name);
  // nullopt when it does not exist. On a NATS cluster only the consumer's
  // leader answers: a consumer still electing one (nats-server 2.9.10 may
  // take 4-9 s for a new replicated consumer) times out (DeadlineExceeded)
  // after `timeout_ms`, or the context's timeout when 0.
  Result<std::optional<ConsumerInfo>> consumer_info(std::string_view stream, std::string_view name,
                                                    int64_t timeout_ms = 0);
  Result<bool> consumer_exists(std::string_view stream, std::string_view name);
  Result<std::vector<std::string>> consumer_names(std::string_view stream);

  // NotFound when the stream or message does not exist.
  Result<StoredMessage> get_message(std::string_view stream, uint64_t seq);
  Result<StoredMessage> get_last_message(std::string_view stream, std::string_view subject);

  jsCtx* raw() const { return js_.get(); }

 private:
  friend class Connection;
  JetStream(natsConnection* nc, std::unique_ptr<AsyncErrors> errors);
  // Refines a failed API call: a timeout caused by a permission violation
  // on the JetStream API (of `stream`, when given) becomes PermissionDenied.
  // The connection's last error is sticky, so this is a best guess.
  Status api_status(int s, int js_err, std::string_view context, std::string_view stream = {}) const;
  // Says what to do when a stream's replicas cannot be placed (see ensure_stream).
  static Status replica_status(Status st, int js_err, const StreamSpec& spec);

  natsConnection* nc_ = nullptr;
  std::unique_ptr<AsyncErrors> async_errors_;  // declared before js_, so destroyed after it
  JsCtxPtr js_;  // closure of cnats' async publish error handler
};

}  // namespace ds
