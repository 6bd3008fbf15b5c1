#include "hub/agent_registry.h"

#include <sys/stat.h>

#include <algorithm>
#include <utility>

#include <spdlog/spdlog.h>

namespace ds {
namespace {

constexpr std::string_view kSchema = R"sql(
CREATE TABLE IF NOT EXISTS agents (
  id TEXT PRIMARY KEY,
  host TEXT NOT NULL DEFAULT '',
  version TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL,
  registered_at INTEGER NOT NULL,
  last_beat INTEGER NOT NULL,
  last_error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS agent_subscriptions (
  agent TEXT NOT NULL,
  type TEXT NOT NULL,
  partition TEXT NOT NULL,
  version INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  rows INTEGER NOT NULL,
  schema_hash TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (agent, type)
);
CREATE TABLE IF NOT EXISTS agent_events (
  id INTEGER PRIMARY KEY,
  ts INTEGER NOT NULL,
  agent TEXT NOT NULL,
  from_state TEXT,
  to_state TEXT NOT NULL,
  reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_events_by_agent ON agent_events(agent, id);
)sql";

// SQLite integers are signed 64-bit; versions and sequences never reach 2^63.
int64_t as_db(uint64_t v) { return static_cast<int64_t>(v); }
uint64_t from_db(int64_t v) { return v < 0 ? 0 : static_cast<uint64_t>(v); }

}  // namespace

std::string agent_registry_path(const std::string& store_path) {
  constexpr std::string_view kDb = ".db";
  std::string_view stem = store_path;
  if (stem.size() > kDb.size() && stem.ends_with(kDb)) stem.remove_suffix(kDb.size());
  return std::string(stem) + ".agents.db";
}

Result<std::unique_ptr<AgentRegistry>> AgentRegistry::open(const std::string& path, const std::string& old_store) {
  OpenOptions opts;
  // Agent state is re-reported by the agents themselves; it need not be
  // durable at every commit (WAL keeps it consistent either way).
  opts.synchronous_full = false;
  DS_ASSIGN_OR_RETURN(auto db, Database::open(path, opts));
  std::unique_ptr<AgentRegistry> reg(new AgentRegistry(std::move(db)));
  DS_RETURN_IF_ERROR(reg->create_tables(old_store));
  DS_RETURN_IF_ERROR(reg->load());
  return reg;
}

Status AgentRegistry::create_tables(const std::string& old_store) {
  DS_RETURN_IF_ERROR(db_->exec(kSchema).with_context("agent registry: create tables"));
  // user_version 1: the tables are this file's own (created new, or copied
  // once from a hub database that held them).
  DS_ASSIGN_OR_RETURN(int64_t format, query_scalar_int64(*db_, "PRAGMA user_version"));
  struct stat st {};
  const bool has_old = !old_store.empty() && ::stat(old_store.c_str(), &st) == 0;
  if (!has_old) return format >= 1 ? Status::ok() : copy_old_tables(std::string());
  // ATTACH cannot run inside a transaction; DETACH follows on every path.
  DS_ASSIGN_OR_RETURN(Statement attach, db_->prepare("ATTACH DATABASE ?1 AS old_store"));
  DS_RETURN_IF_ERROR(attach.bind(1, old_store).run().with_context("agent registry: open " + old_store));
  Status s = format >= 1 ? Status::ok() : copy_old_tables(old_store);
  // Then the store's copies go (each file commits on its own in WAL mode,
  // so in a second transaction, and again at every start until done): a
  // registry file lost later must not bring back their stale agents.
  if (s.is_ok()) {
    // Not worth failing the start for: the copies stay until a later start.
    if (Status dropped = drop_old_tables(); !dropped.is_ok()) {
      spdlog::warn("agent registry: the store's old agent tables could not be dropped ({}); tried again at the "
                   "next start",
                   dropped.message());
    }
  }
  Status detached = db_->exec("DETACH DATABASE old_store");
  if (s.is_ok()) s = detached;
  return s.with_context("agent registry: take over the agent tables of " + old_store);
}

Result<int64_t> AgentRegistry::old_agent_tables() {
  return query_scalar_int64(*db_,
                            "SELECT count(*) FROM old_store.sqlite_master WHERE type = 'table' "
                            "AND name IN ('agents', 'agent_subscriptions', 'agent_events')");
}

Status AgentRegistry::drop_old_tables() {
  DS_ASSIGN_OR_RETURN(int64_t old_tables, old_agent_tables());
  if (old_tables == 0) return Status::ok();
  // Before the hub's ingest writer starts (AgentService starts first): the
  // store has no other writer meanwhile.
  DS_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(*db_));
  DS_RETURN_IF_ERROR(db_->exec("DROP TABLE IF EXISTS old_store.agent_events;"
                               "DROP TABLE IF EXISTS old_store.agent_subscriptions;"
                               "DROP TABLE IF EXISTS old_store.agents;"));
  DS_RETURN_IF_ERROR(tx.commit());
  spdlog::info("agent registry: the old agent tables of the store are dropped ({} is the registry now)", db_->path());
  return Status::ok();
}

Status AgentRegistry::copy_old_tables(const std::string& attached) {
  // Deferred: it reads the store and writes only this file, so it takes no
  // write lock on the store.
  DS_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(*db_, Transaction::Kind::kDeferred));
  int64_t old_tables = 0;
  if (!attached.empty()) {
    DS_ASSIGN_OR_RETURN(old_tables, old_agent_tables());
  }
  if (old_tables == 3) {
    DS_RETURN_IF_ERROR(db_->exec(
        "INSERT INTO agents(id, host, version, state, registered_at, last_beat, last_error) "
        "SELECT id, host, version, state, registered_at, last_beat, last_error FROM old_store.agents;"
        "INSERT INTO agent_subscriptions(agent, type, partition, version, seq, ts, rows, schema_hash) "
        "SELECT agent, type, partition, version, seq, ts, rows, schema_hash FROM old_store.agent_subscriptions;"
        "INSERT INTO agent_events(id, ts, agent, from_state, to_state, reason) "
        "SELECT id, ts, agent, from_state, to_state, reason FROM old_store.agent_events;"));
    DS_ASSIGN_OR_RETURN(int64_t agents, query_scalar_int64(*db_, "SELECT count(*) FROM agents"));
    spdlog::info("agent registry: {} agent(s) taken over from {} into {}", agents, attached, db_->path());
  }
  DS_RETURN_IF_ERROR(db_->exec("PRAGMA user_version = 1"));
  return tx.commit();
}

