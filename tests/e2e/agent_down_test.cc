// Scenario 2: an agent goes down (SIGKILL or SIGTERM) while updates flow.
// The hub marks it dead and removes its consumers, so nothing is delivered
// to it while it is down; restarted, it catches up from its checkpoint and
// every replica matches the hub again.
#include <signal.h>

#include <gtest/gtest.h>

#include "tests/e2e/under_load.h"

namespace ds::testing {
namespace {

constexpr const char* kDownAgent = "store-2";
constexpr const char* kDownAgentTypes[] = {"products", "prices", "inventory"};

// Whether the hub keeps `agent`'s consumer on `type`'s stream; a failed
// lookup fails the test.
bool consumer_of(Fleet& fleet, const std::string& type, const std::string& agent) {
  auto exists = fleet.has_consumer(type, agent);
  EXPECT_TRUE(exists.is_ok()) << exists.status().to_string();
  return exists.is_ok() && *exists;
}

class AgentDown : public UnderLoadTest, public ::testing::WithParamInterface<int> {};

TEST_P(AgentDown, MarkedDeadGetsNothingThenCatchesUpAfterRestart) {
  const int signal = GetParam();
  EXPECT_EQ(fleet_.agent(kDownAgent).stop(signal), std::optional<int>(signal == SIGKILL ? 128 + SIGKILL : 0))
      << fleet_.logs();
  ASSERT_TRUE(wait_until([&] { return fleet_.agent_state(kDownAgent) == "dead"; }, kConvergeTimeoutMs, 200))
      << fleet_.cli({"agents"}).out << fleet_.logs();

  // Dead costs nothing: the hub holds no consumer for it (while a live
  // agent keeps its delivery: its consumer, or the live feed), so nothing is
  // delivered or kept pending for it.
  auto agents = fleet_.agents_by_id();
  ASSERT_TRUE(agents.is_ok()) << agents.status().to_string();
  for (const std::string type : kDownAgentTypes) {
    EXPECT_FALSE(consumer_of(fleet_, type, kDownAgent)) << type;
    const nlohmann::json live = (*agents)["store-1"]["types"][type];
    EXPECT_TRUE(live.value("consumer", false) || live.value("live_feed", false)) << type << ": " << live.dump();
  }
  auto at_death = fleet_.replica_versions(kDownAgent);
  ASSERT_TRUE(at_death.is_ok()) << at_death.status().to_string();

  // More updates of its types and partition while it is down: the hub moves
  // on, the agent stays dead without consumers, its replica stands still.
  ASSERT_NO_FATAL_FAILURE(keep_loading(60));
  EXPECT_EQ(fleet_.agent_state(kDownAgent), "dead");
  auto types = fleet_.cli_json({"types"});
  ASSERT_TRUE(types.is_ok()) << types.status().to_string();
  for (const auto& t : *types) {
    const std::string type = t.value("name", "");
    EXPECT_GT(t.value("version", uint64_t{0}), (*at_death)[type]) << type;
    EXPECT_FALSE(consumer_of(fleet_, type, kDownAgent)) << type;
  }
  auto after = fleet_.replica_versions(kDownAgent);
  ASSERT_TRUE(after.is_ok()) << after.status().to_string();
  EXPECT_EQ(*after, *at_death);

  // Back while the load goes on: live again with its consumers, caught up.
  ASSERT_TRUE(fleet_.start_agent(kDownAgent).is_ok());
  Status live = fleet_.wait_all_live();
  ASSERT_TRUE(live.is_ok()) << live.to_string();
  ASSERT_NO_FATAL_FAILURE(keep_loading(10));
  ASSERT_NO_FATAL_FAILURE(finish());
}

INSTANTIATE_TEST_SUITE_P(Signal, AgentDown, ::testing::Values(SIGKILL, SIGTERM),
                         [](const ::testing::TestParamInfo<int>& param) {
                           return std::string(param.param == SIGKILL ? "Sigkill" : "Sigterm");
                         });

}  // namespace
}  // namespace ds::testing
