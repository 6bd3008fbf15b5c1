#include "shared/nats.h"

#include "shared/creds_file.h"
#include "shared/nkeys.h"

#include <nats/nats.h>
#include <sodium.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <fstream>
#include <map>
#include <sstream>
#include <mutex>
#include <random>
#include <thread>

namespace ds {
namespace {

// JetStream API error codes (jsErrCode) that carry a meaning of their own.
bool is_not_found_code(int js_err) {
  return js_err == JSStreamNotFoundErr || js_err == JSConsumerNotFoundErr ||
         js_err == JSNoMessageFoundErr;
}
bool is_exists_code(int js_err) {
  return js_err == JSStreamNameExistErr || js_err == JSConsumerNameExistErr;
}

bool contains_nocase(std::string_view haystack, std::string_view needle) {
  auto it = std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end(),
                        [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) ==
                                                    std::tolower(static_cast<unsigned char>(b)); });
  return it != haystack.end();
}

Status classify(natsStatus s, int js_err, std::string msg);

// Builds the Status for a failed cnats call; `js_err` is the jsErrCode of a
// JetStream API call (0 when none). Must run on the thread that made the
// call: nats_GetLastError is thread-local.
Status make_status(natsStatus s, int js_err, std::string_view context) {
  if (s == NATS_OK) return Status::ok();
  std::string msg(context);
  msg += ": ";
  msg += natsStatus_GetText(s);
  natsStatus last = NATS_OK;
  const char* detail = nats_GetLastError(&last);
  std::string_view detail_view = detail != nullptr ? detail : "";
  if (last == s && !detail_view.empty() && detail_view != natsStatus_GetText(s)) {
    msg += ": ";
    msg += detail_view;
  }
  if (js_err != 0) msg += " (jetstream error " + std::to_string(js_err) + ")";
  return classify(s, js_err, std::move(msg));
}

// The Status code of a cnats status (and JetStream error code) with `msg`.
Status classify(natsStatus s, int js_err, std::string msg) {
  if (is_not_found_code(js_err)) return Status::not_found(std::move(msg));
  if (is_exists_code(js_err)) return Status::already_exists(std::move(msg));
  if (js_err == JSNotEnabledErr) return Status::unavailable(std::move(msg));
  if (js_err == JSStreamInvalidConfig || js_err == JSInvalidJSONErr) return Status::invalid_argument(std::move(msg));
  if (s == NATS_NOT_PERMITTED || s == NATS_CONNECTION_AUTH_FAILED ||
      contains_nocase(msg, "permissions violation") || contains_nocase(msg, "authorization violation")) {
    return Status::permission_denied(std::move(msg));
  }
  switch (s) {
    case NATS_TIMEOUT:
      return Status::deadline_exceeded(std::move(msg));
    case NATS_NO_SERVER:
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NO_RESPONDERS:
    case NATS_IO_ERROR:
    case NATS_STALE_CONNECTION:
    case NATS_NOT_YET_CONNECTED:
      return Status::unavailable(std::move(msg));
    case NATS_NOT_FOUND:
      return Status::not_found(std::move(msg));
    case NATS_INVALID_ARG:
    case NATS_INVALID_SUBJECT:
    case NATS_INVALID_TIMEOUT:
    case NATS_INVALID_QUEUE_NAME:
    case NATS_ADDRESS_MISSING:
    case NATS_MAX_PAYLOAD:
      return Status::invalid_argument(std::move(msg));
    default:
      return Status::internal(std::move(msg));
  }
}

std::string str(std::string_view v) { return std::string(v); }

struct MsgDeleter {
  void operator()(natsMsg* m) const { natsMsg_Destroy(m); }
};
using MsgPtr = std::unique_ptr<natsMsg, MsgDeleter>;

// A natsMsg for publishing with headers.
Result<MsgPtr> build_msg(std::string_view subject, std::string_view reply, std::string_view data,
                         const Headers& headers) {
  natsMsg* raw = nullptr;
  const std::string subj = str(subject);
  const std::string rep = str(reply);
  natsStatus s = natsMsg_Create(&raw, subj.c_str(), rep.empty() ? nullptr : rep.c_str(), data.data(),
                                static_cast<int>(data.size()));
  if (s != NATS_OK) return make_status(s, 0, "create message for " + subj);
  MsgPtr m(raw);
  for (const auto& [k, v] : headers) {
    s = natsMsgHeader_Add(m.get(), k.c_str(), v.c_str());
    if (s != NATS_OK) return make_status(s, 0, "set header " + k);
  }
  return m;
}

// Splits "a, b,c" into trimmed non-empty parts.
std::vector<std::string> split_urls(const std::string& urls) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= urls.size()) {
    size_t comma = urls.find(',', start);
    if (comma == std::string::npos) comma = urls.size();
    std::string part = urls.substr(start, comma - start);
    const auto first = part.find_first_not_of(" \t");
    const auto last = part.find_last_not_of(" \t");
    if (first != std::string::npos) out.push_back(part.substr(first, last - first + 1));
    start = comma + 1;
  }
  return out;
}

// Runs a user callback at a cnats boundary: nothing may propagate into C.
template <typename F>
void guarded(const char* what, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    spdlog::error("nats: {} threw: {}", what, e.what());
  } catch (...) {
    spdlog::error("nats: {} threw a non-standard exception", what);
  }
}

}  // namespace

Status nats_status(int s, std::string_view context) {
  return make_status(static_cast<natsStatus>(s), 0, context);
}

Result<std::string> nkey_public_key_from_seed(std::string_view seed) {
  DS_ASSIGN_OR_RETURN(NkeyPair pair, user_nkey_from_seed(seed));
  return std::move(pair.public_key);
}

namespace {

// The first user seed ("SU...") in the file.
Result<std::string> read_user_seed(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::not_found("nkey seed file " + path + ": cannot open");
  std::string token;
  while (in >> token) {
    if (token.size() >= 2 && token[0] == 'S' && token[1] == 'U') return token;
  }
  return Status::invalid_argument("nkey seed file " + path + ": no user seed (SU...) in it");
}

}  // namespace

Result<std::string> nkey_public_key_from_seed_file(const std::string& path) {
  DS_ASSIGN_OR_RETURN(std::string seed, read_user_seed(path));
  auto pub = nkey_public_key_from_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  if (!pub.is_ok()) return pub.status().with_context(path);
  return pub;
}

