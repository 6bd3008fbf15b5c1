#pragma once
// `deltasync creds`: per-process NATS credentials (nkeys), the matching
// nats-server authorization block and the identity registry, kept in one
// credentials directory and changed one identity at a time
// (docs/security.md, docs/operations.md).
//
// A credentials directory holds:
//   <dir>/<name>.nk        the user seed of each identity, one line, mode 0600
//                          (the file the `nkey_seed_file` config key names);
//   <dir>/<hub>.publisher.nk  a hub's second seed: its delta publisher
//                          (shared/identities.h), found by the hub beside
//                          its own seed file (publisher_seed_file_for);
//   <dir>/identities.json  the identity registry (shared/identities.h): the
//                          source of truth; who may take or send which types,
//                          for the hub's [auth] identities_file;
//   <dir>/auth.conf        an `authorization { users = [...] }` block derived
//                          from the registry (public keys only), for
//                          nats-server's config (`include auth.conf`).
//
// Every change (init, add, grant, revoke, rotate) runs under an exclusive
// flock on the directory, so concurrent invocations serialize and none loses
// another's update. It rewrites identities.json and then auth.conf from the
// whole registry, each through a temporary file, fsync and rename, so a
// reader sees the old or the new file, never half of one. A change writes
// only the seed file of the identity it names; every other seed file is left
// byte for byte as it was. Writes go in the order seed file, identities.json,
// auth.conf: after a crash the registry never names a key whose seed was not
// written, and re-running the command (every command that finds nothing to
// change still rewrites an auth.conf that differs from the registry) puts
// auth.conf right.
//
// Permissions in auth.conf, with prefix p (default "ds"):
//   hub       publish and subscribe ">" (it runs ingest, JetStream, heartbeats),
//             except stream purge/delete and message delete, never used,
//             and p.delta.> (when it has a publisher key)
//   hub's publisher  publish p.delta.>, $JS.API.STREAM.{CREATE,UPDATE,INFO,
//             MSG.GET}.*; subscribe _INBOX_<hub>.> (its inbox prefix)
//   agent X   publish   p.hub.*.X, $JS.ACK.*.ag_X.>
//             subscribe p.push.X.>, p.agent.X.>, p.hb.<each type>, _INBOX_X.>
//             allow_responses (flow-control and digest replies)
//   producer P publish p.ingest.<each type>.P; subscribe _INBOX_P.>
// Agents and producers must connect with inbox prefix _INBOX_<name>
// (ds::inbox_prefix), or their request replies are refused.
//
// nats-server only reads auth.conf at start and on a reload (SIGHUP); see
// find_nats_server / signal_nats_reload. Functions here are safe to call
// from several threads or processes on the same directory (the flock), but
// each call blocks while another holds the directory (at most kCredsLockWaitMs).

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/identities.h"
#include "shared/status.h"

