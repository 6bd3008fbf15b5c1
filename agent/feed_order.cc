#include "agent/feed_order.h"

#include <charconv>

namespace ds {
namespace {

std::optional<uint64_t> sequence_of(const std::optional<std::string>& text) {
  if (!text || text->empty()) return std::nullopt;
  uint64_t v = 0;
  const char* end = text->data() + text->size();
  const auto [p, ec] = std::from_chars(text->data(), end, v);
  if (ec != std::errc() || p != end) return std::nullopt;
  return v;
}

}  // namespace

std::optional<FeedStamp> feed_stamp(const std::optional<std::string>& seq,
                                    const std::optional<std::string>& subject_last) {
  const std::optional<uint64_t> s = sequence_of(seq);
  const std::optional<uint64_t> last = sequence_of(subject_last);
  if (!s || !last || *s == 0 || *last >= *s) return std::nullopt;
  return FeedStamp{*s, *last};
}

void FeedOrder::start(const std::string& type, uint64_t held, bool every_partition) {
  types_[type] = TypeState{held, every_partition, false};
}

void FeedOrder::stop(const std::string& type) { types_[type].broken = true; }

FeedOrder::Verdict FeedOrder::observe(const std::string& type, const std::optional<FeedStamp>& stamp) {
  auto it = types_.find(type);
  if (it == types_.end() || it->second.broken) return Verdict::kRefused;
  TypeState& st = it->second;
  const bool in_order = stamp && stamp->seq > st.held &&
                        (st.every_partition ? stamp->seq == st.held + 1 : stamp->subject_last <= st.held);
  if (!in_order) {
    st.broken = true;
    return Verdict::kGap;
  }
  st.held = stamp->seq;
  return Verdict::kInOrder;
}

std::optional<uint64_t> FeedOrder::held(const std::string& type) const {
  auto it = types_.find(type);
  if (it == types_.end() || it->second.broken) return std::nullopt;
  return it->second.held;
}

}  // namespace ds