namespace {

// The ed25519 signature of `nonce` by the encoded user seed `seed`.
// Signed here rather than by natsOptions_SetNKeyFromSeed: cnats 3.4's own
// seed decoding failed about once in a few thousand attempts ("invalid
// seed") for seeds that decode fine every other time, which made
// connections fail at random.
Result<std::vector<unsigned char>> sign_nonce_with_seed(std::string_view seed, const char* nonce) {
  auto decoded = decode_nkey(seed);
  if (!decoded.is_ok()) return decoded.status();
  unsigned char pk[crypto_sign_PUBLICKEYBYTES];
  unsigned char sk[crypto_sign_SECRETKEYBYTES];
  crypto_sign_seed_keypair(pk, sk, decoded->key.data());
  sodium_memzero(decoded->key.data(), decoded->key.size());
  std::vector<unsigned char> sig(crypto_sign_BYTES);
  crypto_sign_detached(sig.data(), nullptr, reinterpret_cast<const unsigned char*>(nonce), std::strlen(nonce), sk);
  sodium_memzero(sk, sizeof sk);
  return sig;
}

// The signature of `nonce` by the user seed in the seed file `path`, read at
// each (re)connect as cnats would.
Result<std::vector<unsigned char>> sign_nonce(const std::string& path, const char* nonce) {
  DS_ASSIGN_OR_RETURN(std::string seed, read_user_seed(path));
  auto sig = sign_nonce_with_seed(seed, nonce);
  sodium_memzero(seed.data(), seed.size());
  if (!sig.is_ok()) return sig.status().with_context(path);
  return sig;
}

// connect() makes this many attempts when attempts fail only because the
// nonce's signature begins with a zero byte (see Connection in nats.h):
// each one has a 1 in 256 chance, so 8 in a row happen once in 2^64.
constexpr int kMaxSignatureAttempts = 8;

}  // namespace

// ---------------------------------------------------------------------------
// NatsLibrary

NatsLibrary::NatsLibrary() {
  natsStatus s = nats_Open(-1);
  if (s != NATS_OK) spdlog::error("nats_Open failed: {}", natsStatus_GetText(s));
}

NatsLibrary::~NatsLibrary() {
  // Waits for cnats' internal threads so nothing runs during static
  // destruction; bounded so a leaked object cannot hang the exit.
  nats_CloseAndWait(5000);
}

// ---------------------------------------------------------------------------
// Message

void Message::Deleter::operator()(natsMsg* m) const { natsMsg_Destroy(m); }

std::string_view Message::subject() const {
  const char* s = msg_ ? natsMsg_GetSubject(msg_.get()) : nullptr;
  return s != nullptr ? s : "";
}

std::string_view Message::reply() const {
  const char* s = msg_ ? natsMsg_GetReply(msg_.get()) : nullptr;
  return s != nullptr ? s : "";
}

std::string_view Message::data() const {
  if (!msg_) return {};
  const char* d = natsMsg_GetData(msg_.get());
  const int n = natsMsg_GetDataLength(msg_.get());
  if (d == nullptr || n <= 0) return {};
  return {d, static_cast<size_t>(n)};
}

std::optional<std::string> Message::header(const char* name) const {
  if (!msg_) return std::nullopt;
  const char* value = nullptr;
  if (natsMsgHeader_Get(msg_.get(), name, &value) != NATS_OK || value == nullptr) return std::nullopt;
  return std::string(value);
}

Status Message::plain_ack(const char* body, bool sync, const char* what) {
  const std::string_view rep = reply();
  if (rep.rfind("$JS.ACK.", 0) != 0 || nc_ == nullptr) {
    return Status::invalid_argument(std::string(what) + ": not a JetStream delivery (" + std::string(subject()) + ")");
  }
  const std::string r(rep);
  if (!sync) return make_status(natsConnection_PublishString(nc_, r.c_str(), body), 0, what);
  natsMsg* confirmation = nullptr;
  natsStatus s = natsConnection_RequestString(&confirmation, nc_, r.c_str(), body, 5000);
  natsMsg_Destroy(confirmation);
  return make_status(s, 0, what);
}

Status Message::ack() {
  if (!msg_) return Status::invalid_argument("ack: empty message");
  if (!jetstream_) return plain_ack("+ACK", false, "ack");
  return make_status(natsMsg_Ack(msg_.get(), nullptr), 0, "ack");
}

Status Message::ack_sync() {
  if (!msg_) return Status::invalid_argument("ack: empty message");
  if (!jetstream_) return plain_ack("+ACK", true, "ack (sync)");
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = natsMsg_AckSync(msg_.get(), nullptr, &jerr);
  return make_status(s, static_cast<int>(jerr), "ack (sync)");
}

Status Message::nak() {
  if (!msg_) return Status::invalid_argument("nak: empty message");
  if (!jetstream_) return plain_ack("-NAK", false, "nak");
  return make_status(natsMsg_Nak(msg_.get(), nullptr), 0, "nak");
}

Status Message::term() {
  if (!msg_) return Status::invalid_argument("term: empty message");
  if (!jetstream_) return plain_ack("+TERM", false, "term");
  return make_status(natsMsg_Term(msg_.get(), nullptr), 0, "term");
}

Status Message::in_progress() {
  if (!msg_) return Status::invalid_argument("in_progress: empty message");
  if (!jetstream_) return plain_ack("+WPI", false, "in_progress");
  return make_status(natsMsg_InProgress(msg_.get(), nullptr), 0, "in_progress");
}

Result<JsMetadata> Message::metadata() const {
  if (!msg_) return Status::invalid_argument("metadata: empty message");
  jsMsgMetaData* meta = nullptr;
  natsStatus s = natsMsg_GetMetaData(&meta, msg_.get());
  if (s != NATS_OK) return make_status(s, 0, "jetstream metadata of " + std::string(subject()));
  JsMetadata out;
  out.stream = meta->Stream != nullptr ? meta->Stream : "";
  out.consumer = meta->Consumer != nullptr ? meta->Consumer : "";
  out.stream_seq = meta->Sequence.Stream;
  out.consumer_seq = meta->Sequence.Consumer;
  out.num_delivered = meta->NumDelivered;
  out.num_pending = meta->NumPending;
  jsMsgMetaData_Destroy(meta);
  return out;
}

