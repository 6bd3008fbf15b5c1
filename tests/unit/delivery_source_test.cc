// agent/delivery_source.h: where a type's deltas come from (its consumer or
// the live feed), case by case on the broker's stamps. The agent's side of
// it runs end to end in tests/e2e/live_feed_test.cc.
#include "agent/delivery_source.h"

#include <gtest/gtest.h>

namespace ds {
namespace {

using Take = DeliverySource::Take;

std::optional<FeedStamp> stamp(uint64_t seq, uint64_t subject_last) { return FeedStamp{seq, subject_last}; }

// prices: one partition; stock: every partition. The replica holds seq 10 of each.
DeliverySource source() { return DeliverySource({{"prices", {false, 10}}, {"stock", {true, 10}}}); }

TEST(DeliverySourceTest, ATypeStartsOnItsConsumer) {
  DeliverySource s = source();
  EXPECT_FALSE(s.on_feed("prices"));
  EXPECT_TRUE(s.takes_consumer("prices"));
}

TEST(DeliverySourceTest, AFeedMessageContinuingWhatTheConsumerBroughtMovesTheTypeOntoTheFeed) {
  DeliverySource s = source();
  s.consumer_taken("prices", 14);
  // The feed's 17 follows 15 on its subject, which the consumer has not brought: dropped.
  EXPECT_EQ(s.feed_message("prices", stamp(17, 15)), Take::kDrop);
  EXPECT_FALSE(s.on_feed("prices"));
  s.consumer_taken("prices", 15);
  EXPECT_EQ(s.feed_message("prices", stamp(15, 14)), Take::kDrop) << "held already";
  EXPECT_EQ(s.feed_message("prices", stamp(17, 15)), Take::kSwitched);
  EXPECT_TRUE(s.on_feed("prices"));
  EXPECT_FALSE(s.takes_consumer("prices"));
  EXPECT_EQ(s.feed_message("prices", stamp(18, 17)), Take::kApply);
}

TEST(DeliverySourceTest, EveryPartitionSwitchesOnlyOnTheNextSequence) {
  DeliverySource s = source();
  EXPECT_EQ(s.feed_message("stock", stamp(12, 3)), Take::kDrop) << "11 is missing";
  EXPECT_EQ(s.feed_message("stock", stamp(11, 3)), Take::kSwitched);
  EXPECT_EQ(s.feed_message("stock", stamp(12, 3)), Take::kApply);
}

TEST(DeliverySourceTest, NothingMovesOntoTheFeedByItselfDuringARegistration) {
  DeliverySource s = source();
  s.registering();
  EXPECT_EQ(s.feed_message("prices", stamp(11, 10)), Take::kDrop);
  EXPECT_FALSE(s.on_feed("prices"));
  s.registration_done();
  EXPECT_EQ(s.feed_message("prices", stamp(12, 10)), Take::kSwitched);
}

TEST(DeliverySourceTest, AReplyGivingTheFeedStartsItFromTheReportedSequence) {
  DeliverySource s = source();
  s.registering();
  s.registered("prices", /*feed=*/true, 20);
  s.registration_done();
  EXPECT_TRUE(s.on_feed("prices"));
  EXPECT_EQ(s.feed_message("prices", stamp(25, 20)), Take::kApply);
}

TEST(DeliverySourceTest, AMessagePublishedDuringTheRegistrationThatGaveTheFeedIsAnExpectedGap) {
  DeliverySource s = source();
  s.registering();
  EXPECT_EQ(s.feed_message("prices", stamp(25, 20)), Take::kDrop);  // on its consumer until the reply
  s.registered("prices", true, 20);
  s.registration_done();
  EXPECT_EQ(s.feed_message("prices", stamp(26, 25)), Take::kGapAfterRegistration);
}

TEST(DeliverySourceTest, AGapOnTheFeedWaitsForTheNextReplyWhichMayGiveAConsumer) {
  DeliverySource s = source();
  s.registered("prices", true, 20);
  s.registration_done();
  EXPECT_EQ(s.feed_message("prices", stamp(22, 20)), Take::kApply);
  EXPECT_EQ(s.feed_message("prices", stamp(30, 25)), Take::kGap);
  EXPECT_EQ(s.feed_message("prices", stamp(31, 30)), Take::kDrop);
  EXPECT_TRUE(s.on_feed("prices"));  // but broken: a registration follows
  s.registering();
  s.registered("prices", false, 20);  // behind: the hub gives it a consumer
  s.registration_done();
  EXPECT_FALSE(s.on_feed("prices"));
  EXPECT_TRUE(s.takes_consumer("prices"));
  s.consumer_taken("prices", 31);
  EXPECT_EQ(s.feed_message("prices", stamp(33, 31)), Take::kSwitched);
}

TEST(DeliverySourceTest, AReplyGivingTheFeedAgainKeepsWhatTheFeedBroughtSince) {
  DeliverySource s = source();
  s.registered("prices", true, 20);
  s.registration_done();
  EXPECT_EQ(s.feed_message("prices", stamp(22, 20)), Take::kApply);
  s.registering();
  s.registered("prices", true, 20);  // reported before 22 was applied
  s.registration_done();
  EXPECT_EQ(s.feed_message("prices", stamp(23, 22)), Take::kApply) << "not a gap: 22 is held";
}

TEST(DeliverySourceTest, AReplyGivingAConsumerMovesATypeOffTheFeed) {
  // The hub found it behind on the feed (a batch lost before a quiet
  // spell): only the consumer from its checkpoint brings what it lacks.
  DeliverySource s = source();
  s.registered("prices", true, 20);
  s.registration_done();
  EXPECT_FALSE(s.takes_consumer("prices"));
  s.registering();
  EXPECT_TRUE(s.takes_consumer("prices")) << "the new consumer's first deliveries may come before the reply";
  s.registered("prices", false, 20);
  s.registration_done();
  EXPECT_FALSE(s.on_feed("prices"));
  EXPECT_TRUE(s.takes_consumer("prices"));
  EXPECT_EQ(s.feed_message("prices", stamp(30, 25)), Take::kDrop) << "25 comes through the consumer";
  s.consumer_taken("prices", 25);
  EXPECT_EQ(s.feed_message("prices", stamp(31, 30)), Take::kDrop);
  s.consumer_taken("prices", 30);
  EXPECT_EQ(s.feed_message("prices", stamp(32, 30)), Take::kSwitched);
}

TEST(DeliverySourceTest, ATypeItDoesNotTakeIsDropped) {
  DeliverySource s = source();
  EXPECT_EQ(s.feed_message("orders", stamp(1, 0)), Take::kDrop);
  EXPECT_TRUE(s.takes_consumer("orders"));
}

TEST(DeliverySourceTest, AMessageWithoutStampsNeverMovesATypeAndIsAGapOnTheFeed) {
  DeliverySource s = source();
  EXPECT_EQ(s.feed_message("prices", std::nullopt), Take::kDrop);
  s.registered("prices", true, 20);
  s.registration_done();
  EXPECT_EQ(s.feed_message("prices", std::nullopt), Take::kGap);
}

TEST(DeliverySourceTest, AMessageTheAgentCouldNotKeepBreaksTheFeedLikeAGap) {
  DeliverySource s = source();
  s.registered("prices", true, 20);
  s.registration_done();
  EXPECT_TRUE(s.taking_feed("prices"));
  s.lost("prices");
  EXPECT_TRUE(s.on_feed("prices"));
  EXPECT_FALSE(s.taking_feed("prices")) << "the heartbeat no longer says it takes the feed";
  EXPECT_EQ(s.feed_message("prices", stamp(21, 20)), Take::kDrop);
  s.lost("stock");  // on its consumer: nothing to break
  EXPECT_FALSE(s.on_feed("stock"));
}

}  // namespace
}  // namespace ds
