#pragma once
// CheckpointBoard: the in-memory copy of what the replica has committed (per
// type checkpoint and schema hash), plus the health counters heartbeats
// report. The apply thread writes it after each commit; heartbeat and
// registration threads read it. Answering a heartbeat therefore never waits
// behind an apply or a snapshot load.
//
// Thread-safety: every method is thread-safe (one mutex).

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "shared/messages.h"

namespace ds {

class CheckpointBoard {
 public:
  void set_checkpoint(const std::string& type, const Checkpoint& cp) {
    std::lock_guard<std::mutex> lock(mu_);
    checkpoints_[type] = cp;
  }
  void set_pending(const std::string& type, uint64_t pending) {
    std::lock_guard<std::mutex> lock(mu_);
    pending_[type] = pending;
  }
  void set_queued(uint64_t queued) {
    std::lock_guard<std::mutex> lock(mu_);
    queued_ = queued;
  }
  // The quarantine's entries by type (Replica::quarantine_counts).
  void set_quarantined(std::map<std::string, uint64_t> by_type) {
    std::lock_guard<std::mutex> lock(mu_);
    quarantined_ = std::move(by_type);
  }
  void add_quarantined(const std::string& type, uint64_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    quarantined_[type] += n;
  }
  // Whether `type` is refused after a delivery gap (agent/delivery_order.h),
  // waiting for the consumer the next registration recreates. Each gap
  // opened gets a new generation.
  void set_delivery_gap(const std::string& type, bool open) {
    std::lock_guard<std::mutex> lock(mu_);
    if (open) {
      gaps_[type] = ++gap_generation_;
    } else {
      gaps_.erase(type);
    }
  }
  // The types refused after a delivery gap (type -> generation), and
  // clearing them: a registration that began while they were refused has
  // recreated their consumers (Registrar; a quiet type may not deliver a 1
  // for a long time). A gap opened again since (a newer generation) stays.
  using Gaps = std::map<std::string, uint64_t>;
  Gaps delivery_gaps() const {
    std::lock_guard<std::mutex> lock(mu_);
    return gaps_;
  }
  void clear_delivery_gaps(const Gaps& seen) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [type, generation] : seen) {
      auto it = gaps_.find(type);
      if (it != gaps_.end() && it->second == generation) gaps_.erase(it);
    }
  }
  // Whether `type` is on the live feed now (agent/delivery_source.h): the
  // heartbeat reply's Checkpoint::feed, kept apart from the checkpoints the
  // apply thread sets.
  void set_on_feed(const std::string& type, bool on_feed) {
    std::lock_guard<std::mutex> lock(mu_);
    if (on_feed) {
      on_feed_.insert(type);
    } else {
      on_feed_.erase(type);
    }
  }
  // The latest error (a person-readable sentence); cleared with nullopt.
  void set_error(std::optional<std::string> error) {
    std::lock_guard<std::mutex> lock(mu_);
    error_ = std::move(error);
  }

  std::map<std::string, Checkpoint> checkpoints() const {
    std::lock_guard<std::mutex> lock(mu_);
    return checkpoints_;
  }
  std::optional<Checkpoint> checkpoint(const std::string& type) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = checkpoints_.find(type);
    if (it == checkpoints_.end()) return std::nullopt;
    return it->second;
  }
  // Entries of every type.
  uint64_t quarantined() const {
    std::lock_guard<std::mutex> lock(mu_);
    return total_quarantined();
  }

  // A heartbeat reply for `agent` at time `now_ms`: degraded while anything
  // is quarantined, an error is set or a type is refused after a delivery
  // gap (the error then names the first such type unless another is set).
  // pending = deltas the consumers still hold for this agent (from the
  // last delivery) + messages queued locally.
  // quarantined is the total, quarantined_types the entries of each type
  // that has any (docs/protocol.md, heartbeat reply).
  HeartbeatReply heartbeat(const std::string& agent, int64_t now_ms) const {
    std::lock_guard<std::mutex> lock(mu_);
    HeartbeatReply r;
    r.agent = agent;
    r.ts = now_ms;
    r.checkpoints = checkpoints_;
    for (auto& [type, cp] : r.checkpoints) cp.feed = on_feed_.count(type) != 0;
    r.pending = queued_;
    for (const auto& [type, n] : pending_) r.pending += n;
    r.quarantined = total_quarantined();
    r.quarantined_types.emplace();
    for (const auto& [type, n] : quarantined_) {
      if (n > 0) (*r.quarantined_types)[type] = n;
    }
    r.error = error_;
    if (!r.error.has_value() && !gaps_.empty()) {
      r.error = gaps_.begin()->first + ": a delivery went missing on the way; waiting for the hub to resume the stream";
    }
    r.status = (r.quarantined > 0 || r.error.has_value()) ? AgentHealth::kDegraded : AgentHealth::kOk;
    return r;
  }

 private:
  uint64_t total_quarantined() const {  // mu_ held
    uint64_t n = 0;
    for (const auto& [type, count] : quarantined_) n += count;
    return n;
  }

  mutable std::mutex mu_;
  std::map<std::string, Checkpoint> checkpoints_;  // guarded by mu_
  std::set<std::string> on_feed_;                   // guarded by mu_
  std::map<std::string, uint64_t> pending_;        // guarded by mu_
  uint64_t queued_ = 0;                            // guarded by mu_
  std::map<std::string, uint64_t> quarantined_;    // guarded by mu_; entries by type
  std::optional<std::string> error_;               // guarded by mu_
  std::map<std::string, uint64_t> gaps_;           // guarded by mu_; types refused after a gap -> generation
  uint64_t gap_generation_ = 0;                    // guarded by mu_
};

}  // namespace ds
