#include "agent/quarantine_ops.h"

#include "agent/hook_runner.h"
#include "shared/codec.h"

namespace ds {

Result<std::string> retry_quarantined(Replica& replica, const AgentConfig& config, int64_t id) {
  DS_ASSIGN_OR_RETURN(QuarantineEntry e, replica.quarantine_entry(id));
  DS_ASSIGN_OR_RETURN(DeltaBatch batch, decode_delta_batch(e.payload));
  if (batch.type != e.type) {
    return Status::invalid_argument("entry " + std::to_string(id) + " holds a batch of type '" + batch.type +
                                    "', not '" + e.type + "'");
  }
  if (e.kind == "hook") {
    const SubscriptionConfig* sub = nullptr;
    for (const SubscriptionConfig& s : config.subscriptions) {
      if (s.type == e.type) sub = &s;
    }
    if (sub == nullptr || sub->hook.empty()) {
      return Status::not_found("type '" + e.type + "' has no hook configured; drop the entry instead");
    }
    HookRunner runner;
    DS_RETURN_IF_ERROR(runner.run(HookSpec{sub->hook, sub->hook_retries, sub->hook_timeout_ms}, e.type, batch.changes));
    DS_RETURN_IF_ERROR(replica.drop_quarantined(id));
    return "entry " + std::to_string(id) + ": hook succeeded for " + std::to_string(batch.changes.size()) +
           " change(s); entry removed";
  }
  DS_ASSIGN_OR_RETURN(ApplyOutcome out, replica.apply(e.type, batch.changes, /*last_seq=*/0));
  DS_RETURN_IF_ERROR(replica.drop_quarantined(id));
  if (out.quarantined > 0) {
    return Status::invalid_argument("entry " + std::to_string(id) + ": " + std::to_string(out.quarantined) +
                                    " change(s) failed again and were quarantined as a new entry (see quarantine list)");
  }
  return "entry " + std::to_string(id) + ": " + std::to_string(out.applied) + " change(s) applied, " +
         std::to_string(out.skipped) + " already superseded; entry removed";
}

}  // namespace ds
