// Clock skew (issue 14, item 6): the hub's or an agent's wall clock an hour
// ahead or behind, or stepping by hours while the system runs, under load.
//
// The realistic fault is a wrong wall clock beside a correct monotonic one
// (a host without NTP, a bad RTC, an operator's `date -s`, an NTP step): the
// kernel's CLOCK_MONOTONIC never jumps. libfaketime (Debian package
// faketime) fakes CLOCK_REALTIME (time, gettimeofday, clock_gettime) of the
// process it is preloaded into; it fakes CLOCK_MONOTONIC too unless
// FAKETIME_DONT_FAKE_MONOTONIC=1, which every scenario here sets. It also
// rewrites the absolute deadline of pthread_cond_timedwait on a realtime
// condition variable by the offset in force at the call, which is what the
// kernel does to such a wait when the clock steps. It cannot reach a
// statically linked Go program (nats-server reads the clock through the
// vDSO without libc): the broker keeps the true time, as a broker on
// another host would. A step during the run is a FAKETIME_TIMESTAMP_FILE the
// test rewrites, read again every second (FAKETIME_CACHE_DURATION=1).
//
// What must hold: nothing is ordered by a wall clock (versions, stream
// sequences and checkpoints order everything, and every replica converges
// with the hub holding exactly what was acknowledged); liveness and
// timeouts run on monotonic time (no agent turns suspect or dead); business
// timestamps are stored as given, the hub's own stamp (`hub_ts`) is the
// hub's clock; an agent's tombstone retention measures ages on the hub's
// clock, as heartbeats tell it (agent/hub_clock.h), not on its own.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "shared/sqlite.h"
#include "tests/e2e/fleet.h"
#include "tests/e2e/under_load.h"
#include "tests/e2e/workload.h"
#include "tests/faults/log_checks.h"

namespace ds::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int64_t kHourMs = 3600 * 1000;
// How far a faked stamp may be from the expected one (the run's length, the
// load of a shared machine).
constexpr int64_t kStampToleranceMs = 5 * 60 * 1000;
constexpr uint64_t kWarmupBatches = 20;

int64_t wall_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// libfaketime with a fixed offset ("+1h", "-1h") of the wall clock only.
Environment wall_clock_offset(const std::string& offset) {
  return {{"LD_PRELOAD", DELTASYNC_LIBFAKETIME}, {"FAKETIME", offset}, {"FAKETIME_DONT_FAKE_MONOTONIC", "1"}};
}

// libfaketime reading the offset from `path` (rewritten by the test), again
// every second; the wall clock only.
Environment wall_clock_from_file(const std::string& path) {
  return {{"LD_PRELOAD", DELTASYNC_LIBFAKETIME},
          {"FAKETIME_TIMESTAMP_FILE", path},
          {"FAKETIME_CACHE_DURATION", "1"},
          {"FAKETIME_DONT_FAKE_MONOTONIC", "1"}};
}

void write_offset(const std::string& path, const std::string& offset) {
  const std::string tmp = path + ".new";
  FILE* f = std::fopen(tmp.c_str(), "w");
  ASSERT_NE(f, nullptr) << tmp;
  std::fprintf(f, "%s\n", offset.c_str());
  std::fclose(f);
  std::filesystem::rename(tmp, path);  // readers see the old line or the new one
}

// Every liveness transition the hub logged after the agents' first
// registration ("agent <id>: <from> -> <to> (...)", hub/agent_service.cc).
std::vector<std::string> later_transitions(Fleet& fleet) {
  std::vector<std::string> out;
  std::istringstream lines(fleet.hub().log_text());
  for (std::string line; std::getline(lines, line);) {
    if (line.find("] agent ") == std::string::npos || line.find(" -> ") == std::string::npos) continue;
    if (line.find(": new -> live (") != std::string::npos) continue;
    out.push_back(line);
  }
  return out;
}

// The wall time of the first line of a log written by shared/log.cc
// ("YYYY-MM-DDTHH:MM:SS.mmmZ ...", UTC), in ms since the epoch.
Result<int64_t> first_log_time_ms(const std::string& log) {
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    std::tm tm{};
    if (strptime(line.c_str(), "%Y-%m-%dT%H:%M:%S", &tm) == nullptr) continue;
    return static_cast<int64_t>(::timegm(&tm)) * 1000;
  }
  return Status::not_found("no timestamped line in the log: " + log.substr(0, 200));
}

