// Smoke run of the benchmark driver (deltasync-bench --smoke --json): every
// scenario must run end to end against real processes and report positive
// figures (a CPU share may be 0 over a short window), so the benchmark cannot
// rot. Timings are never asserted.

#include <sys/wait.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <map>
#include <string>

namespace {

struct RunResult {
  int exit_code = -1;
  std::string out;
};

RunResult run(const std::string& command) {
  RunResult r;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

const std::string kBench = std::string(DELTASYNC_BINARY_DIR) + "/deltasync-bench";

TEST(BenchSmoke, EveryScenarioReportsPositiveFigures) {
  const RunResult r = run(kBench + " --smoke --json --all");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto figures = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(figures.is_discarded()) << r.out;
  ASSERT_TRUE(figures.is_array());
  std::map<std::string, int> per_scenario;
  for (const auto& f : figures) {
    const std::string scenario = f.at("scenario").get<std::string>();
    const double value = f.at("value").get<double>();
    const bool cpu_share = f.at("unit").get<std::string>().rfind('%', 0) == 0;
    EXPECT_TRUE(std::isfinite(value)) << f.dump();
    if (cpu_share) {
      EXPECT_GE(value, 0.0) << f.dump();
    } else {
      EXPECT_GT(value, 0.0) << f.dump();
    }
    if (f.contains("ratio")) {
      const double ratio = f.at("ratio").get<double>();
      EXPECT_TRUE(std::isfinite(ratio)) << f.dump();
      if (cpu_share) {
        EXPECT_GE(ratio, 0.0) << f.dump();
      } else {
        EXPECT_GT(ratio, 0.0) << f.dump();
      }
    }
    ++per_scenario[scenario];
  }
  for (const std::string scenario :
       {"raw", "ingest", "footprint", "e2e", "fanout", "dead", "catchup", "fleet", "retention", "replicas"}) {
    EXPECT_GT(per_scenario[scenario], 0) << "no figure for " << scenario << ": " << r.out;
  }
}

// The capacity runs of docs/scaling.md: the fleet on its own 3-node
// cluster with R3 streams and consumers, the broker's figures summed.
TEST(BenchSmoke, FleetOnAThreeNodeClusterReportsItsThreeBrokers) {
  const RunResult r = run(kBench + " --smoke --json --scenario fleet --fleet-replicas 3");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto figures = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(figures.is_array()) << r.out;
  double broker_rss = 0;
  for (const auto& f : figures) {
    if (f.at("figure").get<std::string>().rfind("nats-server x3 (R3) RSS, ", 0) == 0) {
      broker_rss = f.at("value").get<double>();
    }
  }
  EXPECT_GT(broker_rss, 0.0) << r.out;
}

TEST(BenchSmoke, AFleetSizeOutsideItsRangeIsRefused) {
  for (const char* bad : {"--fleet-agents 0", "--fleet-replicas 2"}) {
    const RunResult r = run(kBench + " --scenario fleet " + bad + " 2>&1");
    EXPECT_NE(r.exit_code, 0) << bad;
    EXPECT_NE(r.out.find(std::string(bad).substr(0, std::string(bad).find(' '))), std::string::npos) << r.out;
  }
}

TEST(BenchSmoke, UnknownScenarioIsRefused) {
  const RunResult r = run(kBench + " --scenario no-such-scenario 2>&1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("unknown scenario"), std::string::npos) << r.out;
}

TEST(BenchSmoke, HelpNamesTheOptions) {
  const RunResult r = run(kBench + " --help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* option : {"--all", "--scenario", "--seconds", "--json", "--smoke", "--fleet-agents", "--fleet-replicas"}) {
    EXPECT_NE(r.out.find(option), std::string::npos) << option;
  }
}

}  // namespace
