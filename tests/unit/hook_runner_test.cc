#include "agent/hook_runner.h"

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "testing/local_host.h"
#include "testing/temp_dir.h"

namespace ds {
namespace {

std::vector<Change> two_changes() {
  return {Change{7, "sku-1", Op::kUpsert, {{"price", 1.5}, {"name", std::string("tea \"green\"")}}, 100, 101},
          Change{8, "sku-2", Op::kDelete, {}, 200, 201}};
}

TEST(HookRunnerTest, HookReceivesTheBatchAsJsonLinesOnStdin) {
  TempDir dir("hook-test");
  const std::string out = dir.file("out.jsonl");
  HookRunner runner;
  HookSpec spec{"cat > '" + out + "'", 0, 5000};
  ASSERT_TRUE(runner.run(spec, "prices", two_changes()).is_ok());

  std::istringstream lines(read_text_file(out));
  std::string line;
  std::vector<nlohmann::json> got;
  while (std::getline(lines, line)) got.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0]["type"], "prices");
  EXPECT_EQ(got[0]["v"], 7);
  EXPECT_EQ(got[0]["key"], "sku-1");
  EXPECT_EQ(got[0]["op"], "u");
  EXPECT_EQ(got[0]["f"]["price"], 1.5);
  EXPECT_EQ(got[0]["f"]["name"], "tea \"green\"");
  EXPECT_EQ(got[0]["ts"], 100);
  EXPECT_EQ(got[0]["hts"], 101);
  EXPECT_EQ(got[1]["op"], "d");
  EXPECT_TRUE(got[1]["f"].empty());
}

TEST(HookRunnerTest, FailingHookIsRetriedThenReportsTheLastFailure) {
  TempDir dir("hook-test");
  const std::string count = dir.file("count");
  HookRunner runner;
  // Every attempt appends a line, then fails.
  HookSpec spec{"echo x >> '" + count + "'; exit 3", 2, 5000};
  Status s = runner.run(spec, "prices", two_changes());
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("status 3"), std::string::npos) << s.message();
  EXPECT_EQ(read_text_file(count), "x\nx\nx\n");
}

TEST(HookRunnerTest, HookSucceedingOnRetryIsOk) {
  TempDir dir("hook-test");
  const std::string marker = dir.file("marker");
  HookRunner runner;
  HookSpec spec{"if [ -e '" + marker + "' ]; then exit 0; fi; touch '" + marker + "'; exit 1", 1, 5000};
  EXPECT_TRUE(runner.run(spec, "prices", two_changes()).is_ok());
}

TEST(HookRunnerTest, HookPastItsTimeoutIsKilled) {
  HookRunner runner;
  HookSpec spec{"sleep 30", 0, 200};
  Status s = runner.run(spec, "prices", two_changes());
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s.to_string();
}

TEST(HookRunnerTest, HookThatIgnoresItsInputStillSucceeds) {
  HookRunner runner;
  std::vector<Change> many;
  for (uint64_t v = 1; v <= 5000; ++v) many.push_back(Change{v, "k" + std::to_string(v), Op::kDelete, {}, 1, 1});
  HookSpec spec{"exit 0", 0, 5000};
  EXPECT_TRUE(runner.run(spec, "prices", many).is_ok());
}

}  // namespace
}  // namespace ds
