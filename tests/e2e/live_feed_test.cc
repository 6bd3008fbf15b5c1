// The live feed end to end (docs/scaling.md, "The design for 100,000
// agents"), under load throughout: agents that are current hold no consumer
// on the broker; one that was down comes back behind, catches up through a
// consumer, moves back onto the feed by itself once the feed continues what
// the consumer brought, and the hub removes that consumer; at the end every
// replica matches the hub and nothing acknowledged is lost.
#include <signal.h>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "tests/e2e/under_load.h"

namespace ds::testing {
namespace {

constexpr const char* kDownAgent = "store-2";

// How `agent` gets `type` now, as GET /v1/agents says: "consumer", "feed"
// or "none".
std::string delivery_of(Fleet& fleet, const std::string& agent, const std::string& type) {
  auto agents = fleet.agents_by_id();
  if (!agents.is_ok()) return "none";
  auto a = agents->find(agent);
  if (a == agents->end()) return "none";
  const nlohmann::json t = a->second.value("types", nlohmann::json::object()).value(type, nlohmann::json::object());
  if (t.value("consumer", false)) return "consumer";
  return t.value("live_feed", false) ? "feed" : "none";
}

// Every agent on the feed for every type, and no consumer of theirs on the broker.
::testing::AssertionResult all_on_the_feed_without_consumers(Fleet& fleet) {
  for (const AgentSpec& spec : fleet.agents()) {
    for (const auto& [type, partition] : spec.subscriptions) {
      if (delivery_of(fleet, spec.id, type) != "feed") {
        return ::testing::AssertionFailure() << spec.id << " " << type << ": " << delivery_of(fleet, spec.id, type);
      }
      auto exists = fleet.has_consumer(type, spec.id);
      if (!exists.is_ok() || *exists) {
        return ::testing::AssertionFailure() << spec.id << " " << type << ": a consumer exists on the broker";
      }
    }
  }
  return ::testing::AssertionSuccess();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class LiveFeedUnderLoad : public UnderLoadTest {};

TEST_F(LiveFeedUnderLoad, CurrentAgentsHoldNoConsumerAndOneBackFromDownReturnsToTheFeed) {
  ASSERT_TRUE(wait_until([&] { return bool(all_on_the_feed_without_consumers(fleet_)); }, kConvergeTimeoutMs, 200))
      << all_on_the_feed_without_consumers(fleet_).message() << "\n"
      << fleet_.cli({"agents"}).out << fleet_.logs();

  // Down while the load goes on: it falls behind.
  EXPECT_EQ(fleet_.agent(kDownAgent).stop(SIGKILL), std::optional<int>(128 + SIGKILL));
  ASSERT_TRUE(wait_until([&] { return fleet_.agent_state(kDownAgent) == "dead"; }, kConvergeTimeoutMs, 200))
      << fleet_.cli({"agents"}).out << fleet_.logs();
  ASSERT_NO_FATAL_FAILURE(keep_loading(40));

  // Back: behind, so a consumer brings what it missed; then the feed again.
  ASSERT_TRUE(fleet_.start_agent(kDownAgent).is_ok());
  ASSERT_NO_FATAL_FAILURE(keep_loading(20));
  ASSERT_TRUE(wait_until([&] { return bool(all_on_the_feed_without_consumers(fleet_)); }, kConvergeTimeoutMs, 200))
      << all_on_the_feed_without_consumers(fleet_).message() << "\n"
      << fleet_.cli({"agents"}).out << fleet_.logs();
  // It went through a consumer: the hub removed one when the agent said it
  // had moved onto the feed.
  const std::string hub_log = read_file(fleet_.file("hub.log"));
  EXPECT_NE(hub_log.find(std::string("agent ") + kDownAgent + " type prices: takes the live feed now"), std::string::npos)
      << fleet_.logs();
  ASSERT_NO_FATAL_FAILURE(finish());
}

}  // namespace
}  // namespace ds::testing
