#include "tests/e2e/fleet.h"

#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

#include "shared/names.h"
#include "shared/nats.h"

namespace ds::testing {
namespace {

constexpr int64_t kPollMs = 200;
constexpr size_t kLogTailBytes = 3000;
constexpr size_t kMaxListPages = 1000;
constexpr int64_t kStopTimeoutMs = 15000;

std::string binary(const std::string& name) { return std::string(DELTASYNC_BINARY_DIR) + "/" + name; }

std::string tail(const std::string& text) {
  return text.size() <= kLogTailBytes ? text : "..." + text.substr(text.size() - kLogTailBytes);
}

bool is_violation_line(const std::string& line) { return line.find("Violation") != std::string::npos; }

Status command_failed(const std::vector<std::string>& args, const CommandResult& r) {
  std::string line;
  for (const auto& a : args) line += " " + a;
  return Status::internal("deltasync" + line + " exited " + std::to_string(r.exit_code) + ": " + r.err + r.out);
}

}  // namespace

bool is_error_line(const std::string& line) {
  std::istringstream words(line);
  std::string when, level;
  words >> when >> level;
  return when.find('T') != std::string::npos && (level == "error" || level == "critical");
}

size_t error_line_count(const std::string& log) {
  std::istringstream lines(log);
  size_t n = 0;
  for (std::string line; std::getline(lines, line);) n += is_error_line(line) ? 1 : 0;
  return n;
}

std::vector<AgentSpec> retail_agents() {
  return {
      {"store-1", {{"products", "*"}, {"prices", "store-1"}, {"inventory", "store-1"}}},
      {"store-2", {{"products", "*"}, {"prices", "store-2"}, {"inventory", "store-2"}}},
      {"hq", {{"products", "*"}, {"prices", "*"}}},
  };
}

Fleet::Fleet(std::vector<AgentSpec> agents, FleetOptions options)
    : agents_(std::move(agents)), options_(std::move(options)) {
  std::random_device random;
  token_ = fmt::format("e2e-{:08x}{:08x}{:08x}", random(), random(), random());
  for (const AgentSpec& spec : agents_) {
    Agent a;
    a.spec = spec;
    a.config_path = dir_.file(spec.id + ".toml");  // written by start(), once the NATS port is known
    a.replica_path = dir_.file(spec.id + ".db");
    std::vector<std::string> argv = spec.launcher;
    argv.insert(argv.end(), {binary("deltasync-agent"), "run", "--config", a.config_path});
    a.process = std::make_unique<ChildProcess>(std::move(argv), dir_.file(spec.id + ".log"));
    fleet_.push_back(std::move(a));
  }
}

Fleet::~Fleet() {
  // Graceful stops first, so what the processes log on the way out is
  // checked too.
  for (Agent& a : fleet_) {
    if (a.process->running()) (void)a.process->stop(SIGTERM, kStopTimeoutMs);
  }
  for (HubProcess* h : {hub_.get(), standby_.get()}) {
    if (h != nullptr && h->running()) {
      h->signal(SIGTERM);
      (void)h->wait_exit(kStopTimeoutMs);
    }
  }
  const std::vector<std::string> noise = unexpected_log_lines();
  if (!noise.empty()) {
    std::string all;
    for (const std::string& line : noise) all += line + "\n";
    ADD_FAILURE() << noise.size() << " log line(s) at error level (or nats-server Violation) that the test did "
                  << "not provoke; normal operation is quiet:\n" << all;
  }
  if (!::testing::Test::HasFailure()) return;
  // The TempDir goes with the fleet: keep the logs of a failed scenario.
  std::error_code ec;
  const std::string kept = dir_.path() + "-logs";
  std::filesystem::create_directories(kept, ec);
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path(), ec)) {
    const std::string ext = entry.path().extension().string();
    if (ext == ".log" || ext == ".db" || ext == ".db-wal" || ext == ".db-shm") {
      std::filesystem::copy_file(entry.path(), std::filesystem::path(kept) / entry.path().filename(),
                                 std::filesystem::copy_options::overwrite_existing, ec);
    }
  }
  if (cluster_) {
    for (int i = 0; i < cluster_->size(); ++i) {
      std::filesystem::copy_file(cluster_->node(i).dir() + "/nats-server.log",
                                 kept + "/nats-server-" + cluster_->server_name(i) + ".log",
                                 std::filesystem::copy_options::overwrite_existing, ec);
    }
  } else {
    std::filesystem::copy_file(nats_.dir() + "/nats-server.log", kept + "/nats-server.log",
                               std::filesystem::copy_options::overwrite_existing, ec);
  }
  std::printf("[ info ] logs of the failed scenario kept in %s\n", kept.c_str());
}

