// shared/nats.h, Connection: connect and reconnect (with the cnats 3.4.1
// traps they work around, explained where they are handled), the
// connection's callbacks, and core publishing and requests. Subscriptions
// are in nats.cc, JetStream in jetstream.cc, nonce signing in
// nonce_signing.cc.
#include "shared/nats.h"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "shared/nats_internal.h"
#include "shared/nonce_signing.h"
#include "shared/nats_url.h"

namespace ds {

using namespace nats_detail;

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
  // Signs the server's nonce at each (re)connect (nkey seed file or creds
  // file); null when neither is configured.
  std::unique_ptr<NonceSigner> signer;
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

}  // namespace

Result<std::unique_ptr<Connection>> Connection::connect(ConnectOptions opts) {
  const NatsConfig& cfg = opts.config;
  natsOptions* raw_opts = nullptr;
  natsStatus s = natsOptions_Create(&raw_opts);
  if (s != NATS_OK) return make_status(s, 0, "nats options");
  NatsOptionsPtr o(raw_opts);

  auto cb = std::make_unique<Callbacks>();
  cb->on_disconnected = std::move(opts.on_disconnected);
  cb->on_reconnected = std::move(opts.on_reconnected);
  cb->on_async_error = std::move(opts.on_async_error);
  cb->on_retry = std::move(opts.on_retry);
  cb->on_closed = std::move(opts.on_closed);
  cb->reconnect_wait_ms = opts.reconnect_wait_ms;
  cb->max_reconnect_wait_ms = opts.max_reconnect_wait_ms;

  auto check = [](natsStatus st, const char* what) { return make_status(st, 0, what); };
  auto servers = parse_nats_servers(cfg.url);
  // The entry at fault is named inside (not the whole list: an entry may hold a secret).
  if (!servers.is_ok()) return servers.status().with_context("nats url");
  const std::vector<std::string> urls = std::move(servers).value();
  std::vector<const char*> url_ptrs;
  for (const auto& u : urls) url_ptrs.push_back(u.c_str());
  DS_RETURN_IF_ERROR(check(
      natsOptions_SetServers(o.get(), url_ptrs.data(), static_cast<int>(url_ptrs.size())), "nats url"));
  if (!opts.name.empty()) DS_RETURN_IF_ERROR(check(natsOptions_SetName(o.get(), opts.name.c_str()), "name"));
  if (!cfg.user.empty()) {
    DS_RETURN_IF_ERROR(check(natsOptions_SetUserInfo(o.get(), cfg.user.c_str(), cfg.password.c_str()),
                             "user/password"));
  }
  // nkey seed file or creds file: checked now, read again at every attempt.
  DS_ASSIGN_OR_RETURN(cb->signer, NonceSigner::from_config(cfg));
  if (cb->signer) DS_RETURN_IF_ERROR(cb->signer->install(o.get()));
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
  auto dropped_attempts = [&cb] { return cb->signer ? cb->signer->dropped_attempts() : 0; };
  natsConnection* nc = nullptr;
  for (int attempt = 1;; ++attempt) {
    const uint64_t dropped_before = dropped_attempts();
    s = natsConnection_Connect(&nc, o.get());
    if (s == NATS_OK) break;
    // No connection object exists, so no callback can reach `cb` any more.
    const bool only_the_signature = dropped_attempts() != dropped_before;
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
    (void)NatsConnectionPtr(nc);  // destroyed here: closed, so no callback reaches `cb` any more
    nc = nullptr;
    DS_RETURN_IF_ERROR(check(natsOptions_SetRetryOnFailedConnect(o.get(), false, nullptr, nullptr),
                             "retry on failed connect"));
    spdlog::warn("nats: {} went away during the handshake of the first connect; trying again in {} ms", cfg.url,
                 opts.reconnect_wait_ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(std::max<int64_t>(opts.reconnect_wait_ms, 1)));
  }
  std::unique_ptr<Connection> conn(new Connection());
  conn->nc_.reset(nc);
  conn->callbacks_ = std::move(cb);
  conn->inbox_prefix_ = opts.inbox_prefix;
  return conn;
}

Connection::~Connection() {
  if (!nc_) return;
  Callbacks* cb = callbacks_.get();
  cb->shutting_down.store(true);
  natsConnection_Close(nc_.get());
  bool closed = false;
  {
    std::unique_lock<std::mutex> lock(cb->mu);
    closed = cb->cv.wait_for(lock, std::chrono::seconds(10), [cb] { return cb->closed; });
  }
  nc_.reset();
  if (!closed) {
    // cnats may still call into Callbacks; a small leak beats a use-after-free.
    spdlog::warn("nats: closed callback did not arrive; leaking connection callbacks");
    (void)callbacks_.release();
  }
}

Status Connection::publish(std::string_view subject, std::string_view data, const Headers& headers) {
  const std::string subj = str(subject);
  if (headers.empty()) {
    return make_status(natsConnection_Publish(nc_.get(), subj.c_str(), data.data(), static_cast<int>(data.size())), 0,
                       "publish to " + subj);
  }
  DS_ASSIGN_OR_RETURN(NatsMsgPtr m, build_msg(subject, {}, data, headers));
  return make_status(natsConnection_PublishMsg(nc_.get(), m.get()), 0, "publish to " + subj);
}

Status Connection::publish_request(std::string_view subject, std::string_view reply, std::string_view data) {
  const std::string subj = str(subject);
  const std::string rep = str(reply);
  return make_status(natsConnection_PublishRequest(nc_.get(), subj.c_str(), rep.c_str(), data.data(),
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
  DS_ASSIGN_OR_RETURN(NatsMsgPtr m, build_msg(subject, {}, data, headers));
  natsMsg* reply = nullptr;
  natsStatus s = natsConnection_RequestMsg(&reply, nc_.get(), m.get(), timeout_ms);
  if (s != NATS_OK) return make_status(s, 0, "request to " + subj);
  return Message(reply);
}

Status Connection::flush(int64_t timeout_ms) {
  return make_status(natsConnection_FlushTimeout(nc_.get(), timeout_ms), 0, "flush");
}

bool Connection::connected() const { return natsConnection_Status(nc_.get()) == NATS_CONN_STATUS_CONNECTED; }

int64_t Connection::max_payload() const { return natsConnection_GetMaxPayload(nc_.get()); }
bool Connection::closed() const { return natsConnection_IsClosed(nc_.get()); }

std::string Connection::new_inbox() const {
  // natsInbox_Create ignores the connection's custom prefix: it always
  // yields "_INBOX.<nuid>". Keep its unique part and put our prefix on it.
  natsInbox* raw = nullptr;
  if (natsInbox_Create(&raw) != NATS_OK || raw == nullptr) {
    spdlog::error("nats: natsInbox_Create failed");
    return {};
  }
  const NatsInboxPtr inbox(raw);
  std::string unique = inbox.get();
  if (inbox_prefix_.empty()) return unique;
  const auto dot = unique.rfind('.');
  return inbox_prefix_ + "." + unique.substr(dot + 1);
}

}  // namespace ds
