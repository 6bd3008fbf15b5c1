#pragma once
// The identity registry: every process that may connect to NATS (hub, agent,
// producer), its public nkey, and what it is entitled to. `deltasync creds`
// writes it as <creds dir>/identities.json next to the auth.conf it derives
// from the same list, and the hub reads it ([auth] identities_file) to
// authorize requests by the identity NATS authenticated (the subject token
// the permissions bind), never by what a request body says.
//
// Entitlements:
//   agent X     takes the listed types, each for one partition value or "*"
//               (every partition; the only choice for unpartitioned types):
//               registrations and snapshot reads beyond them are refused.
//   producer P  sends records of the listed types.
//   hub         none: it holds every right it needs through NATS. A hub has
//               two keys: its service key (`public_key`: requests, replies,
//               heartbeats, consumers; never publishing into p.delta.>) and
//               its publisher key (`publisher_public_key`: only publishing
//               delta batches into p.delta.> and the stream calls that needs).
//               A registry written before the publisher key existed has none:
//               that hub publishes deltas on its service connection.
//
// File format (JSON, written sorted by name; unknown keys are an error):
//   {"format": 1, "subject_prefix": "ds", "identities": [
//     {"name": "store-1", "role": "agent", "public_key": "U...",
//      "grants": [{"type": "prices", "partition": "store-1"},
//                 {"type": "products", "partition": "*"}]},
//     {"name": "hub", "role": "hub", "public_key": "U...", "publisher_public_key": "U..."},
//     {"name": "erp", "role": "producer", "public_key": "U...",
//      "grants": [{"type": "prices"}]}, ...]}
//
// Plain values; no I/O except load_identities.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/status.h"

namespace ds {

enum class IdentityRole { kHub, kAgent, kProducer };

std::string_view role_name(IdentityRole role);  // "hub", "agent", "producer"

// One business type an identity may use; `partition` matters for agents only
// ("*" = every partition).
struct Grant {
  std::string type;
  std::string partition = "*";

  bool operator==(const Grant&) const = default;
};

struct Identity {
  IdentityRole role = IdentityRole::kAgent;
  std::string name;         // agent id / producer name / hub name: the subject token
  std::string public_key;   // "U..." ("" before a key is issued)
  std::string publisher_public_key;  // hubs: the delta publisher's "U..."; "" = none
  std::vector<Grant> grants;

  // The grant for `type`, if any.
  const Grant* grant(std::string_view type) const;
};

// Checks one identity: the name follows the agent id rule, types the type
// rule, partitions the partition rule (or "*"); producers take no partition;
// agents and producers need at least one type, hubs none; no type twice.
// The error names the identity and the offending part.
Status validate_identity(const Identity& identity);

struct IdentityRegistry {
  std::string subject_prefix = "ds";
  std::vector<Identity> identities;

  const Identity* find(std::string_view name) const;
};

// The delta publisher's seed file of a hub whose own seed file is
// `service_seed_file`: "<dir>/<stem>.publisher.nk" beside it ("hub.nk" ->
// "hub.publisher.nk"; a file not ending in ".nk" gets ".publisher.nk" added).
std::string publisher_seed_file_for(std::string_view service_seed_file);

// Every identity valid, names unique across roles, prefix valid.
Status validate_registry(const IdentityRegistry& registry);

std::string registry_to_json(const IdentityRegistry& registry);
// `source` names the text in error messages.
Result<IdentityRegistry> parse_registry_json(std::string_view text, std::string_view source);
Result<IdentityRegistry> load_identities(const std::string& path);

}  // namespace ds