Status AgentRegistry::load() {
  std::map<std::string, AgentRecord> loaded;
  {
    DS_ASSIGN_OR_RETURN(Statement st, db_->prepare(
        "SELECT id, host, version, state, registered_at, last_beat, last_error FROM agents"));
    for (;;) {
      DS_ASSIGN_OR_RETURN(bool row, st.step());
      if (!row) break;
      AgentRecord a;
      a.id = st.column_text(0);
      a.host = st.column_text(1);
      a.version = st.column_text(2);
      auto state = agent_state_from_name(st.column_text(3));
      if (!state.is_ok()) return state.status().with_context("agents row '" + a.id + "'");
      a.state = *state;
      a.registered_at = st.column_int64(4);
      a.last_beat = st.column_int64(5);
      a.last_error = st.column_text(6);
      loaded.emplace(a.id, std::move(a));
    }
  }
  {
    DS_ASSIGN_OR_RETURN(Statement st, db_->prepare(
        "SELECT agent, type, partition, version, seq, ts, rows, schema_hash FROM agent_subscriptions"));
    for (;;) {
      DS_ASSIGN_OR_RETURN(bool row, st.step());
      if (!row) break;
      auto it = loaded.find(st.column_text(0));
      if (it == loaded.end()) continue;  // orphan row: the agent is gone
      SubscriptionState s;
      s.type = st.column_text(1);
      s.partition = st.column_text(2);
      s.version = from_db(st.column_int64(3));
      s.seq = from_db(st.column_int64(4));
      s.ts = st.column_int64(5);
      s.rows = from_db(st.column_int64(6));
      s.schema_hash = st.column_text(7);
      it->second.subscriptions.emplace(s.type, std::move(s));
    }
  }
  std::lock_guard lock(mu_);
  agents_ = std::move(loaded);
  return Status::ok();
}