// ---------------------------------------------------------------------------
// Subscription
//
// Lifetime. cnats may still be inside the message handler (or about to enter
// it one last time) when natsSubscription_Unsubscribe returns; nats.c
// documents natsSubscription_SetOnCompleteCB for exactly this: the complete
// callback runs on the delivery thread after the subscription is closed (by
// unsubscribe, drain or the connection closing) and the handler has returned
// for the last time. So the destructor unsubscribes, then waits for
// `complete`, and only then frees State (which owns the handler). When the
// destructor runs inside the handler itself, waiting would deadlock; it then
// hands State to the complete callback, which frees it.

struct Subscription::State {
  MessageHandler handler;
  natsSubscription* sub = nullptr;
  bool jetstream = false;  // a cnats JetStream subscription (cnats handles control messages)
  std::atomic<std::thread::id> handler_thread{};  // set while the handler runs
  std::mutex mu;
  std::condition_variable cv;
  bool complete = false;  // guarded by mu: the handler will never run again
  bool orphaned = false;  // guarded by mu: the complete callback frees State
};

namespace {

// A push consumer's flow-control request or idle heartbeat: no payload and
// a "100" status line. Answers what needs an answer; true when handled.
bool handle_jetstream_control(natsConnection* nc, natsMsg* m) {
  if (natsMsg_GetDataLength(m) > 0) return false;
  const char* status = nullptr;
  if (natsMsgHeader_Get(m, "Status", &status) != NATS_OK || status == nullptr ||
      std::strcmp(status, "100") != 0) {
    return false;
  }
  const char* description = nullptr;
  (void)natsMsgHeader_Get(m, "Description", &description);
  const char* reply = natsMsg_GetReply(m);
  if (description != nullptr && std::strncmp(description, "FlowControl", 11) == 0) {
    if (reply != nullptr && *reply) (void)natsConnection_Publish(nc, reply, nullptr, 0);
    return true;
  }
  // An idle heartbeat; when the consumer says it stalled on flow control,
  // its header names the subject that releases it.
  const char* stalled = nullptr;
  if (natsMsgHeader_Get(m, "Nats-Consumer-Stalled", &stalled) == NATS_OK && stalled != nullptr && *stalled) {
    (void)natsConnection_Publish(nc, stalled, nullptr, 0);
  }
  return true;
}

void on_subscription_message(natsConnection* nc, natsSubscription*, natsMsg* m, void* closure) {
  auto* st = static_cast<Subscription::State*>(closure);
  Message msg(m, nc, st->jetstream);  // owns m from here, whatever the handler does
  if (m == nullptr) return;
  if (!st->jetstream && handle_jetstream_control(nc, m)) return;
  st->handler_thread.store(std::this_thread::get_id());
  guarded("message handler", [&] { st->handler(std::move(msg)); });
  st->handler_thread.store(std::thread::id());
}

void on_subscription_complete(void* closure) {
  auto* st = static_cast<Subscription::State*>(closure);
  bool orphaned = false;
  {
    std::lock_guard<std::mutex> lock(st->mu);
    st->complete = true;
    orphaned = st->orphaned;
  }
  if (orphaned) {
    natsSubscription_Destroy(st->sub);
    delete st;
    return;
  }
  st->cv.notify_all();
}

// Creates the State, lets `subscribe` create the cnats subscription with our
// callbacks, and registers the completion callback.
template <typename F>
Result<std::unique_ptr<Subscription::State>> make_subscription_state(MessageHandler handler,
                                                                     F&& subscribe) {
  auto st = std::make_unique<Subscription::State>();
  st->handler = std::move(handler);
  DS_RETURN_IF_ERROR(subscribe(st.get()));
  natsStatus s = natsSubscription_SetOnCompleteCB(st->sub, on_subscription_complete, st.get());
  if (s != NATS_OK) {
    // Closed before we could register (the connection closed under us): we
    // cannot know when the handler stops, so State must outlive it.
    Status err = make_status(s, 0, "subscription closed while being set up");
    natsSubscription_Destroy(st->sub);
    (void)st.release();  // intentional leak, see above
    return err;
  }
  return st;
}

}  // namespace

Subscription::Subscription(std::unique_ptr<State> state) : state_(std::move(state)) {}

Subscription::~Subscription() {
  if (!state_) return;
  State* st = state_.get();
  // Errors are expected when the connection is already closed; the
  // subscription is closed then too, and the complete callback still runs.
  (void)natsSubscription_Unsubscribe(st->sub);
  if (st->handler_thread.load() == std::this_thread::get_id()) {
    std::lock_guard<std::mutex> lock(st->mu);
    if (!st->complete) {
      st->orphaned = true;
      (void)state_.release();
      return;
    }
  }
  {
    std::unique_lock<std::mutex> lock(st->mu);
    while (!st->cv.wait_for(lock, std::chrono::seconds(10), [st] { return st->complete; })) {
      spdlog::warn("nats: still waiting for the handler of a closed subscription to return");
    }
  }
  natsSubscription_Destroy(st->sub);
}

Status Subscription::drain() {
  if (!state_) return Status::invalid_argument("drain: no subscription");
  natsStatus s = natsSubscription_Drain(state_->sub);
  if (s != NATS_OK) return make_status(s, 0, "drain subscription");
  if (state_->handler_thread.load() == std::this_thread::get_id()) return Status::ok();
  DS_RETURN_IF_ERROR(make_status(natsSubscription_WaitForDrainCompletion(state_->sub, 30000), 0,
                                 "wait for subscription drain"));
  // Drain completion is signalled before cnats closes the subscription; the
  // complete callback is the last thing it does, so wait for that too.
  std::unique_lock<std::mutex> lock(state_->mu);
  if (!state_->cv.wait_for(lock, std::chrono::seconds(30), [this] { return state_->complete; })) {
    return Status::deadline_exceeded("drain: subscription did not close within 30 s");
  }
  return Status::ok();
}

bool Subscription::valid() const {
  if (!state_) return false;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->complete) return false;
  }
  return natsSubscription_IsValid(state_->sub);
}

// ---------------------------------------------------------------------------
// Connection
//
// Lifetime of Callbacks: cnats invokes connection callbacks from its async
// callback thread, and the reconnect-delay callback from the reconnect
// thread. natsConnection_Close joins the connection's own threads and then
// posts the closed callback, which is the last one cnats posts for the
// connection; callbacks are run in order. So the destructor closes, waits
// for the closed callback, and only then frees Callbacks.

