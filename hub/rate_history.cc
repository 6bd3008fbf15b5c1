#include "hub/rate_history.h"

#include <algorithm>

namespace ds {
namespace {

double per_second(uint64_t now, uint64_t before, int64_t elapsed_ms) {
  const uint64_t delta = now >= before ? now - before : now;  // backwards: restarted from zero
  return static_cast<double>(delta) * 1000.0 / static_cast<double>(elapsed_ms);
}

}  // namespace

RateHistory::RateHistory(int64_t period_ms, size_t capacity)
    : period_ms_(std::max<int64_t>(1, period_ms)), capacity_(std::max<size_t>(1, capacity)) {}

void RateHistory::sample(int64_t now_ms, const Counters& c) {
  if (last_ && now_ms > last_->first) {
    const int64_t elapsed = now_ms - last_->first;
    const Counters& b = last_->second;
    points_.push_back(Point{now_ms, elapsed, per_second(c.ingest_records, b.ingest_records, elapsed),
                            per_second(c.ingest_batches, b.ingest_batches, elapsed),
                            per_second(c.delivered_changes, b.delivered_changes, elapsed),
                            per_second(c.delivered_batches, b.delivered_batches, elapsed)});
    while (points_.size() > capacity_) points_.pop_front();
  }
  if (!last_ || now_ms > last_->first) last_ = std::make_pair(now_ms, c);
}

nlohmann::json RateHistory::to_json(int64_t now_ms) const {
  nlohmann::json points = nlohmann::json::array();
  for (const Point& p : points_) {
    points.push_back({{"t_ms", std::max<int64_t>(0, now_ms - p.end_ms)},
                      {"span_ms", p.span_ms},
                      {"ingest_records", p.ingest_records},
                      {"ingest_batches", p.ingest_batches},
                      {"delivered_changes", p.delivered_changes},
                      {"delivered_batches", p.delivered_batches}});
  }
  return nlohmann::json{{"period_ms", period_ms_}, {"points", std::move(points)}};
}

}  // namespace ds
