#pragma once
// The header Ds-Retry-Keys of a delta batch message (docs/protocol.md,
// "Subjects and streams"): the producer retry keys whose last version the
// batch holds, so a hub that follows the stream (a standby,
// hub/standby_follower.h) records them as the active hub's commit did, and
// answers a producer's retry after a takeover with the original range.
//
// The value: one entry per key, separated by a space, each
//   <producer>/<seq>/<first_version>/<last_version>/<digest>
// the producer percent-escaped (every byte outside [A-Za-z0-9_.-] as %xx,
// lowercase hex), the digest (16 bytes) as 32 lowercase hex digits, or "-"
// for a key stored before keys carried one.
//
// Size: the cutting rule (BatchLimits, hub/change_log.h) counts each key's
// retry_key_header_bound() in the batch holding its last version, so body and
// header stay under the body limit together. Any thread; no state.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "hub/change_log.h"
#include "shared/status.h"

namespace ds {

inline constexpr std::string_view kRetryKeysHeader = "Ds-Retry-Keys";

std::string encode_retry_keys(const std::vector<ProducerRetryKey>& keys);
// InvalidArgument naming the entry for anything encode_retry_keys would not write.
Result<std::vector<ProducerRetryKey>> decode_retry_keys(std::string_view value);
// An upper bound of the bytes one key of `producer` adds to the header.
size_t retry_key_header_bound(std::string_view producer);

}  // namespace ds