struct Connection::Callbacks {
  std::function<void()> on_disconnected;
  std::function<void()> on_reconnected;
  std::function<void(const std::string&)> on_async_error;
  int64_t reconnect_wait_ms = 250;
  int64_t max_reconnect_wait_ms = 5000;
  std::minstd_rand rng{std::random_device{}()};  // only the reconnect thread uses it

  std::function<void(int, int64_t)> on_retry;
  std::function<void(const Status&)> on_closed;
  // Sign the server's nonce at each (re)connect: at most one is set.
  std::string nkey_seed_file;  // a seed file ("" = none)
  std::string creds_file;      // a .creds file: its JWT goes into CONNECT, its seed signs ("" = none)
  // The public key of the JWT the JWT callback handed cnats for the attempt
  // under way (JWT callback and signing run one after the other on the
  // thread making the attempt; the mutex covers the reconnect thread taking
  // over from connect()).
  std::mutex creds_mu;
  std::string creds_public_key;  // guarded by creds_mu
  // Attempts dropped before CONNECT because a new attempt fixes them: the
  // signature began with a zero byte, or the creds file changed between
  // reading its JWT and signing.
  std::atomic<uint64_t> zero_byte_signatures{0};
  std::atomic<bool> shutting_down{false};  // user callbacks are skipped from here on
  // While connect() checks that cnats' background retry got going (see
  // there): a close then is connect()'s to handle, not the owner's.
  std::atomic<bool> probing{false};
  std::mutex mu;
  std::condition_variable cv;
  bool closed = false;       // guarded by mu
  bool retry_alive = false;   // guarded by mu: the background retry waited, or connected
};

namespace {

using Callbacks = Connection::Callbacks;

// The seed's signature of the nonce: from the seed file, or from the creds
// file whose JWT the JWT callback handed cnats for this attempt.
// Unavailable (a new attempt fixes it) when the creds file now holds another
// key than that JWT's.
Result<std::vector<unsigned char>> sign_for_attempt(Callbacks* cb, const char* nonce) {
  if (cb->creds_file.empty()) return sign_nonce(cb->nkey_seed_file, nonce);
  DS_ASSIGN_OR_RETURN(UserCreds creds, read_creds_file(cb->creds_file));
  {
    std::lock_guard<std::mutex> lock(cb->creds_mu);
    if (creds.public_key != cb->creds_public_key) {
      return Status::unavailable("creds file " + cb->creds_file +
                                 " changed between reading its JWT and signing; the next attempt reads it again");
    }
  }
  auto sig = sign_nonce_with_seed(creds.seed, nonce);
  if (!sig.is_ok()) return sig.status().with_context("creds file " + cb->creds_file);
  return sig;
}

// cnats' user JWT callback (creds_file): the JWT of the file as it is now.
natsStatus user_jwt_cb(char** user_jwt, char** custom_error, void* closure) {
  auto* cb = static_cast<Callbacks*>(closure);
  auto creds = read_creds_file(cb->creds_file);
  if (!creds.is_ok()) {
    *custom_error = ::strdup(creds.status().message().c_str());
    return NATS_ERR;
  }
  {
    std::lock_guard<std::mutex> lock(cb->creds_mu);
    cb->creds_public_key = creds->public_key;
  }
  *user_jwt = ::strdup(creds->jwt.c_str());  // cnats frees it with free()
  return *user_jwt != nullptr ? NATS_OK : NATS_NO_MEMORY;
}

// cnats' signature callback, for seed files and creds files alike.
natsStatus sign_nonce_cb(char** custom_error, unsigned char** signature, int* length, const char* nonce,
                         void* closure) {
  auto* cb = static_cast<Callbacks*>(closure);
  // A server without authorization sends no nonce, and cnats still asks for
  // a signature: sign the empty nonce (the server ignores it).
  auto sig = sign_for_attempt(cb, nonce != nullptr ? nonce : "");
  if (!sig.is_ok()) {
    if (sig.status().code() == StatusCode::kUnavailable) cb->zero_byte_signatures.fetch_add(1);
    *custom_error = ::strdup(sig.status().message().c_str());
    return NATS_ERR;
  }
  if ((*sig)[0] == 0) {
    // cnats 3.4.1 would send this signature empty (its base64 encoder stops
    // at a leading zero byte) and the server would refuse it. Failing here
    // ends the attempt before CONNECT goes out; the next attempt is a new
    // connection with a new nonce. Not an auth error to cnats, so it never
    // counts towards its "same auth error twice" abort.
    cb->zero_byte_signatures.fetch_add(1);
    spdlog::debug("nats: the nonce's signature begins with a zero byte; retrying with a new nonce");
    *custom_error = ::strdup("nkey signature begins with a zero byte, which cnats 3.4 would send empty; "
                             "this attempt is dropped and the next one signs a new nonce");
    return NATS_ERR;
  }
  // cnats frees the signature with free().
  *signature = static_cast<unsigned char*>(std::malloc(sig->size()));
  if (*signature == nullptr) return NATS_NO_MEMORY;
  std::memcpy(*signature, sig->data(), sig->size());
  *length = static_cast<int>(sig->size());
  sodium_memzero(sig->data(), sig->size());
  return NATS_OK;
}

void on_disconnected_cb(natsConnection*, void* closure) {
  auto* cb = static_cast<Callbacks*>(closure);
  if (cb->shutting_down.load() || !cb->on_disconnected) return;
  guarded("on_disconnected", [&] { cb->on_disconnected(); });
}

// For connect(): cnats' background retry is under way (see there).
void mark_retry_alive(Callbacks* cb) {
  {
    std::lock_guard<std::mutex> lock(cb->mu);
    cb->retry_alive = true;
  }
  cb->cv.notify_all();
}

void on_reconnected_cb(natsConnection*, void* closure) {
  auto* cb = static_cast<Callbacks*>(closure);
  mark_retry_alive(cb);
  if (cb->shutting_down.load() || !cb->on_reconnected) return;
  guarded("on_reconnected", [&] { cb->on_reconnected(); });
}

void on_closed_cb(natsConnection* nc, void* closure) {
  auto* cb = static_cast<Callbacks*>(closure);
  if (!cb->shutting_down.load() && !cb->probing.load()) {
    // cnats gave up by itself. Its last error says why.
    const char* text = nullptr;
    const natsStatus err = nc != nullptr ? natsConnection_GetLastError(nc, &text) : NATS_OK;
    std::string msg = "nats connection closed for good";
    if (err != NATS_OK) msg += std::string(": ") + natsStatus_GetText(err);
    if (text != nullptr && *text != '\0' && (err == NATS_OK || std::strcmp(text, natsStatus_GetText(err)) != 0)) {
      msg += std::string(": ") + text;
    }
    Status status = classify(err == NATS_OK ? NATS_CONNECTION_CLOSED : err, 0, std::move(msg));
    spdlog::error("nats: {}", status.message());
    if (cb->on_closed) guarded("on_closed", [&] { cb->on_closed(status); });
  }
  {
    std::lock_guard<std::mutex> lock(cb->mu);
    cb->closed = true;
  }
  cb->cv.notify_all();
}

void on_error_cb(natsConnection* nc, natsSubscription* sub, natsStatus err, void* closure) {
  auto* cb = static_cast<Callbacks*>(closure);
  std::string text = natsStatus_GetText(err);
  const char* last = nullptr;
  if (nc != nullptr && natsConnection_GetLastError(nc, &last) != NATS_OK && last != nullptr && *last) {
    text += ": ";
    text += last;
  }
  if (sub != nullptr) {
    const char* subj = natsSubscription_GetSubject(sub);
    if (subj != nullptr) text += std::string(" (subscription ") + subj + ")";
  }
  if (cb->shutting_down.load()) return;
  if (!cb->on_async_error) {
    spdlog::warn("nats: asynchronous error: {}", text);
    return;
  }
  guarded("on_async_error", [&] { cb->on_async_error(text); });
}

int64_t reconnect_delay_cb(natsConnection*, int attempts, void* closure) {
  auto* cb = static_cast<Callbacks*>(closure);
  int64_t delay = std::max<int64_t>(cb->reconnect_wait_ms, 1);
  for (int i = 1; i < attempts && delay < cb->max_reconnect_wait_ms; ++i) delay *= 2;
  delay = std::min(delay, std::max(cb->max_reconnect_wait_ms, cb->reconnect_wait_ms));
  // Up to 10% jitter so a fleet does not reconnect in lockstep.
  const int64_t jitter_span = delay / 10;
  if (jitter_span > 0) {
    std::uniform_int_distribution<int64_t> dist(0, jitter_span);
    delay += dist(cb->rng);
  }
  if (cb->on_retry && !cb->shutting_down.load()) guarded("on_retry", [&] { cb->on_retry(attempts, delay); });
  mark_retry_alive(cb);
  return delay;
}

struct OptionsDeleter {
  void operator()(natsOptions* o) const { natsOptions_Destroy(o); }
};

}  // namespace

