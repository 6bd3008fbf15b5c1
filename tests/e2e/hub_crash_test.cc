// Scenario 3: the hub is killed with SIGKILL while a producer ingests, and
// restarted. The producer retries every unanswered batch with the same
// (producer, type, seq); nothing the hub acknowledged is lost, every value is the
// last one acknowledged, and the agents converge without being restarted.
#include <signal.h>

#include <gtest/gtest.h>

#include "tests/e2e/under_load.h"

namespace ds::testing {
namespace {

constexpr int kCrashes = 3;

class HubCrash : public UnderLoadTest {};

TEST_F(HubCrash, SigkillUnderLoadLosesNothingAcknowledgedAndAgentsConverge) {
  for (int crash = 0; crash < kCrashes; ++crash) {
    fleet_.hub().signal(SIGKILL);
    ASSERT_EQ(fleet_.hub().wait_exit(kConvergeTimeoutMs), std::optional<int>(128 + SIGKILL));
    // The producer notices: its batch in flight goes unanswered.
    ASSERT_TRUE(producer_->wait_failed(producer_->failed_attempts() + 1)) << fleet_.logs();
    Status restarted = fleet_.start_hub();
    ASSERT_TRUE(restarted.is_ok()) << restarted.to_string();
    ASSERT_NO_FATAL_FAILURE(keep_loading(50));
  }
  Status live = fleet_.wait_all_live();
  ASSERT_TRUE(live.is_ok()) << live.to_string();
  ASSERT_NO_FATAL_FAILURE(finish());
}

}  // namespace
}  // namespace ds::testing