Status AgentRegistry::record_registration(const RegisterRequest& r, int64_t now_wall_ms) {
  {
    DS_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(*db_));
    DS_ASSIGN_OR_RETURN(Statement up, db_->prepare(
        "INSERT INTO agents(id, host, version, state, registered_at, last_beat, last_error) "
        "VALUES(?1, ?2, ?3, 'live', ?4, ?4, '') "
        "ON CONFLICT(id) DO UPDATE SET host = ?2, version = ?3, state = 'live', "
        "registered_at = ?4, last_beat = ?4, last_error = ''"));
    DS_RETURN_IF_ERROR(up.bind(1, r.agent).bind(2, r.host).bind(3, r.version).bind(4, now_wall_ms).run());
    DS_ASSIGN_OR_RETURN(Statement del, db_->prepare("DELETE FROM agent_subscriptions WHERE agent = ?1"));
    DS_RETURN_IF_ERROR(del.bind(1, r.agent).run());
    DS_ASSIGN_OR_RETURN(Statement ins, db_->prepare(
        "INSERT INTO agent_subscriptions(agent, type, partition, version, seq, ts, rows, schema_hash) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, '')"));
    for (const SubscriptionReport& s : r.subscriptions) {
      ins.reset();
      DS_RETURN_IF_ERROR(ins.bind(1, r.agent).bind(2, s.type).bind(3, s.partition)
                             .bind(4, as_db(s.version)).bind(5, as_db(s.seq)).bind(6, s.ts)
                             .bind(7, as_db(s.rows)).run());
    }
    DS_RETURN_IF_ERROR(tx.commit());
  }

  std::lock_guard lock(mu_);
  AgentRecord& a = agents_[r.agent];
  a.id = r.agent;
  a.host = r.host;
  a.version = r.version;
  a.state = AgentState::kLive;
  a.registered_at = now_wall_ms;
  ++a.registrations;
  a.last_beat = now_wall_ms;
  a.last_error.clear();
  a.health = AgentHealth::kOk;
  a.subscriptions.clear();
  for (const SubscriptionReport& s : r.subscriptions) {
    SubscriptionState st;
    st.type = s.type;
    st.partition = s.partition;
    st.version = s.version;
    st.seq = s.seq;
    st.ts = s.ts;
    st.rows = s.rows;
    // st.feed stays false: the request says the agent can take the feed
    // (PlanInput::feed_asked), not that it does; its replies say that.
    a.subscriptions.emplace(s.type, std::move(st));
  }
  std::erase(dirty_, r.agent);
  return Status::ok();
}

Status AgentRegistry::record_transition(const Transition& t, int64_t now_wall_ms) {
  const std::string to(agent_state_name(t.to));
  {
    DS_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(*db_));
    DS_ASSIGN_OR_RETURN(Statement up, db_->prepare("UPDATE agents SET state = ?2 WHERE id = ?1"));
    DS_RETURN_IF_ERROR(up.bind(1, t.agent).bind(2, to).run());
    DS_ASSIGN_OR_RETURN(Statement ev, db_->prepare(
        "INSERT INTO agent_events(ts, agent, from_state, to_state, reason) VALUES(?1, ?2, ?3, ?4, ?5)"));
    ev.bind(1, now_wall_ms).bind(2, t.agent).bind(4, to).bind(5, t.reason);
    if (t.from) {
      ev.bind(3, std::string(agent_state_name(*t.from)));
    } else {
      ev.bind_null(3);
    }
    DS_RETURN_IF_ERROR(ev.run());
    // Bounded history: the agent's newest kMaxEventsPerAgent events stay
    // (index agent_events_by_agent makes this one short range delete).
    DS_ASSIGN_OR_RETURN(Statement prune, db_->prepare(
        "DELETE FROM agent_events WHERE agent = ?1 AND id <= (SELECT id FROM agent_events WHERE agent = ?1"
        " ORDER BY id DESC LIMIT 1 OFFSET ?2)"));
    DS_RETURN_IF_ERROR(prune.bind(1, t.agent).bind(2, static_cast<int64_t>(kMaxEventsPerAgent)).run());
    DS_RETURN_IF_ERROR(tx.commit());
  }
  std::lock_guard lock(mu_);
  auto it = agents_.find(t.agent);
  if (it != agents_.end()) it->second.state = t.to;
  return Status::ok();
}

void AgentRegistry::record_beat(const HeartbeatReply& reply, int64_t now_wall_ms) {
  std::lock_guard lock(mu_);
  auto it = agents_.find(reply.agent);
  if (it == agents_.end()) return;
  AgentRecord& a = it->second;
  a.last_beat = now_wall_ms;
  a.health = reply.status;
  a.pending = reply.pending;
  a.quarantined = reply.quarantined;
  a.last_error = reply.error.value_or("");
  for (const auto& [type, cp] : reply.checkpoints) {
    auto sub = a.subscriptions.find(type);
    if (sub == a.subscriptions.end()) continue;
    sub->second.version = cp.version;
    sub->second.seq = cp.seq;
    sub->second.ts = cp.ts;
    sub->second.schema_hash = cp.schema_hash;
    sub->second.feed = cp.feed;
  }
  for (auto& [type, sub] : a.subscriptions) {
    if (!reply.quarantined_types) {
      sub.quarantined.reset();
      continue;
    }
    auto n = reply.quarantined_types->find(type);
    sub.quarantined = n == reply.quarantined_types->end() ? 0 : n->second;
  }
  if (std::find(dirty_.begin(), dirty_.end(), reply.agent) == dirty_.end()) dirty_.push_back(reply.agent);
}