Result<std::unique_ptr<Connection>> Connection::connect(ConnectOptions opts) {
  const NatsConfig& cfg = opts.config;
  natsOptions* raw_opts = nullptr;
  natsStatus s = natsOptions_Create(&raw_opts);
  if (s != NATS_OK) return make_status(s, 0, "nats options");
  std::unique_ptr<natsOptions, OptionsDeleter> o(raw_opts);

  auto cb = std::make_unique<Callbacks>();
  cb->on_disconnected = std::move(opts.on_disconnected);
  cb->on_reconnected = std::move(opts.on_reconnected);
  cb->on_async_error = std::move(opts.on_async_error);
  cb->on_retry = std::move(opts.on_retry);
  cb->on_closed = std::move(opts.on_closed);
  cb->reconnect_wait_ms = opts.reconnect_wait_ms;
  cb->max_reconnect_wait_ms = opts.max_reconnect_wait_ms;

  auto check = [](natsStatus st, const char* what) { return make_status(st, 0, what); };
  const std::vector<std::string> urls = split_urls(cfg.url);
  if (urls.empty()) return Status::invalid_argument("nats url is empty");
  std::vector<const char*> url_ptrs;
  for (const auto& u : urls) url_ptrs.push_back(u.c_str());
  DS_RETURN_IF_ERROR(check(
      natsOptions_SetServers(o.get(), url_ptrs.data(), static_cast<int>(url_ptrs.size())), "nats url"));
  if (!opts.name.empty()) DS_RETURN_IF_ERROR(check(natsOptions_SetName(o.get(), opts.name.c_str()), "name"));
  if (!cfg.user.empty()) {
    DS_RETURN_IF_ERROR(check(natsOptions_SetUserInfo(o.get(), cfg.user.c_str(), cfg.password.c_str()),
                             "user/password"));
  }
  if (!cfg.creds_file.empty()) {
    // Read here once to refuse a bad file at once, naming it; the callbacks
    // read it again at every (re)connect, as cnats' own reading would.
    DS_ASSIGN_OR_RETURN(UserCreds creds, read_creds_file(cfg.creds_file));
    if (creds.expires_at != 0 && creds.expires_at <= static_cast<int64_t>(std::time(nullptr))) {
      return Status::permission_denied("creds file " + cfg.creds_file + ": the user JWT" +
                                       (creds.name.empty() ? "" : " '" + creds.name + "'") + " expired at " +
                                       std::to_string(creds.expires_at) +
                                       " (Unix time); nats-server refuses it: issue a new one");
    }
    cb->creds_file = cfg.creds_file;
    DS_RETURN_IF_ERROR(check(natsOptions_SetUserCredentialsCallbacks(o.get(), user_jwt_cb, cb.get(), sign_nonce_cb,
                                                                     cb.get()),
                             "creds file"));
  }
  if (!cfg.nkey_seed_file.empty()) {
    DS_ASSIGN_OR_RETURN(std::string public_key, nkey_public_key_from_seed_file(cfg.nkey_seed_file));
    cb->nkey_seed_file = cfg.nkey_seed_file;
    DS_RETURN_IF_ERROR(
        check(natsOptions_SetNKey(o.get(), public_key.c_str(), sign_nonce_cb, cb.get()), "nkey seed file"));
  }
  if (!cfg.tls_ca_file.empty() || !cfg.tls_cert_file.empty() || !cfg.tls_key_file.empty()) {
    DS_RETURN_IF_ERROR(check(natsOptions_SetSecure(o.get(), true), "tls"));
    if (!cfg.tls_ca_file.empty()) {
      DS_RETURN_IF_ERROR(check(natsOptions_LoadCATrustedCertificates(o.get(), cfg.tls_ca_file.c_str()),
                               "tls ca file"));
    }
    if (!cfg.tls_cert_file.empty() || !cfg.tls_key_file.empty()) {
      DS_RETURN_IF_ERROR(check(natsOptions_LoadCertificatesChain(o.get(), cfg.tls_cert_file.c_str(),
                                                                 cfg.tls_key_file.c_str()),
                               "tls certificate/key"));
    }
  }
  if (!opts.inbox_prefix.empty()) {
    DS_RETURN_IF_ERROR(check(natsOptions_SetCustomInboxPrefix(o.get(), opts.inbox_prefix.c_str()), "inbox prefix"));
  }
  DS_RETURN_IF_ERROR(check(natsOptions_SetTimeout(o.get(), opts.connect_timeout_ms), "connect timeout"));
  DS_RETURN_IF_ERROR(check(natsOptions_SetMaxReconnect(o.get(), -1), "max reconnect"));
  DS_RETURN_IF_ERROR(check(natsOptions_SetCustomReconnectDelay(o.get(), reconnect_delay_cb, cb.get()),
                           "reconnect delay"));
  DS_RETURN_IF_ERROR(check(natsOptions_SetDisconnectedCB(o.get(), on_disconnected_cb, cb.get()), "callbacks"));
  DS_RETURN_IF_ERROR(check(natsOptions_SetReconnectedCB(o.get(), on_reconnected_cb, cb.get()), "callbacks"));
  DS_RETURN_IF_ERROR(check(natsOptions_SetClosedCB(o.get(), on_closed_cb, cb.get()), "callbacks"));
  DS_RETURN_IF_ERROR(check(natsOptions_SetErrorHandler(o.get(), on_error_cb, cb.get()), "callbacks"));
  // The first attempts are made here, without cnats' background retry: when
  // a first attempt that reached the server fails (a zero-byte signature)
  // with retry on, cnats 3.4.1's background retry closes the connection for
  // good at once ("No server available"). Only when the server cannot be
  // reached is the background retry switched on (retry_on_failed_connect).
  natsConnection* nc = nullptr;
  for (int attempt = 1;; ++attempt) {
    const uint64_t dropped_before = cb->zero_byte_signatures.load();
    s = natsConnection_Connect(&nc, o.get());
    if (s == NATS_OK) break;
    // No connection object exists, so no callback can reach `cb` any more.
    const bool only_the_signature = cb->zero_byte_signatures.load() != dropped_before;
    if (only_the_signature && attempt < kMaxSignatureAttempts) continue;
    if (only_the_signature || !opts.retry_on_failed_connect) return make_status(s, 0, "connect to " + cfg.url);
    // With a connected callback, natsConnection_Connect returns at once
    // (NATS_NOT_YET_CONNECTED) and keeps trying in the background.
    DS_RETURN_IF_ERROR(check(natsOptions_SetRetryOnFailedConnect(o.get(), true, on_reconnected_cb, cb.get()),
                             "retry on failed connect"));
    cb->probing.store(true);
    s = natsConnection_Connect(&nc, o.get());
    if (s == NATS_OK) {
      cb->probing.store(false);
      break;
    }
    if (s != NATS_NOT_YET_CONNECTED) {
      cb->probing.store(false);
      return make_status(s, 0, "connect to " + cfg.url);
    }
    // cnats 3.4.1: when the attempt natsConnection_Connect makes before
    // going to the background reached a server whose handshake then failed
    // (it was going down, or coming up), that attempt forgets its server and
    // the background retry closes the connection for good at once ("No
    // server available"), before it ever waits. So: wait for its first
    // wait (or a connection), and on such a close, start over.
    bool gave_up = false;
    {
      std::unique_lock<std::mutex> lock(cb->mu);
      cb->cv.wait_for(lock, std::chrono::milliseconds(opts.connect_timeout_ms + 1000),
                      [&] { return cb->closed || cb->retry_alive; });
      gave_up = cb->closed;
      cb->closed = false;
    }
    cb->probing.store(false);
    if (!gave_up) break;
    natsConnection_Destroy(nc);  // closed: no callback reaches `cb` any more
    nc = nullptr;
    DS_RETURN_IF_ERROR(check(natsOptions_SetRetryOnFailedConnect(o.get(), false, nullptr, nullptr),
                             "retry on failed connect"));
    spdlog::warn("nats: {} went away during the handshake of the first connect; trying again in {} ms", cfg.url,
                 opts.reconnect_wait_ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(std::max<int64_t>(opts.reconnect_wait_ms, 1)));
  }
  std::unique_ptr<Connection> conn(new Connection());
  conn->nc_ = nc;
  conn->callbacks_ = std::move(cb);
  conn->inbox_prefix_ = opts.inbox_prefix;
  return conn;
}

