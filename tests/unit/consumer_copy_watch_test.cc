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
  EXPECT_EQ(watch.behind(), 0u);
}

TEST(ConsumerCopyWatchTest, AFollowerBehindForTheGraceIsStuckAndNamed) {
  ConsumerCopyWatch watch(10000);
  EXPECT_EQ(watch.observe(kA1, {current("n2"), behind("n3", 10)}, 1000).kind, Kind::kWaiting);
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
  EXPECT_EQ(watch.observe(kA1, {current("n2"), behind("n3", 90)}, 21999).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {current("n2"), behind("n3", 90)}, 22000).kind, Kind::kStuck);
}

TEST(ConsumerCopyWatchTest, AFollowerThatCatchesUpWithinTheGraceIsNotStuck) {
  ConsumerCopyWatch watch(10000);
  EXPECT_EQ(watch.observe(kA1, {behind("n2", 5), current("n3")}, 0).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {current("n2"), current("n3")}, 2000).kind, Kind::kCurrent);
  EXPECT_EQ(watch.behind(), 0u);
  // Behind again later: a new grace.
  EXPECT_EQ(watch.observe(kA1, {behind("n2", 5), current("n3")}, 30000).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {behind("n2", 5), current("n3")}, 39999).kind, Kind::kWaiting);
}

TEST(ConsumerCopyWatchTest, AnOfflineFollowerIsWaitedForAndStartsNoGrace) {
  ConsumerCopyWatch watch(10000);
  for (int64_t t = 0; t <= 60000; t += 5000) {
    EXPECT_EQ(watch.observe(kA1, {current("n2"), offline("n3")}, t).kind, Kind::kWaiting) << t;
  }
  // Its node comes back: the grace starts now, not when it went down.
  EXPECT_EQ(watch.observe(kA1, {current("n2"), behind("n3", 400)}, 65000).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {current("n2"), behind("n3", 10)}, 74999).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {current("n2"), behind("n3", 10)}, 75000).kind, Kind::kStuck);
}

TEST(ConsumerCopyWatchTest, ARecreatedConsumerStartsAfresh) {
  ConsumerCopyWatch watch(10000);
  EXPECT_EQ(watch.observe(kA1, {behind("n3", 1)}, 0).kind, Kind::kWaiting);
  watch.opened(kA1);  // the registration recreated it
  EXPECT_EQ(watch.behind(), 0u);
  EXPECT_EQ(watch.observe(kA1, {behind("n3", 1)}, 10000).kind, Kind::kWaiting);
  EXPECT_EQ(watch.observe(kA1, {behind("n3", 1)}, 20000).kind, Kind::kStuck);
}

// Checks every key handed out, as a round that ran to its end does.
void check_all(ConsumerCopyWatch& watch, const std::vector<Key>& keys) {
  for (const Key& key : keys) watch.observe(key, {current("n2")}, 0);
}

TEST(ConsumerCopyWatchTest, NextSweepsEveryOpenConsumerRoundRobinWithinTheBudget) {
  ConsumerCopyWatch watch(10000);
  const std::vector<Key> open = {{"a1", "price"}, {"a2", "price"}, {"a3", "price"}};
  std::vector<Key> round = watch.next(open, 2);
  EXPECT_EQ(round, (std::vector<Key>{open[0], open[1]}));
  check_all(watch, round);
  round = watch.next(open, 2);
  EXPECT_EQ(round, (std::vector<Key>{open[2], open[0]}));
  check_all(watch, round);
  EXPECT_EQ(watch.next(open, 10), (std::vector<Key>{open[1], open[2], open[0]}));  // never one twice a round
  // The last one checked closed: the sweep goes on after where it was.
  EXPECT_EQ(watch.next({open[1], open[2]}, 1), (std::vector<Key>{open[1]}));
  EXPECT_TRUE(watch.next({}, 5).empty());
}

TEST(ConsumerCopyWatchTest, ARoundCutShortGoesOnAfterTheLastConsumerChecked) {
  ConsumerCopyWatch watch(10000);
  const std::vector<Key> open = {{"a1", "price"}, {"a2", "price"}, {"a3", "price"}, {"a4", "price"}};
  std::vector<Key> round = watch.next(open, 4);
  watch.observe(round[0], {current("n2")}, 0);
  watch.unread(round[1]);  // its read failed: the round stops there
  EXPECT_EQ(watch.next(open, 2), (std::vector<Key>{open[2], open[3]}));
}

TEST(ConsumerCopyWatchTest, AConsumerNoLongerOpenIsForgotten) {
  ConsumerCopyWatch watch(10000);
  EXPECT_EQ(watch.observe(kA1, {behind("n3", 1)}, 0).kind, Kind::kWaiting);
  EXPECT_EQ(watch.behind(), 1u);
  (void)watch.next({{"a2", "price"}}, 5);
  EXPECT_EQ(watch.behind(), 0u);
  // Opened again later: a new grace, not the old one.
  EXPECT_EQ(watch.observe(kA1, {behind("n3", 1)}, 50000).kind, Kind::kWaiting);
}

}  // namespace
}  // namespace ds
