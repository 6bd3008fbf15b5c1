#pragma once
// RateHistory: the hub's ingest and delivery rates over the last minutes,
// for the dashboard's charts (GET /v1/fleet/rates). Every `period` the owner
// samples four monotonic counters of HubMetrics; each point is the rate per
// second between two consecutive samples:
//
//   ingest_records   records stored (HubMetrics::ingest_records)
//   ingest_batches   ingest batches stored (HubMetrics::ingest_batches)
//   delivered_changes  changes published to the delta streams and acked by
//                    JetStream (HubMetrics::published_changes): what the
//                    agents' consumers then deliver
//   delivered_batches  delta batches published (HubMetrics::published_batches)
//
// At most `capacity` points are kept (the oldest go first), so memory is
// fixed. A counter that goes backwards (it never should: the counters live
// as long as the process) counts as restarted from zero, as Prometheus'
// rate() does. The points live in memory only: after a hub restart the
// history starts empty (docs/operations.md, "Dashboard", says why it is not
// rebuilt from the change log).
//
// Pure: no clock or thread; the caller passes its steady time in ms.
// Not thread-safe: one owner thread (the HTTP API's io thread).

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>

#include <nlohmann/json.hpp>

namespace ds {

class RateHistory {
 public:
  struct Counters {
    uint64_t ingest_records = 0;
    uint64_t ingest_batches = 0;
    uint64_t delivered_changes = 0;
    uint64_t delivered_batches = 0;
  };

  RateHistory(int64_t period_ms, size_t capacity);

  int64_t period_ms() const { return period_ms_; }
  // One sample at `now_ms`: adds the point since the previous sample (none
  // for the first, or when no time passed).
  void sample(int64_t now_ms, const Counters& counters);

  // {period_ms, points: [{t_ms, span_ms, ingest_records, ingest_batches,
  //  delivered_changes, delivered_batches}]} oldest first; t_ms is the
  // point's end as milliseconds before `now_ms` (0 = now), span_ms the time
  // it covers (the period, or more when a sample came late), rates per
  // second over that span.
  nlohmann::json to_json(int64_t now_ms) const;

 private:
  struct Point {
    int64_t end_ms = 0;
    int64_t span_ms = 0;
    double ingest_records = 0;
    double ingest_batches = 0;
    double delivered_changes = 0;
    double delivered_batches = 0;
  };
  int64_t period_ms_;
  size_t capacity_;
  std::optional<std::pair<int64_t, Counters>> last_;
  std::deque<Point> points_;
};

}  // namespace ds
