#pragma once
// Hub and agent configuration files (TOML), loaded into typed structs and
// validated. Every error names the file, the key and what is wrong, e.g.
//   "hub.toml: types[2].columns[1].type: unknown column type 'float'
//    (expected one of text, integer, real, bool, blob, json)".
// Example files: deploy/hub.example.toml, deploy/agent.example.toml.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shared/log.h"
#include "shared/schema.h"
#include "shared/status.h"

namespace ds {

// [nats] in both files.
struct NatsConfig {
  // One server, or several servers of one NATS cluster, comma-separated
  // (shared/nats_url.h says what an entry may be).
  std::string url = "nats://127.0.0.1:4222";
  std::string user;                            // user + password, or
  std::string password;
  std::string creds_file;                      // a .creds file (JWT + nkey seed), or
  std::string nkey_seed_file;                  // an nkey seed file
  std::string tls_ca_file;                     // TLS when any tls_* is set
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string subject_prefix = "ds";
};

// [[types]] in the hub file.
struct TypeConfig {
  std::string name;
  TypeSchema schema;
  int64_t max_age_s = 7 * 24 * 3600;    // stream retention; 0 = unlimited
  int64_t max_bytes = -1;               // stream retention; -1 = unlimited
  // How stale an agent's copy of the type may get: the age of the oldest
  // change of its partition it has not applied, as the hub measures it
  // (docs/operations.md, "Freshness"). At least [liveness] heartbeat_interval_ms.
  int64_t freshness_objective_s = 300;
};

struct HubConfig {
  std::string path;                     // the file it was loaded from
  std::string name = "hub";             // [hub] name: sent in heartbeats
  std::string log_level = "info";       // [log] level (or [hub] log_level): trace..off
  LogFormat log_format = LogFormat::kText;  // [log] format: text | json
  NatsConfig nats;
  std::string store_path = "hub.db";    // [store] path (relative to the file)
  // [auth] identities_file: the identity registry `deltasync creds` writes
  // (shared/identities.h); "" = no authorization (an open NATS server, for
  // development). Required when [nats] authenticates.
  std::string identities_file;
  std::string http_listen = "127.0.0.1:8080";  // [http] listen: host:port, "" = off
  std::string http_token;               // [http] token: bearer token, required when listening
  int64_t http_max_body_bytes = 16 << 20;  // [http] max_body_bytes: larger request bodies get 413
  std::string http_tls_cert_file;       // [http] tls_cert_file + tls_key_file: HTTPS when set
  std::string http_tls_key_file;
  // [metrics] listen: a second listener that serves only GET /metrics,
  // without a token, for a local Prometheus: "" = off (the default; /metrics
  // stays on [http] behind the token), "PORT" = 127.0.0.1:PORT, "host:port".
  std::string metrics_listen;
  int64_t heartbeat_interval_ms = 5000; // [liveness] heartbeat_interval_ms
  int64_t dead_after = 3;               // [liveness] dead_after: missed beats
  int64_t max_ack_pending = 64;         // [delivery] max_ack_pending per consumer
  int64_t publish_batch = 500;          // [delivery] publish_batch: changes per delta batch
  // [retention] tombstone_max_age (seconds): deleted keys (tombstones and
  // their deletes in the change log) older than this, and no longer in the
  // stream, are dropped; 0 = kept forever. The change log is compacted
  // regardless (docs/operations.md, "Retention").
  int64_t tombstone_max_age_s = 30 * 24 * 3600;
  // [retention] enabled: false keeps the whole change log, every tombstone
  // and every retry key forever (the store grows with every change).
  bool retention_enabled = true;
  // [streams] replicas: copies of every DS_<TYPE> stream (and of every agent
  // consumer on it) the JetStream cluster keeps: 1, or 3 on a cluster of at
  // least 3 nodes (docs/operations.md, "A NATS cluster").
  int64_t stream_replicas = 1;
  // [ha] enabled: this hub is one of a pair (or more) with the same types,
  // each with its own store; the one holding the lease in the JetStream KV
  // bucket DS_HUB_LEASE is active, the others stand by, following the
  // streams into their stores (docs/operations.md, "High availability").
  bool ha_enabled = false;
  // [ha] lease_ms: a standby takes over once the lease went this long
  // without renewal; the active renews it every third of it.
  int64_t ha_lease_ms = 4000;
  std::vector<TypeConfig> types;

  const TypeConfig* find_type(std::string_view name) const;
};

// [[subscriptions]] in the agent file.
struct SubscriptionConfig {
  std::string type;
  std::string partition = "*";          // a partition value or "*"
  std::string hook;                     // command run per applied batch, "" = none
  int64_t hook_retries = 3;
  int64_t hook_timeout_ms = 10000;
};

struct AgentConfig {
  std::string path;
  std::string id;                       // [agent] id
  std::string log_level = "info";       // [log] level (or [agent] log_level)
  LogFormat log_format = LogFormat::kText;  // [log] format
  // [agent] live_feed: a type whose replica is current takes its deltas
  // from the live feed instead of a consumer (docs/protocol.md, "Live
  // feed"); false: always through a consumer, as before the feed.
  bool live_feed = true;
  NatsConfig nats;
  std::string replica_path = "replica.db";  // [replica] path (relative to the file)
  // [replica] tombstone_max_age (seconds): tombstones of deleted keys older
  // than this (by the delete's hub time) are dropped; 0 = kept until a
  // snapshot replaces the type.
  int64_t tombstone_max_age_s = 30 * 24 * 3600;
  // [metrics] listen: serves GET /metrics (Prometheus text, no token) when
  // set: "" = off (the default), "PORT" = 127.0.0.1:PORT, "host:port".
  std::string metrics_listen;
  std::vector<SubscriptionConfig> subscriptions;
};

// Relative paths inside a file (store, replica, creds, tls, hook working
// directory) are resolved against the file's directory.
Result<HubConfig> load_hub_config(const std::string& path);
Result<AgentConfig> load_agent_config(const std::string& path);
// Same, from TOML text; `name` stands for the file in error messages and
// relative paths resolve against the current directory.
Result<HubConfig> parse_hub_config(std::string_view toml, const std::string& name);
Result<AgentConfig> parse_agent_config(std::string_view toml, const std::string& name);

// A [metrics] listen value as the listener binds it: "" stays "", a bare
// port "9464" is "127.0.0.1:9464" (loopback unless the operator names a
// host), anything else is returned as it is. Loading validates it.
std::string metrics_listen_address(const std::string& listen);

}  // namespace ds