Status AgentRegistry::flush() {
  std::vector<AgentRecord> batch;
  {
    std::lock_guard lock(mu_);
    for (const std::string& id : dirty_) {
      auto it = agents_.find(id);
      if (it != agents_.end()) batch.push_back(it->second);
    }
    dirty_.clear();
  }
  if (batch.empty()) return Status::ok();
  Status s = [&]() -> Status {
    DS_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(*db_));
    for (const AgentRecord& a : batch) DS_RETURN_IF_ERROR(write_beat(a));
    return tx.commit();
  }();
  if (!s.is_ok()) {
    // Keep them dirty so the next flush tries again.
    std::lock_guard lock(mu_);
    for (const AgentRecord& a : batch) {
      if (std::find(dirty_.begin(), dirty_.end(), a.id) == dirty_.end()) dirty_.push_back(a.id);
    }
  }
  return s.with_context("agent registry: flush heartbeats");
}

Status AgentRegistry::write_beat(const AgentRecord& a) {
  DS_ASSIGN_OR_RETURN(Statement up, db_->prepare(
      "UPDATE agents SET last_beat = ?2, last_error = ?3 WHERE id = ?1"));
  DS_RETURN_IF_ERROR(up.bind(1, a.id).bind(2, a.last_beat).bind(3, a.last_error).run());
  DS_ASSIGN_OR_RETURN(Statement sub, db_->prepare(
      "UPDATE agent_subscriptions SET version = ?3, seq = ?4, ts = ?5, schema_hash = ?6 "
      "WHERE agent = ?1 AND type = ?2"));
  for (const auto& [type, s] : a.subscriptions) {
    sub.reset();
    DS_RETURN_IF_ERROR(sub.bind(1, a.id).bind(2, type).bind(3, as_db(s.version)).bind(4, as_db(s.seq))
                           .bind(5, s.ts).bind(6, s.schema_hash).run());
  }
  return Status::ok();
}

void AgentRegistry::set_delivery(const std::string& agent, const std::string& type, DeliveryState state) {
  std::lock_guard lock(mu_);
  auto it = agents_.find(agent);
  if (it == agents_.end()) return;
  auto sub = it->second.subscriptions.find(type);
  if (sub == it->second.subscriptions.end()) return;
  sub->second.delivery = std::move(state);
}

std::optional<AgentRecord> AgentRegistry::find(const std::string& agent) const {
  std::lock_guard lock(mu_);
  auto it = agents_.find(agent);
  if (it == agents_.end()) return std::nullopt;
  return it->second;
}

std::vector<AgentRecord> AgentRegistry::all() const {
  std::lock_guard lock(mu_);
  std::vector<AgentRecord> out;
  out.reserve(agents_.size());
  for (const auto& [id, a] : agents_) out.push_back(a);
  return out;
}

Result<Database*> AgentRegistry::reader() const {
  if (!read_db_) {
    OpenOptions opts;
    opts.read_only = true;
    opts.create = false;
    DS_ASSIGN_OR_RETURN(read_db_, Database::open(db_->path(), opts));
  }
  return read_db_.get();
}

Result<std::vector<AgentEvent>> AgentRegistry::events(const std::string& agent) const {
  std::lock_guard lock(read_mu_);
  DS_ASSIGN_OR_RETURN(Database * db, reader());
  DS_ASSIGN_OR_RETURN(Statement st, db->prepare(
      "SELECT id, ts, agent, coalesce(from_state, ''), to_state, reason FROM agent_events "
      "WHERE agent = ?1 ORDER BY id"));
  st.bind(1, agent);
  std::vector<AgentEvent> out;
  for (;;) {
    DS_ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) break;
    out.push_back({st.column_int64(0), st.column_int64(1), st.column_text(2), st.column_text(3),
                   st.column_text(4), st.column_text(5)});
  }
  return out;
}

}  // namespace ds
