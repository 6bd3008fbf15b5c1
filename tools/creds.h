#pragma once
// `deltasync creds`: per-process NATS credentials (nkeys) and the matching
// nats-server authorization block (docs/security.md).
//
// For every identity it writes <out>/<name>.nk (the user seed, one line,
// mode 0600: the file the `nkey_seed_file` config key names) and, for all of
// them together, from one list:
//   <out>/auth.conf        an `authorization { users = [...] }` block holding
//                          only public keys, for nats-server's config
//                          (`include auth.conf`);
//   <out>/identities.json  the identity registry (shared/identities.h): who
//                          may take or send which types, for the hub's
//                          [auth] identities_file.
//
// Permissions, with prefix p (default "ds"):
//   hub       publish and subscribe ">" (it runs ingest, JetStream, heartbeats),
//             except stream purge/delete and message delete, never used
//   agent X   publish   p.hub.*.X, $JS.API.CONSUMER.INFO.*.ag_X, $JS.ACK.*.ag_X.>
//             subscribe p.push.X.>, p.agent.X.>, p.hb.<each type>, _INBOX_X.>
//             allow_responses (flow-control and digest replies)
//   producer P publish p.ingest.<each type>.P; subscribe _INBOX_P.>
// Agents and producers must connect with inbox prefix _INBOX_<name>
// (ds::inbox_prefix), or their request replies are refused.
//
// Functions here are not thread-safe with respect to the same output
// directory; run one `creds` per directory at a time.

#include <string>
#include <string_view>
#include <vector>

#include "shared/identities.h"
#include "shared/status.h"

namespace ds {

// Parses a command-line identity: "name" for a hub; "name:type1,type2" for
// a producer; for an agent each type may name the one partition it takes,
// "name:prices:store-1,products" (no partition = every partition, "*").
// Names follow validate_agent_id, types validate_type_name, partitions
// validate_partition; agents and producers need at least one type, hubs take
// none. InvalidArgument naming the offending part otherwise.
Result<Identity> parse_creds_identity(IdentityRole role, std::string_view arg);

struct CredsRequest {
  std::string out_dir;
  std::string subject_prefix = "ds";
  bool force = false;  // overwrite existing seed files and auth.conf
  std::vector<Identity> identities;
};

// Checks every identity (as parse_creds_identity does), the prefix, that
// there is at least one identity and that no name is used twice (names key
// the seed files and the inbox prefixes).
Status validate_creds_request(const CredsRequest& request);

// The nats-server `users` entry of one identity, one map per line group.
std::string nats_user_entry(const Identity& identity, std::string_view subject_prefix);

// "prices:store-1,products": the grants as the command line writes them.
std::string grants_text(const Identity& identity);

struct IssuedCredential {
  Identity identity;       // with its new public key
  std::string seed_file;   // <out>/<name>.nk
};

// The full authorization block for `issued`, with a comment per user.
std::string nats_authorization_block(const std::vector<IssuedCredential>& issued,
                                     std::string_view subject_prefix);

struct CredsResult {
  std::vector<IssuedCredential> issued;
  std::string auth_conf;   // <out>/auth.conf
  std::string identities;  // <out>/identities.json
};

// Validates, generates a fresh key per identity and writes the files. The
// directory is created (mode 0700) when missing. Without `force`, any
// existing target file is an AlreadyExists error and nothing is written.
// Each file is written to a temporary name and renamed into place, so a
// reader never sees half a seed.
Result<CredsResult> write_credentials(const CredsRequest& request);

}  // namespace ds
