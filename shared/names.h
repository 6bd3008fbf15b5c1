#pragma once
// Every subject, stream and consumer name of docs/protocol.md ("Subjects and
// streams"), built in one place, and the validation of the identifiers that go
// into them.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "shared/status.h"

namespace ds {

// Partition token used when a type is unpartitioned or a record has none.
inline constexpr std::string_view kAllPartitions = "_all";
// Subscription partition meaning "every partition".
inline constexpr std::string_view kAnyPartition = "*";

// A value as shown in an error message or log line: single-quoted, with
// control and non-ASCII bytes escaped (\xNN) and cut after 80 characters, so a
// hostile identifier cannot forge log lines.
std::string quoted_for_message(std::string_view s);

// Business type names: [a-z][a-z0-9_]*, at most 64 characters.
Status validate_type_name(std::string_view name);
// Agent ids: [A-Za-z0-9_-]{1,64}.
Status validate_agent_id(std::string_view id);
// Partition values must be usable as one subject token: 1..64 characters from
// [A-Za-z0-9_-]. "_all" is reserved for "no partition".
Status validate_partition(std::string_view partition);
// Subject prefix: one or more tokens of [A-Za-z0-9_-] separated by '.'.
Status validate_subject_prefix(std::string_view prefix);

// The two tokens of an ingest subject.
struct IngestSubject {
  std::string type;
  std::string producer;  // the identity NATS permissions bind to this subject
};

// Subject names under a configurable prefix (default "ds").
class Subjects {
 public:
  explicit Subjects(std::string prefix = "ds") : p_(std::move(prefix)) {}

  const std::string& prefix() const { return p_; }
  std::string ingest(std::string_view type, std::string_view producer) const;  // ds.ingest.<type>.<producer>
  std::string ingest_wildcard() const;                           // ds.ingest.*.*
  // The type and producer of ds.ingest.<type>.<producer>; nullopt for any
  // other subject (the tokens themselves are not validated here).
  std::optional<IngestSubject> parse_ingest(std::string_view subject) const;
  std::string register_agent(std::string_view agent) const;      // ds.hub.register.<agent>
  std::string register_wildcard() const;                         // ds.hub.register.*
  std::string snapshot(std::string_view agent) const;            // ds.hub.snapshot.<agent>
  std::string snapshot_wildcard() const;                         // ds.hub.snapshot.*
  std::string heartbeat(std::string_view type) const;            // ds.hb.<type>
  std::string probe(std::string_view agent) const;               // ds.agent.<agent>.hb
  // Heartbeat replies: only <agent> may publish here (its credentials), so
  // the hub takes the sender from the last token, never from the body.
  std::string hub_beat(std::string_view agent) const;            // ds.hub.beat.<agent>
  std::string hub_beat_wildcard() const;                         // ds.hub.beat.*
  std::string digest(std::string_view agent) const;              // ds.agent.<agent>.digest
  std::string delta(std::string_view type, std::string_view partition) const;  // ds.delta.<type>.<partition>
  std::string delta_filter(std::string_view type) const;         // ds.delta.<type>.>
  std::string push(std::string_view agent, std::string_view type) const;  // ds.push.<agent>.<type>
  // The live feed: the broker republishes every message its stream DS_<TYPE>
  // stored from ds.delta.<type>.<partition> here (docs/protocol.md, "Live
  // feed"); only the broker publishes on it.
  std::string feed(std::string_view type, std::string_view partition) const;  // ds.feed.<type>.<partition>
  std::string feed_filter(std::string_view type) const;          // ds.feed.<type>.>

  // Last token of a subject ("ds.hub.register.store-1" -> "store-1").
  static std::string_view last_token(std::string_view subject);

 private:
  std::string p_;
};

std::string stream_name(std::string_view type);     // DS_<TYPE>
std::string consumer_name(std::string_view agent);  // ag_<agent>
std::string inbox_prefix(std::string_view id);      // _INBOX_<id>
std::string msg_id(std::string_view type, uint64_t first_version);  // <type>:<first version>

}  // namespace ds
