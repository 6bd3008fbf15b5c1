// ConsumerCopyWatch's rule (hub/consumer_copy_watch.h), case by case, with
// time passed by hand.

#include "hub/consumer_copy_watch.h"

#include <gtest/gtest.h>

namespace ds {
namespace {

using Kind = CopyVerdict::Kind;
using Key = ConsumerCopyWatch::Key;

const Key kA1{"a1", "price"};

StreamFollower current(const std::string& node) { return {.name = node, .current = true}; }
StreamFollower behind(const std::string& node, uint64_t lag) { return {.name = node, .current = false, .lag = lag}; }
StreamFollower offline(const std::string& node) { return {.name = node, .current = false, .offline = true}; }

TEST(ConsumerCopyWatchTest, EveryFollowerCurrentIsCurrent) {
  ConsumerCopyWatch watch(10000);
  EXPECT_EQ(watch.observe(kA1, {current("n2"), current("n3")}, 0).kind, Kind::kCurrent);
  EXPECT_EQ(watch.observe(kA1, {}, 0).kind, Kind::kCurrent);  // one replica: no followers
}

TEST(ConsumerCopyWatchTest, AFollowerBehindForTheGraceIsStuckAndNamed) {
  ConsumerCopyWatch watch(10000);
  EXPECT_EQ(watch.observe(kA1, {current("n2"), behind("n3", 10)}, 1000).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {current("n2"), behind("n3", 50)}, 6000).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {current("n2"), behind("n3", 50)}, 10999).kind, Kind::kWaiting);
  const CopyVerdict v = watch.observe(kA1, {current("n2"), behind("n3", 80)}, 11000);
  EXPECT_EQ(v.kind, Kind::kStuck);
  EXPECT_EQ(v.node, "n3");
  EXPECT_EQ(v.behind_ms, 10000);
  EXPECT_EQ(v.lag, 80u);
  // Still stuck at the next look, until the hub orders the registration;
  // then the grace starts over.
  EXPECT_EQ(watch.observe(kA1, {current("n2"), behind("n3", 90)}, 12000).kind, Kind::kStuck);
  watch.ordered(kA1, 12000);
  EXPECT_EQ(watch.observe(kA1, {current("n2"), behind("n3", 90)}, 17000).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {current("n2"), behind("n3", 90)}, 21999).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {current("n2"), behind("n3", 90)}, 22000).kind, Kind::kStuck);
}

TEST(ConsumerCopyWatchTest, AFollowerThatCatchesUpWithinTheGraceIsNotStuck) {
  ConsumerCopyWatch watch(10000);
  EXPECT_EQ(watch.observe(kA1, {behind("n2", 5), current("n3")}, 0).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {current("n2"), current("n3")}, 2000).kind, Kind::kCurrent);
  // Behind again later: a new grace.
  EXPECT_EQ(watch.observe(kA1, {behind("n2", 5), current("n3")}, 30000).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {behind("n2", 5), current("n3")}, 39999).kind, Kind::kWaiting);
}

// Two samples a sweep apart say nothing of the time between: a follower
// briefly behind at each is not stuck.
TEST(ConsumerCopyWatchTest, SamplesFartherApartThanTheGraceStartItOver) {
  ConsumerCopyWatch watch(10000);
  EXPECT_EQ(watch.observe(kA1, {behind("n3", 2)}, 0).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {behind("n3", 2)}, 60000).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {behind("n3", 2)}, 65000).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {behind("n3", 2)}, 70000).kind, Kind::kStuck);
}

TEST(ConsumerCopyWatchTest, AnotherFollowerBehindStartsTheGraceOver) {
  ConsumerCopyWatch watch(10000);
  EXPECT_EQ(watch.observe(kA1, {behind("n2", 2), current("n3")}, 0).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {current("n2"), behind("n3", 2)}, 6000).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {current("n2"), behind("n3", 2)}, 12000).kind, Kind::kWaiting);
  const CopyVerdict v = watch.observe(kA1, {current("n2"), behind("n3", 2)}, 16000);
  EXPECT_EQ(v.kind, Kind::kStuck);
  EXPECT_EQ(v.node, "n3");
}

TEST(ConsumerCopyWatchTest, AnOfflineFollowerIsWaitedForAndStartsNoGrace) {
  ConsumerCopyWatch watch(10000);
  for (int64_t t = 0; t <= 60000; t += 5000) {
    EXPECT_EQ(watch.observe(kA1, {current("n2"), offline("n3")}, t).kind, Kind::kWaiting) << t;
  }
  // Its node comes back: the grace starts now, not when it went down.
  EXPECT_EQ(watch.observe(kA1, {current("n2"), behind("n3", 400)}, 65000).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {current("n2"), behind("n3", 10)}, 70000).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {current("n2"), behind("n3", 10)}, 75000).kind, Kind::kStuck);
}

