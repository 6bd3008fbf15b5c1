#include "hub/consumer_copy_watch.h"

#include <algorithm>

namespace ds {

ConsumerCopyWatch::Round ConsumerCopyWatch::next(const std::vector<Key>& open, size_t budget) {
  std::erase_if(behind_, [&open](const auto& e) { return !std::binary_search(open.begin(), open.end(), e.first); });
  Round round;
  for (const auto& [key, b] : behind_) {
    if (round.recheck.size() >= budget / 2) break;
    round.recheck.push_back(key);
  }
  const auto rechecked = [&round](const Key& key) {
    return std::find(round.recheck.begin(), round.recheck.end(), key) != round.recheck.end();
  };
  auto at = cursor_ ? std::upper_bound(open.begin(), open.end(), *cursor_) : open.begin();
  for (size_t seen = 0; seen < open.size() && round.recheck.size() + round.sweep.size() < budget; ++seen, ++at) {
    if (at == open.end()) at = open.begin();
    if (!rechecked(*at)) round.sweep.push_back(*at);
  }
  return round;
}

CopyVerdict ConsumerCopyWatch::observe(const Key& key, const std::vector<StreamFollower>& followers,
                                       int64_t now_ms) {
  const StreamFollower* late = nullptr;
  bool offline = false;
  for (const StreamFollower& f : followers) {
    if (f.offline) {
      offline = true;
    } else if (!f.current && late == nullptr) {
      late = &f;
    }
  }
  if (late == nullptr) {
    behind_.erase(key);
    return {.kind = offline ? CopyVerdict::Kind::kWaiting : CopyVerdict::Kind::kCurrent};
  }
  auto [it, first] = behind_.try_emplace(key, Behind{late->name, now_ms, now_ms});
  Behind& b = it->second;
  if (b.node != late->name || now_ms - b.last_ms > grace_ms_) b = Behind{late->name, now_ms, now_ms};
  b.last_ms = now_ms;
  const int64_t behind_ms = now_ms - b.since_ms;
  if (behind_ms < grace_ms_) return {.kind = CopyVerdict::Kind::kWaiting};
  return {.kind = CopyVerdict::Kind::kStuck, .node = late->name, .behind_ms = behind_ms, .lag = late->lag};
}

void ConsumerCopyWatch::ordered(const Key& key, int64_t now_ms) {
  if (auto it = behind_.find(key); it != behind_.end()) it->second.since_ms = now_ms;
}

}  // namespace ds
