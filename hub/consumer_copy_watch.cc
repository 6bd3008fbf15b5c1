#include "hub/consumer_copy_watch.h"

#include <algorithm>

namespace ds {

std::vector<ConsumerCopyWatch::Key> ConsumerCopyWatch::next(const std::vector<Key>& open, size_t budget) {
  std::erase_if(behind_since_ms_,
                [&open](const auto& e) { return !std::binary_search(open.begin(), open.end(), e.first); });
  std::vector<Key> out;
  if (open.empty()) return out;
  auto from = cursor_ ? std::upper_bound(open.begin(), open.end(), *cursor_) : open.begin();
  const size_t n = std::min(budget, open.size());
  for (size_t i = 0; i < n; ++i, ++from) {
    if (from == open.end()) from = open.begin();
    out.push_back(*from);
  }
  return out;
}

CopyVerdict ConsumerCopyWatch::observe(const Key& key, const std::vector<StreamFollower>& followers,
                                       int64_t now_ms) {
  cursor_ = key;
  const StreamFollower* behind = nullptr;
  bool offline = false;
  for (const StreamFollower& f : followers) {
    if (f.offline) {
      offline = true;
    } else if (!f.current && behind == nullptr) {
      behind = &f;
    }
  }
  if (behind == nullptr) {
    if (!offline) {
      behind_since_ms_.erase(key);
      return {.kind = CopyVerdict::Kind::kCurrent};
    }
    behind_since_ms_[key] = -1;
    return {.kind = CopyVerdict::Kind::kWaiting};
  }
  auto [it, inserted] = behind_since_ms_.try_emplace(key, now_ms);
  if (it->second < 0) it->second = now_ms;  // its node was down until now: the grace starts now
  const int64_t behind_ms = now_ms - it->second;
  if (behind_ms < grace_ms_) return {.kind = CopyVerdict::Kind::kWaiting};
  return {.kind = CopyVerdict::Kind::kStuck, .node = behind->name, .behind_ms = behind_ms, .lag = behind->lag};
}

void ConsumerCopyWatch::ordered(const Key& key, int64_t now_ms) {
  if (auto it = behind_since_ms_.find(key); it != behind_since_ms_.end()) it->second = now_ms;
}

}  // namespace ds
