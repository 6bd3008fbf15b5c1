#include "hub/verify_service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "hub/query_store.h"
#include "shared/digest.h"
#include "shared/names.h"

namespace ds {
namespace {

constexpr uint64_t kRowsPerBucket = 128;
constexpr int64_t kRepairPollMs = 200;

// Enough buckets for about kRowsPerBucket rows each; a power of two.
uint32_t buckets_for(uint64_t rows) {
  uint64_t n = 1;
  while (n * kRowsPerBucket < rows && n < kMaxDigestBuckets) n *= 2;
  return static_cast<uint32_t>(n);
}

// An agent as agents_json() describes it.
struct AgentEntry {
  std::string id;
  std::string state;
  nlohmann::json types;  // {<type>: {partition, lag_ms, ...}}
};

std::vector<AgentEntry> agents_to_verify(const nlohmann::json& fleet, const std::set<std::string>* only = nullptr) {
  std::vector<AgentEntry> out;
  if (!fleet.is_array()) return out;
  for (const nlohmann::json& a : fleet) {
    AgentEntry e{a.value("id", ""), a.value("state", ""), a.value("types", nlohmann::json::object())};
    if (e.state == "retired" || !e.types.is_object() || e.id.empty()) continue;
    if (only != nullptr && only->count(e.id) == 0) continue;
    out.push_back(std::move(e));
  }
  return out;
}

std::optional<std::string> partition_filter(const std::string& partition) {
  if (partition == kAnyPartition) return std::nullopt;
  return partition;
}

// The hub's digests of one job, each (type, partition) computed once: a
// thousand agents of one partition cost one scan, not a thousand.
class HubDigests {
 public:
  HubDigests(QueryStore& store, const Clock& clock) : store_(store), clock_(clock) {}

  Result<TableDigest> get(const std::string& type, const std::string& partition) {
    auto key = std::make_pair(type, partition);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    const int64_t t0 = clock_.now_steady_ms();
    DS_ASSIGN_OR_RETURN(TableDigest d, store_.table_digest(type, partition_filter(partition)));
    took_ms_[key] = clock_.now_steady_ms() - t0;
    cache_.emplace(key, d);
    return d;
  }
  // How long the hub's scan for get(type, partition) took; 0 before it ran.
  int64_t took_ms(const std::string& type, const std::string& partition) const {
    auto it = took_ms_.find(std::make_pair(type, partition));
    return it == took_ms_.end() ? 0 : it->second;
  }
  // Forgets every digest (after a repair the hub's rows may have moved on).
  void clear() {
    cache_.clear();
    took_ms_.clear();
  }
  QueryStore& store() { return store_; }

 private:
  QueryStore& store_;
  const Clock& clock_;
  std::map<std::pair<std::string, std::string>, TableDigest> cache_;
  std::map<std::pair<std::string, std::string>, int64_t> took_ms_;
};

}  // namespace

struct VerifyService::Job {
  std::string id;
  VerifyOptions options;
  std::function<void(const nlohmann::json&)> on_done;
  const Clock* clock = nullptr;  // the service's
  int64_t started_wall = 0;
  int64_t started_steady = 0;
  std::atomic<size_t> agents_total{0};
  std::atomic<size_t> agents_done{0};

  mutable std::mutex mu;
  nlohmann::json report;  // guarded by mu
  bool finished = false;  // guarded by mu

  void set(const std::string& field, nlohmann::json value) {
    std::lock_guard lock(mu);
    report[field] = std::move(value);
  }
  nlohmann::json snapshot() const {
    std::lock_guard lock(mu);
    nlohmann::json r = report;
    r["agents_total"] = agents_total.load();
    r["agents_done"] = agents_done.load();
    r["elapsed_ms"] = clock->now_steady_ms() - started_steady;
    return r;
  }
};

namespace {

// The steps of one job that need the hooks and the hub's digests. Runs on
// the job's runner thread (and its digest workers).
class JobRun {
 public:
  JobRun(const VerifyHooks& hooks, const VerifyOptions& options, HubDigests& hub, std::atomic<bool>& cancel,
         std::atomic<size_t>& total, std::atomic<size_t>& done, const Clock& clock)
      : hooks_(hooks), options_(options), hub_(hub), cancel_(cancel), total_(total), done_(done), clock_(clock) {}

