#include "hub/standby.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>

#include "hub/http_api.h"
#include "hub/hub_metrics.h"
#include "hub/query_store.h"
#include "hub/standby_follower.h"
#include "shared/messaging.h"
#include "shared/metrics_server.h"
#include "shared/prometheus.h"
#include "shared/nats.h"

namespace ds {
namespace {

// The heads of every type, for the log: "prices 1200, stock 40".
std::string heads_of(QueryStore& store) {
  auto states = store.type_states();
  if (!states.is_ok()) return "?";
  std::string out;
  for (const auto& [type, st] : *states) out += (out.empty() ? "" : ", ") + type + " " + std::to_string(st.version);
  return out;
}

// What the standby's [metrics] listener shows (docs/operations.md,
// "Standby series"): set by the standby's loop, read on the listener's
// thread.
struct StandbyGauges {
  std::atomic<uint64_t> stored{0};
  std::atomic<uint64_t> rounds_failed{0};
  std::atomic<bool> caught_up{false};
  std::atomic<bool> failing{false};  // the last round failed: a broker failure episode, logged once

  // What /readyz says after "standby: " (HttpApi::start_standby).
  std::string state() const {
    if (failing.load()) return "cannot follow the streams (the broker unreachable or refusing); retrying";
    return std::string(caught_up.load() ? "caught up with" : "behind") +
           " the streams; it takes over once the active hub's lease ends";
  }

  std::string render() const {
    PrometheusWriter w;
    w.gauge("deltasync_hub_ha_active", "1: this hub is the active one (a standby hub says 0).", 0);
    w.gauge("deltasync_hub_standby_caught_up",
            "1 while the standby's store holds every stream's end (its last round reached them all).",
            caught_up.load() ? 1 : 0);
    w.counter("deltasync_hub_standby_stored_changes_total",
              "Changes the standby read from the streams and stored since it started.",
              static_cast<double>(stored.load()));
    w.counter("deltasync_hub_standby_failed_rounds_total",
              "Rounds of following the streams that failed (the broker unreachable or refusing).",
              static_cast<double>(rounds_failed.load()));
    return w.take();
  }
};

}  // namespace

Result<bool> stand_by(const HubConfig& config, LeaseKeeper& keeper, std::stop_token stop) {
  StandbyGauges gauges;
  std::unique_ptr<MetricsServer> metrics;
  if (!config.metrics_listen.empty()) {
    DS_ASSIGN_OR_RETURN(metrics, MetricsServer::start(metrics_listen_address(config.metrics_listen),
                                                      [&gauges] { return gauges.render(); }));
  }
  QueryStoreOptions store_options;
  store_options.publish_batch = config.publish_batch;
  DS_ASSIGN_OR_RETURN(std::unique_ptr<QueryStore> store,
                      QueryStore::open(config.store_path, config.types, store_options));
  HubMetrics http_metrics;  // its request counters; nothing reads them while it stands by
  std::unique_ptr<HttpApi> http;  // after the store: the API opens it read-only
  if (!config.http_listen.empty()) {
    DS_ASSIGN_OR_RETURN(http, HttpApi::start_standby(config, http_metrics, [&gauges] { return gauges.state(); }));
  }
  ConnectOptions co;
  co.config = config.nats;
  co.name = "deltasync-hub-standby";
  co.retry_on_failed_connect = true;
  co.on_async_error = [](const std::string& e) { spdlog::error("nats: standby: {}", e); };
  DS_ASSIGN_OR_RETURN(std::unique_ptr<Connection> nc, Connection::connect(std::move(co)));
  DS_ASSIGN_OR_RETURN(std::unique_ptr<JetStream> js, nc->jetstream());
  NatsStreamAccess streams(*js);
  StandbyFollower follower(streams, *store, config);
  spdlog::info("ha: standing by: following {} stream(s) into {} (versions {}) until this hub holds the lease",
               config.types.size(), config.store_path, heads_of(*store));

  std::mutex mu;
  std::condition_variable_any cv;
  bool ever_caught_up = false;  // said once: under load a standby is behind and back every few rounds
  for (;;) {
    if (stop.stop_requested()) return false;
    auto stored = nc->connected() ? follower.follow_round() : Result<uint64_t>(Status::unavailable("not connected"));
    if (!stored.is_ok()) {
      if (stored.status().code() == StatusCode::kDataLoss) return stored.status();
      if (!gauges.failing.exchange(true)) {
        spdlog::warn("ha: standby: following the streams: {}; retrying", stored.status().to_string());
      }
      ++gauges.rounds_failed;
      gauges.caught_up.store(false);
    } else {
      gauges.stored += *stored;
      gauges.caught_up.store(follower.caught_up());
      if (gauges.failing.exchange(false)) spdlog::info("ha: standby: following the streams again");
      if (follower.caught_up() && !ever_caught_up) {
        spdlog::info("ha: standby: caught up with every stream (versions {})", heads_of(*store));
        ever_caught_up = true;
      }
      if (follower.caught_up() && keeper.acquired()) {
        spdlog::info("ha: taking over with the streams' ends stored (versions {})", heads_of(*store));
        return true;
      }
    }
    if (stored.is_ok() && *stored > 0 && !follower.caught_up()) continue;  // behind: the next round at once
    std::unique_lock lock(mu);
    cv.wait_for(lock, stop, std::chrono::milliseconds(gauges.failing.load() ? 1000 : kFollowPollMs), [] { return false; });
  }
}

}  // namespace ds
