#pragma once
// What the fault tests allow in a fleet's logs beyond the fleet's own check
// (no error lines, Fleet::unexpected_log_lines): a warning only where the
// fault explains it. Test-thread only.

#include <algorithm>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "tests/e2e/fleet.h"

namespace ds::testing {

// Every line at level warning in the hub's and the agents' logs must
// contain one of `allowed` (the hub's start-up note about an open server
// always may); each other one fails the test.
inline void expect_only_warnings(Fleet& fleet, std::vector<std::string> allowed) {
  allowed.push_back("auth: no [auth] identities_file");
  std::vector<std::pair<std::string, std::string>> logs = {{"hub", fleet.hub().log_text()}};
  for (const AgentSpec& a : fleet.agents()) logs.emplace_back(a.id, fleet.agent(a.id).log_text());
  for (const auto& [source, text] : logs) {
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      if (line.find(" warning ") == std::string::npos) continue;
      const bool ok = std::any_of(allowed.begin(), allowed.end(),
                                  [&](const std::string& a) { return line.find(a) != std::string::npos; });
      EXPECT_TRUE(ok) << source << ": a warning the fault does not explain: " << line;
    }
  }
}

}  // namespace ds::testing