  // digests + compare + locate for `agents`: one row per agent and type.
  nlohmann::json verify(const std::vector<AgentEntry>& agents, const std::function<void(const char*)>& phase) {
    phase("digests");
    std::vector<int64_t> timeouts;
    timeouts.reserve(agents.size());
    for (const AgentEntry& a : agents) timeouts.push_back(digest_timeout_ms(expected_rows(a)));
    std::vector<int64_t> took_ms(agents.size(), 0);
    std::vector<Result<DigestReply>> replies = ask_all(agents, timeouts, took_ms);
    phase("compare");
    nlohmann::json rows = nlohmann::json::array();
    std::vector<size_t> differing;  // row indices
    for (size_t i = 0; i < agents.size(); ++i) {
      const AgentEntry& a = agents[i];
      for (auto it = a.types.begin(); it != a.types.end(); ++it) {
        nlohmann::json row = compare(a, it.key(), it.value(), replies[i]);
        // Where the time goes: the agent's answer (its scan of every type it
        // takes, and the round trip) and the hub's scan of this partition.
        row["agent_digest_ms"] = took_ms[i];
        row["agent_timeout_ms"] = timeouts[i];
        row["hub_digest_ms"] = hub_.took_ms(it.key(), row.value("partition", std::string(kAnyPartition)));
        if (!row.value("match", false) && !row.contains("error") && row.value("content_checked", false)) {
          differing.push_back(rows.size());
        }
        rows.push_back(std::move(row));
      }
    }
    phase("locate");
    for (size_t n = 0; n < differing.size() && n < VerifyService::kMaxLocated && !cancel_.load(); ++n) {
      locate(rows[differing[n]]);
    }
    if (differing.size() > VerifyService::kMaxLocated) {
      spdlog::info("verify: {} agent/type pairs differ; keys located for the first {}", differing.size(),
                   VerifyService::kMaxLocated);
    }
    return rows;
  }

 private:
  // How long to wait for an agent's digests of `rows` rows: the agent scans
  // them all for every request, so the wait grows with its table.
  int64_t digest_timeout_ms(uint64_t rows) const {
    return options_.agent_timeout_ms +
           static_cast<int64_t>(rows / 1000) * options_.agent_timeout_per_million_rows_ms / 1000;
  }

  // The rows the agent should hold: the hub's rows of each of its types'
  // partitions (its digests, needed by compare anyway, computed here once).
  uint64_t expected_rows(const AgentEntry& a) {
    uint64_t rows = 0;
    for (auto it = a.types.begin(); it != a.types.end() && !cancel_.load(); ++it) {
      auto d = hub_.get(it.key(), it.value().value("partition", std::string(kAnyPartition)));
      if (d.is_ok()) rows += d->keys.count;
    }
    return rows;
  }

  // Every agent's digests, kConcurrency requests in flight, each with its timeout.
  std::vector<Result<DigestReply>> ask_all(const std::vector<AgentEntry>& agents, const std::vector<int64_t>& timeouts,
                                           std::vector<int64_t>& took_ms) {
    std::vector<Result<DigestReply>> replies(agents.size(), Result<DigestReply>(Status::unavailable("not asked")));
    total_.store(agents.size());
    done_.store(0);
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (;;) {
        const size_t i = next.fetch_add(1);
        if (i >= agents.size() || cancel_.load()) return;
        if (agents[i].state == "dead") {
          replies[i] = Status::unavailable("agent is dead: not asked");
        } else {
          const int64_t t0 = clock_.now_steady_ms();
          replies[i] = hooks_.request_digest(agents[i].id, DigestRequest{}, timeouts[i]);
          took_ms[i] = clock_.now_steady_ms() - t0;
        }
        done_.fetch_add(1);
      }
    };
    std::vector<std::thread> workers;
    const size_t n = std::min(VerifyService::kConcurrency, agents.size());
    workers.reserve(n);
    for (size_t w = 0; w < n; ++w) workers.emplace_back(work);
    for (std::thread& t : workers) t.join();
    return replies;
  }

