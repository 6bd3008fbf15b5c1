// Accountable time (hub/liveness_tracker.h, AccountableClock) case by case,
// and the liveness tracker driven by it through the stalls it must absorb:
// a hand-held clock, no sleeping. Interval 1000 ms, dead after 3 beats
// (3000 ms), suspect after more than 1500 ms, ticks every 250 ms, steps
// capped at half an interval (500 ms), as the agent service sets them.

#include "hub/liveness_tracker.h"

#include <gtest/gtest.h>

namespace ds {
namespace {

constexpr int64_t kStart = 7'000'000;  // steady clock at the hub's start
constexpr int64_t kTick = 250;
constexpr int64_t kMaxStep = 500;

TEST(AccountableClock, StartsAtZero) {
  AccountableClock c(kMaxStep, kStart);
  EXPECT_EQ(c.now(), 0);
}

TEST(AccountableClock, HeardTicksOnScheduleAdvanceExactlyAsTheSteadyClock) {
  AccountableClock c(kMaxStep, kStart);
  // Irregular but on-schedule ticks (late ones too, up to the cap).
  int64_t t = kStart;
  for (int64_t step : {250, 240, 260, 500, 1, 0, 250, 499}) {
    t += step;
    c.tick(t, true);
  }
  EXPECT_EQ(c.now(), t - kStart);
}

TEST(AccountableClock, AStalledHubIsChargedOneCappedStepForTheWholePause) {
  AccountableClock c(kMaxStep, kStart);
  c.tick(kStart + 250, true);
  EXPECT_EQ(c.tick(kStart + 250 + 15'000, true), 250 + kMaxStep);
  // On schedule again afterwards: counts as before.
  EXPECT_EQ(c.tick(kStart + 250 + 15'000 + 250, true), 250 + kMaxStep + 250);
}

TEST(AccountableClock, UnheardTicksDoNotAdvanceAndTheNextHeardOneCountsOnlyItsOwnStep) {
  AccountableClock c(kMaxStep, kStart);
  c.tick(kStart + 250, true);
  for (int i = 2; i <= 40; ++i) EXPECT_EQ(c.tick(kStart + i * kTick, false), 250) << "tick " << i;
  EXPECT_EQ(c.tick(kStart + 41 * kTick, true), 500) << "only the step since the previous (unheard) tick";
}

TEST(AccountableClock, ASteadyClockGoingBackwardCountsNothing) {
  AccountableClock c(kMaxStep, kStart);
  c.tick(kStart + 1000, true);
  EXPECT_EQ(c.now(), kMaxStep);
  EXPECT_EQ(c.tick(kStart + 400, true), kMaxStep);
  EXPECT_EQ(c.tick(kStart + 1250, true), kMaxStep + 250) << "measured from the latest tick seen";
}

TEST(AccountableClock, BetweenTicksItReadsOnWhenTheLastTickWasHeardOnly) {
  AccountableClock c(kMaxStep, kStart);
  c.tick(kStart + 250, true);
  EXPECT_EQ(c.at(kStart + 250), 250);
  EXPECT_EQ(c.at(kStart + 400), 400);
  EXPECT_EQ(c.at(kStart + 10'000), 250 + kMaxStep) << "capped like a tick";
  EXPECT_EQ(c.at(kStart + 100), 250) << "never before the last tick";
  c.tick(kStart + 500, false);
  EXPECT_EQ(c.at(kStart + 700), 250) << "stands still after an unheard tick";
  EXPECT_EQ(c.now(), 250);
}

TEST(AccountableClock, AStepCapBelowOneIsOne) {
  AccountableClock c(0, kStart);
  EXPECT_EQ(c.max_step_ms(), 1);
  EXPECT_EQ(c.tick(kStart + 100, true), 1);
}

// The service's loop in miniature: replies are stamped with the clock's time
// of the last tick; each tick advances the clock, then evaluates; a beat
// goes out every fourth tick and an answering agent's reply is in before the
// next tick.
class StallTest : public ::testing::Test {
 protected:
  StallTest() : tracker_({.interval_ms = 1000, .dead_after = 3}), clock_(kMaxStep, kStart) {
    for (const char* a : {"steady", "gone"}) (void)tracker_.on_registered(a, clock_.now());
  }

  // `n` ticks on schedule; `heard` as the service would compute it.
  void run(int n, bool heard) {
    for (int i = 0; i < n; ++i) tick(steady_ + kTick, heard);
  }
  void tick(int64_t steady, bool heard) {
    steady_ = steady;
    const int64_t now = clock_.tick(steady_, heard);
    for (const Transition& t : tracker_.evaluate(now)) transitions_.push_back(t);
    if (heard && ++ticks_ % 4 == 0) beat_ = true;
    if (beat_) {
      beat_ = false;
      // Answered before the next tick, stamped with this tick's time.
      (void)tracker_.on_reply("steady", clock_.now());
      if (gone_answers_) (void)tracker_.on_reply("gone", clock_.now());
    }
  }
  std::vector<Transition> deaths(const std::string& agent) const {
    std::vector<Transition> out;
    for (const Transition& t : transitions_) {
      if (t.agent == agent && t.to == AgentState::kDead) out.push_back(t);
    }
    return out;
  }

  LivenessTracker tracker_;
  AccountableClock clock_;
  int64_t steady_ = kStart;
  int ticks_ = 0;
  bool beat_ = false;
  bool gone_answers_ = true;
  std::vector<Transition> transitions_;
};

TEST_F(StallTest, HubStalledForTwiceAndFiveTimesTheDeadThresholdDeclaresNobodyDead) {
  run(20, true);
  for (int64_t pause : {2 * 3000, 5 * 3000}) {
    tick(steady_ + pause, true);  // the first tick after SIGCONT
    run(12, true);
  }
  EXPECT_TRUE(transitions_.empty()) << transitions_.size() << " transitions, first: " << transitions_[0].reason;
  EXPECT_EQ(tracker_.state("steady"), AgentState::kLive);
  EXPECT_EQ(tracker_.state("gone"), AgentState::kLive);
}

TEST_F(StallTest, BrokerUnheardForFiveTimesTheDeadThresholdDeclaresNobodyDead) {
  run(20, true);
  run(5 * 3000 / kTick, false);  // no beat confirmed, or the connection down
  run(12, true);
  EXPECT_TRUE(transitions_.empty()) << transitions_[0].reason;
}

TEST_F(StallTest, AgentGoneDuringAHubStallIsDeadAfterTheDeadThresholdOfAccountableTime) {
  run(20, true);
  const int64_t last_reply = *tracker_.last_reply_ms("gone");
  gone_answers_ = false;
  tick(steady_ + 5 * 3000, true);  // the stall: one capped step
  EXPECT_TRUE(deaths("gone").empty());
  int guard = 0;
  while (deaths("gone").empty() && ++guard < 100) run(1, true);
  ASSERT_EQ(deaths("gone").size(), 1u);
  // Exactly dead_after x interval of accountable silence (ticks land on it).
  EXPECT_EQ(clock_.now() - last_reply, 3000);
  EXPECT_NE(deaths("gone")[0].reason.find("3000 ms"), std::string::npos) << deaths("gone")[0].reason;
  EXPECT_TRUE(deaths("steady").empty());
  EXPECT_EQ(tracker_.state("steady"), AgentState::kLive);
}

TEST_F(StallTest, AgentGoneDuringABrokerOutageIsDeadAfterTheDeadThresholdOfAccountableTime) {
  run(20, true);
  const int64_t last_reply = *tracker_.last_reply_ms("gone");
  gone_answers_ = false;
  run(5 * 3000 / kTick, false);
  EXPECT_TRUE(deaths("gone").empty());
  int guard = 0;
  while (deaths("gone").empty() && ++guard < 100) run(1, true);
  ASSERT_EQ(deaths("gone").size(), 1u);
  EXPECT_EQ(clock_.now() - last_reply, 3000);
  EXPECT_TRUE(deaths("steady").empty());
}

TEST_F(StallTest, WithoutTheAccountableClockTheSameStallKillsEveryone) {
  // What the steady clock alone would do (the behaviour this replaces).
  LivenessTracker plain({.interval_ms = 1000, .dead_after = 3});
  (void)plain.on_registered("steady", kStart);
  const auto t = plain.evaluate(kStart + 2 * 3000);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].to, AgentState::kDead);
}

}  // namespace
}  // namespace ds
