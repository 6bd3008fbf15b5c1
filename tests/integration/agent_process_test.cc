// The deltasync-agent binary as a process against a real nats-server and the
// FakeHub: crash recovery (SIGKILL mid-backlog), graceful SIGTERM, the status
// and quarantine subcommands, and the idle resident memory (printed).
#include <signal.h>

#include <cstdio>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "testing/child_process.h"
#include "tests/integration/agent_test_support.h"

namespace ds::testing {
namespace {

std::string agent_binary() { return std::string(DELTASYNC_BINARY_DIR) + "/deltasync-agent"; }

class AgentProcessTest : public AgentIntegrationTest {
 protected:
  std::unique_ptr<ChildProcess> start(const std::string& config_path) {
    auto agent = std::make_unique<ChildProcess>(
        std::vector<std::string>{agent_binary(), "run", "--config", config_path}, dir_.file("agent.log"));
    Status s = agent->start();
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    return agent;
  }
  // Runs `deltasync-agent <args>` to completion.
  CommandResult run_cli(std::vector<std::string> args) {
    args.insert(args.begin(), agent_binary());
    return run_to_completion(args, dir_.file("cli"));
  }
};

TEST_F(AgentProcessTest, KilledMidBacklogRestartsAndEndsWithExactlyTheHubRows) {
  // A backlog of 2,500 small batches with updates and deletes of 3,000 keys.
  std::vector<IngestRecord> records;
  for (int i = 0; i < 25000; ++i) {
    const std::string key = "k" + std::to_string(i % 3000);
    if (i >= 3000 && i % 7 == 3) records.push_back(removal(key));
    else records.push_back(price(key, (i % 3000) % 2 == 0 ? "s1" : "s2", i));
  }
  auto committed = hub_->commit("prices", records, /*batch_size=*/10);
  ASSERT_TRUE(committed.is_ok()) << committed.status().to_string();
  const uint64_t last = hub_->last_version("prices");
  const std::string cfg = write_config("store-1", "[[subscriptions]]\ntype = \"prices\"\n");

  auto agent = start(cfg);
  ASSERT_TRUE(eventually([&] { return replica_version("store-1", "prices") > 0; }))
      << read_text_file(dir_.file("agent.log"));
  EXPECT_EQ(agent->stop(SIGKILL), std::optional<int>(128 + SIGKILL));
  const uint64_t at_kill = replica_version("store-1", "prices");
  std::printf("[ info ] killed at version %llu of %llu\n", static_cast<unsigned long long>(at_kill),
              static_cast<unsigned long long>(last));

  agent = start(cfg);
  ASSERT_TRUE(eventually([&] { return replica_digest("store-1", "prices") == hub_->digest("prices"); }, 60000))
      << "replica " << replica_digest("store-1", "prices").hex() << " hub " << hub_->digest("prices").hex() << "\n"
      << read_text_file(dir_.file("agent.log"));
  EXPECT_TRUE(eventually([&] { return replica_version("store-1", "prices") == last; }));
  EXPECT_EQ(agent->stop(SIGTERM), std::optional<int>(0)) << read_text_file(dir_.file("agent.log"));
}

TEST_F(AgentProcessTest, SigtermExitsZeroAndStatusReadsTheReplica) {
  const std::string cfg = write_config("store-1", "[[subscriptions]]\ntype = \"prices\"\npartition = \"s1\"\n");
  auto agent = start(cfg);
  ASSERT_TRUE(eventually([&] { return !hub_->registrations().empty(); })) << read_text_file(dir_.file("agent.log"));
  ASSERT_TRUE(hub_->commit("prices", {price("a", "s1", 1.0), price("b", "s1", 2.0)}).is_ok());
  ASSERT_TRUE(eventually([&] { return replica_version("store-1", "prices") == 2; }));

  // status runs beside the live agent, read-only.
  auto [rc, out, err] = run_cli({"status", "--json", "--config", cfg});
  ASSERT_EQ(rc, 0) << out << err;
  auto status = nlohmann::json::parse(out);
  ASSERT_EQ(status["types"].size(), 1u);
  EXPECT_EQ(status["types"][0]["type"], "prices");
  EXPECT_EQ(status["types"][0]["version"], 2);
  EXPECT_EQ(status["types"][0]["rows"], 2);
  EXPECT_EQ(status["types"][0]["quarantined"], 0);

  EXPECT_EQ(agent->stop(SIGTERM), std::optional<int>(0)) << read_text_file(dir_.file("agent.log"));
}

TEST_F(AgentProcessTest, QuarantineCanBeListedAndDroppedFromTheCli) {
  const std::string cfg = write_config("store-1", "[[subscriptions]]\ntype = \"prices\"\n");
  auto agent = start(cfg);
  ASSERT_TRUE(eventually([&] { return !hub_->registrations().empty(); }));
  ASSERT_TRUE(hub_->publish_raw("prices", "s1", "garbage", "prices:garbage").is_ok());
  ASSERT_TRUE(hub_->commit("prices", {price("a", "s1", 1.0)}).is_ok());
  ASSERT_TRUE(eventually([&] { return replica_version("store-1", "prices") == 1; }));

  auto [rc, out, err] = run_cli({"quarantine", "list", "--json", "--config", cfg});
  ASSERT_EQ(rc, 0) << out << err;
  auto entries = nlohmann::json::parse(out);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0]["kind"], "undecodable");
  const std::string id = std::to_string(entries[0]["id"].get<int64_t>());
  // Retrying an undecodable entry fails again and keeps it.
  EXPECT_EQ(run_cli({"quarantine", "retry", id, "--config", cfg}).exit_code, 1);
  EXPECT_EQ(run_cli({"quarantine", "drop", id, "--config", cfg}).exit_code, 0);
  EXPECT_EQ(run_cli({"quarantine", "drop", id, "--config", cfg}).exit_code, 2);
  auto after = nlohmann::json::parse(run_cli({"quarantine", "list", "--json", "--config", cfg}).out);
  EXPECT_TRUE(after.empty());
  EXPECT_EQ(agent->stop(SIGTERM), std::optional<int>(0));
}

TEST_F(AgentProcessTest, PrintsTheIdleAgentResidentMemory) {
  const std::string cfg = write_config("store-1", "[[subscriptions]]\ntype = \"prices\"\n"
                                                  "[[subscriptions]]\ntype = \"products\"\n");
  auto agent = start(cfg);
  ASSERT_TRUE(eventually([&] { return !hub_->registrations().empty(); }));
  ASSERT_EQ(hub_->heartbeat("prices", 300).size(), 1u);
  const std::string status = read_text_file("/proc/" + std::to_string(agent->pid()) + "/status");
  const auto at = status.find("VmRSS:");
  ASSERT_NE(at, std::string::npos);
  std::printf("[ info ] idle deltasync-agent %s\n", status.substr(at, status.find('\n', at) - at).c_str());
  EXPECT_EQ(agent->stop(SIGTERM), std::optional<int>(0));
}

TEST_F(AgentProcessTest, InvalidConfigExitsTwoNamingTheKey) {
  const std::string cfg = dir_.write_file("bad.toml", "[agent]\nid = \"bad id!\"\n[[subscriptions]]\ntype = \"prices\"\n");
  auto [rc, out, err] = run_cli({"run", "--config", cfg});
  EXPECT_EQ(rc, 2);
  EXPECT_NE((out + err).find("id"), std::string::npos);
}

}  // namespace
}  // namespace ds::testing
