// deltasync-hub: thin entry point; the logic lives in the deltasync_hub library.
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <stop_token>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "hub/hub.h"
#include "hub/lease_keeper.h"
#include "hub/standby.h"
#include "hub/store_backup.h"

#include "shared/config.h"
#include "shared/log.h"
#include "shared/nats.h"
#include "shared/service_notify.h"
#include "shared/version.h"

namespace {

// Exit status of an HA hub that lost its lease: another hub is active. Its
// service manager starts it again (Restart=on-failure), as a standby.
constexpr int kSteppedDown = 3;

// `deltasync-hub backup`: exit 0 with a summary on stdout, progress on
// stderr; 2 for a usage or configuration error, 1 when the copy failed.
int run_backup(const std::string& config_path, const std::string& store_path, const std::string& to) {
  if (config_path.empty() == store_path.empty()) {
    fmt::print(stderr, "deltasync-hub backup: give exactly one of --config and --store\n");
    return 2;
  }
  std::string from = store_path;
  if (!config_path.empty()) {
    auto config = ds::load_hub_config(config_path);
    if (!config) {
      fmt::print(stderr, "deltasync-hub backup: {}\n", config.status().message());
      return 2;
    }
    from = config->store_path;
  }
  ds::BackupOptions options;
  auto last = std::chrono::steady_clock::time_point{};
  options.on_progress = [&last](const ds::BackupProgress& p) {
    const auto now = std::chrono::steady_clock::now();
    if (p.pages_done != p.pages_total && now - last < std::chrono::seconds(1)) return;
    last = now;
    fmt::print(stderr, "backup: {} / {} pages ({}%)\n", p.pages_done, p.pages_total,
               p.pages_total == 0 ? 100 : p.pages_done * 100 / p.pages_total);
  };
  auto done = ds::backup_store(from, to, options);
  if (!done) {
    fmt::print(stderr, "deltasync-hub {}\n", done.status().message());
    return done.status().code() == ds::StatusCode::kInvalidArgument ? 2 : 1;
  }
  std::string heads;
  for (const auto& [type, version] : done->versions) {
    heads += (heads.empty() ? "" : ", ") + type + " " + std::to_string(version);
  }
  fmt::print("backup: {} -> {}: {} pages, {} bytes, integrity ok; change-log heads: {}\n", from, to, done->pages,
             done->bytes, heads.empty() ? "(no types)" : heads);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Everything this process creates (its database and the -wal/-shm files
  // SQLite adds, and whatever a child inherits) is owner-only: it holds
  // business data (docs/security.md, "A local user").
  ::umask(0077);
  CLI::App app{"deltasync-hub: ingests business updates, stores them by type, judges agent\n"
               "liveness by heartbeat and delivers deltas to live agents over NATS JetStream."};
  app.set_version_flag("--version", std::string("deltasync-hub ") + ds::kVersion);
  std::string config_path = "hub.toml";
  std::string log_level;
  bool check_only = false;
  app.add_option("-c,--config", config_path, "hub configuration file (TOML)")->capture_default_str();
  app.add_option("--log-level", log_level, "override [log] level: trace|debug|info|warn|error|off");
  app.add_flag("--check-config", check_only, "validate the configuration file and exit");

  // `deltasync-hub backup`: an online copy of the store, taken while the hub
  // runs (hub/store_backup.h; docs/operations.md "Backup and restore").
  CLI::App* backup = app.add_subcommand(
      "backup", "copy the hub's store to a file while the hub runs (consistent, integrity-checked, mode 0600)");
  std::string backup_config;
  std::string backup_store;
  std::string backup_to;
  backup->add_option("-c,--config", backup_config, "hub configuration file (TOML): back up its [store] path");
  backup->add_option("--store", backup_store, "the store file to back up (instead of --config)");
  backup->add_option("--to", backup_to, "the file to write (replaced atomically when the copy is whole)")->required();
  app.require_subcommand(0, 1);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // usage errors exit 2, as configuration errors do
  }

  if (backup->parsed()) return run_backup(backup_config, backup_store, backup_to);

  auto config = ds::load_hub_config(config_path);
  if (!config) {
    fmt::print(stderr, "deltasync-hub: {}\n", config.status().message());
    return 2;
  }
  if (!log_level.empty()) {
    if (auto s = ds::validate_log_level(log_level); !s) {
      fmt::print(stderr, "deltasync-hub: --log-level: {}\n", s.message());
      return 2;
    }
    config->log_level = log_level;
  }
  if (check_only) {
    fmt::print("{}: ok ({} business types)\n", config_path, config->types.size());
    return 0;
  }
  // SIGTERM/SIGINT are blocked before any thread exists (cnats starts its
  // own in the library guard), so every thread inherits the mask and only
  // the signal thread's sigwait() ever takes them. It turns the first one
  // into a stop request, which also ends a start still waiting for NATS.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  ds::NatsLibrary nats_library;
  ds::init_logging("hub", config->log_level, config->log_format);
  std::stop_source stop;
  std::atomic<bool> exiting{false};
  std::thread signal_thread([&stop, &exiting, stop_signals] {
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    if (exiting.load()) return;  // woken by main to end the thread
    spdlog::info("received {}: draining and stopping", signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
    stop.request_stop();
  });
  auto join_signal_thread = [&] {
    exiting.store(true);
    if (!stop.stop_requested()) pthread_kill(signal_thread.native_handle(), SIGTERM);
    signal_thread.join();
  };

  // [ha]: stand by until this hub holds the lease (hub/standby.h); it then
  // starts as the active hub, fenced by the lease, and steps down (exit 3,
  // so its service manager starts it again as a standby) when it loses it.
  std::unique_ptr<ds::LeaseKeeper> keeper;
  ds::PublishFence fence;
  if (config->ha_enabled) {
    auto started_keeper = ds::LeaseKeeper::start(*config);
    if (!started_keeper) {
      spdlog::critical("deltasync-hub: ha: {}", started_keeper.status().to_string());
      join_signal_thread();
      return 1;
    }
    keeper = std::move(started_keeper).value();
    // A standby is up and doing its job: ready for the service manager.
    ds::notify_ready("standby: following the streams until this hub holds the lease");
    auto active = ds::stand_by(*config, *keeper, stop.get_token());
    if (!active || !*active) {
      keeper->release_and_stop();
      join_signal_thread();
      if (!active) {
        spdlog::critical("deltasync-hub: standby: {}", active.status().to_string());
        return 1;
      }
      spdlog::info("deltasync-hub: stopped while standing by");
      return 0;
    }
    ds::LeaseKeeper* k = keeper.get();
    fence = ds::PublishFence{k->holder(), [k] { return k->valid(); },
                             [k](const std::string& why) { k->step_down(why); }};
  }
  // Stops the hub on a signal, or when the lease is lost.
  std::stop_source run_stop;
  std::stop_callback on_signal(stop.get_token(), [&run_stop] { run_stop.request_stop(); });
  std::optional<std::stop_callback<std::function<void()>>> on_lost;
  if (keeper) on_lost.emplace(keeper->lost_token(), std::function<void()>([&run_stop] { run_stop.request_stop(); }));

  // Type=notify (deploy/systemd/deltasync-hub.service): READY=1 only once
  // start() returned, i.e. connected with streams and subscriptions up.
  ds::notify_status("starting");
  auto started = ds::Hub::start(std::move(config).value(), run_stop.get_token(),
                                [](const std::string& line) { ds::notify_status(line); }, std::move(fence));
  if (!started) {
    ds::notify_stopping("start did not complete");
    const bool lost = keeper && keeper->lost_token().stop_requested();
    if (keeper) keeper->release_and_stop();
    join_signal_thread();
    if (lost) {
      spdlog::warn("deltasync-hub: stepped down before start completed: {}", keeper->lost_reason());
      return kSteppedDown;
    }
    if (stop.stop_requested()) {
      spdlog::info("deltasync-hub: stopped before start completed ({})", started.status().message());
      return 0;
    }
    spdlog::critical("deltasync-hub: start failed: {}", started.status().to_string());
    return 1;
  }
  std::unique_ptr<ds::Hub> hub = std::move(started).value();
  ds::notify_ready(std::string(keeper ? "active: " : "ready: ") + "connected to " + hub->config().nats.url);
  const ds::Status ended = hub->run_until(run_stop.get_token());
  const bool lost = keeper && keeper->lost_token().stop_requested() && !stop.stop_requested();
  ds::notify_stopping(lost ? "lost the HA lease: stepping down" : "draining ingests and stopping");
  if (!ended.is_ok()) spdlog::critical("deltasync-hub: stopping: {}", ended.to_string());
  hub->stop();
  hub.reset();  // before the NATS library guard closes cnats
  // After the drain, so what the hub acknowledged is published before a
  // standby takes over.
  if (keeper) keeper->release_and_stop();
  join_signal_thread();
  if (lost) {
    spdlog::warn("deltasync-hub: stepped down: {}", keeper->lost_reason());
    return kSteppedDown;
  }
  return ended.is_ok() ? 0 : 1;
}