Connection::~Connection() {
  if (nc_ == nullptr) return;
  Callbacks* cb = callbacks_.get();
  cb->shutting_down.store(true);
  natsConnection_Close(nc_);
  bool closed = false;
  {
    std::unique_lock<std::mutex> lock(cb->mu);
    closed = cb->cv.wait_for(lock, std::chrono::seconds(10), [cb] { return cb->closed; });
  }
  natsConnection_Destroy(nc_);
  if (!closed) {
    // cnats may still call into Callbacks; a small leak beats a use-after-free.
    spdlog::warn("nats: closed callback did not arrive; leaking connection callbacks");
    (void)callbacks_.release();
  }
}

Status Connection::publish(std::string_view subject, std::string_view data, const Headers& headers) {
  const std::string subj = str(subject);
  if (headers.empty()) {
    return make_status(natsConnection_Publish(nc_, subj.c_str(), data.data(), static_cast<int>(data.size())), 0,
                       "publish to " + subj);
  }
  DS_ASSIGN_OR_RETURN(MsgPtr m, build_msg(subject, {}, data, headers));
  return make_status(natsConnection_PublishMsg(nc_, m.get()), 0, "publish to " + subj);
}

Status Connection::publish_request(std::string_view subject, std::string_view reply, std::string_view data) {
  const std::string subj = str(subject);
  const std::string rep = str(reply);
  return make_status(natsConnection_PublishRequest(nc_, subj.c_str(), rep.c_str(), data.data(),
                                                   static_cast<int>(data.size())),
                     0, "publish request to " + subj);
}

Status Connection::respond(const Message& request, std::string_view data, const Headers& headers) {
  if (request.reply().empty()) return Status::ok();
  return publish(request.reply(), data, headers);
}

