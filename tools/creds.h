#pragma once
// `deltasync creds`: per-process NATS credentials (nkeys) and the matching
// nats-server authorization block of DESIGN.md §7.
//
// For every identity it writes <out>/<name>.nk (the user seed, one line,
// mode 0600: the file cnats' natsOptions_SetNKeyFromSeed and the
// `nkey_seed_file` config key read) and, for all of them together,
// <out>/auth.conf: an `authorization { users = [...] }` block holding only
// public keys, for nats-server's config (`include auth.conf`).
//
// Permissions, with prefix p (default "ds"):
//   hub       publish and subscribe ">" (it runs ingest, JetStream, heartbeats)
//   agent X   publish   p.hub.*.X, $JS.API.CONSUMER.INFO.*.ag_X, $JS.ACK.*.ag_X.>
//             subscribe p.push.X.>, p.agent.X.>, p.hb.<each type>, _INBOX_X.>
//             allow_responses (heartbeat replies, flow-control replies)
//   producer P publish p.ingest.<each type>; subscribe _INBOX_P.>
// Agents and producers must connect with inbox prefix _INBOX_<name>
// (ds::inbox_prefix), or their request replies are refused.
//
// Functions here are not thread-safe with respect to the same output
// directory; run one `creds` per directory at a time.

#include <string>
#include <string_view>
#include <vector>

#include "shared/status.h"

namespace ds {

enum class CredsRole { kHub, kAgent, kProducer };

std::string_view creds_role_name(CredsRole role);  // "hub", "agent", "producer"

// One process that gets its own key.
struct CredsIdentity {
  CredsRole role = CredsRole::kAgent;
  std::string name;                // agent id / producer name / hub name
  std::vector<std::string> types;  // business types (agents, producers)
};

// Parses a command-line identity: "name" for a hub, "name:type1,type2" for
// an agent or a producer. Names follow validate_agent_id, types
// validate_type_name; agents and producers need at least one type, hubs take
// none. InvalidArgument naming the offending part otherwise.
Result<CredsIdentity> parse_creds_identity(CredsRole role, std::string_view arg);

struct CredsRequest {
  std::string out_dir;
  std::string subject_prefix = "ds";
  bool force = false;  // overwrite existing seed files and auth.conf
  std::vector<CredsIdentity> identities;
};

// Checks every identity (as parse_creds_identity does), the prefix, that
// there is at least one identity and that no name is used twice (names key
// the seed files and the inbox prefixes).
Status validate_creds_request(const CredsRequest& request);

// The nats-server `users` entry of one identity, one map per line group.
std::string nats_user_entry(const CredsIdentity& identity, std::string_view public_key,
                            std::string_view subject_prefix);

struct IssuedCredential {
  CredsIdentity identity;
  std::string public_key;  // "U..."
  std::string seed_file;   // <out>/<name>.nk
};

// The full authorization block for `issued`, with a comment per user.
std::string nats_authorization_block(const std::vector<IssuedCredential>& issued,
                                     std::string_view subject_prefix);

struct CredsResult {
  std::vector<IssuedCredential> issued;
  std::string auth_conf;  // <out>/auth.conf
};

// Validates, generates a fresh key per identity and writes the files. The
// directory is created (mode 0700) when missing. Without `force`, any
// existing target file is an AlreadyExists error and nothing is written.
// Each file is written to a temporary name and renamed into place, so a
// reader never sees half a seed.
Result<CredsResult> write_credentials(const CredsRequest& request);

}  // namespace ds
