// AgentRegistry's stored history (the agent_events table): bounded per
// agent, newest kept, other agents untouched, kept across a reopen.
#include <gtest/gtest.h>

#include "hub/agent_registry.h"
#include "testing/temp_dir.h"

namespace ds {
namespace {

Transition flip(const std::string& agent, int i) {
  Transition t;
  t.agent = agent;
  t.from = i % 2 == 0 ? AgentState::kLive : AgentState::kDead;
  t.to = i % 2 == 0 ? AgentState::kDead : AgentState::kLive;
  t.reason = "flip " + std::to_string(i);
  return t;
}

TEST(AgentRegistryEvents, AFlappingAgentKeepsItsNewestEventsOnly) {
  TempDir dir("agent-registry-test");
  const std::string path = dir.file("hub.db");
  const int total = static_cast<int>(AgentRegistry::kMaxEventsPerAgent) + 250;
  {
    auto reg = AgentRegistry::open(path);
    ASSERT_TRUE(reg.is_ok()) << reg.status().to_string();
    for (int i = 0; i < 3; ++i) ASSERT_TRUE((*reg)->record_transition(flip("steady", i), 1000 + i).is_ok());
    for (int i = 0; i < total; ++i) ASSERT_TRUE((*reg)->record_transition(flip("flapper", i), 2000 + i).is_ok());
  }
  auto reg = AgentRegistry::open(path);
  ASSERT_TRUE(reg.is_ok()) << reg.status().to_string();
  auto flapper = (*reg)->events("flapper");
  ASSERT_TRUE(flapper.is_ok()) << flapper.status().to_string();
  ASSERT_EQ(flapper->size(), AgentRegistry::kMaxEventsPerAgent);
  EXPECT_EQ(flapper->front().reason, "flip " + std::to_string(total - AgentRegistry::kMaxEventsPerAgent));
  EXPECT_EQ(flapper->back().reason, "flip " + std::to_string(total - 1));
  auto steady = (*reg)->events("steady");
  ASSERT_TRUE(steady.is_ok());
  ASSERT_EQ(steady->size(), 3u);
  EXPECT_EQ(steady->front().reason, "flip 0");
}

}  // namespace
}  // namespace ds
