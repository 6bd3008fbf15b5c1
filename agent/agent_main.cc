// deltasync-agent: thin entry point; the logic lives in the deltasync_agent library.
//
//   deltasync-agent [run] --config agent.toml          the service (default)
//   deltasync-agent status --config agent.toml [--json]
//   deltasync-agent quarantine list|retry <id>|drop <id> --config agent.toml
//
// Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
#include <signal.h>
#include <sys/stat.h>

#include <ctime>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "agent/agent.h"
#include "agent/kernel_random.h"
#include "agent/quarantine_ops.h"
#include "agent/replica.h"
#include "shared/clock.h"
#include "shared/config.h"
#include "shared/log.h"
#include "shared/nats.h"
#include "shared/service_notify.h"
#include "shared/version.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

struct Options {
  std::string config_path = "agent.toml";
  std::string log_level;
  bool check_only = false;
  bool json = false;
  int64_t quarantine_id = 0;
};

void add_config_option(CLI::App& app, Options& o) {
  app.add_option("-c,--config", o.config_path, "agent configuration file (TOML)")->capture_default_str();
}

ds::Result<ds::AgentConfig> load_config(const Options& o) {
  auto config = ds::load_agent_config(o.config_path);
  if (!config) return config.status();
  if (!o.log_level.empty()) {
    if (auto s = ds::validate_log_level(o.log_level); !s) return s.with_context("--log-level");
    config->log_level = o.log_level;
  }
  return config;
}

