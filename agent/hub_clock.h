#pragma once
// HubClock: the agent's reading of the hub's wall clock, for ages of times
// the hub stamped (a tombstone's hub_ts). This host's wall clock may be off
// by any amount (no NTP, a bad RTC, a step during the run); comparing it
// with the hub's stamps would drop tombstones early on a host whose clock is
// ahead, and a replayed older update could then bring a deleted key back.
//
// Every heartbeat request carries the hub's wall time when it was sent;
// now() is the latest such time plus the monotonic (steady) time since it
// arrived. It runs behind the hub by the heartbeat's transit time, so ages
// come out a little short and retention errs on keeping. It follows the
// hub's clock wherever it goes, also backwards (the stamps it is compared
// with come from that clock). nullopt until the first heartbeat.
//
// Thread-safe: observe() runs on a cnats thread, now() on the apply thread.

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <optional>

#include "shared/clock.h"

namespace ds {

class HubClock {
 public:
  // `hub_wall_ms`: a heartbeat request's ts; `steady_ms`: when it arrived.
  void observe(int64_t hub_wall_ms, int64_t steady_ms) {
    if (hub_wall_ms <= 0) return;  // a request without a time tells nothing
    std::lock_guard<std::mutex> lock(mu_);
    hub_wall_ms_ = hub_wall_ms;
    steady_at_ms_ = steady_ms;
  }
  void observe(int64_t hub_wall_ms) { observe(hub_wall_ms, steady_now_ms()); }

  std::optional<int64_t> now(int64_t steady_ms) const {
    std::lock_guard<std::mutex> lock(mu_);
    if (!hub_wall_ms_) return std::nullopt;
    return *hub_wall_ms_ + std::max<int64_t>(0, steady_ms - steady_at_ms_);
  }
  std::optional<int64_t> now() const { return now(steady_now_ms()); }

  static int64_t steady_now_ms() { return real_clock().now_steady_ms(); }

 private:
  mutable std::mutex mu_;
  std::optional<int64_t> hub_wall_ms_;  // guarded by mu_
  int64_t steady_at_ms_ = 0;            // guarded by mu_
};

}  // namespace ds
