// deltasync-agent: thin entry point; the logic lives in the deltasync_agent library.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "shared/config.h"
#include "shared/log.h"
#include "shared/nats.h"
#include "shared/version.h"

int main(int argc, char** argv) {
  CLI::App app{"deltasync-agent: keeps a local SQLite replica of the business types this host\n"
               "takes, applying the hub's deltas from exactly where it left off."};
  app.set_version_flag("--version", std::string("deltasync-agent ") + ds::kVersion);
  std::string config_path = "agent.toml";
  std::string log_level;
  bool check_only = false;
  app.add_option("-c,--config", config_path, "agent configuration file (TOML)")->capture_default_str();
  app.add_option("--log-level", log_level, "override [agent] log_level: trace|debug|info|warn|error|off");
  app.add_flag("--check-config", check_only, "validate the configuration file and exit");
  CLI11_PARSE(app, argc, argv);

  auto config = ds::load_agent_config(config_path);
  if (!config) {
    fmt::print(stderr, "deltasync-agent: {}\n", config.status().message());
    return 2;
  }
  if (!log_level.empty()) {
    if (auto s = ds::validate_log_level(log_level); !s) {
      fmt::print(stderr, "deltasync-agent: --log-level: {}\n", s.message());
      return 2;
    }
    config->log_level = log_level;
  }
  if (check_only) {
    fmt::print("{}: ok (agent {}, {} subscriptions)\n", config_path, config->id, config->subscriptions.size());
    return 0;
  }
  ds::NatsLibrary nats_library;
  ds::init_logging("agent", config->log_level);
  spdlog::error("the agent's service loop is not built yet (issue 4)");
  return 1;
}