  nlohmann::json compare(const AgentEntry& a, const std::string& type, const nlohmann::json& sub,
                         const Result<DigestReply>& reply) {
    const std::string partition = sub.value("partition", std::string(kAnyPartition));
    nlohmann::json row{{"agent", a.id}, {"state", a.state}, {"type", type}, {"partition", partition}};
    // The partition's version on both sides: the agent's checkpoint is the
    // newest change of its partition, not of the whole type.
    if (partition == kAnyPartition) {
      auto state = hub_.store().type_state(type);
      if (state.is_ok()) row["hub_version"] = state->version;
    } else {
      auto version = hub_.store().partition_version(type, partition);
      if (version.is_ok()) row["hub_version"] = *version;
    }
    auto hub = hub_.get(type, partition);
    if (hub.is_ok()) row["hub_rows"] = hub->keys.count;
    bool match = false;
    if (!reply.is_ok()) {
      row["error"] = reply.status().message();
    } else if (auto found = reply->types.find(type); found == reply->types.end()) {
      row["error"] = "the agent does not report this type";
    } else {
      const TypeDigest& d = found->second;
      row["agent_version"] = d.version;
      row["agent_rows"] = d.rows;
      row["lag_ms"] = sub.contains("lag_ms") ? sub["lag_ms"] : nlohmann::json();
      const bool content = !d.content.empty();
      row["content_checked"] = content;
      row["agent_digest"] = content ? d.content : d.digest;
      if (hub.is_ok()) {
        row["hub_digest"] = content ? hub->content.hex() : hub->keys.hex();
        match = row["hub_digest"] == row["agent_digest"];
      }
    }
    if (!hub.is_ok()) row["error"] = hub.status().message();
    row["match"] = match;
    return row;
  }

  // Finds which keys of a differing agent x type differ (see the header).
  void locate(nlohmann::json& row) {
    const std::string agent = row["agent"];
    const std::string type = row["type"];
    const std::string partition = row["partition"];
    const uint64_t rows = std::max(row.value("hub_rows", uint64_t{0}), row.value("agent_rows", uint64_t{0}));
    const uint32_t buckets = buckets_for(rows);
    auto fail = [&row](const std::string& why) { row["locate_error"] = why; };

    DigestOptions options;
    options.buckets = buckets;
    auto hub_buckets = hub_.store().table_digest(type, partition_filter(partition), options);
    if (!hub_buckets.is_ok()) return fail(hub_buckets.status().message());
    DigestRequest request;
    request.types = {type};
    request.buckets = buckets;
    const int64_t timeout_ms = digest_timeout_ms(rows);
    auto agent_buckets = ask_one(agent, type, request, timeout_ms);
    if (!agent_buckets.is_ok()) return fail(agent_buckets.status().message());
    if (agent_buckets->buckets.size() != buckets) return fail("the agent did not report bucket digests");

    std::vector<uint32_t> differing;
    size_t differing_total = 0;
    for (uint32_t b = 0; b < buckets; ++b) {
      const Digest& h = hub_buckets->buckets[b];
      if (agent_buckets->buckets[b] == std::make_pair(h.count, h.sum)) continue;
      ++differing_total;
      if (differing.size() < VerifyService::kMaxListedBuckets) differing.push_back(b);
    }
    if (differing.empty()) return fail("no bucket differs any more (the rows changed meanwhile)");

    options.list = differing;
    auto hub_list = hub_.store().table_digest(type, partition_filter(partition), options);
    if (!hub_list.is_ok()) return fail(hub_list.status().message());
    request.list = differing;
    auto agent_list = ask_one(agent, type, request, timeout_ms);
    if (!agent_list.is_ok()) return fail(agent_list.status().message());

    // A truncated list covers only its smallest keys: compare up to the
    // smaller last key of the truncated sides.
    std::optional<std::string> limit;
    auto narrow = [&limit](bool truncated, const std::string& last) {
      if (truncated && (!limit || last < *limit)) limit = last;
    };
    narrow(hub_list->listed_truncated, hub_list->listed.empty() ? std::string() : hub_list->listed.back().key);
    narrow(agent_list->listed_truncated, agent_list->listed.empty() ? std::string() : agent_list->listed.back().first);

    nlohmann::json named = nlohmann::json::array();
    size_t found = 0;
    auto note = [&](const std::string& key, const char* problem) {
      if (limit && key > *limit) return;
      ++found;
      if (named.size() < VerifyService::kMaxNamedKeys) named.push_back({{"key", key}, {"problem", problem}});
    };
    const auto& h = hub_list->listed;
    const auto& g = agent_list->listed;
    size_t i = 0;
    size_t j = 0;
    while (i < h.size() || j < g.size()) {
      if (j == g.size() || (i < h.size() && h[i].key < g[j].first)) {
        note(h[i++].key, "missing on the agent");
      } else if (i == h.size() || g[j].first < h[i].key) {
        note(g[j++].first, "not on the hub");
      } else {
        if (h[i].hash != g[j].second) note(h[i].key, "values differ");
        ++i;
        ++j;
      }
    }
    row["differences"] = std::move(named);
    row["different_rows"] = found;
    row["differences_truncated"] = found > VerifyService::kMaxNamedKeys || limit.has_value() ||
                                   differing_total > differing.size();
  }

