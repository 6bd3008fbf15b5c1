// A short stall must not kill the fleet (docs/architecture.md, "Accountable time"):
// the deltasync-hub binary with 120 simulated agents (testing/simulated_fleet.h)
// answering its heartbeats over a real nats-server; heartbeat 500 ms, dead
// after 3 missed beats (a 1.5 s threshold). The hub or the broker is stopped
// (SIGSTOP) or the broker restarted for 2x and 5x the threshold; one agent
// really goes away in the same window. Afterwards that agent, and only that
// agent, is declared dead, and no other agent's consumer was deleted.

#include <signal.h>
#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "shared/names.h"
#include "testing/child_process.h"
#include "testing/simulated_fleet.h"
#include "testing/temp_dir.h"
#include "tests/harness/hub_process.h"
#include "tests/harness/nats_server.h"

namespace ds::testing {
namespace {

constexpr int64_t kIntervalMs = 500;
constexpr int64_t kDeadAfter = 3;
constexpr int64_t kThresholdMs = kIntervalMs * kDeadAfter;
constexpr size_t kAgents = 120;
constexpr size_t kGone = 7;  // the agent that really goes away

enum class Stall { kHubStopped, kBrokerStopped, kBrokerRestarted };

std::string stall_name(Stall s) {
  switch (s) {
    case Stall::kHubStopped: return "HubSigstop";
    case Stall::kBrokerStopped: return "NatsSigstop";
    case Stall::kBrokerRestarted: return "NatsRestart";
  }
  return "unknown";
}

// Stopped now (every thread, testing/child_process.h), SIGCONT when it goes
// out of scope (also on a failed assert).
class Stopped {
 public:
  explicit Stopped(pid_t pid) : pid_(pid), status_(stop_process(pid)) {}
  ~Stopped() { ::kill(pid_, SIGCONT); }
  Stopped(const Stopped&) = delete;
  Stopped& operator=(const Stopped&) = delete;
  const Status& status() const { return status_; }

 private:
  pid_t pid_;
  Status status_;
};

struct StallCase {
  Stall stall;
  int64_t multiple;  // of the dead threshold
};

class LivenessStallTest : public NatsTest, public ::testing::WithParamInterface<StallCase> {
 protected:
  void SetUp() override {
    NatsTest::SetUp();
    if (HasFatalFailure()) return;
    js_ = jetstream(*nc_);
    ASSERT_NE(js_, nullptr);
    const std::string toml =
        "[hub]\nname = \"stall-hub\"\nlog_level = \"info\"\n"
        "[nats]\nurl = \"" + server_->url() + "\"\n"
        "[store]\npath = \"" + dir_.file("hub.db") + "\"\n"
        "[http]\nlisten = \"\"\n"
        "[liveness]\nheartbeat_interval_ms = " + std::to_string(kIntervalMs) +
        "\ndead_after = " + std::to_string(kDeadAfter) + "\n"
        "[[types]]\nname = \"price\"\nkey = \"sku\"\ncolumns = [{ name = \"amount\", type = \"real\" }]\n";
    hub_ = std::make_unique<HubProcess>(dir_.write_file("hub.toml", toml), dir_.file("hub.log"));
    Status s = hub_->start();
    ASSERT_TRUE(s.is_ok()) << s.to_string();

    SimulatedFleet::Options o;
    o.nats_url = server_->url();
    o.type = "price";
    o.id_prefix = "sim-";
    o.agents = kAgents;
    o.connections = 4;
    auto fleet = SimulatedFleet::start(o);
    ASSERT_TRUE(fleet.is_ok()) << fleet.status().to_string();
    fleet_ = std::move(fleet).value();
    s = fleet_->register_all(60);
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    ASSERT_TRUE(wait_until([&] { return consumers() == kAgents; }, 30000, 50))
        << consumers() << " consumers\n" << hub_->log_text();
  }

  void TearDown() override {
    fleet_.reset();
    hub_.reset();
    js_.reset();
    NatsTest::TearDown();
  }

