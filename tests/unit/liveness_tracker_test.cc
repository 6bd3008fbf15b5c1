// The liveness state machine driven by a hand-held clock: no sleeping.

#include "hub/liveness_tracker.h"

#include <gtest/gtest.h>

namespace ds {
namespace {

class LivenessTrackerTest : public ::testing::Test {
 protected:
  // interval 1000 ms, grace 500 ms: suspect after more than 1500 ms of
  // silence, dead at 3000 ms.
  LivenessTrackerTest() : tracker_({.interval_ms = 1000, .dead_after = 3, .grace_ms = 500}) {
    (void)tracker_.on_registered("a1", kStart);
  }

  static constexpr int64_t kStart = 1'000'000;
  LivenessTracker tracker_;
};

TEST_F(LivenessTrackerTest, FirstRegistrationMakesANewAgentLive) {
  LivenessTracker t({.interval_ms = 1000, .dead_after = 3});
  auto tr = t.on_registered("new-1", 5);
  ASSERT_TRUE(tr.has_value());
  EXPECT_EQ(tr->from, std::nullopt);
  EXPECT_EQ(tr->to, AgentState::kLive);
  EXPECT_EQ(t.state("new-1"), AgentState::kLive);
}

TEST_F(LivenessTrackerTest, StaysLiveWithinIntervalPlusGrace) {
  EXPECT_TRUE(tracker_.evaluate(kStart + 1500).empty());
  EXPECT_EQ(tracker_.state("a1"), AgentState::kLive);
}

TEST_F(LivenessTrackerTest, BecomesSuspectAfterOneMissedBeat) {
  auto tr = tracker_.evaluate(kStart + 1501);
  ASSERT_EQ(tr.size(), 1u);
  EXPECT_EQ(tr[0].agent, "a1");
  EXPECT_EQ(tr[0].from, AgentState::kLive);
  EXPECT_EQ(tr[0].to, AgentState::kSuspect);
  EXPECT_EQ(tracker_.state("a1"), AgentState::kSuspect);
  // Evaluating again at the same state reports nothing new.
  EXPECT_TRUE(tracker_.evaluate(kStart + 1600).empty());
}

TEST_F(LivenessTrackerTest, BecomesDeadAfterExactlyDeadAfterIntervals) {
  (void)tracker_.evaluate(kStart + 1501);
  EXPECT_TRUE(tracker_.evaluate(kStart + 2999).empty());
  EXPECT_EQ(tracker_.state("a1"), AgentState::kSuspect);
  auto tr = tracker_.evaluate(kStart + 3000);
  ASSERT_EQ(tr.size(), 1u);
  EXPECT_EQ(tr[0].from, AgentState::kSuspect);
  EXPECT_EQ(tr[0].to, AgentState::kDead);
  EXPECT_NE(tr[0].reason.find("3000 ms"), std::string::npos) << tr[0].reason;
}

TEST_F(LivenessTrackerTest, LongSilenceGoesStraightFromLiveToDead) {
  auto tr = tracker_.evaluate(kStart + 10'000);
  ASSERT_EQ(tr.size(), 1u);
  EXPECT_EQ(tr[0].from, AgentState::kLive);
  EXPECT_EQ(tr[0].to, AgentState::kDead);
}

TEST_F(LivenessTrackerTest, ReplyKeepsALiveAgentLive) {
  auto effect = tracker_.on_reply("a1", kStart + 1400);
  EXPECT_TRUE(effect.accepted);
  EXPECT_FALSE(effect.transition.has_value());
  // Silence now counts from the reply.
  EXPECT_TRUE(tracker_.evaluate(kStart + 2900).empty());
  EXPECT_EQ(tracker_.state("a1"), AgentState::kLive);
}

TEST_F(LivenessTrackerTest, ReplyMakesASuspectAgentLiveAgain) {
  (void)tracker_.evaluate(kStart + 2000);
  auto effect = tracker_.on_reply("a1", kStart + 2100);
  EXPECT_TRUE(effect.accepted);
  ASSERT_TRUE(effect.transition.has_value());
  EXPECT_EQ(effect.transition->from, AgentState::kSuspect);
  EXPECT_EQ(effect.transition->to, AgentState::kLive);
}

TEST_F(LivenessTrackerTest, ReplyMakesADeadAgentLiveAgain) {
  (void)tracker_.evaluate(kStart + 5000);
  ASSERT_EQ(tracker_.state("a1"), AgentState::kDead);
  auto effect = tracker_.on_reply("a1", kStart + 6000);
  ASSERT_TRUE(effect.transition.has_value());
  EXPECT_EQ(effect.transition->from, AgentState::kDead);
  EXPECT_EQ(effect.transition->to, AgentState::kLive);
  EXPECT_TRUE(tracker_.evaluate(kStart + 6500).empty());
}

TEST_F(LivenessTrackerTest, RegistrationMakesADeadAgentLiveAgain) {
  (void)tracker_.evaluate(kStart + 5000);
  auto tr = tracker_.on_registered("a1", kStart + 6000);
  ASSERT_TRUE(tr.has_value());
  EXPECT_EQ(tr->from, AgentState::kDead);
  EXPECT_EQ(tr->to, AgentState::kLive);
}

TEST_F(LivenessTrackerTest, ReplyFromUnknownAgentIsNotAccepted) {
  auto effect = tracker_.on_reply("stranger", kStart);
  EXPECT_FALSE(effect.accepted);
  EXPECT_FALSE(tracker_.state("stranger").has_value());
}

TEST_F(LivenessTrackerTest, RetiredAgentIgnoresRepliesAndNeverDies) {
  auto tr = tracker_.retire("a1", kStart + 10);
  ASSERT_TRUE(tr.is_ok());
  ASSERT_TRUE(tr->has_value());
  EXPECT_EQ((*tr)->to, AgentState::kRetired);

  EXPECT_FALSE(tracker_.on_reply("a1", kStart + 20).accepted);
  EXPECT_TRUE(tracker_.evaluate(kStart + 100'000).empty());
  EXPECT_EQ(tracker_.state("a1"), AgentState::kRetired);
  EXPECT_TRUE(tracker_.probe_targets().empty());
  EXPECT_FALSE(tracker_.needs_refresh("a1", kStart + 100'000));
}

TEST_F(LivenessTrackerTest, RetiringTwiceReportsNoSecondTransition) {
  ASSERT_TRUE(tracker_.retire("a1", kStart).is_ok());
  auto again = tracker_.retire("a1", kStart + 1);
  ASSERT_TRUE(again.is_ok());
  EXPECT_FALSE(again->has_value());
}

TEST_F(LivenessTrackerTest, RetiringAnUnknownAgentIsNotFound) {
  auto tr = tracker_.retire("nobody", kStart);
  EXPECT_EQ(tr.status().code(), StatusCode::kNotFound);
}

TEST_F(LivenessTrackerTest, RegistrationEndsRetirement) {
  ASSERT_TRUE(tracker_.retire("a1", kStart).is_ok());
  auto tr = tracker_.on_registered("a1", kStart + 50);
  ASSERT_TRUE(tr.has_value());
  EXPECT_EQ(tr->from, AgentState::kRetired);
  EXPECT_EQ(tr->to, AgentState::kLive);
  EXPECT_TRUE(tracker_.on_reply("a1", kStart + 60).accepted);
}

TEST_F(LivenessTrackerTest, OnlySuspectAgentsAreProbedDirectly) {
  (void)tracker_.on_registered("a2", kStart);
  (void)tracker_.on_registered("a3", kStart);
  (void)tracker_.on_reply("a2", kStart + 1000);
  (void)tracker_.on_reply("a3", kStart + 2000);
  // a1 silent 3000 ms (dead), a2 2000 ms (suspect), a3 1000 ms (live).
  auto tr = tracker_.evaluate(kStart + 3000);
  EXPECT_EQ(tr.size(), 2u);
  EXPECT_EQ(tracker_.probe_targets(), std::vector<std::string>{"a2"});
}

TEST_F(LivenessTrackerTest, RefreshIsNeededOnlyForAViewOlderThanOneInterval) {
  EXPECT_FALSE(tracker_.needs_refresh("a1", kStart + 1000));
  EXPECT_TRUE(tracker_.needs_refresh("a1", kStart + 1001));
}

TEST_F(LivenessTrackerTest, ARecentProbeSuppressesAnotherRefresh) {
  tracker_.record_probe("a1", kStart + 1100);
  EXPECT_FALSE(tracker_.needs_refresh("a1", kStart + 1200));
  EXPECT_TRUE(tracker_.needs_refresh("a1", kStart + 1350));
}

TEST_F(LivenessTrackerTest, DeadAgentsAreNotRefreshed) {
  (void)tracker_.evaluate(kStart + 3000);
  EXPECT_FALSE(tracker_.needs_refresh("a1", kStart + 4000));
}

TEST_F(LivenessTrackerTest, RestoredAgentGetsAFreshSilenceWindow) {
  LivenessTracker t({.interval_ms = 1000, .dead_after = 3, .grace_ms = 500});
  t.restore("a9", AgentState::kSuspect, 50'000);
  EXPECT_TRUE(t.evaluate(52'999).empty());
  auto tr = t.evaluate(53'000);
  ASSERT_EQ(tr.size(), 1u);
  EXPECT_EQ(tr[0].to, AgentState::kDead);
}

TEST_F(LivenessTrackerTest, ExcusedSilenceRestartsTheWindowOfLiveAgentsButNotOfDeadOnes) {
  (void)tracker_.on_registered("a2", kStart + 2500);
  (void)tracker_.evaluate(kStart + 3000);  // a1 dead, a2 live
  tracker_.excuse_silence(kStart + 2900);
  // a2 counts from 2900 now: not suspect at 4400, dead at 5900.
  EXPECT_TRUE(tracker_.evaluate(kStart + 4400).empty());
  EXPECT_EQ(tracker_.state("a2"), AgentState::kLive);
  EXPECT_EQ(tracker_.state("a1"), AgentState::kDead) << "dead agents stay dead";
  auto tr = tracker_.evaluate(kStart + 5900);
  ASSERT_EQ(tr.size(), 1u);
  EXPECT_EQ(tr[0].agent, "a2");
  EXPECT_EQ(tr[0].to, AgentState::kDead);
}

TEST(LivenessTrackerOptions, DefaultGraceIsHalfAnInterval) {
  LivenessTracker t({.interval_ms = 200, .dead_after = 3});
  EXPECT_EQ(t.suspect_after_ms(), 300);
  EXPECT_EQ(t.dead_after_ms(), 600);
}

TEST(AgentStateNames, RoundTrip) {
  for (AgentState s : {AgentState::kLive, AgentState::kSuspect, AgentState::kDead, AgentState::kRetired}) {
    auto back = agent_state_from_name(agent_state_name(s));
    ASSERT_TRUE(back.is_ok());
    EXPECT_EQ(*back, s);
  }
  EXPECT_FALSE(agent_state_from_name("zombie").is_ok());
}

}  // namespace
}  // namespace ds