  Result<TypeDigest> ask_one(const std::string& agent, const std::string& type, const DigestRequest& request,
                             int64_t timeout_ms) {
    DS_ASSIGN_OR_RETURN(DigestReply reply, hooks_.request_digest(agent, request, timeout_ms));
    auto it = reply.types.find(type);
    if (it == reply.types.end()) return Status::not_found("the agent does not report type '" + type + "'");
    return it->second;
  }

  const VerifyHooks& hooks_;
  const VerifyOptions& options_;
  HubDigests& hub_;
  std::atomic<bool>& cancel_;
  std::atomic<size_t>& total_;
  std::atomic<size_t>& done_;
  const Clock& clock_;
};

bool all_match(const nlohmann::json& rows) {
  return std::all_of(rows.begin(), rows.end(), [](const nlohmann::json& r) { return r.value("match", false); });
}

}  // namespace

VerifyService::VerifyService(const HubConfig& config, VerifyHooks hooks, const Clock& clock)
    : config_(config), hooks_(std::move(hooks)), clock_(clock) {}

VerifyService::~VerifyService() { stop(); }

Result<std::string> VerifyService::start(const VerifyOptions& options,
                                         std::function<void(const nlohmann::json&)> on_done) {
  if (!hooks_.agents_json || !hooks_.request_digest || !hooks_.order_snapshot) {
    return Status::unavailable("verify: no agent service");
  }
  std::lock_guard lock(mu_);
  if (stopped_) return Status::unavailable("verify: the hub is stopping");
  if (running_) {
    std::lock_guard job_lock(running_->mu);
    if (!running_->finished) {
      if (!options.repair && !running_->options.repair && !on_done && options.agents == running_->options.agents) {
        return running_->id;
      }
      return Status::already_exists("verify job " + running_->id + " is still running (GET /v1/verify/" +
                                    running_->id + ")");
    }
  }
  if (runner_.joinable()) runner_.join();  // finished: its report is final
  auto job = std::make_shared<Job>();
  job->id = std::to_string(next_id_++);
  job->options = options;
  job->on_done = std::move(on_done);
  job->clock = &clock_;
  job->started_wall = clock_.now_system_ms();
  job->started_steady = clock_.now_steady_ms();
  job->report = {{"id", job->id},     {"state", "running"}, {"phase", "digests"},
                 {"repair", options.repair}, {"started_at", job->started_wall}};
  if (!options.agents.empty()) job->report["agents"] = options.agents;
  jobs_.push_back(job);
  while (jobs_.size() > kKeptJobs) jobs_.pop_front();
  running_ = job;
  runner_ = std::thread([this, job] { run(job); });
  spdlog::info("verify job {} started{}", job->id, options.repair ? " (repair)" : "");
  return job->id;
}

Result<nlohmann::json> VerifyService::report(const std::string& id) const {
  std::shared_ptr<Job> job;
  {
    std::lock_guard lock(mu_);
    for (const auto& j : jobs_) {
      if (j->id == id) job = j;
    }
  }
  if (!job) return Status::not_found("no verify job '" + id + "' (only the last " + std::to_string(kKeptJobs) +
                                     " are kept, and none across a hub restart)");
  return job->snapshot();
}

