#include "hub/lease_keeper.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

namespace ds {

Result<std::unique_ptr<LeaseKeeper>> LeaseKeeper::start(const HubConfig& config, const Clock& clock) {
  std::unique_ptr<LeaseKeeper> keeper(new LeaseKeeper(config, clock));
  ConnectOptions co;
  co.config = config.nats;
  co.name = "deltasync-hub-lease";
  co.retry_on_failed_connect = true;
  co.on_async_error = [](const std::string& e) { spdlog::error("nats: lease: {}", e); };
  DS_ASSIGN_OR_RETURN(keeper->nc_, Connection::connect(std::move(co)));
  // A key-value call must come back well within a renew period, or a slow
  // broker eats the lease.
  const int64_t timeout_ms = std::clamp<int64_t>(config.ha_lease_ms / 6, 200, 2000);
  DS_ASSIGN_OR_RETURN(keeper->js_, keeper->nc_->jetstream(timeout_ms));
  keeper->thread_ = std::jthread([k = keeper.get()](std::stop_token stop) { k->run(stop); });
  return keeper;
}

LeaseKeeper::~LeaseKeeper() { release_and_stop(); }

void LeaseKeeper::run(std::stop_token stop) {
  std::unique_lock lock(mu_);
  while (!stop.stop_requested() && !lost_.stop_requested()) {
    lock.unlock();
    step();
    lock.lock();
    const int64_t period = lease_ && acquired_ ? lease_->renew_period_ms()
                                               : std::min<int64_t>(kCandidatePollMs, config_.ha_lease_ms / 3);
    cv_.wait_for(lock, stop, std::chrono::milliseconds(period), [] { return false; });
  }
}

void LeaseKeeper::step() {
  std::unique_lock lock(mu_);
  if (!lease_) {
    if (!nc_->connected()) return;
    HubLeaseOptions options;
    options.hub_name = config_.name;
    options.replicas = static_cast<int>(config_.stream_replicas);
    options.lease_ms = config_.ha_lease_ms;
    auto opened = HubLease::open(*js_, options, clock_);
    if (!opened.is_ok()) {
      spdlog::warn("ha: cannot open the lease bucket {} yet: {}", kHubLeaseBucket, opened.status().to_string());
      return;
    }
    lease_ = std::move(opened).value();
    holder_ = lease_->holder();
  }
  // The calls below are key-value round trips, under the lock: acquired(),
  // lost_reason() and step_down() wait at most one of them (the JetStream
  // timeout); valid() reads an atomic and never waits.
  if (!acquired_) {
    auto won = lease_->try_acquire();
    if (!won.is_ok()) {
      spdlog::debug("ha: lease: {}", won.status().to_string());
      return;
    }
    if (*won) {
      acquired_ = true;
      valid_until_ms_.store(lease_->valid_until_ms());
      spdlog::info("ha: this hub ({}) holds the lease: becoming the active hub", holder_);
      cv_.notify_all();
    }
    return;
  }
  Status renewed = lease_->renew();
  if (renewed.is_ok()) valid_until_ms_.store(lease_->valid_until_ms());
  if (is_lease_lost(renewed)) {
    lock.unlock();
    lose("another hub took the lease over: " + renewed.message());
    return;
  }
  if (!lease_->valid_at(clock_.now_steady_ms())) {
    lock.unlock();
    lose("the lease ran out without a renewal (" + (renewed.is_ok() ? std::string("late") : renewed.to_string()) +
         ")");
    return;
  }
  if (!renewed.is_ok()) spdlog::warn("ha: lease renewal failed, retrying: {}", renewed.to_string());
}

void LeaseKeeper::lose(const std::string& reason) {
  valid_until_ms_.store(std::numeric_limits<int64_t>::min());  // first: valid() is false from now on
  {
    std::lock_guard lock(mu_);
    if (!lost_reason_.empty()) return;
    lost_reason_ = reason;
    acquired_ = false;
  }
  spdlog::warn("ha: this hub ({}) lost the lease: {}; stepping down", holder_, reason);
  lost_.request_stop();
  cv_.notify_all();
}

bool LeaseKeeper::wait_acquired(std::stop_token stop) {
  std::unique_lock lock(mu_);
  cv_.wait(lock, stop, [this] { return acquired_ || lost_.stop_requested(); });
  return acquired_;
}

bool LeaseKeeper::acquired() const {
  std::lock_guard lock(mu_);
  return acquired_;
}

bool LeaseKeeper::valid() const { return clock_.now_steady_ms() < valid_until_ms_.load(); }

std::string LeaseKeeper::lost_reason() const {
  std::lock_guard lock(mu_);
  return lost_reason_;
}

void LeaseKeeper::release_and_stop() {
  valid_until_ms_.store(std::numeric_limits<int64_t>::min());
  if (stopped_.exchange(true)) return;
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
  std::lock_guard lock(mu_);
  if (lease_ && acquired_ && lost_reason_.empty()) {
    Status released = lease_->release();
    if (released.is_ok()) {
      spdlog::info("ha: lease released: a standby takes over now");
    } else {
      spdlog::warn("ha: could not release the lease ({}); a standby takes over once it runs out",
                   released.to_string());
    }
  }
  acquired_ = false;
  lease_.reset();
  js_.reset();
  if (nc_ && nc_->connected()) (void)nc_->flush(1000);
  nc_.reset();
}

}  // namespace ds
