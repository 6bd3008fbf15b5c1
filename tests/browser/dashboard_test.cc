// The fleet dashboard in a real browser (label browser): nats-server, the
// deltasync-hub binary and three deltasync-agent binaries (tests/e2e Fleet),
// and Debian's chromium driven by playwright-core (tests/browser/
// dashboard_check.js, run with node as a child of this test). The script
// opens the hub's page, gives the token once and waits for the agents; this
// test then SIGKILLs one agent and changes its partition of a type whose
// freshness objective is 1 s. The script must see that agent turn dead
// within the liveness rule and its freshness breach, and writes a screenshot
// to <build>/browser/dashboard.png. As root, hq runs in a UTS namespace
// whose host name is HTML markup: the page must show it as text. Every wait
// is bounded; the node process is killed when it overruns.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/e2e/fleet.h"
#include "tests/e2e/workload.h"

namespace ds::testing {
namespace {

constexpr char kVictim[] = "store-2";
constexpr int64_t kPageRefreshMs = 1000;  // the script opens /?refresh=1
// hq's host name (its registration carries gethostname()): markup that
// would run if the page inserted it as HTML. Shown as text, or the test fails.
constexpr char kHostileHost[] = "<img src=x onerror=document.title='owned'>";

TEST(DashboardInBrowser, ListsTheFleetThenShowsAKilledAgentDeadAndItsFreshnessBreach) {
  const std::string script = std::string(DELTASYNC_BROWSER_DIR) + "/dashboard_check.js";
  ASSERT_TRUE(std::filesystem::exists(std::string(DELTASYNC_BROWSER_DIR) + "/node_modules/playwright-core"))
      << "playwright-core is not installed in " << DELTASYNC_BROWSER_DIR << ": run deploy/install-deps.sh";
  ASSERT_TRUE(std::filesystem::exists("/usr/bin/chromium")) << "Debian's chromium is missing: run deploy/install-deps.sh";

  FleetOptions options;  // heartbeats every 500 ms, dead after 3 missed
  options.freshness_objectives = {{"prices", "1s"}};
  std::vector<AgentSpec> agents = retail_agents();
  // Root (CI is) can give hq a host name of its own: a UTS namespace
  // (written to the kernel directly: hostname(1) refuses such a name).
  const bool hostile_host = ::geteuid() == 0;
  for (AgentSpec& a : agents) {
    if (a.id == "hq" && hostile_host) {
      a.launcher = {"unshare", "--uts", "sh", "-c", "printf %s \"$0\" > /proc/sys/kernel/hostname && exec \"$@\"", kHostileHost};
    }
  }
  Fleet fleet(agents, options);
  ASSERT_TRUE(fleet.start().is_ok()) << fleet.logs();
  // Traffic for the rate charts, and every agent has something applied.
  ASSERT_TRUE(fleet.push("products", product_records(300), 20).is_ok());
  ASSERT_TRUE(fleet.push("prices", price_records(kVictim, 20, 1.0), 10).is_ok());
  ASSERT_TRUE(fleet.converged());

  const std::string screenshot = std::string(DELTASYNC_BINARY_DIR) + "/browser/dashboard.png";
  std::filesystem::create_directories(std::filesystem::path(screenshot).parent_path());
  std::filesystem::remove(screenshot);
  // The liveness rule: dead after dead_after x interval of silence. The
  // page shows it at its next refresh; the rest is slack for a loaded
  // machine (2 cores shared with builds).
  const int64_t dead_within_ms = options.dead_after * options.heartbeat_interval_ms + kPageRefreshMs + 8000;
  ChildProcess browser({DELTASYNC_NODE, script, "http://127.0.0.1:" + std::to_string(fleet.http_port()),
                        fleet.token(), screenshot, "store-1,store-2,hq", kVictim, "prices",
                        std::to_string(dead_within_ms), hostile_host ? kHostileHost : ""},
                       fleet.file("browser.log"));
  // Never a browser download: the script only launches /usr/bin/chromium.
  ASSERT_TRUE(browser.start({{"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"}}).is_ok());
  Status listed = browser.wait_for_log("STEP listed", 90000);
  ASSERT_TRUE(listed.is_ok()) << listed.to_string() << "\n" << browser.log_text();

  EXPECT_EQ(fleet.agent(kVictim).stop(SIGKILL), std::optional<int>(128 + SIGKILL));
  // Its partition of prices changes while it is down: stale beyond 1 s.
  ASSERT_TRUE(fleet.push("prices", price_records(kVictim, 20, 2.0), 10).is_ok());

  EXPECT_EQ(browser.stop(0, 120000), std::optional<int>(0)) << browser.log_text();
  EXPECT_EQ(browser.log_count("STEP dead"), 1u) << browser.log_text();
  EXPECT_EQ(browser.log_count("STEP breach"), 1u) << browser.log_text();
  ASSERT_TRUE(std::filesystem::exists(screenshot)) << browser.log_text();
  EXPECT_GT(std::filesystem::file_size(screenshot), 10000u);
  std::printf("[ info ] dashboard screenshot: %s\n", screenshot.c_str());
}

}  // namespace
}  // namespace ds::testing