// One row of a replica's business table: (_ts, _hub_ts); NotFound when absent.
Result<std::pair<int64_t, int64_t>> replica_stamps(const std::string& path, const std::string& table,
                                                   const std::string& key_column, const std::string& key) {
  DS_ASSIGN_OR_RETURN(auto db, Database::open(path, OpenOptions{.read_only = true, .create = false}));
  DS_ASSIGN_OR_RETURN(Statement st, db->prepare("SELECT _ts, _hub_ts FROM \"" + table + "\" WHERE \"" +
                                                key_column + "\" = ?"));
  st.bind(1, key);
  DS_ASSIGN_OR_RETURN(bool row, st.step());
  if (!row) return Status::not_found(table + " has no row " + key + " in " + path);
  return std::make_pair(st.column_int64(0), st.column_int64(1));
}

Result<int64_t> tombstones(const std::string& path, const std::string& type, const std::string& key) {
  DS_ASSIGN_OR_RETURN(auto db, Database::open(path, OpenOptions{.read_only = true, .create = false}));
  DS_ASSIGN_OR_RETURN(Statement st,
                      db->prepare("SELECT count(*) FROM _deltasync_tombstone WHERE type = ? AND key = ?"));
  st.bind(1, type).bind(2, key);
  DS_ASSIGN_OR_RETURN(bool row, st.step());
  return row ? st.column_int64(0) : 0;
}

// A hub record from `deltasync list` (ts and hub_ts included).
Result<nlohmann::json> hub_record(Fleet& fleet, const std::string& type, const std::string& key) {
  DS_ASSIGN_OR_RETURN(nlohmann::json page, fleet.cli_json({"list", type, "--limit", "1000"}));
  for (const auto& r : page.value("records", nlohmann::json::array())) {
    if (r.value("key", "") == key) return r;
  }
  return Status::not_found("the hub lists no " + type + " " + key);
}

class ClockSkewTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (producer_) (void)producer_->stop();
    producer_.reset();
    fleet_.reset();
  }

  void start_fleet(std::vector<AgentSpec> agents, FleetOptions options) {
    fleet_ = std::make_unique<Fleet>(std::move(agents), std::move(options));
    Status started = fleet_->start();
    ASSERT_TRUE(started.is_ok()) << started.to_string();
    start_load(*fleet_, producer_, kWarmupBatches);
  }

  void keep_loading(uint64_t batches) { ds::testing::keep_loading(*fleet_, *producer_, batches); }

  // Keeps the load on for at least `ms` of steady time: liveness is judged
  // every quarter interval, so a wrong clock had many chances to show.
  void keep_loading_for(int64_t ms) {
    const auto until = Clock::now() + std::chrono::milliseconds(ms);
    while (Clock::now() < until && !HasFatalFailure()) keep_loading(5);
  }

  // Pushes products records whose business time is `ts` (ms since the
  // epoch), keys "skew-<tag>-0..2"; they join `pushed`.
  void push_business_time(const std::string& tag, int64_t ts) {
    nlohmann::json records = nlohmann::json::array();
    for (int i = 0; i < 3; ++i) {
      records.push_back({{"key", "skew-" + tag + "-" + std::to_string(i)},
                         {"op", "upsert"},
                         {"ts", ts},
                         {"fields", {{"name", "pushed at business time " + std::to_string(ts)},
                                     {"category", "clock"},
                                     {"active", true}}}});
    }
    Status s = fleet_->push("products", records);
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    pushed_.apply("products", records);
  }

  // The business time is stored as given on the hub and on `agent`'s
  // replica; the hub's stamp is within kStampToleranceMs of
  // `expected_hub_ts` on both.
  void expect_stamps(const std::string& tag, int64_t ts, int64_t expected_hub_ts, const std::string& agent) {
    const std::string key = "skew-" + tag + "-0";
    auto hub = hub_record(*fleet_, "products", key);
    ASSERT_TRUE(hub.is_ok()) << hub.status().to_string();
    EXPECT_EQ(hub->value("ts", int64_t{0}), ts) << hub->dump();
    const int64_t hub_ts = hub->value("hub_ts", int64_t{0});
    EXPECT_NEAR(static_cast<double>(hub_ts), static_cast<double>(expected_hub_ts),
                static_cast<double>(kStampToleranceMs))
        << "the hub's own stamp follows the hub's wall clock: " << hub->dump();
    ASSERT_TRUE(wait_until([&] { return replica_stamps(fleet_->replica_path(agent), "products", "sku", key).is_ok(); },
                           kConvergeTimeoutMs, 50))
        << fleet_->logs();
    auto stamps = replica_stamps(fleet_->replica_path(agent), "products", "sku", key);
    ASSERT_TRUE(stamps.is_ok()) << stamps.status().to_string();
    EXPECT_EQ(stamps->first, ts) << agent << ": _ts is the business time as given";
    EXPECT_EQ(stamps->second, hub_ts) << agent << ": _hub_ts is the hub's stamp";
  }

  // No agent left live after its registration; every replica converges;
  // the hub holds exactly what was acknowledged.
  void finish() {
    Status produced = producer_->stop();
    ASSERT_TRUE(produced.is_ok()) << produced.to_string() << fleet_->logs();
    const std::vector<std::string> moved = later_transitions(*fleet_);
    std::string all;
    for (const std::string& line : moved) all += line + "\n";
    EXPECT_TRUE(moved.empty()) << "liveness must not follow a wall clock; the hub logged:\n" << all;
    expect_only_warnings(*fleet_, {});
    ASSERT_TRUE(fleet_->converged());
    RecordModel expected = producer_->acked();
    for (const std::string& type : pushed_.types()) {
      nlohmann::json records = nlohmann::json::array();
      for (const auto& [key, fields] : pushed_.records(type)) {
        records.push_back({{"key", key}, {"op", "upsert"}, {"fields", fields}});
      }
      expected.apply(type, records);
    }
    EXPECT_TRUE(hub_holds_exactly(*fleet_, expected));
    std::printf("[ info ] %llu batches acknowledged, %llu attempts unanswered, no liveness transition\n",
                static_cast<unsigned long long>(producer_->acked_batches()),
                static_cast<unsigned long long>(producer_->failed_attempts()));
  }

  std::unique_ptr<Fleet> fleet_;
  std::unique_ptr<LoadProducer> producer_;
  RecordModel pushed_;  // records pushed outside the load (all upserts of distinct keys)
};