void VerifyService::run(std::shared_ptr<Job> job) {
  auto phase = [&job](const char* p) { job->set("phase", p); };
  auto finish = [&](const char* state, std::optional<std::string> error) {
    nlohmann::json final_report;
    {
      std::lock_guard lock(job->mu);
      job->report["state"] = state;
      job->report["phase"] = "done";
      if (error) job->report["error"] = *error;
      job->finished = true;
    }
    final_report = job->snapshot();
    spdlog::info("verify job {} {} in {} ms: {}", job->id, state, final_report.value("elapsed_ms", int64_t{0}),
                 error ? *error : (final_report.value("ok", false) ? std::string("every replica matches")
                                                                   : std::string("divergence found")));
    if (job->on_done) job->on_done(final_report);
  };

  QueryStoreOptions store_options;
  store_options.read_only = true;
  auto store = QueryStore::open(config_.store_path, config_.types, store_options);
  if (!store.is_ok()) return finish("failed", store.status().to_string());
  HubDigests hub(**store, clock_);
  JobRun verifier(hooks_, job->options, hub, cancel_, job->agents_total, job->agents_done, clock_);

  const std::set<std::string>* only = job->options.agents.empty() ? nullptr : &job->options.agents;
  const std::vector<AgentEntry> chosen = agents_to_verify(hooks_.agents_json(), only);
  nlohmann::json rows = verifier.verify(chosen, phase);
  if (cancel_.load()) return finish("failed", "the hub is stopping");
  if (only != nullptr) {
    for (const std::string& id : *only) {
      const bool known = std::any_of(chosen.begin(), chosen.end(), [&id](const AgentEntry& e) { return e.id == id; });
      if (known) continue;
      rows.push_back({{"agent", id}, {"state", "unknown"}, {"match", false},
                      {"error", "the hub knows no agent '" + id + "' (never registered, or retired)"}});
    }
  }

  if (job->options.repair && !all_match(rows)) {
    phase("repair");
    job->set("before_repair", rows);
    nlohmann::json repairs = nlohmann::json::array();
    std::map<std::pair<std::string, std::string>, size_t> waiting;  // (agent, type) -> index in repairs
    // Each agent's registrations before the order: a later registration is
    // the reload (counted by the hub, so no wall clock is compared: a hub
    // clock stepping back during the repair changes nothing).
    std::map<std::string, uint64_t> registrations_before;
    for (const nlohmann::json& a : hooks_.agents_json()) {
      registrations_before[a.value("id", "")] = a.value("registrations", uint64_t{0});
    }
    std::map<std::pair<std::string, std::string>, uint64_t> ordered_after;  // (agent, type) -> registrations
    for (const nlohmann::json& r : rows) {
      if (r.value("match", false)) continue;
      const std::string agent = r.value("agent", "");
      const std::string type = r.value("type", "");
      nlohmann::json entry{{"agent", agent}, {"type", type}, {"ordered", false}, {"done", false}};
      if (r.contains("error") && !r.contains("agent_digest")) {
        entry["error"] = "not ordered: the agent did not answer (" + r.value("error", std::string()) + ")";
      } else if (Status s = hooks_.order_snapshot(agent, type); !s.is_ok()) {
        entry["error"] = s.message();
      } else {
        entry["ordered"] = true;
        waiting.emplace(std::make_pair(agent, type), repairs.size());
        ordered_after[std::make_pair(agent, type)] = registrations_before[agent];
        spdlog::info("verify job {}: agent {} type {}: snapshot ordered", job->id, agent, type);
      }
      repairs.push_back(std::move(entry));
    }
    job->set("repairs", repairs);
    std::set<std::string> repaired_agents;
    for (const auto& [at, index] : waiting) repaired_agents.insert(at.first);

    const int64_t deadline = clock_.now_steady_ms() + job->options.repair_timeout_ms;
    while (!waiting.empty() && !cancel_.load() && clock_.now_steady_ms() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(kRepairPollMs));
      const nlohmann::json fleet = hooks_.agents_json();
      for (const nlohmann::json& a : fleet) {
        const nlohmann::json types = a.value("types", nlohmann::json::object());
        for (auto it = waiting.begin(); it != waiting.end();) {
          const auto& [agent, type] = it->first;
          const bool back = a.value("id", "") == agent && types.contains(type) &&
                            a.value("registrations", uint64_t{0}) > ordered_after[it->first] &&
                            (types[type].value("consumer", false) || types[type].value("live_feed", false)) &&
                            !types[type].value("awaiting_snapshot", true);
          if (!back) {
            ++it;
            continue;
          }
          repairs[it->second]["done"] = true;
          it = waiting.erase(it);
        }
      }
      job->set("repairs", repairs);
    }
    if (cancel_.load()) return finish("failed", "the hub is stopping");
    for (const auto& [at, index] : waiting) {
      repairs[index]["error"] = "the agent did not reload the snapshot within " +
                                std::to_string(job->options.repair_timeout_ms) + " ms";
    }
    job->set("repairs", repairs);

    // Verify the repaired agents again; their rows replace the first ones.
    phase("reverify");
    hub.clear();
    nlohmann::json again = verifier.verify(agents_to_verify(hooks_.agents_json(), &repaired_agents), phase);
    if (cancel_.load()) return finish("failed", "the hub is stopping");
    nlohmann::json merged = nlohmann::json::array();
    for (const nlohmann::json& r : rows) {
      if (repaired_agents.count(r.value("agent", "")) == 0) merged.push_back(r);
    }
    for (nlohmann::json& r : again) merged.push_back(std::move(r));
    rows = std::move(merged);
  }

  const bool ok = all_match(rows);
  {
    std::lock_guard lock(job->mu);
    job->report["rows"] = std::move(rows);
    job->report["ok"] = ok;
  }
  finish("done", std::nullopt);
}

void VerifyService::stop() {
  std::thread runner;
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    cancel_.store(true);
    runner = std::move(runner_);
  }
  if (runner.joinable()) runner.join();
}

}  // namespace ds
