#include "agent/hub_clock.h"

#include <gtest/gtest.h>

namespace ds {
namespace {

TEST(HubClockTest, UnknownBeforeTheFirstHeartbeat) {
  HubClock clock;
  EXPECT_FALSE(clock.now(1000).has_value());
  clock.observe(0, 1000);  // a request without a time
  EXPECT_FALSE(clock.now(1000).has_value());
}

TEST(HubClockTest, RunsOnFromTheLatestHeartbeatByMonotonicTime) {
  HubClock clock;
  clock.observe(1'800'000'000'000, 5000);
  EXPECT_EQ(clock.now(5000), 1'800'000'000'000);
  EXPECT_EQ(clock.now(7500), 1'800'000'002'500);
  // A steady reading from before the heartbeat never takes hub time back.
  EXPECT_EQ(clock.now(4000), 1'800'000'000'000);
}

TEST(HubClockTest, FollowsTheHubsClockAlsoBackwards) {
  HubClock clock;
  clock.observe(1'800'000'000'000, 5000);
  clock.observe(1'799'996'400'500, 5500);  // the hub's clock stepped an hour back
  EXPECT_EQ(clock.now(6500), 1'799'996'401'500);
}

}  // namespace
}  // namespace ds