  // The number of consumers on the type's stream; 0 when it cannot be read.
  size_t consumers() {
    auto names = js_->consumer_names(stream_name("price"));
    return names.is_ok() ? names->size() : 0;
  }
  bool has_consumer(const std::string& agent) {
    auto e = js_->consumer_exists(stream_name("price"), consumer_name(agent));
    return e.is_ok() && *e;
  }

  // The hub's "agent <id>: <from> -> dead (...)" lines.
  std::vector<std::string> dead_lines() const {
    std::vector<std::string> out;
    std::istringstream log(hub_->log_text());
    for (std::string line; std::getline(log, line);) {
      if (line.find(" -> dead (") != std::string::npos) out.push_back(line);
    }
    return out;
  }

  TempDir dir_{"liveness-stall-test"};
  std::unique_ptr<JetStream> js_;
  std::unique_ptr<HubProcess> hub_;
  std::unique_ptr<SimulatedFleet> fleet_;
};

TEST_P(LivenessStallTest, OnlyTheAgentReallyGoneIsDeclaredDeadAndNoOtherConsumerIsDeleted) {
  const StallCase c = GetParam();
  const std::string gone = fleet_->id(kGone);
  const size_t opened_before = hub_->log_count("consumer opened");
  const auto stall = std::chrono::milliseconds(c.multiple * kThresholdMs);

  switch (c.stall) {
    case Stall::kHubStopped: {
      Stopped hub(hub_->pid());
      ASSERT_TRUE(hub.status().is_ok()) << hub.status().to_string();
      fleet_->fall_silent(kGone);
      std::this_thread::sleep_for(stall);
      break;
    }
    case Stall::kBrokerStopped: {
      Stopped broker(server_->pid());
      ASSERT_TRUE(broker.status().is_ok()) << broker.status().to_string();
      fleet_->fall_silent(kGone);
      std::this_thread::sleep_for(stall);
      break;
    }
    case Stall::kBrokerRestarted: {
      ASSERT_TRUE(server_->stop().is_ok());
      fleet_->fall_silent(kGone);
      std::this_thread::sleep_for(stall);
      Status s = server_->start();
      ASSERT_TRUE(s.is_ok()) << s.to_string();
      // Memory consumers went with the broker: the hub's reconnect check
      // recreates them (checked below).
      break;
    }
  }

  // The agent really gone is declared dead by the documented rule, after the
  // stall: dead_after x interval of accountable silence.
  ASSERT_TRUE(wait_until([&] { return !dead_lines().empty(); }, 30000, 20)) << hub_->log_text();
  // Anyone else the stall were to kill would be dead by now; give it two
  // more beats all the same.
  std::this_thread::sleep_for(std::chrono::milliseconds(2 * kIntervalMs));
  const auto dead = dead_lines();
  ASSERT_EQ(dead.size(), 1u) << "dead transitions:\n" << [&] {
    std::string all;
    for (const auto& l : dead) all += l + "\n";
    return all;
  }();
  EXPECT_NE(dead[0].find("agent " + gone + ": "), std::string::npos) << dead[0];
  ASSERT_TRUE(wait_until([&] { return consumers() == kAgents - 1; }, 10000, 50)) << consumers();
  EXPECT_FALSE(has_consumer(gone));
  if (c.stall != Stall::kBrokerRestarted) {
    // Nobody's consumer was deleted and made again (after a broker restart
    // memory consumers are recreated by the reconnect check instead).
    EXPECT_EQ(hub_->log_count("consumer opened"), opened_before);
  }
}

INSTANTIATE_TEST_SUITE_P(Stalls, LivenessStallTest,
                         ::testing::Values(StallCase{Stall::kHubStopped, 2}, StallCase{Stall::kHubStopped, 5},
                                           StallCase{Stall::kBrokerStopped, 2}, StallCase{Stall::kBrokerStopped, 5},
                                           StallCase{Stall::kBrokerRestarted, 2},
                                           StallCase{Stall::kBrokerRestarted, 5}),
                         [](const ::testing::TestParamInfo<StallCase>& param) {
                           return stall_name(param.param.stall) + "For" + std::to_string(param.param.multiple) +
                                  "xTheDeadThreshold";
                         });

}  // namespace
}  // namespace ds::testing