TEST_F(ClockSkewTest, HubWallClockAnHourAheadChangesOnlyItsOwnStamps) {
  FleetOptions options;
  options.hub_env = wall_clock_offset("+1h");
  ASSERT_NO_FATAL_FAILURE(start_fleet(retail_agents(), options));
  const int64_t business_ts = wall_now_ms() - 3 * 24 * kHourMs;  // a producer's time, three days old
  ASSERT_NO_FATAL_FAILURE(push_business_time("hub-ahead", business_ts));
  ASSERT_NO_FATAL_FAILURE(keep_loading_for(4000));  // 8 heartbeat intervals
  for (const char* agent : {"store-1", "store-2", "hq"}) {
    ASSERT_NO_FATAL_FAILURE(expect_stamps("hub-ahead", business_ts, wall_now_ms() + kHourMs, agent));
  }
  ASSERT_NO_FATAL_FAILURE(finish());
}

TEST_F(ClockSkewTest, AgentWallClockAnHourBehindChangesNothing) {
  std::vector<AgentSpec> agents = retail_agents();
  agents[1].env = wall_clock_offset("-1h");  // store-2
  ASSERT_EQ(agents[1].id, "store-2");
  ASSERT_NO_FATAL_FAILURE(start_fleet(agents, FleetOptions{}));
  // The fake is in force: the agent's own log lines are an hour behind.
  auto logged = first_log_time_ms(fleet_->agent("store-2").log_text());
  ASSERT_TRUE(logged.is_ok()) << logged.status().to_string();
  EXPECT_NEAR(static_cast<double>(*logged), static_cast<double>(wall_now_ms() - kHourMs),
              static_cast<double>(kStampToleranceMs));
  const int64_t business_ts = wall_now_ms() + 2 * kHourMs;  // a producer's clock two hours ahead
  ASSERT_NO_FATAL_FAILURE(push_business_time("agent-behind", business_ts));
  ASSERT_NO_FATAL_FAILURE(keep_loading_for(4000));
  for (const char* agent : {"store-1", "store-2"}) {
    ASSERT_NO_FATAL_FAILURE(expect_stamps("agent-behind", business_ts, wall_now_ms(), agent));
  }
  ASSERT_NO_FATAL_FAILURE(finish());
}

