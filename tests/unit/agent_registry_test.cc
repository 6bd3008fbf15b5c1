// AgentRegistry's stored history (the agent_events table): bounded per
// agent, newest kept, other agents untouched, kept across a reopen; its file
// next to the hub's store, and the one-time copy of the agent tables an
// earlier hub kept in the store.
#include <gtest/gtest.h>

#include <filesystem>

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

RegisterRequest registration(const std::string& agent, uint64_t version) {
  RegisterRequest r;
  r.agent = agent;
  r.host = agent + ".example";
  r.version = "0.1.0";
  r.subscriptions.push_back(SubscriptionReport{"price", "*", version, version, 0, 0});
  return r;
}

TEST(AgentRegistryFile, LivesNextToTheStore) {
  EXPECT_EQ(agent_registry_path("/var/lib/deltasync/hub.db"), "/var/lib/deltasync/hub.agents.db");
  EXPECT_EQ(agent_registry_path("store"), "store.agents.db");
  EXPECT_EQ(agent_registry_path(".db"), ".db.agents.db");
}

// An earlier hub wrote the agent tables into its store (the registry opened
// on the store's path did exactly that). The first open of the registry's
// own file copies them; later opens never copy again.
TEST(AgentRegistryFile, TakesOverTheAgentTablesOfAnEarlierHubsStoreOnce) {
  TempDir dir("agent-registry-test");
  const std::string store = dir.file("hub.db");
  {
    auto old = AgentRegistry::open(store);
    ASSERT_TRUE(old.is_ok()) << old.status().to_string();
    ASSERT_TRUE((*old)->record_registration(registration("store-1", 7), 1000).is_ok());
    ASSERT_TRUE((*old)->record_transition(flip("store-1", 0), 2000).is_ok());
  }
  const std::string path = agent_registry_path(store);
  {
    auto reg = AgentRegistry::open(path, store);
    ASSERT_TRUE(reg.is_ok()) << reg.status().to_string();
    const std::optional<AgentRecord> a = (*reg)->find("store-1");
    ASSERT_TRUE(a.has_value()) << "the agent stayed behind in the store";
    EXPECT_EQ(a->host, "store-1.example");
    EXPECT_EQ(a->state, AgentState::kDead);
    ASSERT_EQ(a->subscriptions.count("price"), 1u);
    EXPECT_EQ(a->subscriptions.at("price").version, 7u);
    auto events = (*reg)->events("store-1");
    ASSERT_TRUE(events.is_ok()) << events.status().to_string();
    ASSERT_EQ(events->size(), 1u);
    EXPECT_EQ(events->front().reason, "flip 0");
    ASSERT_TRUE((*reg)->record_transition(flip("store-1", 1), 3000).is_ok());
  }
  {
    // The store's tables are gone after the move.
    OpenOptions ro;
    ro.read_only = true;
    auto db = Database::open(store, ro);
    ASSERT_TRUE(db.is_ok());
    EXPECT_EQ(*query_scalar_int64(**db, "SELECT count(*) FROM sqlite_master WHERE name LIKE 'agent%'"), 0)
        << "the store kept its agent tables";
  }
  {
    // Should they come back (a store restored from a backup taken before
    // the move), they are dropped again, not copied a second time.
    auto old = AgentRegistry::open(store);
    ASSERT_TRUE(old.is_ok());
    ASSERT_TRUE((*old)->record_registration(registration("store-2", 1), 4000).is_ok());
  }
  {
    auto reg = AgentRegistry::open(path, store);
    ASSERT_TRUE(reg.is_ok()) << reg.status().to_string();
    EXPECT_FALSE((*reg)->find("store-2").has_value()) << "the store's tables were copied a second time";
    ASSERT_TRUE((*reg)->find("store-1").has_value());
    EXPECT_EQ((*reg)->find("store-1")->state, AgentState::kLive) << "the registry's own change was lost";
  }
  // The registry file lost: a new one starts empty (running agents register
  // again), not from stale tables in the store.
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  auto fresh = AgentRegistry::open(path, store);
  ASSERT_TRUE(fresh.is_ok()) << fresh.status().to_string();
  EXPECT_TRUE((*fresh)->all().empty()) << "stale agents came back from the store";
}

TEST(AgentRegistryFile, ANewHubStartsEmptyAndCreatesNoStore) {
  TempDir dir("agent-registry-test");
  const std::string store = dir.file("hub.db");
  auto reg = AgentRegistry::open(agent_registry_path(store), store);
  ASSERT_TRUE(reg.is_ok()) << reg.status().to_string();
  EXPECT_TRUE((*reg)->all().empty());
  EXPECT_FALSE(std::filesystem::exists(store)) << "the registry created the store's file";
}

}  // namespace
}  // namespace ds