std::string Fleet::hub_toml(const std::string& store_path, int http_port, const std::string& metrics_key) const {
  auto objective_of = [&](const std::string& type) -> std::string {
    auto it = options_.freshness_objectives.find(type);
    const std::string& objective = it != options_.freshness_objectives.end() ? it->second : freshness_objective_;
    return objective.empty() ? "" : "freshness_objective = \"" + objective + "\"\n";
  };
  return "[hub]\nname = \"e2e-hub\"\nlog_level = \"info\"\n"
         "[nats]\nurl = \"" + nats_url() + "\"\n"
         "[store]\npath = \"" + store_path + "\"\n"
         "[http]\nlisten = \"127.0.0.1:" + std::to_string(http_port) + "\"\ntoken = \"" + token_ + "\"\n"
         "[liveness]\nheartbeat_interval_ms = " + std::to_string(options_.heartbeat_interval_ms) +
         "\ndead_after = " + std::to_string(options_.dead_after) + "\n"
         "[delivery]\npublish_batch = 50\n"
         "[streams]\nreplicas = " + std::to_string(options_.stream_replicas) + "\n" +
         (options_.ha_lease_ms > 0
              ? "[ha]\nenabled = true\nlease_ms = " + std::to_string(options_.ha_lease_ms) + "\n"
              : std::string()) +
         metrics_section(metrics_key) +
         "[[types]]\nname = \"products\"\nkey = \"sku\"\n" + objective_of("products") +
         "columns = [{ name = \"name\", type = \"text\" }, { name = \"category\", type = \"text\" },\n"
         "           { name = \"active\", type = \"bool\" }, { name = \"attributes\", type = \"json\" }]\n"
         "[[types]]\nname = \"prices\"\nkey = \"id\"\npartition = \"store_id\"\n" + objective_of("prices") +
         "columns = [{ name = \"store_id\", type = \"text\" }, { name = \"sku\", type = \"text\" },\n"
         "           { name = \"price\", type = \"real\" }]\n"
         "[[types]]\nname = \"inventory\"\nkey = \"item\"\npartition = \"store_id\"\n" + objective_of("inventory") +
         "columns = [{ name = \"store_id\", type = \"text\" }, { name = \"on_hand\", type = \"integer\" },\n"
         "           { name = \"reserved\", type = \"integer\" }]\n";
}

std::string Fleet::metrics_section(const std::string& process) const {
  auto it = metrics_ports_.find(process);
  if (it == metrics_ports_.end()) return "";
  return "[metrics]\nlisten = \"127.0.0.1:" + std::to_string(it->second) + "\"\n";
}

void Fleet::enable_metrics(std::string freshness_objective) {
  metrics_ = true;
  freshness_objective_ = std::move(freshness_objective);
}

int Fleet::metrics_port(const std::string& process) const {
  auto it = metrics_ports_.find(process);
  return it == metrics_ports_.end() ? 0 : it->second;
}

std::string Fleet::agent_toml(const AgentSpec& spec) const {
  std::string text = "[agent]\nid = \"" + spec.id + "\"\nlog_level = \"info\"\n" +
                     (options_.live_feed ? "" : "live_feed = false\n") +
                     "[nats]\nurl = \"" + nats_url() + "\"\n"
                     "[replica]\npath = \"" + find(spec.id).replica_path + "\"\n" + spec.replica_toml +
                     metrics_section(spec.id);
  for (const auto& [type, partition] : spec.subscriptions) {
    text += "[[subscriptions]]\ntype = \"" + type + "\"\npartition = \"" + partition + "\"\n";
    if (auto hook = spec.hooks.find(type); hook != spec.hooks.end()) {
      text += "hook = " + nlohmann::json(hook->second).dump() + "\n";
    }
  }
  return text;
}

NatsCluster& Fleet::cluster() {
  if (!cluster_) throw std::logic_error("this fleet runs one nats-server, not a cluster");
  return *cluster_;
}

std::string Fleet::nats_url() const { return cluster_ ? cluster_->urls() : nats_.url(); }