// Leader, a follower stuck and one offline: no quorum, nothing delivered; a
// new consumer on the two nodes up delivers again.
TEST(ConsumerCopyWatchTest, AFollowerBehindWhileAnotherIsOfflineIsStuckAllTheSame) {
  ConsumerCopyWatch watch(10000);
  EXPECT_EQ(watch.observe(kA1, {behind("n2", 9), offline("n3")}, 0).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {behind("n2", 9), offline("n3")}, 5000).kind, Kind::kWaiting);
  const CopyVerdict v = watch.observe(kA1, {behind("n2", 9), offline("n3")}, 10000);
  EXPECT_EQ(v.kind, Kind::kStuck);
  EXPECT_EQ(v.node, "n2");
}

TEST(ConsumerCopyWatchTest, ARecreatedConsumerStartsAfresh) {
  ConsumerCopyWatch watch(10000);
  EXPECT_EQ(watch.observe(kA1, {behind("n3", 1)}, 0).kind, Kind::kWaiting);
  watch.opened(kA1);  // the registration recreated it
  EXPECT_EQ(watch.observe(kA1, {behind("n3", 1)}, 5000).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {behind("n3", 1)}, 10000).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {behind("n3", 1)}, 15000).kind, Kind::kStuck);
}

// Checks and sweeps every key of a round's sweep, as a round that ran to its end does.
void sweep_all(ConsumerCopyWatch& watch, const ConsumerCopyWatch::Round& round) {
  for (const Key& key : round.sweep) {
    watch.observe(key, {current("n2")}, 0);
    watch.swept(key);
  }
}

TEST(ConsumerCopyWatchTest, TheSweepGoesRoundRobinWithinTheBudget) {
  ConsumerCopyWatch watch(10000);
  const std::vector<Key> open = {{"a1", "price"}, {"a2", "price"}, {"a3", "price"}};
  ConsumerCopyWatch::Round round = watch.next(open, 2);
  EXPECT_TRUE(round.recheck.empty());
  EXPECT_EQ(round.sweep, (std::vector<Key>{open[0], open[1]}));
  sweep_all(watch, round);
  round = watch.next(open, 2);
  EXPECT_EQ(round.sweep, (std::vector<Key>{open[2], open[0]}));
  sweep_all(watch, round);
  EXPECT_EQ(watch.next(open, 10).sweep, (std::vector<Key>{open[1], open[2], open[0]}));  // never one twice
  // The last one swept closed: the sweep goes on after where it was.
  EXPECT_EQ(watch.next({open[1], open[2]}, 1).sweep, (std::vector<Key>{open[1]}));
  EXPECT_TRUE(watch.next({}, 5).sweep.empty());
}

TEST(ConsumerCopyWatchTest, ARoundCutShortGoesOnAfterTheLastConsumerSwept) {
  ConsumerCopyWatch watch(10000);
  const std::vector<Key> open = {{"a1", "price"}, {"a2", "price"}, {"a3", "price"}, {"a4", "price"}};
  ConsumerCopyWatch::Round round = watch.next(open, 4);
  watch.swept(round.sweep[0]);
  watch.swept(round.sweep[1]);  // its read failed: the round stops there
  EXPECT_EQ(watch.next(open, 2).sweep, (std::vector<Key>{open[2], open[3]}));
}

// A consumer found behind is looked at again every round, ahead of the
// sweep, so its grace is timed from samples an interval apart.
TEST(ConsumerCopyWatchTest, AConsumerBehindIsRecheckedEveryRoundAndNotSweptTwice) {
  ConsumerCopyWatch watch(10000);
  const std::vector<Key> open = {{"a1", "price"}, {"a2", "price"}, {"a3", "price"}, {"a4", "price"}};
  watch.observe(open[2], {behind("n3", 1)}, 0);
  ConsumerCopyWatch::Round round = watch.next(open, 4);
  EXPECT_EQ(round.recheck, (std::vector<Key>{open[2]}));
  EXPECT_EQ(round.sweep, (std::vector<Key>{open[0], open[1], open[3]}));
  // Closed: forgotten, no recheck.
  round = watch.next({open[0], open[1]}, 4);
  EXPECT_TRUE(round.recheck.empty());
  // Rechecks take half the budget at most.
  for (const Key& key : open) watch.observe(key, {behind("n3", 1)}, 0);
  round = watch.next(open, 4);
  EXPECT_EQ(round.recheck.size(), 2u);
  EXPECT_EQ(round.recheck.size() + round.sweep.size(), 4u);
}

}  // namespace
}  // namespace ds
