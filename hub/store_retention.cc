#include "hub/store_retention.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace ds {

void StoreRetention::maybe_step(int64_t now_ms) {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_step_ < kStepInterval || now < paused_until_) return;
  last_step_ = now;
  step(now_ms);
}

void StoreRetention::step(int64_t now_ms) {
  if (config_.types.empty() || !config_.retention_enabled) return;
  const TypeConfig& type = config_.types[next_type_ % config_.types.size()];
  ++next_type_;
  Pass& pass = passes_[type.name];
  if (pass.keep_from == 0) {
    auto st = store_.type_state(type.name);
    auto first = publisher_.first_stream_batch(type.name);
    if (!st.is_ok() || !first.is_ok()) {
      // The broker may be away: its API calls would hold the writer up to
      // their timeout each, so retention pauses instead.
      spdlog::debug("retention {}: not now: {}", type.name,
                    (st.is_ok() ? first.status() : st.status()).to_string());
      paused_until_ = std::chrono::steady_clock::now() + kPauseAfterFailure;
      return;
    }
    const uint64_t held = first->has_value() ? **first : st->published_version + 1;
    pass.keep_from = std::min(held, std::max<uint64_t>(st->published_batch, 1));
    pass.cursor = 0;
  }
  const int64_t horizon_ms = config_.tombstone_max_age_s * 1000;
  const int64_t tombstones_before = config_.tombstone_max_age_s > 0 ? now_ms - horizon_ms : 0;
  auto done = store_.prune_step(type.name, pass.cursor, pass.keep_from, tombstones_before, kStepRows);
  if (!done.is_ok()) {
    spdlog::warn("retention {}: {} (pruning waits for the next pass)", type.name, done.status().to_string());
    pass = Pass{};
    return;
  }
  metrics_.pruned_changes += done->changes_dropped;
  metrics_.pruned_tombstones += done->tombstones_dropped;
  metrics_.pruned_retry_keys += done->retry_keys_dropped;
  if (done->scanned_to == 0) {
    spdlog::debug("retention {}: pass below version {} done", type.name, pass.keep_from);
    pass = Pass{};
  } else {
    pass.cursor = done->scanned_to;
  }
}

}  // namespace ds
