// shared/nats.h, the core: the library guard, the one conversion of cnats
// statuses to Status, Message and Subscription (with Connection's subscribe
// methods, which set a Subscription's lifetime up). The rest of nats.h is
// implemented by nats_connection.cc (connect, reconnect and their cnats
// 3.4.1 traps; publishing), jetstream.cc (streams, consumers, JetStream
// publishing), nonce_signing.cc (nkey and creds signing) and
// jetstream_push.cc (acks and control messages of push consumers).
#include "shared/nats.h"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "shared/nats_internal.h"

namespace ds {
namespace nats_detail {
namespace {

// JetStream API error codes (jsErrCode) that carry a meaning of their own.
bool is_not_found_code(int js_err) {
  return js_err == JSStreamNotFoundErr || js_err == JSConsumerNotFoundErr ||
         js_err == JSNoMessageFoundErr;
}
// Also a publish whose Nats-Expected-Last-Sequence the stream has moved past:
// another writer got there first.
bool is_exists_code(int js_err) {
  return js_err == JSStreamNameExistErr || js_err == JSConsumerNameExistErr || js_err == JSStreamWrongLastSequenceErr;
}

}  // namespace

bool contains_nocase(std::string_view haystack, std::string_view needle) {
  auto it = std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end(),
                        [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) ==
                                                    std::tolower(static_cast<unsigned char>(b)); });
  return it != haystack.end();
}

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

Status classify(natsStatus s, int js_err, std::string msg) {
  if (is_not_found_code(js_err)) return Status::not_found(std::move(msg));
  if (is_exists_code(js_err)) return Status::already_exists(std::move(msg));
  // 10008 "JetStream system temporarily unavailable": a cluster between
  // leaders (a node was lost); the same call succeeds once one is elected.
  if (js_err == JSNotEnabledErr || js_err == JSClusterNotAvailErr) return Status::unavailable(std::move(msg));
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

Result<NatsMsgPtr> build_msg(std::string_view subject, std::string_view reply, std::string_view data,
                         const Headers& headers) {
  natsMsg* raw = nullptr;
  const std::string subj = str(subject);
  const std::string rep = str(reply);
  natsStatus s = natsMsg_Create(&raw, subj.c_str(), rep.empty() ? nullptr : rep.c_str(), data.data(),
                                static_cast<int>(data.size()));
  if (s != NATS_OK) return make_status(s, 0, "create message for " + subj);
  NatsMsgPtr m(raw);
  for (const auto& [k, v] : headers) {
    s = natsMsgHeader_Add(m.get(), k.c_str(), v.c_str());
    if (s != NATS_OK) return make_status(s, 0, "set header " + k);
  }
  return m;
}

}  // namespace nats_detail

using namespace nats_detail;

Status nats_status(int s, std::string_view context) {
  return make_status(static_cast<natsStatus>(s), 0, context);
}

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
  NatsSubscriptionPtr sub;  // destroyed with State: only once cnats is done with it
  std::atomic<std::thread::id> handler_thread{};  // set while the handler runs
  std::mutex mu;
  std::condition_variable cv;
  bool complete = false;  // guarded by mu: the handler will never run again
  bool orphaned = false;  // guarded by mu: the complete callback frees State
};

namespace {

void on_subscription_message(natsConnection* nc, natsSubscription*, natsMsg* m, void* closure) {
  auto* st = static_cast<Subscription::State*>(closure);
  Message msg(m);  // owns m from here, whatever the handler does
  if (m == nullptr) return;
  if (answer_push_control(nc, m)) return;
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
    delete st;  // and with it the cnats subscription
    return;
  }
  st->cv.notify_all();
}

// Creates the State, lets `subscribe` create the cnats subscription with our
// callbacks (it returns the cnats status of that call), and registers the
// completion callback.
template <typename F>
Result<std::unique_ptr<Subscription::State>> make_subscription_state(MessageHandler handler,
                                                                     std::string_view context, F&& subscribe) {
  auto st = std::make_unique<Subscription::State>();
  st->handler = std::move(handler);
  natsSubscription* raw = nullptr;
  natsStatus s = subscribe(&raw, st.get());
  st->sub.reset(raw);
  if (s != NATS_OK) return make_status(s, 0, context);
  s = natsSubscription_SetOnCompleteCB(st->sub.get(), on_subscription_complete, st.get());
  if (s != NATS_OK) {
    // Closed before we could register (the connection closed under us): we
    // cannot know when the handler stops, so State must outlive it.
    Status err = make_status(s, 0, "subscription closed while being set up");
    st->sub.reset();
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
  (void)natsSubscription_Unsubscribe(st->sub.get());
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
  // state_ (and with it the cnats subscription) goes now.
}

Status Subscription::drain() {
  if (!state_) return Status::invalid_argument("drain: no subscription");
  natsStatus s = natsSubscription_Drain(state_->sub.get());
  if (s != NATS_OK) return make_status(s, 0, "drain subscription");
  if (state_->handler_thread.load() == std::this_thread::get_id()) return Status::ok();
  DS_RETURN_IF_ERROR(make_status(natsSubscription_WaitForDrainCompletion(state_->sub.get(), 30000), 0,
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
  return natsSubscription_IsValid(state_->sub.get());
}

Result<std::unique_ptr<Subscription>> Connection::subscribe(std::string_view subject, MessageHandler handler) {
  const std::string subj = str(subject);
  DS_ASSIGN_OR_RETURN(auto state, make_subscription_state(std::move(handler), "subscribe to " + subj,
                                                          [&](natsSubscription** sub, Subscription::State* st) {
                                                            return natsConnection_Subscribe(
                                                                sub, nc_.get(), subj.c_str(), on_subscription_message, st);
                                                          }));
  return std::unique_ptr<Subscription>(new Subscription(std::move(state)));
}

Result<std::unique_ptr<Subscription>> Connection::queue_subscribe(std::string_view subject, std::string_view queue,
                                                                  MessageHandler handler) {
  const std::string subj = str(subject);
  const std::string q = str(queue);
  DS_ASSIGN_OR_RETURN(auto state,
                      make_subscription_state(std::move(handler), "queue subscribe to " + subj,
                                              [&](natsSubscription** sub, Subscription::State* st) {
                                                return natsConnection_QueueSubscribe(sub, nc_.get(), subj.c_str(),
                                                                                     q.c_str(), on_subscription_message,
                                                                                     st);
                                              }));
  return std::unique_ptr<Subscription>(new Subscription(std::move(state)));
}

}  // namespace ds
