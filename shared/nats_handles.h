#pragma once
// One owner type per cnats handle: std::unique_ptr with a deleter that calls
// the handle's cnats destroy function, and nothing else. Every place that
// holds a cnats handle beyond one statement (shared/, tests/) holds it in one
// of these; none calls natsXxx_Destroy by hand.
//
// The deleters are defined in nats_handles.cc so that this header does not
// pull in <nats/nats.h>; the typedefs below are the ones cnats declares
// (repeating a typedef of the same type is allowed). All deleters accept
// null. natsConnection and natsSubscription are held so by Connection and
// Subscription (nats.h), which decide when the reset may happen: only once
// cnats can no longer call back into their closures (see nats.cc).
// Any thread.

#include <memory>

typedef struct __natsConnection natsConnection;
typedef struct __natsSubscription natsSubscription;
typedef struct __natsMsg natsMsg;
typedef struct __natsOptions natsOptions;
typedef struct __natsStatistics natsStatistics;
typedef struct __jsCtx jsCtx;
typedef struct jsStreamInfo jsStreamInfo;
typedef struct jsConsumerInfo jsConsumerInfo;
typedef struct jsConsumerNamesList jsConsumerNamesList;
typedef struct jsPubAck jsPubAck;
typedef struct __kvStore kvStore;
typedef struct __kvEntry kvEntry;
typedef char natsInbox;

namespace ds {

struct NatsConnectionDeleter { void operator()(natsConnection* p) const; };
struct NatsSubscriptionDeleter { void operator()(natsSubscription* p) const; };
struct NatsMsgDeleter { void operator()(natsMsg* p) const; };
struct NatsOptionsDeleter { void operator()(natsOptions* p) const; };
struct NatsStatisticsDeleter { void operator()(natsStatistics* p) const; };
struct NatsInboxDeleter { void operator()(natsInbox* p) const; };
struct JsCtxDeleter { void operator()(jsCtx* p) const; };
struct JsStreamInfoDeleter { void operator()(jsStreamInfo* p) const; };
struct JsConsumerInfoDeleter { void operator()(jsConsumerInfo* p) const; };
struct JsConsumerNamesListDeleter { void operator()(jsConsumerNamesList* p) const; };
struct JsPubAckDeleter { void operator()(jsPubAck* p) const; };
struct KvStoreDeleter { void operator()(kvStore* p) const; };
struct KvEntryDeleter { void operator()(kvEntry* p) const; };

using NatsConnectionPtr = std::unique_ptr<natsConnection, NatsConnectionDeleter>;
using NatsSubscriptionPtr = std::unique_ptr<natsSubscription, NatsSubscriptionDeleter>;
using NatsMsgPtr = std::unique_ptr<natsMsg, NatsMsgDeleter>;
using NatsOptionsPtr = std::unique_ptr<natsOptions, NatsOptionsDeleter>;
using NatsStatisticsPtr = std::unique_ptr<natsStatistics, NatsStatisticsDeleter>;
using NatsInboxPtr = std::unique_ptr<natsInbox, NatsInboxDeleter>;
using JsCtxPtr = std::unique_ptr<jsCtx, JsCtxDeleter>;
using JsStreamInfoPtr = std::unique_ptr<jsStreamInfo, JsStreamInfoDeleter>;
using JsConsumerInfoPtr = std::unique_ptr<jsConsumerInfo, JsConsumerInfoDeleter>;
using JsConsumerNamesListPtr = std::unique_ptr<jsConsumerNamesList, JsConsumerNamesListDeleter>;
using JsPubAckPtr = std::unique_ptr<jsPubAck, JsPubAckDeleter>;
using KvStorePtr = std::unique_ptr<kvStore, KvStoreDeleter>;
using KvEntryPtr = std::unique_ptr<kvEntry, KvEntryDeleter>;

}  // namespace ds
