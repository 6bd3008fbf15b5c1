// agent/feed_order.h: the continuity rule of the live feed, on the broker's
// stamps (tests/integration/live_feed_test.cc shows the broker's side).
#include "agent/feed_order.h"

#include <gtest/gtest.h>

namespace ds {
namespace {

using Verdict = FeedOrder::Verdict;

FeedStamp stamp(uint64_t seq, uint64_t subject_last) { return FeedStamp{seq, subject_last}; }

TEST(FeedStampTest, ReadsBothHeadersAndRefusesAnythingElse) {
  const auto s = feed_stamp("12", "7");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->seq, 12u);
  EXPECT_EQ(s->subject_last, 7u);
  EXPECT_TRUE(feed_stamp("1", "0").has_value());  // the subject's first message
  EXPECT_FALSE(feed_stamp(std::nullopt, "0").has_value());
  EXPECT_FALSE(feed_stamp("5", std::nullopt).has_value());
  EXPECT_FALSE(feed_stamp("", "0").has_value());
  EXPECT_FALSE(feed_stamp("5x", "0").has_value());
  EXPECT_FALSE(feed_stamp("-5", "0").has_value());
  EXPECT_FALSE(feed_stamp("0", "0").has_value());  // no stream sequence is 0
  EXPECT_FALSE(feed_stamp("5", "5").has_value());  // the previous message comes before
  EXPECT_FALSE(feed_stamp("99999999999999999999999", "0").has_value());
}

TEST(FeedOrderTest, OnePartitionFollowsTheSubjectsChain) {
  FeedOrder order;
  order.start("prices", 10, /*every_partition=*/false);
  // Other partitions' messages take the sequences between: 10 -> 14 -> 15.
  EXPECT_EQ(order.observe("prices", stamp(14, 10)), Verdict::kInOrder);
  EXPECT_EQ(order.observe("prices", stamp(15, 14)), Verdict::kInOrder);
  EXPECT_EQ(order.held("prices"), 15u);
}

TEST(FeedOrderTest, OnePartitionAfterASnapshotStartsPastItsLastMessage) {
  FeedOrder order;
  // The snapshot is consistent with the type's sequence 40; the partition's
  // last message before it was 31.
  order.start("prices", 40, false);
  EXPECT_EQ(order.observe("prices", stamp(44, 31)), Verdict::kInOrder);
}

TEST(FeedOrderTest, OnePartitionGapRefusesEverythingUntilStartedAgain) {
  FeedOrder order;
  order.start("prices", 10, false);
  // 14 (previous 10) never came: 15 names it.
  EXPECT_EQ(order.observe("prices", stamp(15, 14)), Verdict::kGap);
  EXPECT_EQ(order.observe("prices", stamp(16, 15)), Verdict::kRefused);
  EXPECT_FALSE(order.held("prices").has_value());
  // The consumer brought 14..16; the feed goes on after it.
  order.start("prices", 16, false);
  EXPECT_EQ(order.observe("prices", stamp(17, 16)), Verdict::kInOrder);
}

TEST(FeedOrderTest, EveryPartitionNeedsEverySequence) {
  FeedOrder order;
  order.start("prices", 10, /*every_partition=*/true);
  EXPECT_EQ(order.observe("prices", stamp(11, 3)), Verdict::kInOrder);
  EXPECT_EQ(order.observe("prices", stamp(12, 11)), Verdict::kInOrder);
  // 13 was another partition's: its subject's chain (12) says nothing of it.
  EXPECT_EQ(order.observe("prices", stamp(14, 12)), Verdict::kGap);
  EXPECT_EQ(order.observe("prices", stamp(15, 14)), Verdict::kRefused);
}

TEST(FeedOrderTest, ASequenceGoingBackIsAGapTheStreamWasCreatedAnew) {
  // The feed carries each stored message once, in order: 3 after held 10
  // is a renumbered stream, whose 11 would otherwise pass as the next one.
  FeedOrder order;
  order.start("prices", 10, false);
  EXPECT_EQ(order.observe("prices", stamp(3, 1)), Verdict::kGap);
  EXPECT_EQ(order.observe("prices", stamp(11, 10)), Verdict::kRefused);
  FeedOrder every;
  every.start("stock", 10, true);
  EXPECT_EQ(every.observe("stock", stamp(10, 9)), Verdict::kGap);
}

TEST(FeedOrderTest, AMessageWithoutStampsIsAGap) {
  FeedOrder order;
  order.start("prices", 10, false);
  EXPECT_EQ(order.observe("prices", std::nullopt), Verdict::kGap);
}

TEST(FeedOrderTest, ATypeNotStartedOrStoppedIsRefused) {
  FeedOrder order;
  EXPECT_EQ(order.observe("prices", stamp(1, 0)), Verdict::kRefused);
  order.start("prices", 0, false);
  EXPECT_EQ(order.observe("prices", stamp(1, 0)), Verdict::kInOrder);
  order.stop("prices");
  EXPECT_EQ(order.observe("prices", stamp(2, 1)), Verdict::kRefused);
  EXPECT_FALSE(order.held("prices").has_value());
}

TEST(FeedOrderTest, TypesAreJudgedApart) {
  FeedOrder order;
  order.start("prices", 5, false);
  order.start("stock", 5, true);
  EXPECT_EQ(order.observe("stock", stamp(7, 0)), Verdict::kGap);
  EXPECT_EQ(order.observe("prices", stamp(7, 5)), Verdict::kInOrder);
}

}  // namespace
}  // namespace ds
