// Fault: slow and stuck agents. One agent is stopped outright (SIGSTOP:
// it neither applies, acks nor answers heartbeats) and another one is
// throttled (its products hook sleeps a second per applied batch, so
// its apply thread crawls and max_ack_pending holds its consumer back).
// Neither may slow the hub's ingest or the healthy agent (hq): the same
// load is measured twice in one run, healthy and then with the two faulty
// agents, and compared with generous bounds. Afterwards both come back and
// everyone converges.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "tests/e2e/fleet.h"
#include "tests/e2e/workload.h"
#include "tests/faults/small_filesystem.h"

namespace ds::testing {
namespace {

// Load batches per measured phase (each 40 records).
constexpr uint64_t kPhaseBatches = 300;

struct PhaseFigures {
  int64_t ingest_ms = 0;       // kPhaseBatches acknowledged
  int64_t hq_lag_ms = 0;       // then until hq's replica holds the hub's versions
  int64_t store2_lag_ms = 0;   // and until store-2's holds the hub's products
};

// The hub's version of each type (`deltasync types --json`).
std::map<std::string, uint64_t> hub_versions(Fleet& fleet) {
  std::map<std::string, uint64_t> out;
  auto types = fleet.cli_json({"types"});
  if (!types.is_ok()) return out;
  for (const auto& t : *types) out[t.value("name", "")] = t.value("version", uint64_t{0});
  return out;
}

// Whether `agent`'s replica holds at least the versions `target` gives for `types`.
bool holds(Fleet& fleet, const std::string& agent, const std::map<std::string, uint64_t>& target,
           std::initializer_list<const char*> types) {
  auto versions = fleet.replica_versions(agent);
  if (!versions.is_ok()) return false;
  for (const char* type : types) {
    auto want = target.find(type);
    auto have = versions->find(type);
    if (want == target.end() || have == versions->end() || have->second < want->second) return false;
  }
  return true;
}

TEST(SlowAgent, StoppedAndThrottledAgentsSlowNeitherIngestNorTheOtherAgents) {
  std::vector<AgentSpec> agents = retail_agents();
  const std::string flag =
      (std::filesystem::temp_directory_path() / ("deltasync-throttle-" + std::to_string(::getpid()))).string();
  std::filesystem::remove(flag);
  struct RemoveFlag {
    std::string path;
    ~RemoveFlag() { std::filesystem::remove(path); }
  } remove_flag{flag};
  for (AgentSpec& a : agents) {
    if (a.id == "store-2") a.hooks["products"] = "cat >/dev/null; if [ -e '" + flag + "' ]; then echo 'throttle hook: sleeping' >&2; sleep 1; fi";
  }
  Fleet fleet(agents);
  Status started = fleet.start();
  ASSERT_TRUE(started.is_ok()) << started.to_string();
  LoadProducer producer(fleet.nats().url(), "erp");
  ASSERT_TRUE(producer.start().is_ok());
  ASSERT_TRUE(producer.wait_acked(30)) << fleet.logs();

  auto phase = [&](PhaseFigures* f) {
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(producer.wait_acked(producer.acked_batches() + kPhaseBatches)) << fleet.logs();
    f->ingest_ms = ms_since(t0);
    const auto target = hub_versions(fleet);
    ASSERT_FALSE(target.empty());
    const auto t1 = std::chrono::steady_clock::now();
    ASSERT_TRUE(wait_until([&] { return holds(fleet, "hq", target, {"products", "prices"}); }, kConvergeTimeoutMs,
                           50))
        << "hq did not catch up" << fleet.logs();
    f->hq_lag_ms = ms_since(t1);
    ASSERT_TRUE(wait_until([&] { return holds(fleet, "store-2", target, {"products"}); }, kConvergeTimeoutMs, 50))
        << "store-2 did not catch up" << fleet.logs();
    f->store2_lag_ms = ms_since(t1);
  };

  PhaseFigures healthy;
  ASSERT_NO_FATAL_FAILURE(phase(&healthy));

  // store-1 stuck, store-2 throttled.
  { std::ofstream touch(flag); }
  fleet.agent("store-1").signal(SIGSTOP);
  struct Continue {
    ChildProcess& p;
    ~Continue() { p.signal(SIGCONT); }
  } resume_on_failure{fleet.agent("store-1")};
  const auto stuck_versions = fleet.replica_versions("store-1");
  ASSERT_TRUE(stuck_versions.is_ok()) << stuck_versions.status().to_string();
  PhaseFigures faulty;
  ASSERT_NO_FATAL_FAILURE(phase(&faulty));
  const auto hub_now = hub_versions(fleet);
  auto stuck_after = fleet.replica_versions("store-1");
  ASSERT_TRUE(stuck_after.is_ok());
  EXPECT_EQ(*stuck_after, *stuck_versions) << "a stopped agent applied something";
  EXPECT_LT((*stuck_after)["products"], hub_now.at("products"));

  auto print = [](const char* name, const PhaseFigures& f) {
    std::printf("[ info ] %-30s ingest %lld ms (%.1f batches/s); after the last ack: hq current in %lld ms, "
                "store-2 in %lld ms\n",
                name, static_cast<long long>(f.ingest_ms), 1000.0 * kPhaseBatches / static_cast<double>(f.ingest_ms),
                static_cast<long long>(f.hq_lag_ms), static_cast<long long>(f.store2_lag_ms));
  };
  std::printf("[ info ] %llu batches of 40 records per phase\n", static_cast<unsigned long long>(kPhaseBatches));
  print("healthy:", healthy);
  print("store-1 stopped, store-2 slow:", faulty);
  std::printf("[ info ] products versions at the end: hub %llu, store-1 (stopped) %llu\n",
              static_cast<unsigned long long>(hub_now.at("products")),
              static_cast<unsigned long long>((*stuck_after)["products"]));
  const size_t throttled = count_lines(fleet.agent("store-2").log_text(), "throttle hook: sleeping");
  std::printf("[ info ] store-2's hook slept %zu time(s) for 1 s (a backlog is applied as one batch, one hook run)\n",
              throttled);
  EXPECT_GT(throttled, 1u) << "store-2 was never throttled";
  // Generous: the machine is shared and loaded; a real coupling (ingest or
  // hq waiting on the stuck agent) would stall for good, not by a factor.
  EXPECT_LE(faulty.ingest_ms, 3 * healthy.ingest_ms + 5000);
  EXPECT_LE(faulty.hq_lag_ms, 3 * healthy.hq_lag_ms + 5000);

  // Both come back and catch up.
  fleet.agent("store-1").signal(SIGCONT);
  std::filesystem::remove(flag);
  Status produced = producer.stop();
  ASSERT_TRUE(produced.is_ok()) << produced.to_string();
  Status live = fleet.wait_all_live();
  ASSERT_TRUE(live.is_ok()) << live.to_string();
  ASSERT_TRUE(fleet.converged());
  EXPECT_TRUE(hub_holds_exactly(fleet, producer.acked()));
}

}  // namespace
}  // namespace ds::testing