Status Fleet::start() {
  if (options_.nats_cluster_nodes > 0) {
    cluster_ = std::make_unique<NatsCluster>(DELTASYNC_NATS_SERVER, options_.nats_cluster_nodes,
                                             options_.nats_extra_config);
    DS_RETURN_IF_ERROR(cluster_->start());
  } else {
    DS_RETURN_IF_ERROR(nats_.start());
  }
  DS_ASSIGN_OR_RETURN(http_port_, free_loopback_port());
  if (metrics_) {
    DS_ASSIGN_OR_RETURN(metrics_ports_["hub"], free_loopback_port());
    if (options_.ha_lease_ms > 0) {
      DS_ASSIGN_OR_RETURN(metrics_ports_["hub-b"], free_loopback_port());
    }
    for (const Agent& a : fleet_) {
      DS_ASSIGN_OR_RETURN(metrics_ports_[a.spec.id], free_loopback_port());
    }
  }
  hub_ = std::make_unique<HubProcess>(dir_.write_file("hub.toml", hub_toml(hub_store_path_, http_port_, "hub")),
                                      dir_.file("hub.log"));
  DS_RETURN_IF_ERROR(start_hub());
  if (options_.ha_lease_ms > 0) {
    DS_ASSIGN_OR_RETURN(standby_http_port_, free_loopback_port());
    standby_ = std::make_unique<HubProcess>(
        dir_.write_file("hub-b.toml", hub_toml(standby_store_path_, standby_http_port_, "hub-b")),
        dir_.file("hub-b.log"));
    DS_RETURN_IF_ERROR(start_standby());
  }
  for (Agent& a : fleet_) {
    dir_.write_file(a.spec.id + ".toml", agent_toml(a.spec));
    DS_RETURN_IF_ERROR(a.process->start(a.spec.env));
  }
  return wait_all_live();
}

Status Fleet::start_hub() {
  DS_RETURN_IF_ERROR(hub_->start(options_.hub_env));
  const bool up = wait_until([&] { return cli({"types"}).exit_code == 0; }, kConvergeTimeoutMs, kPollMs);
  return up ? Status::ok() : Status::deadline_exceeded("the hub's HTTP API does not answer:\n" + logs());
}

Status Fleet::start_standby() {
  const std::string caught_up = "ha: standby: caught up with every stream";
  const size_t before = standby_->log_count(caught_up);
  DS_RETURN_IF_ERROR(standby_->launch(options_.hub_env));
  const bool up = wait_until([&] { return standby_->log_count(caught_up) > before; }, kConvergeTimeoutMs, kPollMs);
  return up ? Status::ok() : Status::deadline_exceeded("the standby hub does not catch up:\n" + logs());
}

void Fleet::swap_hubs() {
  std::swap(hub_, standby_);
  std::swap(hub_store_path_, standby_store_path_);
  std::swap(http_port_, standby_http_port_);
}

Fleet::Agent& Fleet::find(const std::string& id) {
  for (Agent& a : fleet_) {
    if (a.spec.id == id) return a;
  }
  throw std::invalid_argument("no agent '" + id + "' in this fleet");
}

const Fleet::Agent& Fleet::find(const std::string& id) const {
  return const_cast<Fleet*>(this)->find(id);
}

ChildProcess& Fleet::agent(const std::string& id) { return *find(id).process; }

Status Fleet::start_agent(const std::string& id) {
  Agent& a = find(id);
  return a.process->start(a.spec.env);
}

const std::string& Fleet::agent_config(const std::string& id) const { return find(id).config_path; }

Environment Fleet::cli_environment() const {
  return {{"DELTASYNC_HUB", "http://127.0.0.1:" + std::to_string(http_port_)},
          {"DELTASYNC_TOKEN", token_},
          {"DELTASYNC_NATS", nats_url()}};
}

CommandResult Fleet::cli(std::vector<std::string> args, int64_t timeout_ms) {
  args.insert(args.begin(), binary("deltasync"));
  return run_to_completion(args, dir_.file("cli"), cli_environment(), timeout_ms);
}

Result<nlohmann::json> Fleet::cli_json(std::vector<std::string> args) {
  args.push_back("--json");
  CommandResult r = cli(args);
  if (r.exit_code != 0) return command_failed(args, r);
  auto parsed = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return Status::internal("deltasync " + args.front() + ": not JSON: " + r.out);
  return parsed;
}