Result<Message> Connection::request(std::string_view subject, std::string_view data, int64_t timeout_ms,
                                    const Headers& headers) {
  const std::string subj = str(subject);
  DS_ASSIGN_OR_RETURN(MsgPtr m, build_msg(subject, {}, data, headers));
  natsMsg* reply = nullptr;
  natsStatus s = natsConnection_RequestMsg(&reply, nc_, m.get(), timeout_ms);
  if (s != NATS_OK) return make_status(s, 0, "request to " + subj);
  return Message(reply);
}

Result<std::unique_ptr<Subscription>> Connection::subscribe(std::string_view subject, MessageHandler handler) {
  const std::string subj = str(subject);
  auto st = make_subscription_state(std::move(handler), [&](Subscription::State* state) {
    return make_status(natsConnection_Subscribe(&state->sub, nc_, subj.c_str(), on_subscription_message, state),
                       0, "subscribe to " + subj);
  });
  if (!st.is_ok()) return st.status();
  return std::unique_ptr<Subscription>(new Subscription(std::move(st).value()));
}

Result<std::unique_ptr<Subscription>> Connection::queue_subscribe(std::string_view subject, std::string_view queue,
                                                                  MessageHandler handler) {
  const std::string subj = str(subject);
  const std::string q = str(queue);
  auto st = make_subscription_state(std::move(handler), [&](Subscription::State* state) {
    return make_status(natsConnection_QueueSubscribe(&state->sub, nc_, subj.c_str(), q.c_str(),
                                                     on_subscription_message, state),
                       0, "queue subscribe to " + subj);
  });
  if (!st.is_ok()) return st.status();
  return std::unique_ptr<Subscription>(new Subscription(std::move(st).value()));
}

Status Connection::flush(int64_t timeout_ms) {
  return make_status(natsConnection_FlushTimeout(nc_, timeout_ms), 0, "flush");
}

bool Connection::connected() const { return natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED; }

int64_t Connection::max_payload() const { return natsConnection_GetMaxPayload(nc_); }
bool Connection::closed() const { return natsConnection_IsClosed(nc_); }

std::string Connection::new_inbox() const {
  // natsInbox_Create ignores the connection's custom prefix: it always
  // yields "_INBOX.<nuid>". Keep its unique part and put our prefix on it.
  natsInbox* inbox = nullptr;
  if (natsInbox_Create(&inbox) != NATS_OK || inbox == nullptr) {
    spdlog::error("nats: natsInbox_Create failed");
    return {};
  }
  std::string unique = inbox;
  natsInbox_Destroy(inbox);
  if (inbox_prefix_.empty()) return unique;
  const auto dot = unique.rfind('.');
  return inbox_prefix_ + "." + unique.substr(dot + 1);
}

// ---------------------------------------------------------------------------
// JetStream

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
  MsgPtr owned(msg);
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
  uint64_t reconnects = 0;
  if (natsConnection_GetStats(nc, raw) == NATS_OK) {
    (void)natsStatistics_GetCounts(raw, nullptr, nullptr, nullptr, nullptr, &reconnects);
  }
  natsStatistics_Destroy(raw);
  return reconnects;
}

// wait_published() waits in slices of this, to notice a reconnect.
constexpr int64_t kAckPollMs = 100;

struct StreamInfoDeleter {
  void operator()(jsStreamInfo* si) const { jsStreamInfo_Destroy(si); }
};
struct ConsumerInfoDeleter {
  void operator()(jsConsumerInfo* ci) const { jsConsumerInfo_Destroy(ci); }
};

Result<StoredMessage> stored_message(natsMsg* raw) {
  MsgPtr m(raw);
  StoredMessage out;
  out.seq = natsMsg_GetSequence(m.get());
  const char* subj = natsMsg_GetSubject(m.get());
  out.subject = subj != nullptr ? subj : "";
  const char* d = natsMsg_GetData(m.get());
  const int n = natsMsg_GetDataLength(m.get());
  if (d != nullptr && n > 0) out.data.assign(d, static_cast<size_t>(n));
  const char* id = nullptr;
  if (natsMsgHeader_Get(m.get(), "Nats-Msg-Id", &id) == NATS_OK && id != nullptr) out.msg_id = id;
  return out;
}

constexpr int64_t kNanosPerMilli = 1000000;

}  // namespace

Result<std::unique_ptr<JetStream>> Connection::jetstream(int64_t timeout_ms) {
  auto errors = std::make_unique<JetStream::AsyncErrors>();
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = timeout_ms;
  jo.PublishAsync.MaxPending = 4096;
  jo.PublishAsync.AckHandler = on_async_publish_ack;
  jo.PublishAsync.AckHandlerClosure = errors.get();
  std::unique_ptr<JetStream> js(new JetStream(nc_, std::move(errors)));
  natsStatus s = natsConnection_JetStream(&js->js_, nc_, &jo);
  if (s != NATS_OK) return make_status(s, 0, "jetstream context");
  return js;
}

JetStream::JetStream(natsConnection* nc, std::unique_ptr<AsyncErrors> errors)
    : nc_(nc), async_errors_(std::move(errors)) {}

JetStream::~JetStream() {
  if (js_ == nullptr) return;
  // cnats calls the async error handler before it counts a publish as
  // done, so once nothing is pending the handler cannot touch AsyncErrors.
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 5000;
  if (js_PublishAsyncComplete(js_, &po) != NATS_OK) {
    spdlog::warn("nats: jetstream context destroyed with unacknowledged async publishes");
    (void)async_errors_.release();  // the handler may still run; leak rather than dangle
  }
  jsCtx_Destroy(js_);
}

Status JetStream::api_status(int s, int js_err, std::string_view context, std::string_view stream) const {
  Status st = make_status(static_cast<natsStatus>(s), js_err, context);
  if (st.code() != StatusCode::kDeadlineExceeded && st.code() != StatusCode::kUnavailable) return st;
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

  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_AddStream(&si, js_, &cfg, nullptr, &jerr);
  if (s == NATS_OK) {
    jsStreamInfo_Destroy(si);
    return Status::ok();
  }
  if (jerr != JSStreamNameExistErr) return api_status(s, jerr, "create stream " + spec.name, spec.name);
  // It exists with another config: bring it to ours. Storage type cannot
  // change in place; the server rejects that and we report it.
  jerr = static_cast<jsErrCode>(0);
  s = js_UpdateStream(&si, js_, &cfg, nullptr, &jerr);
  if (s == NATS_OK) {
    jsStreamInfo_Destroy(si);
    return Status::ok();
  }
  return api_status(s, jerr, "update stream " + spec.name, spec.name);
}