namespace ds {

inline constexpr int64_t kCredsLockWaitMs = 30000;

// Parses a command-line identity: "name" for a hub; "name:type1,type2" for
// a producer; for an agent each type may name the one partition it takes,
// "name:prices:store-1,products" (no partition = every partition, "*").
// Names follow validate_agent_id, types validate_type_name, partitions
// validate_partition; agents and producers need at least one type, hubs take
// none. InvalidArgument naming the offending part otherwise.
Result<Identity> parse_creds_identity(IdentityRole role, std::string_view arg);

// Parses one grant as `creds grant` takes it: "type" or "type:partition".
// Checked by name rules only; whether the identity's role may hold it is
// checked against the identity.
Result<Grant> parse_grant(std::string_view arg);

// "prices:store-1,products": the grants as the command line writes them.
std::string grants_text(const Identity& identity);

// The nats-server `users` entry of one identity, one map per line group.
std::string nats_user_entry(const Identity& identity, std::string_view subject_prefix);

// The full authorization block for every identity of `registry` (in name
// order, so the same registry always gives the same bytes), a comment per
// user. InvalidArgument when the registry has no identity: nats-server reads
// an empty users list as "no authorization", an open server.
Result<std::string> nats_authorization_block(const IdentityRegistry& registry);

// File names inside a credentials directory.
std::string creds_seed_file(const std::string& dir, std::string_view name);  // <dir>/<name>.nk
// A hub's delta publisher seed: <dir>/<name>.publisher.nk (a name holds no
// dot, so it never collides with another identity's seed file).
std::string creds_publisher_seed_file(const std::string& dir, std::string_view name);
std::string creds_auth_conf(const std::string& dir);                         // <dir>/auth.conf
std::string creds_identities_file(const std::string& dir);                   // <dir>/identities.json

// ---- init: the first generation ----

struct CredsRequest {
  std::string out_dir;
  std::string subject_prefix = "ds";
  bool force = false;  // overwrite existing seed files, auth.conf and identities.json
  std::vector<Identity> identities;
};

// Checks every identity (as parse_creds_identity does), the prefix, that
// there is at least one identity and that no name is used twice (names key
// the seed files and the inbox prefixes).
Status validate_creds_request(const CredsRequest& request);

struct IssuedCredential {
  Identity identity;       // with its new public key
  std::string seed_file;   // <dir>/<name>.nk
};

struct CredsResult {
  std::vector<IssuedCredential> issued;  // in the request's order
  std::string auth_conf;                 // <dir>/auth.conf
  std::string identities;                // <dir>/identities.json
};

// `creds init`: validates, generates a fresh key per identity and writes the
// files; the registry holds exactly the request's identities. The directory
// is created (mode 0700) when missing. Without `force`, any existing target
// file (a listed identity's seed, auth.conf, identities.json) is an
// AlreadyExists error and nothing is written.
Result<CredsResult> write_credentials(const CredsRequest& request);

// ---- incremental changes to an existing directory ----

// What one change did.
struct CredsChange {
  // False when the directory already held what was asked (an `add` of an
  // identical identity, a `grant` of types already granted): nothing but a
  // stale auth.conf was rewritten, and no new key exists.
  bool changed = false;
  // True when auth.conf's bytes changed: nats-server must reload to apply it.
  bool auth_conf_changed = false;
  Identity identity;      // the identity as it is now (for revoke: as it was)
  std::string seed_file;  // add/rotate: the seed written; "" otherwise
  std::string summary;    // one line for the operator, e.g. "added agent store-3 (prices)"
};

// The registry of a credentials directory. NotFound ("not a credentials
// directory", naming `creds init`) when it has no identities.json; the
// registry's own errors when that does not parse.
Result<IdentityRegistry> read_creds_dir(const std::string& dir);

// `creds add`: a new identity with a new key; no other identity changes.
// An identity of the same name, role and grants is a no-op success
// (changed = false: re-runs are safe). The same name with another role or
// other grants is AlreadyExists, pointing to `creds grant` (or revoke).
Result<CredsChange> add_identity(const std::string& dir, const Identity& identity);

// `creds grant`: adds types to an agent or producer, keeping its key. A
// type it already holds with the same partition is skipped (all skipped:
// changed = false); with another partition it is AlreadyExists (grant only
// adds; to narrow or widen a partition revoke and add). NotFound for an
// unknown name; InvalidArgument for a hub or a grant its role cannot hold.
Result<CredsChange> grant_types(const std::string& dir, std::string_view name, const std::vector<Grant>& grants);

// `creds revoke`: removes the identity from the registry and auth.conf and
// deletes its seed file from the directory. NotFound for an unknown name.
// Refuses (InvalidArgument) to remove the last identity: an auth.conf
// without users would open nats-server to anyone.
Result<CredsChange> revoke_identity(const std::string& dir, std::string_view name);

// `creds rotate`: a new key for `name`; its seed file is replaced, the old
// public key leaves auth.conf. A hub gets both new keys (service and
// publisher), also when it had no publisher key yet. NotFound for an
// unknown name.
Result<CredsChange> rotate_identity(const std::string& dir, std::string_view name);

// What the directory's seed file of `identity` says: "ok" (its public key is
// the registry's), "absent" (moved to its host, or never copied back),
// "MISMATCH" (another key: an interrupted rotate, or a stray file), or
// "unreadable: <why>".
std::string seed_file_state(const std::string& dir, const Identity& identity);

// ---- telling nats-server to reload ----

// The nats-server process `pid_or_file` names: a process id ("1234") or a
// file holding one (nats-server's pid_file). InvalidArgument when it is
// neither or when the process is not nats-server (its /proc/<pid>/comm
// names another program: a wrong --reload never signals an unrelated
// process); NotFound when no such process runs.
Result<pid_t> find_nats_server(std::string_view pid_or_file);

// Sends SIGHUP, nats-server's "reload the configuration" signal (what
// `nats-server --signal reload=<pid>` sends). The reload itself happens
// asynchronously; nats-server logs "Reloaded server configuration", or the
// reason it kept the old one.
Status signal_nats_reload(pid_t pid);

}  // namespace ds
