// RateHistory: per-second rates between samples of the hub's counters, for
// the dashboard's charts; bounded, oldest points dropped first.
#include "hub/rate_history.h"

#include <gtest/gtest.h>

namespace ds {
namespace {

RateHistory::Counters counters(uint64_t records, uint64_t changes) {
  return RateHistory::Counters{records, records / 10, changes, changes / 10};
}

TEST(RateHistoryTest, EachPointIsTheRateSinceThePreviousSample) {
  RateHistory h(2000, 10);
  h.sample(10000, counters(100, 0));
  EXPECT_TRUE(h.to_json(10000)["points"].empty());  // one sample: no rate yet
  h.sample(12000, counters(300, 50));
  h.sample(14000, counters(300, 250));
  const nlohmann::json j = h.to_json(15000);
  EXPECT_EQ(j["period_ms"], 2000);
  ASSERT_EQ(j["points"].size(), 2u);
  EXPECT_EQ(j["points"][0]["t_ms"], 3000);
  EXPECT_DOUBLE_EQ(j["points"][0]["ingest_records"].get<double>(), 100.0);
  EXPECT_DOUBLE_EQ(j["points"][0]["ingest_batches"].get<double>(), 10.0);
  EXPECT_DOUBLE_EQ(j["points"][0]["delivered_changes"].get<double>(), 25.0);
  EXPECT_EQ(j["points"][1]["t_ms"], 1000);
  EXPECT_DOUBLE_EQ(j["points"][1]["ingest_records"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(j["points"][1]["delivered_changes"].get<double>(), 100.0);
}

TEST(RateHistoryTest, KeepsAtMostCapacityPoints) {
  RateHistory h(1000, 3);
  for (int i = 0; i <= 10; ++i) h.sample(i * 1000, counters(static_cast<uint64_t>(i) * 10, 0));
  const nlohmann::json points = h.to_json(10000)["points"];
  ASSERT_EQ(points.size(), 3u);
  EXPECT_EQ(points[0]["t_ms"], 2000);
  EXPECT_EQ(points[2]["t_ms"], 0);
}

TEST(RateHistoryTest, ACounterGoingBackCountsFromZeroAndNoTimeMeansNoPoint) {
  RateHistory h(1000, 10);
  h.sample(1000, counters(500, 500));
  h.sample(1000, counters(600, 600));  // same instant: ignored
  h.sample(2000, counters(40, 500));
  const nlohmann::json points = h.to_json(2000)["points"];
  ASSERT_EQ(points.size(), 1u);
  EXPECT_DOUBLE_EQ(points[0]["ingest_records"].get<double>(), 40.0);
  EXPECT_DOUBLE_EQ(points[0]["delivered_changes"].get<double>(), 0.0);
}

}  // namespace
}  // namespace ds