Status Fleet::push(const std::string& type, const nlohmann::json& records, size_t batch) {
  const std::string path = dir_.file("push-" + std::to_string(++push_files_) + ".jsonl");
  {
    std::ofstream out(path, std::ios::trunc);
    for (const auto& r : records) out << r.dump() << "\n";
    if (!out) return Status::internal("cannot write " + path);
  }
  std::vector<std::string> args = {"push", "--type", type, "--batch", std::to_string(batch), "--quiet", path};
  CommandResult r = cli(args, kConvergeTimeoutMs);
  return r.exit_code == 0 ? Status::ok() : command_failed(args, r);
}

Result<std::map<std::string, nlohmann::json>> Fleet::agents_by_id() {
  DS_ASSIGN_OR_RETURN(nlohmann::json list, cli_json({"agents"}));
  std::map<std::string, nlohmann::json> out;
  for (const auto& a : list) out[a.value("id", "")] = a;
  return out;
}

std::string Fleet::agent_state(const std::string& id) {
  auto agents = agents_by_id();
  if (!agents.is_ok()) return "";
  auto it = agents->find(id);
  return it == agents->end() ? "" : it->second.value("state", "");
}

bool Fleet::all_live() {
  auto agents = agents_by_id();
  if (!agents.is_ok()) return false;
  for (const AgentSpec& spec : agents_) {
    auto it = agents->find(spec.id);
    if (it == agents->end() || it->second.value("state", "") != "live") return false;
    const nlohmann::json types = it->second.value("types", nlohmann::json::object());
    for (const auto& [type, partition] : spec.subscriptions) {
      if (!types.contains(type)) return false;
      // Its deltas come: through its consumer, or the live feed.
      if (!types[type].value("consumer", false) && !types[type].value("live_feed", false)) return false;
    }
  }
  return true;
}

Status Fleet::wait_all_live() {
  if (wait_until([&] { return all_live(); }, kConvergeTimeoutMs, kPollMs)) return Status::ok();
  return Status::deadline_exceeded("agents not all live with their deliveries (consumer or live feed):\n" + cli({"agents"}).out + logs());
}

Result<std::map<std::string, nlohmann::json>> Fleet::hub_records(const std::string& type) {
  std::map<std::string, nlohmann::json> out;
  std::string after;
  for (size_t page = 0; page < kMaxListPages; ++page) {
    std::vector<std::string> args = {"list", type, "--limit", "1000"};
    if (!after.empty()) args.insert(args.end(), {"--after", after});
    DS_ASSIGN_OR_RETURN(nlohmann::json j, cli_json(args));
    for (const auto& r : j.value("records", nlohmann::json::array())) {
      nlohmann::json fields = nlohmann::json::object();
      const nlohmann::json stored = r.value("fields", nlohmann::json::object());
      for (const auto& [name, value] : stored.items()) {
        if (!value.is_null()) fields[name] = value;
      }
      out[r.value("key", "")] = std::move(fields);
    }
    if (!j.contains("next_after") || !j["next_after"].is_string()) return out;
    after = j["next_after"].get<std::string>();
  }
  return Status::internal(type + ": more than " + std::to_string(kMaxListPages) + " pages");
}

std::string Fleet::replica_path(const std::string& id) const { return find(id).replica_path; }

void Fleet::set_replica_path(const std::string& id, std::string path) { find(id).replica_path = std::move(path); }

Result<std::map<std::string, uint64_t>> Fleet::replica_versions(const std::string& id) {
  const std::vector<std::string> args = {binary("deltasync-agent"), "status", "--json", "--config",
                                         agent_config(id)};
  CommandResult r = run_to_completion(args, dir_.file("status"));
  if (r.exit_code != 0) return command_failed(args, r);
  auto status = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  if (status.is_discarded()) return Status::internal("deltasync-agent status: not JSON: " + r.out);
  std::map<std::string, uint64_t> out;
  for (const auto& t : status.value("types", nlohmann::json::array())) {
    out[t.value("type", "")] = t.value("version", uint64_t{0});
  }
  return out;
}

Result<bool> Fleet::has_consumer(const std::string& type, const std::string& agent) {
  ConnectOptions opts = test_connect_options(nats_);
  opts.config.url = nats_url();
  DS_ASSIGN_OR_RETURN(auto nc, Connection::connect(opts));
  DS_ASSIGN_OR_RETURN(auto js, nc->jetstream());
  return js->consumer_exists(stream_name(type), consumer_name(agent));
}