TEST_F(ClockSkewTest, WallClocksSteppingByHoursDuringTheRunChangeNothing) {
  TempDir clocks("deltasync-clocks");
  const std::string hub_clock = clocks.write_file("hub.faketime", "+0\n");
  const std::string agent_clock = clocks.write_file("store-2.faketime", "+0\n");
  std::vector<AgentSpec> agents = retail_agents();
  ASSERT_EQ(agents[1].id, "store-2");
  agents[1].env = wall_clock_from_file(agent_clock);
  FleetOptions options;
  options.hub_env = wall_clock_from_file(hub_clock);
  ASSERT_NO_FATAL_FAILURE(start_fleet(agents, options));

  // The hub's clock steps an hour forward, the agent's an hour back...
  ASSERT_NO_FATAL_FAILURE(write_offset(hub_clock, "+1h"));
  ASSERT_NO_FATAL_FAILURE(write_offset(agent_clock, "-1h"));
  ASSERT_NO_FATAL_FAILURE(keep_loading_for(3000));
  const int64_t ts_ahead = wall_now_ms() - kHourMs / 2;
  ASSERT_NO_FATAL_FAILURE(push_business_time("step-ahead", ts_ahead));
  ASSERT_NO_FATAL_FAILURE(expect_stamps("step-ahead", ts_ahead, wall_now_ms() + kHourMs, "store-2"));

  // ...then the hub's two hours back, the agent's two hours forward.
  ASSERT_NO_FATAL_FAILURE(write_offset(hub_clock, "-1h"));
  ASSERT_NO_FATAL_FAILURE(write_offset(agent_clock, "+1h"));
  ASSERT_NO_FATAL_FAILURE(keep_loading_for(4000));
  const int64_t ts_behind = wall_now_ms() + kHourMs / 2;
  ASSERT_NO_FATAL_FAILURE(push_business_time("step-behind", ts_behind));
  ASSERT_NO_FATAL_FAILURE(expect_stamps("step-behind", ts_behind, wall_now_ms() - kHourMs, "store-2"));
  // Versions, not stamps, order the changes: the later record carries the
  // older hub stamp and is still the newer version.
  auto ahead = hub_record(*fleet_, "products", "skew-step-ahead-0");
  auto behind = hub_record(*fleet_, "products", "skew-step-behind-0");
  ASSERT_TRUE(ahead.is_ok() && behind.is_ok());
  EXPECT_GT(behind->value("version", uint64_t{0}), ahead->value("version", uint64_t{0}));
  EXPECT_LT(behind->value("hub_ts", int64_t{0}), ahead->value("hub_ts", int64_t{0}));
  ASSERT_NO_FATAL_FAILURE(keep_loading_for(2000));
  ASSERT_NO_FATAL_FAILURE(finish());
}

// An agent whose clock is ahead keeps a tombstone for tombstone_max_age of
// hub time. Measured on its own clock (as before agent/hub_clock.h), an hour
// ahead dropped a 5 s tombstone at the first retention pass, within 2.5 s.
TEST_F(ClockSkewTest, AgentClockAheadKeepsTombstonesForTheirHubAge) {
  constexpr int64_t kMaxAgeMs = 5000;
  std::vector<AgentSpec> agents = retail_agents();
  ASSERT_EQ(agents[1].id, "store-2");
  agents[1].env = wall_clock_offset("+1h");
  for (AgentSpec& a : agents) a.replica_toml = "tombstone_max_age = \"5s\"\n";
  fleet_ = std::make_unique<Fleet>(std::move(agents), FleetOptions{});
  Status started = fleet_->start();
  ASSERT_TRUE(started.is_ok()) << started.to_string();

  const std::string key = "tombstone-1";
  Status s = fleet_->push("products", nlohmann::json::array({{{"key", key}, {"op", "upsert"},
                                                              {"fields", {{"name", "soon deleted"}}}}}));
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  s = fleet_->push("products", nlohmann::json::array({{{"key", key}, {"op", "delete"}}}));
  ASSERT_TRUE(s.is_ok()) << s.to_string();

  // Each agent's tombstone: when it appeared and when it went.
  struct Seen {
    std::string agent;
    std::optional<Clock::time_point> appeared, gone;
  };
  std::vector<Seen> seen = {{"store-1", {}, {}}, {"store-2", {}, {}}};
  (void)wait_until(
      [&] {
        for (Seen& a : seen) {
          auto n = tombstones(fleet_->replica_path(a.agent), "products", key);
          if (!n.is_ok()) continue;
          if (*n > 0 && !a.appeared) a.appeared = Clock::now();
          if (*n == 0 && a.appeared && !a.gone) a.gone = Clock::now();
        }
        return seen[0].gone && seen[1].gone;
      },
      30000, 50);
  for (const Seen& a : seen) {
    ASSERT_TRUE(a.appeared) << a.agent << ": the delete left no tombstone" << fleet_->logs();
    ASSERT_TRUE(a.gone) << a.agent << ": the tombstone outlived tombstone_max_age by far" << fleet_->logs();
    const int64_t kept_ms = std::chrono::duration_cast<std::chrono::milliseconds>(*a.gone - *a.appeared).count();
    std::printf("[ info ] %s kept its tombstone %lld ms (tombstone_max_age %lld ms)\n", a.agent.c_str(),
                static_cast<long long>(kept_ms), static_cast<long long>(kMaxAgeMs));
    // It appears at most a poll after the delete's commit, and retention
    // passes run every half horizon: kept between the age less a poll, and
    // the age plus a pass plus a heartbeat's worth of slack.
    EXPECT_GE(kept_ms, kMaxAgeMs - 500) << a.agent << ": dropped before its hub age reached tombstone_max_age";
    EXPECT_LE(kept_ms, kMaxAgeMs + kMaxAgeMs / 2 + 3000) << a.agent;
  }
  ASSERT_TRUE(fleet_->converged());
}

}  // namespace
}  // namespace ds::testing