std::string format_time(int64_t ms) {
  if (ms <= 0) return "-";
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string format_age(int64_t ms) {
  if (ms < 0) return "-";
  const int64_t s = ms / 1000;
  if (s < 120) return std::to_string(s) + "s";
  if (s < 7200) return std::to_string(s / 60) + "m";
  return std::to_string(s / 3600) + "h";
}

int run_agent(const Options& o) {
  auto config = load_config(o);
  if (!config) {
    fmt::print(stderr, "deltasync-agent: {}\n", config.status().message());
    return kExitUsage;
  }
  if (o.check_only) {
    fmt::print("{}: ok (agent {}, {} subscriptions)\n", o.config_path, config->id, config->subscriptions.size());
    return kExitOk;
  }
  // Block the stop signals before any thread exists, so every thread inherits
  // the mask and only sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  // Before nats_Open, whose first RAND_bytes would otherwise bring up
  // OpenSSL's DRBG (about 2 MB resident) for 8 bytes; see kernel_random.h.
  const bool tls = ds::nats_uses_tls(config->nats);
  const ds::Status kernel_random = tls ? ds::Status::ok() : ds::use_kernel_random_for_openssl();
  ds::NatsLibrary nats_library;
  ds::init_logging("agent", config->log_level, config->log_format);
  if (!kernel_random) spdlog::warn("keeping OpenSSL's random generator: {}", kernel_random.message());
  ds::Agent agent(*config);
  // Type=notify (deploy/systemd/deltasync-agent.service): READY=1 only once
  // the first registration succeeded; the retries before it as STATUS.
  // Called on the registrar's thread only, so `ready` needs no lock.
  agent.set_registration_listener([ready = false](bool registered, const std::string& status) mutable {
    if (registered && !ready) {
      ready = true;
      ds::notify_ready("ready: " + status);
    } else {
      ds::notify_status(registered ? "ready: " + status : "not ready: " + status);
    }
  });
  ds::notify_status("starting: connecting to NATS and registering with the hub");
  if (ds::Status s = agent.start(); !s) {
    spdlog::error("cannot start: {}", s.message());
    return kExitRuntime;
  }
  int sig = 0;
  for (;;) {  // until a stop signal, or NATS closed for good (checked each second)
    const timespec tick{1, 0};
    sig = sigtimedwait(&stop_signals, nullptr, &tick);
    if (sig > 0 || agent.nats_closed()) break;
  }
  if (sig > 0) spdlog::info("signal {}: finishing the current batch and stopping", sig);
  ds::notify_stopping("finishing the current batch and stopping");
  const bool nats_closed = agent.nats_closed();
  agent.stop();
  spdlog::info("stopped");
  return nats_closed ? kExitRuntime : kExitOk;
}

ds::Result<std::unique_ptr<ds::Replica>> open_replica(const ds::AgentConfig& config, bool read_only) {
  return ds::Replica::open(config.replica_path, read_only);
}

int run_status(const Options& o) {
  auto config = load_config(o);
  if (!config) {
    fmt::print(stderr, "deltasync-agent: {}\n", config.status().message());
    return kExitUsage;
  }
  // Read-only: never takes a write lock, so the running agent is undisturbed.
  auto replica = open_replica(*config, /*read_only=*/true);
  if (!replica) {
    fmt::print(stderr, "deltasync-agent: replica {}: {}\n", config->replica_path, replica.status().message());
    return kExitRuntime;
  }
  auto cps = (*replica)->checkpoints();
  auto quarantined = (*replica)->quarantined();
  if (!cps || !quarantined) {
    fmt::print(stderr, "deltasync-agent: reading the replica: {}\n",
               !cps ? cps.status().message() : quarantined.status().message());
    return kExitRuntime;
  }
  const int64_t now = ds::real_clock().now_system_ms();
  nlohmann::json out = nlohmann::json::object();
  out["agent"] = config->id;
  out["replica"] = config->replica_path;
  out["types"] = nlohmann::json::array();
  for (const ds::SubscriptionConfig& sub : config->subscriptions) {
    nlohmann::json t;
    t["type"] = sub.type;
    t["partition"] = sub.partition;
    auto cp = cps->find(sub.type);
    const bool known = cp != cps->end();
    t["version"] = known ? cp->second.version : 0;
    t["seq"] = known ? cp->second.seq : 0;
    t["business_ts"] = known ? cp->second.ts : 0;
    // Lag against the hub is only known to the hub; locally the freshness is
    // how old the newest business time is.
    t["age_ms"] = known && cp->second.ts > 0 ? now - cp->second.ts : -1;
    auto rows = (*replica)->row_count(sub.type);
    t["rows"] = rows.is_ok() ? *rows : 0;
    uint64_t q = 0;
    std::string last_error;
    for (const ds::QuarantineEntry& e : *quarantined) {
      if (e.type != sub.type) continue;
      ++q;
      last_error = e.reason;
    }
    t["quarantined"] = q;
    t["last_error"] = last_error.empty() ? nlohmann::json(nullptr) : nlohmann::json(last_error);
    out["types"].push_back(t);
  }
  if (o.json) {
    fmt::print("{}\n", out.dump(2));
    return kExitOk;
  }
  fmt::print("agent {}  replica {}\n", config->id, config->replica_path);
  fmt::print("{:<20} {:<10} {:>10} {:>10} {:<21} {:>6} {:>11}  {}\n", "TYPE", "PARTITION", "VERSION", "ROWS",
             "BUSINESS TIME", "AGE", "QUARANTINE", "LAST ERROR");
  for (const auto& t : out["types"]) {
    fmt::print("{:<20} {:<10} {:>10} {:>10} {:<21} {:>6} {:>11}  {}\n", t["type"].get<std::string>(),
               t["partition"].get<std::string>(), t["version"].get<uint64_t>(), t["rows"].get<uint64_t>(),
               format_time(t["business_ts"].get<int64_t>()), format_age(t["age_ms"].get<int64_t>()),
               t["quarantined"].get<uint64_t>(),
               t["last_error"].is_null() ? std::string("-") : t["last_error"].get<std::string>());
  }
  return kExitOk;
}

int run_quarantine(const Options& o, const std::string& action) {
  auto config = load_config(o);
  if (!config) {
    fmt::print(stderr, "deltasync-agent: {}\n", config.status().message());
    return kExitUsage;
  }
  auto replica = open_replica(*config, /*read_only=*/action == "list");
  if (!replica) {
    fmt::print(stderr, "deltasync-agent: replica {}: {}\n", config->replica_path, replica.status().message());
    return kExitRuntime;
  }
  if (action == "list") {
    auto entries = (*replica)->quarantined();
    if (!entries) {
      fmt::print(stderr, "deltasync-agent: {}\n", entries.status().message());
      return kExitRuntime;
    }
    if (o.json) {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& e : *entries) {
        arr.push_back({{"id", e.id}, {"type", e.type}, {"kind", e.kind}, {"seq", e.seq}, {"version", e.version},
                       {"key", e.key}, {"reason", e.reason}, {"at", e.at}, {"payload_bytes", e.payload.size()}});
      }
      fmt::print("{}\n", arr.dump(2));
      return kExitOk;
    }
    fmt::print("{:>6} {:<16} {:<12} {:>10} {:>10} {:<20} {:<21} {}\n", "ID", "TYPE", "KIND", "SEQ", "VERSION", "KEY",
               "AT", "REASON");
    for (const auto& e : *entries) {
      fmt::print("{:>6} {:<16} {:<12} {:>10} {:>10} {:<20} {:<21} {}\n", e.id, e.type, e.kind, e.seq, e.version,
                 e.key.empty() ? "-" : e.key, format_time(e.at), e.reason);
    }
    return kExitOk;
  }
  if (action == "drop") {
    if (ds::Status s = (*replica)->drop_quarantined(o.quarantine_id); !s) {
      fmt::print(stderr, "deltasync-agent: {}\n", s.message());
      return s.code() == ds::StatusCode::kNotFound ? kExitUsage : kExitRuntime;
    }
    fmt::print("entry {} dropped\n", o.quarantine_id);
    return kExitOk;
  }
  auto done = ds::retry_quarantined(**replica, *config, o.quarantine_id);
  if (!done) {
    fmt::print(stderr, "deltasync-agent: {}\n", done.status().message());
    return done.status().code() == ds::StatusCode::kNotFound ? kExitUsage : kExitRuntime;
  }
  fmt::print("{}\n", *done);
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  // Everything this process creates (its database and the -wal/-shm files
  // SQLite adds, and whatever a child inherits) is owner-only: it holds
  // business data (docs/security.md, "A local user").
  ::umask(0077);
  CLI::App app{"deltasync-agent: keeps a local SQLite replica of the business types this host\n"
               "takes, applying the hub's deltas from exactly where it left off."};
  app.set_version_flag("--version", std::string("deltasync-agent ") + ds::kVersion);
  app.require_subcommand(0, 1);
  Options o;
  add_config_option(app, o);
  app.add_option("--log-level", o.log_level, "override [log] level: trace|debug|info|warn|error|off");
  app.add_flag("--check-config", o.check_only, "validate the configuration file and exit");

  CLI::App* run = app.add_subcommand("run", "run the agent (the default without a subcommand)");
  add_config_option(*run, o);
  run->add_option("--log-level", o.log_level, "override [log] level");
  run->add_flag("--check-config", o.check_only, "validate the configuration file and exit");

  CLI::App* status = app.add_subcommand("status", "print per type: version, business time, rows, age, "
                                                  "quarantine, last error (read-only)");
  add_config_option(*status, o);
  status->add_flag("--json", o.json, "print JSON");

  CLI::App* quarantine = app.add_subcommand("quarantine", "list, retry or drop quarantined deltas");
  quarantine->require_subcommand(1);
  CLI::App* q_list = quarantine->add_subcommand("list", "list the quarantined entries");
  add_config_option(*q_list, o);
  q_list->add_flag("--json", o.json, "print JSON");
  CLI::App* q_retry = quarantine->add_subcommand("retry", "re-apply an entry (or re-run its hook)");
  add_config_option(*q_retry, o);
  q_retry->add_option("id", o.quarantine_id, "entry id (see quarantine list)")->required();
  CLI::App* q_drop = quarantine->add_subcommand("drop", "delete an entry");
  add_config_option(*q_drop, o);
  q_drop->add_option("id", o.quarantine_id, "entry id (see quarantine list)")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (*status) return run_status(o);
  if (*q_list) return run_quarantine(o, "list");
  if (*q_retry) return run_quarantine(o, "retry");
  if (*q_drop) return run_quarantine(o, "drop");
  return run_agent(o);
}
