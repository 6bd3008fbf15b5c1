#pragma once
// Operator actions on _deltasync_quarantine (deltasync-agent quarantine
// retry|drop), run by the CLI in its own process next to a running agent
// (SQLite serialises the two writers; the busy timeout covers the wait).
//
// retry re-runs what failed, through the same code the agent uses:
//   kind 'apply' / 'undecodable': decode the stored payload as a delta batch
//     and Replica::apply it (the version rule makes this safe whatever
//     happened since); a change that fails again is quarantined anew.
//   kind 'hook': run the type's configured hook on the stored batch.
// On success the entry is removed. The checkpoint's stream seq is untouched.
//
// Thread-safety: none; one caller.

#include <cstdint>
#include <string>

#include "agent/replica.h"
#include "shared/config.h"
#include "shared/status.h"

namespace ds {

// Returns a one-line description of what happened; an error when the entry
// still fails (the message says why and names any new entry).
Result<std::string> retry_quarantined(Replica& replica, const AgentConfig& config, int64_t id);

}  // namespace ds
