#include "agent/delivery_source.h"

namespace ds {

DeliverySource::DeliverySource(const std::map<std::string, TypeStart>& types) {
  for (const auto& [type, start] : types) {
    types_[type] = TypeState{.every_partition = start.every_partition, .held = start.held};
  }
}

DeliverySource::Take DeliverySource::feed_message(const std::string& type, const std::optional<FeedStamp>& stamp) {
  auto it = types_.find(type);
  if (it == types_.end()) return Take::kDrop;
  TypeState& st = it->second;
  if (!st.feed) {
    if (registering_) return Take::kDrop;
    // Does it continue what the consumer brought? Judged on a copy of the
    // rule, so a message that does not changes nothing.
    FeedOrder trial;
    trial.start(type, st.held, st.every_partition);
    if (trial.observe(type, stamp) != FeedOrder::Verdict::kInOrder) return Take::kDrop;
    st.feed = true;
    order_.start(type, st.held, st.every_partition);
    order_.observe(type, stamp);
    return Take::kSwitched;
  }
  const bool just_registered = st.just_registered;
  st.just_registered = false;
  switch (order_.observe(type, stamp)) {
    case FeedOrder::Verdict::kInOrder:
      return Take::kApply;
    case FeedOrder::Verdict::kGap:
      return just_registered && stamp ? Take::kGapAfterRegistration : Take::kGap;
    case FeedOrder::Verdict::kRefused:
      return Take::kDrop;
  }
  return Take::kDrop;
}

bool DeliverySource::takes_consumer(const std::string& type) const { return registering_ || !on_feed(type); }

void DeliverySource::consumer_taken(const std::string& type, uint64_t seq) {
  auto it = types_.find(type);
  if (it != types_.end() && !it->second.feed) it->second.held = seq;
}

void DeliverySource::registering() { registering_ = true; }

void DeliverySource::registered(const std::string& type, bool feed, uint64_t reported_seq) {
  auto it = types_.find(type);
  if (it == types_.end()) return;
  TypeState& st = it->second;
  if (feed && st.feed && order_.held(type)) return;  // on the feed already, without a gap: held stays
  st.feed = feed;
  st.held = reported_seq;
  st.just_registered = feed;
  if (feed) {
    order_.start(type, reported_seq, st.every_partition);
  } else {
    order_.stop(type);
  }
}

void DeliverySource::lost(const std::string& type) {
  if (on_feed(type)) order_.stop(type);
}

bool DeliverySource::taking_feed(const std::string& type) const { return on_feed(type) && order_.held(type); }

bool DeliverySource::on_feed(const std::string& type) const {
  auto it = types_.find(type);
  return it != types_.end() && it->second.feed;
}

}  // namespace ds
