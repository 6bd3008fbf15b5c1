#include "agent/delivery_order.h"

namespace ds {

DeliveryOrder::Verdict DeliveryOrder::observe(const std::string& type, uint64_t consumer_seq) {
  TypeState& t = types_[type];
  if (consumer_seq == 1 || (!t.broken && t.last != 0 && consumer_seq == t.last + 1)) {
    t.last = consumer_seq;
    t.broken = false;
    return Verdict::kInOrder;
  }
  if (t.broken) return Verdict::kRefused;
  t.broken = true;
  return Verdict::kGap;
}

void DeliveryOrder::expect_new_consumers() {
  for (auto& [type, t] : types_) t.broken = true;
}

uint64_t DeliveryOrder::last_in_order(const std::string& type) const {
  auto it = types_.find(type);
  return it == types_.end() ? 0 : it->second.last;
}

}  // namespace ds
