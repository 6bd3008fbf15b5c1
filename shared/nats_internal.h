#pragma once
// Shared by the files that implement shared/nats.h (nats.cc, nats_connection.cc,
// jetstream.cc, nonce_signing.cc, jetstream_push.cc) and by nothing else:
// the one conversion of a cnats status to a Status, the guard every user
// callback runs under at a cnats boundary, and the few helpers they share.
// Includes <nats/nats.h>; keep it out of headers other modules include.

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <exception>
#include <memory>
#include <string>
#include <string_view>

#include "shared/nats.h"
#include "shared/status.h"

namespace ds::nats_detail {

// Builds the Status for a failed cnats call; `js_err` is the jsErrCode of a
// JetStream API call (0 when none). Must run on the thread that made the
// call: nats_GetLastError is thread-local.
Status make_status(natsStatus s, int js_err, std::string_view context);
// The Status code of a cnats status (and JetStream error code) with `msg`.
Status classify(natsStatus s, int js_err, std::string msg);

bool contains_nocase(std::string_view haystack, std::string_view needle);

inline std::string str(std::string_view v) { return std::string(v); }

// The owner of a natsMsgList's contents. natsMsgList is the one cnats
// handle the caller owns by value (a struct on the stack; cnats allocates
// its array and the messages in it): natsMsgList_Destroy frees those, never
// the struct, and so does this deleter, given the struct's address. Only
// this module's implementation ever holds one (jetstream.cc, the pending
// list of async publishes), so it is kept here, beside the files that use
// it, rather than among the module-wide owners of nats_handles.h.
struct NatsMsgListContentsDeleter {
  void operator()(natsMsgList* list) const { natsMsgList_Destroy(list); }
};
using NatsMsgListContentsPtr = std::unique_ptr<natsMsgList, NatsMsgListContentsDeleter>;

// A natsMsg for publishing with headers.
Result<NatsMsgPtr> build_msg(std::string_view subject, std::string_view reply, std::string_view data,
                             const Headers& headers);

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

// jetstream_push.cc: answers a push consumer's flow-control request or idle
// heartbeat received on a plain subscription (classify_push_control); true
// when `m` was one (it must then not reach the handler). Runs on the
// subscription's cnats thread, for every message: a delivery (it has a
// payload) costs one length check.
bool answer_push_control(natsConnection* nc, natsMsg* m);

}  // namespace ds::nats_detail