Status JetStream::delete_stream(std::string_view name) {
  const std::string n = str(name);
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_DeleteStream(js_, n.c_str(), nullptr, &jerr);
  return s == NATS_OK ? Status::ok() : api_status(s, jerr, "delete stream " + n, n);
}

Result<StreamState> JetStream::stream_state(std::string_view name) {
  const std::string n = str(name);
  jsStreamInfo* raw = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&raw, js_, n.c_str(), nullptr, &jerr);
  if (s != NATS_OK) return api_status(s, jerr, "stream info " + n, n);
  std::unique_ptr<jsStreamInfo, StreamInfoDeleter> si(raw);
  StreamState out;
  out.first_seq = si->State.FirstSeq;
  out.last_seq = si->State.LastSeq;
  out.messages = si->State.Msgs;
  out.bytes = si->State.Bytes;
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
  natsStatus s = js_Publish(&pa, js_, subj.c_str(), data.data(), static_cast<int>(data.size()), &po, &jerr);
  if (s != NATS_OK) return api_status(s, jerr, "jetstream publish to " + subj);
  PubAck out{pa->Sequence, pa->Duplicate};
  jsPubAck_Destroy(pa);
  return out;
}

int64_t JetStream::max_payload() const { return natsConnection_GetMaxPayload(nc_); }

Status JetStream::publish_async(std::string_view subject, std::string_view data, std::string_view msg_id) {
  const std::string subj = str(subject);
  const std::string id = str(msg_id);
  jsPubOptions po;
  jsPubOptions_Init(&po);
  if (!id.empty()) po.MsgId = id.c_str();  // copied into the message header by cnats
  {
    std::lock_guard<std::mutex> lock(async_errors_->mu);
    if (!async_errors_->reconnects_at_send) async_errors_->reconnects_at_send = reconnect_count(nc_);
  }
  natsStatus s = js_PublishAsync(js_, subj.c_str(), data.data(), static_cast<int>(data.size()), &po);
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
    s = js_PublishAsyncComplete(js_, &po);
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
    natsMsgList pending;
    if (js_PublishAsyncGetPendingList(&pending, js_) == NATS_OK) {
      pending_count = pending.Count;
      natsMsgList_Destroy(&pending);
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
  natsStatus s = js_AddConsumer(&ci, js_, st.c_str(), &cc, nullptr, &jerr);
  if (s != NATS_OK) return api_status(s, jerr, "add consumer " + spec.durable + " on " + st, st);
  jsConsumerInfo_Destroy(ci);
  return Status::ok();
}

Status JetStream::delete_consumer(std::string_view stream, std::string_view name) {
  const std::string st = str(stream);
  const std::string n = str(name);
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_DeleteConsumer(js_, st.c_str(), n.c_str(), nullptr, &jerr);
  return s == NATS_OK ? Status::ok() : api_status(s, jerr, "delete consumer " + n + " on " + st, st);
}

Result<bool> JetStream::consumer_exists(std::string_view stream, std::string_view name) {
  const std::string st = str(stream);
  const std::string n = str(name);
  jsConsumerInfo* raw = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetConsumerInfo(&raw, js_, st.c_str(), n.c_str(), nullptr, &jerr);
  std::unique_ptr<jsConsumerInfo, ConsumerInfoDeleter> ci(raw);
  if (s == NATS_OK) return true;
  if (jerr == JSConsumerNotFoundErr) return false;
  return api_status(s, jerr, "consumer info " + n + " on " + st, st);
}

Result<std::vector<std::string>> JetStream::consumer_names(std::string_view stream) {
  const std::string st = str(stream);
  jsConsumerNamesList* list = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_ConsumerNames(&list, js_, st.c_str(), nullptr, &jerr);
  std::vector<std::string> out;
  // cnats reports an empty list as NATS_NOT_FOUND without a JetStream error.
  if (s == NATS_NOT_FOUND && jerr == 0) return out;
  if (s != NATS_OK) return api_status(s, jerr, "consumer names on " + st, st);
  for (int i = 0; i < list->Count; ++i) out.emplace_back(list->List[i]);
  jsConsumerNamesList_Destroy(list);
  return out;
}

Result<StoredMessage> JetStream::get_message(std::string_view stream, uint64_t seq) {
  const std::string st = str(stream);
  natsMsg* m = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetMsg(&m, js_, st.c_str(), seq, nullptr, &jerr);
  if (s != NATS_OK) return api_status(s, jerr, "get message " + std::to_string(seq) + " from " + st, st);
  return stored_message(m);
}

Result<StoredMessage> JetStream::get_last_message(std::string_view stream, std::string_view subject) {
  const std::string st = str(stream);
  const std::string subj = str(subject);
  natsMsg* m = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetLastMsg(&m, js_, st.c_str(), subj.c_str(), nullptr, &jerr);
  if (s != NATS_OK) return api_status(s, jerr, "get last message on " + subj + " from " + st, st);
  return stored_message(m);
}

Result<std::unique_ptr<Subscription>> JetStream::bind_push(std::string_view stream, std::string_view consumer,
                                                           std::string_view deliver_subject,
                                                           MessageHandler handler) {
  const std::string st = str(stream);
  const std::string cons = str(consumer);
  const std::string deliver = str(deliver_subject);
  auto state = make_subscription_state(std::move(handler), [&](Subscription::State* sub_state) {
    sub_state->jetstream = true;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = st.c_str();
    so.Consumer = cons.c_str();
    so.ManualAck = true;
    // cnats compares the options with the consumer's config when binding;
    // the hub creates agents' consumers in memory, so we must say so too.
    so.Config.MemoryStorage = true;
    if (!deliver.empty()) so.Config.DeliverSubject = deliver.c_str();
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_Subscribe(&sub_state->sub, js_, nullptr, on_subscription_message, sub_state, nullptr, &so,
                                &jerr);
    return s == NATS_OK ? Status::ok() : api_status(s, jerr, "bind to consumer " + cons + " on " + st, st);
  });
  if (!state.is_ok()) return state.status();
  return std::unique_ptr<Subscription>(new Subscription(std::move(state).value()));
}

}  // namespace ds
