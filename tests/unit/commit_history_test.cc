// Freshness as the hub measures it (hub/commit_history.h): the age of the
// oldest change of an agent's partition the agent has not applied.
#include "hub/commit_history.h"

#include <gtest/gtest.h>

namespace ds {
namespace {

std::vector<TypeConfig> types(int64_t objective_s) {
  TypeConfig t;
  t.name = "prices";
  t.freshness_objective_s = objective_s;
  return {t};
}

PartitionMark mark(const std::string& partition, uint64_t version, int64_t hub_ms) {
  return PartitionMark{"prices", partition, version, 0, hub_ms};
}

TEST(CommitHistoryTest, AgeOfTheOldestUnappliedChange) {
  CommitHistory h(types(16));  // resolution 1 s, horizon 64 s
  h.record(mark("s1", 10, 100'000));
  h.record(mark("s1", 20, 105'000));
  h.record(mark("s1", 30, 109'000));
  EXPECT_EQ(h.staleness_ms("prices", "s1", 30, 110'000), 0);       // has everything
  EXPECT_EQ(h.staleness_ms("prices", "s1", 35, 110'000), 0);
  EXPECT_EQ(h.staleness_ms("prices", "s1", 20, 110'000), 1'000);   // missing 21..30, committed at 109 s
  EXPECT_EQ(h.staleness_ms("prices", "s1", 15, 110'000), 5'000);   // missing 16.., oldest committed at 105 s
  EXPECT_EQ(h.staleness_ms("prices", "s1", 0, 110'000), 10'000);
  // It grows while nothing is applied: a stuck agent breaches.
  EXPECT_EQ(h.staleness_ms("prices", "s1", 20, 200'000), 91'000);
}

TEST(CommitHistoryTest, OtherPartitionsDoNotMakeAnAgentStale) {
  CommitHistory h(types(16));
  h.record(mark("s1", 5, 100'000));
  h.record(mark("s2", 6, 101'000));
  h.record(mark("s2", 900, 500'000));
  EXPECT_EQ(h.staleness_ms("prices", "s1", 5, 600'000), 0);
  h.record(mark("s1", 901, 599'000));
  EXPECT_EQ(h.staleness_ms("prices", "s1", 5, 600'000), 1'000);  // not 500 s: s2's versions are not s1's
  // A subscription to every partition sees every commit.
  // (499 s in truth; beyond four objectives it is a lower bound above them.)
  EXPECT_GE(h.staleness_ms("prices", "*", 5, 600'000), 64'000);
  EXPECT_LE(h.staleness_ms("prices", "*", 5, 600'000), 499'000);
  EXPECT_EQ(h.staleness_ms("prices", "*", 901, 600'000), 0);
}

TEST(CommitHistoryTest, CommitsWithinAStepKeepTheEarliestTime) {
  CommitHistory h(types(16));  // steps of 1 s
  h.record(mark("s1", 1, 100'000));
  h.record(mark("s1", 2, 100'400));
  h.record(mark("s1", 3, 100'900));
  // Missing 3 only (committed at 100.9 s) but reported from the step's start:
  // at most one resolution (objective / 16) too old.
  EXPECT_EQ(h.staleness_ms("prices", "s1", 2, 101'000), 1'000);
}

TEST(CommitHistoryTest, VeryOldChangesAreAtLeastFourObjectivesOld) {
  CommitHistory h(types(1));  // resolution 62 ms, horizon 4 s, at most 64 steps
  for (uint64_t v = 1; v <= 1000; ++v) h.record(mark("s1", v, 1'000'000 + static_cast<int64_t>(v) * 100));
  const int64_t now = 1'000'000 + 1000 * 100;
  // An agent behind everything kept: a lower bound above the horizon, so a breach.
  const int64_t stale = h.staleness_ms("prices", "s1", 0, now);
  EXPECT_GE(stale, 4'000);
  EXPECT_LE(stale, 100'000);
  // A recent one stays exact.
  EXPECT_EQ(h.staleness_ms("prices", "s1", 1000, now), 0);
  EXPECT_EQ(h.staleness_ms("prices", "s1", 999, now), 0);  // missing 1000, committed just now
  EXPECT_EQ(h.staleness_ms("prices", "s1", 998, now), 100);
  EXPECT_EQ(h.staleness_ms("prices", "s1", 990, now), 900);
}

TEST(CommitHistoryTest, AfterARestartTheNewestChangeGivesALowerBound) {
  CommitHistory h(types(16));
  h.seed(mark("s1", 50, 100'000));
  EXPECT_EQ(h.staleness_ms("prices", "s1", 50, 130'000), 0);
  EXPECT_EQ(h.staleness_ms("prices", "s1", 10, 130'000), 30'000);
  h.record(mark("s1", 60, 120'000));
  EXPECT_EQ(h.staleness_ms("prices", "s1", 55, 130'000), 10'000);
  EXPECT_EQ(h.staleness_ms("prices", "s1", 10, 130'000), 30'000);
}

TEST(CommitHistoryTest, ChangesCommittedAfterTheMomentDoNotCount) {
  CommitHistory h(types(16));
  h.record(mark("s1", 10, 100'000));
  h.record(mark("s1", 20, 105'000));
  // As of 103 s (the agent's report), version 10 missed nothing yet.
  EXPECT_EQ(h.staleness_ms("prices", "s1", 10, 103'000), 0);
  EXPECT_EQ(h.staleness_ms("prices", "s1", 5, 103'000), 3'000);
  EXPECT_EQ(h.staleness_ms("prices", "s1", 10, 106'000), 1'000);
}

TEST(CommitHistoryTest, UnknownTypesAndPartitionsAreFresh) {
  CommitHistory h(types(16));
  EXPECT_EQ(h.staleness_ms("prices", "s1", 0, 1'000), 0);
  h.record(PartitionMark{"other", "s1", 5, 0, 1'000});
  EXPECT_EQ(h.staleness_ms("other", "s1", 0, 2'000), 0);
}

}  // namespace
}  // namespace ds
