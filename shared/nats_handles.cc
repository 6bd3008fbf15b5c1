#include "shared/nats_handles.h"

#include <nats/nats.h>

namespace ds {

void NatsConnectionDeleter::operator()(natsConnection* p) const { natsConnection_Destroy(p); }
void NatsSubscriptionDeleter::operator()(natsSubscription* p) const { natsSubscription_Destroy(p); }
void NatsMsgDeleter::operator()(natsMsg* p) const { natsMsg_Destroy(p); }
void NatsOptionsDeleter::operator()(natsOptions* p) const { natsOptions_Destroy(p); }
void NatsStatisticsDeleter::operator()(natsStatistics* p) const { natsStatistics_Destroy(p); }
void NatsInboxDeleter::operator()(natsInbox* p) const { natsInbox_Destroy(p); }
void JsCtxDeleter::operator()(jsCtx* p) const { jsCtx_Destroy(p); }
void JsStreamInfoDeleter::operator()(jsStreamInfo* p) const { jsStreamInfo_Destroy(p); }
void JsConsumerInfoDeleter::operator()(jsConsumerInfo* p) const { jsConsumerInfo_Destroy(p); }
void JsConsumerNamesListDeleter::operator()(jsConsumerNamesList* p) const { jsConsumerNamesList_Destroy(p); }
void JsPubAckDeleter::operator()(jsPubAck* p) const { jsPubAck_Destroy(p); }
void KvStoreDeleter::operator()(kvStore* p) const { kvStore_Destroy(p); }
void KvEntryDeleter::operator()(kvEntry* p) const { kvEntry_Destroy(p); }

}  // namespace ds