::testing::AssertionResult Fleet::converged(nlohmann::json* report_out) {
  const bool quiet_ok =
      wait_until([&] { return cli({"verify", "--quiet"}).exit_code == 0; }, kConvergeTimeoutMs, kPollMs);
  CommandResult table = cli({"verify"});
  if (!quiet_ok) {
    return ::testing::AssertionFailure() << "deltasync verify did not pass within " << kConvergeTimeoutMs
                                         << " ms:\n" << table.out << table.err << logs();
  }
  auto report = cli_json({"verify"});
  if (!report.is_ok()) return ::testing::AssertionFailure() << report.status().to_string();
  if (!report->value("ok", false)) return ::testing::AssertionFailure() << "verify --json: " << report->dump(1);

  std::set<std::pair<std::string, std::string>> expected;
  for (const AgentSpec& spec : agents_) {
    for (const auto& [type, partition] : spec.subscriptions) expected.insert({spec.id, type});
  }
  std::set<std::pair<std::string, std::string>> seen;
  for (const auto& row : report->value("rows", nlohmann::json::array())) {
    const std::pair<std::string, std::string> at{row.value("agent", ""), row.value("type", "")};
    const bool rows_equal = row.contains("hub_rows") && row["hub_rows"] == row.value("agent_rows", nlohmann::json());
    const bool all_partitions = row.value("partition", "") == "*";
    const bool versions_equal =
        row.contains("hub_version") && row["hub_version"] == row.value("agent_version", nlohmann::json());
    if (!row.value("match", false) || !rows_equal || (all_partitions && !versions_equal)) {
      return ::testing::AssertionFailure() << "verify row does not match: " << row.dump();
    }
    seen.insert(at);
  }
  if (seen != expected) {
    return ::testing::AssertionFailure() << "verify rows cover " << seen.size() << " agent/type pairs, expected "
                                         << expected.size() << ": " << report->dump(1);
  }
  if (table.exit_code != 0 || table.out.find("every agent converged") == std::string::npos ||
      table.out.find("DIFFERS") != std::string::npos) {
    return ::testing::AssertionFailure() << "deltasync verify table:\n" << table.out << table.err;
  }
  if (report_out != nullptr) *report_out = *report;
  return ::testing::AssertionSuccess() << table.out;
}

void Fleet::expect_log_line(std::string source, std::string needle) {
  expected_log_lines_.emplace_back(std::move(source), std::move(needle));
}

std::vector<std::string> Fleet::unexpected_log_lines() const {
  std::vector<std::string> out;
  auto scan = [&](const std::string& source, const std::string& text, bool (*is_noise)(const std::string&)) {
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      if (!is_noise(line)) continue;
      const bool expected = std::any_of(expected_log_lines_.begin(), expected_log_lines_.end(), [&](const auto& e) {
        return e.first == source && line.find(e.second) != std::string::npos;
      });
      if (!expected) out.push_back(source + ": " + line);
    }
  };
  if (hub_) scan("hub", hub_->log_text(), is_error_line);
  if (standby_) scan("standby hub", standby_->log_text(), is_error_line);
  for (const Agent& a : fleet_) scan(a.spec.id, a.process->log_text(), is_error_line);
  if (cluster_) {
    for (int i = 0; i < cluster_->size(); ++i) {
      scan("nats-server", cluster_->node(i).log_text(), is_violation_line);
    }
  } else {
    scan("nats-server", nats_.log_text(), is_violation_line);
  }
  return out;
}

std::string Fleet::logs() const {
  std::string out = "\n--- hub log ---\n" + (hub_ ? tail(hub_->log_text()) : std::string("(not started)"));
  if (standby_) out += "\n--- standby hub log ---\n" + tail(standby_->log_text());
  for (const Agent& a : fleet_) out += "\n--- " + a.spec.id + " log ---\n" + tail(a.process->log_text());
  if (cluster_) {
    for (int i = 0; i < cluster_->size(); ++i) {
      out += "\n--- nats-server " + cluster_->server_name(i) + " log ---\n" + tail(cluster_->node(i).log_text());
    }
  } else {
    out += "\n--- nats-server log ---\n" + tail(nats_.log_text());
  }
  return out;
}

}  // namespace ds::testing
