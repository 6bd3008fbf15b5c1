// The deltasync-agent binary as a process against a real nats-server and the
// FakeHub: crash recovery (SIGKILL mid-backlog), graceful SIGTERM, the status
// and quarantine subcommands, and the idle resident memory (printed).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/agent_test_support.h"

extern char** environ;

namespace ds::testing {
namespace {

std::string agent_binary() { return std::string(DELTASYNC_BINARY_DIR) + "/deltasync-agent"; }

// A child process with stdout+stderr in `log_path`; killed (SIGKILL) by the
// destructor if still running.
class Process {
 public:
  Process(const std::vector<std::string>& args, const std::string& log_path) {
    std::vector<char*> argv;
    std::vector<std::string> copy = args;
    for (std::string& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~Process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  // Sends `sig` and waits for the exit; returns the exit code, or 128+signal.
  int signal_and_wait(int sig) {
    if (pid_ <= 0) return -1;
    if (sig != 0) ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
};

// Runs the binary to completion; returns (exit code, stdout).
std::pair<int, std::string> run_cli(const std::string& args) {
  std::string out;
  FILE* p = ::popen((agent_binary() + " " + args + " 2>/dev/null").c_str(), "r");
  if (p == nullptr) return {-1, ""};
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class AgentProcessTest : public AgentIntegrationTest {
 protected:
  std::unique_ptr<Process> start(const std::string& config_path) {
    return std::make_unique<Process>(std::vector<std::string>{agent_binary(), "run", "--config", config_path},
                                     dir_.file("agent.log"));
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
      << read_text(dir_.file("agent.log"));
  const int killed = agent->signal_and_wait(SIGKILL);
  EXPECT_EQ(killed, 128 + SIGKILL);
  const uint64_t at_kill = replica_version("store-1", "prices");
  std::printf("[ info ] killed at version %llu of %llu\n", static_cast<unsigned long long>(at_kill),
              static_cast<unsigned long long>(last));

  agent = start(cfg);
  ASSERT_TRUE(eventually([&] { return replica_digest("store-1", "prices") == hub_->digest("prices"); }, 60000))
      << "replica " << replica_digest("store-1", "prices").hex() << " hub " << hub_->digest("prices").hex() << "\n"
      << read_text(dir_.file("agent.log"));
  EXPECT_TRUE(eventually([&] { return replica_version("store-1", "prices") == last; }));
  EXPECT_EQ(agent->signal_and_wait(SIGTERM), 0) << read_text(dir_.file("agent.log"));
}

TEST_F(AgentProcessTest, SigtermExitsZeroAndStatusReadsTheReplica) {
  const std::string cfg = write_config("store-1", "[[subscriptions]]\ntype = \"prices\"\npartition = \"s1\"\n");
  auto agent = start(cfg);
  ASSERT_TRUE(eventually([&] { return !hub_->registrations().empty(); })) << read_text(dir_.file("agent.log"));
  ASSERT_TRUE(hub_->commit("prices", {price("a", "s1", 1.0), price("b", "s1", 2.0)}).is_ok());
  ASSERT_TRUE(eventually([&] { return replica_version("store-1", "prices") == 2; }));

  // status runs beside the live agent, read-only.
  auto [rc, out] = run_cli("status --json --config " + cfg);
  ASSERT_EQ(rc, 0) << out;
  auto status = nlohmann::json::parse(out);
  ASSERT_EQ(status["types"].size(), 1u);
  EXPECT_EQ(status["types"][0]["type"], "prices");
  EXPECT_EQ(status["types"][0]["version"], 2);
  EXPECT_EQ(status["types"][0]["rows"], 2);
  EXPECT_EQ(status["types"][0]["quarantined"], 0);

  EXPECT_EQ(agent->signal_and_wait(SIGTERM), 0) << read_text(dir_.file("agent.log"));
}

TEST_F(AgentProcessTest, QuarantineCanBeListedAndDroppedFromTheCli) {
  const std::string cfg = write_config("store-1", "[[subscriptions]]\ntype = \"prices\"\n");
  auto agent = start(cfg);
  ASSERT_TRUE(eventually([&] { return !hub_->registrations().empty(); }));
  ASSERT_TRUE(hub_->publish_raw("prices", "s1", "garbage", "prices:garbage").is_ok());
  ASSERT_TRUE(hub_->commit("prices", {price("a", "s1", 1.0)}).is_ok());
  ASSERT_TRUE(eventually([&] { return replica_version("store-1", "prices") == 1; }));

  auto [rc, out] = run_cli("quarantine list --json --config " + cfg);
  ASSERT_EQ(rc, 0) << out;
  auto entries = nlohmann::json::parse(out);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0]["kind"], "undecodable");
  const std::string id = std::to_string(entries[0]["id"].get<int64_t>());
  // Retrying an undecodable entry fails again and keeps it.
  EXPECT_EQ(run_cli("quarantine retry " + id + " --config " + cfg).first, 1);
  EXPECT_EQ(run_cli("quarantine drop " + id + " --config " + cfg).first, 0);
  EXPECT_EQ(run_cli("quarantine drop " + id + " --config " + cfg).first, 2);
  auto after = nlohmann::json::parse(run_cli("quarantine list --json --config " + cfg).second);
  EXPECT_TRUE(after.empty());
  EXPECT_EQ(agent->signal_and_wait(SIGTERM), 0);
}

TEST_F(AgentProcessTest, PrintsTheIdleAgentResidentMemory) {
  const std::string cfg = write_config("store-1", "[[subscriptions]]\ntype = \"prices\"\n"
                                                  "[[subscriptions]]\ntype = \"products\"\n");
  auto agent = start(cfg);
  ASSERT_TRUE(eventually([&] { return !hub_->registrations().empty(); }));
  ASSERT_EQ(hub_->heartbeat("prices", 300).size(), 1u);
  const std::string status = read_text("/proc/" + std::to_string(agent->pid()) + "/status");
  const auto at = status.find("VmRSS:");
  ASSERT_NE(at, std::string::npos);
  std::printf("[ info ] idle deltasync-agent %s\n", status.substr(at, status.find('\n', at) - at).c_str());
  EXPECT_EQ(agent->signal_and_wait(SIGTERM), 0);
}

TEST_F(AgentProcessTest, InvalidConfigExitsTwoNamingTheKey) {
  const std::string cfg = dir_.write_file("bad.toml", "[agent]\nid = \"bad id!\"\n[[subscriptions]]\ntype = \"prices\"\n");
  Process p({agent_binary(), "run", "--config", cfg}, dir_.file("bad.log"));
  EXPECT_EQ(p.signal_and_wait(0), 2);  // 0: no signal, just wait
  EXPECT_NE(read_text(dir_.file("bad.log")).find("id"), std::string::npos);
}

}  // namespace
}  // namespace ds::testing
