// The chaos soak (docs/reliability.md, "Chaos soak"): a Fleet (tests/e2e:
// real nats-server, deltasync-hub, three deltasync-agent processes, the CLI)
// under a steady producer (the e2e LoadProducer with ChaosBatches' random
// records; what it got acknowledged, in order, is the ledger), while a
// killer, each round, picks at random the hub, one agent or nats-server and
// either SIGKILLs it and restarts it after 0-3 s, or SIGSTOPs it for 1-3 s
// and SIGCONTs it. Between rounds the
// producer must get a few batches acknowledged (the system takes load
// again). After the last round: the producer stops, the fleet must converge
// (`deltasync verify` exits 0), and the hub's store (`deltasync list`) and
// every agent's replica (its SQLite file) must hold exactly what the ledger
// says, value by value: 0 acknowledged records lost, 0 extra, 0 wrong values.
// The logs must stay quiet except for the lines the faults provoke
// (provoked_log_lines()).
//
//   chaos_soak [--rounds N] [--seed S]     (gtest flags pass through)
//
// The seed (random unless given) drives the killer's choices and the
// producer's records; it is printed first, so a failure is reproduced with
// the same --rounds and --seed (the timing of the faults varies with load).
// Every wait is bounded. A summary is printed at the end, pass or fail.
#include <signal.h>
#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/chaos/chaos_workload.h"
#include "tests/chaos/replica_contents.h"
#include "tests/e2e/fleet.h"

namespace ds::testing {
namespace {

struct SoakOptions {
  int rounds = 40;
  uint64_t seed = 0;
};

// Set once by main() before the test runs; read-only afterwards.
SoakOptions soak_options;

// Batches the producer must get acknowledged after each round before the
// next fault: proof that ingest works again (or kept working).
constexpr uint64_t kBatchesBetweenRounds = 3;
constexpr int64_t kRoundProgressTimeoutMs = 60000;
constexpr int64_t kExitTimeoutMs = 15000;
constexpr size_t kShownDifferences = 10;

using Clock = std::chrono::steady_clock;

// UTC wall-clock time as the processes' logs print it, to find a round there.
std::string wall_clock() {
  return fmt::format("{:%H:%M:%S}", std::chrono::floor<std::chrono::milliseconds>(std::chrono::system_clock::now()));
}

void sleep_ms(int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// Per target: how often it was killed and how often stopped.
struct FaultCounts {
  int kills = 0;
  int stops = 0;
};

// One side of the comparison with the ledger.
struct Comparison {
  size_t expected = 0;  // live records the ledger says this side must hold
  size_t lost = 0;      // expected, missing
  size_t extra = 0;     // held, not expected (never acked, or deleted)
  size_t wrong = 0;     // held with other values than the last acked
  std::vector<std::string> examples;

  bool clean() const { return lost == 0 && extra == 0 && wrong == 0; }
  void note(std::string what) {
    if (examples.size() < kShownDifferences) examples.push_back(std::move(what));
  }
};

void compare(const std::string& type, const std::map<std::string, nlohmann::json>& want,
             const std::map<std::string, nlohmann::json>& held, Comparison& c) {
  c.expected += want.size();
  for (const auto& [key, fields] : want) {
    auto it = held.find(key);
    if (it == held.end()) {
      ++c.lost;
      c.note(fmt::format("{} '{}' acked ({}) but lost", type, key, fields.dump()));
    } else if (it->second != fields) {
      ++c.wrong;
      c.note(fmt::format("{} '{}' holds {}, last acked {}", type, key, it->second.dump(), fields.dump()));
    }
  }
  for (const auto& [key, fields] : held) {
    if (!want.contains(key)) {
      ++c.extra;
      c.note(fmt::format("{} '{}' held ({}) but deleted or never acked", type, key, fields.dump()));
    }
  }
}

// The ledger's records of `type` that a subscription to `partition` takes.
std::map<std::string, nlohmann::json> in_partition(const RecordModel& model, const std::string& type,
                                                   const std::string& partition) {
  std::map<std::string, nlohmann::json> out;
  for (const auto& [key, fields] : model.records(type)) {
    if (partition == "*" || fields.value("store_id", "") == partition) out.emplace(key, fields);
  }
  return out;
}

// Error-level lines a SIGKILL or SIGSTOP of one process legitimately makes
// the others log. Reconnects, unanswered requests, registrations retried and
// publishes retried are warnings and need no entry. Anything else at error
// level, and any nats-server "Violation", still fails the soak.
void provoked_log_lines(Fleet& fleet) {
  // nats-server stopped or killed while the hub handles a registration: a
  // JetStream API request of it (stream info to plan the delivery, consumer
  // creation) times out and the registration fails; the agent retries it.
  // Seen with --seed 20261205 (rounds 24, 71, 238: nats-server stopped or
  // killed). Only this code: a registration failing for another reason
  // (its store, a refused consumer) still fails the soak.
  for (const AgentSpec& spec : fleet.agents()) {
    fleet.expect_log_line("hub", "] register " + spec.id + ": deadline_exceeded: ");
  }
}

class ChaosSoak : public ::testing::Test {
 protected:
  void SetUp() override {
    rng_.seed(soak_options.seed);
    Status started = fleet_.start();
    ASSERT_TRUE(started.is_ok()) << started.to_string();
    provoked_log_lines(fleet_);
    producer_ = std::make_unique<LoadProducer>(fleet_.nats().url(), "chaos", ChaosBatches(soak_options.seed),
                                               chaos_producer_options());
    Status producing = producer_->start();
    ASSERT_TRUE(producing.is_ok()) << producing.to_string();
    ASSERT_NO_FATAL_FAILURE(keep_loading());
  }

  void TearDown() override {
    resume_stopped();
    if (producer_) (void)producer_->stop();
    print_summary();
  }

  int64_t uniform_ms(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng_); }

  void keep_loading() {
    const uint64_t target = producer_->acked_batches() + kBatchesBetweenRounds;
    ASSERT_TRUE(producer_->wait_acked(target, kRoundProgressTimeoutMs))
        << producer_->acked_batches() << " of " << target << " batches acknowledged within "
        << kRoundProgressTimeoutMs << " ms; producer: " << producer_->stop().to_string() << fleet_.logs();
  }

  // The pid of a target, -1 when it is not running.
  pid_t pid_of(const std::string& target) {
    if (target == "hub") return fleet_.hub().pid();
    if (target == "nats-server") return fleet_.nats().pid();
    return fleet_.agent(target).pid();
  }

  void resume_stopped() {
    if (stopped_pid_ > 0) ::kill(stopped_pid_, SIGCONT);
    stopped_pid_ = -1;
  }

  // SIGKILL, wait for the exit, pause, start again.
  void kill_and_restart(const std::string& target, int64_t pause_ms) {
    if (target == "nats-server") {
      fleet_.nats().kill();
      sleep_ms(pause_ms);
      Status back = fleet_.nats().start();
      ASSERT_TRUE(back.is_ok()) << back.to_string();
      return;
    }
    if (target == "hub") {
      fleet_.hub().signal(SIGKILL);
      ASSERT_EQ(fleet_.hub().wait_exit(kExitTimeoutMs), std::optional<int>(128 + SIGKILL));
      sleep_ms(pause_ms);
      Status back = fleet_.start_hub();
      ASSERT_TRUE(back.is_ok()) << back.to_string();
      return;
    }
    fleet_.agent(target).signal(SIGKILL);
    ASSERT_EQ(fleet_.agent(target).wait_exit(kExitTimeoutMs), std::optional<int>(128 + SIGKILL));
    sleep_ms(pause_ms);
    Status back = fleet_.start_agent(target);
    ASSERT_TRUE(back.is_ok()) << back.to_string();
  }

  void stop_and_continue(const std::string& target, int64_t pause_ms) {
    const pid_t pid = pid_of(target);
    ASSERT_GT(pid, 0) << target << " is not running";
    ASSERT_EQ(::kill(pid, SIGSTOP), 0) << std::strerror(errno);
    stopped_pid_ = pid;
    sleep_ms(pause_ms);
    resume_stopped();
  }

  void run_round(int round) {
    const std::vector<std::string> kinds = {"hub", "agent", "nats-server"};
    std::string target = kinds[std::uniform_int_distribution<size_t>(0, 2)(rng_)];
    if (target == "agent") {
      const auto& agents = fleet_.agents();
      target = agents[std::uniform_int_distribution<size_t>(0, agents.size() - 1)(rng_)].id;
    }
    const bool kill = std::uniform_int_distribution<int>(0, 1)(rng_) == 0;
    const int64_t pause_ms = kill ? uniform_ms(0, 3000) : uniform_ms(1000, 3000);
    std::printf("[ chaos ] %s round %d/%d: %s %s, %s %lld ms (acked so far: %llu batches)\n", wall_clock().c_str(), round,
                soak_options.rounds, kill ? "SIGKILL" : "SIGSTOP", target.c_str(),
                kill ? "restart after" : "SIGCONT after", static_cast<long long>(pause_ms),
                static_cast<unsigned long long>(producer_->acked_batches()));
    std::fflush(stdout);
    const std::string counted = (target == "hub" || target == "nats-server") ? target : "agent " + target;
    if (kill) {
      ++faults_[counted].kills;
      ASSERT_NO_FATAL_FAILURE(kill_and_restart(target, pause_ms));
    } else {
      ++faults_[counted].stops;
      ASSERT_NO_FATAL_FAILURE(stop_and_continue(target, pause_ms));
    }
    ++rounds_done_;
    const auto restored = Clock::now();
    ASSERT_NO_FATAL_FAILURE(keep_loading());
    const int64_t recovery_ms = ms_since(restored);
    slowest_recovery_ms_ = std::max(slowest_recovery_ms_, recovery_ms);
    std::printf("[ chaos ]   %llu batches acked %lld ms after the restart or SIGCONT; slowest ack so far %lld ms\n",
                static_cast<unsigned long long>(kBatchesBetweenRounds), static_cast<long long>(recovery_ms),
                static_cast<long long>(producer_->slowest_ack_ms()));
  }

  void print_summary() const {
    std::string faults;
    for (const auto& [target, n] : faults_) {
      faults += fmt::format("{}{}: {} killed, {} stopped", faults.empty() ? "" : "; ", target, n.kills, n.stops);
    }
    std::printf("\n[ chaos ] ===== summary (seed %llu) =====\n", static_cast<unsigned long long>(soak_options.seed));
    std::printf("[ chaos ] rounds: %d of %d\n", rounds_done_, soak_options.rounds);
    std::printf("[ chaos ] faults: %s\n", faults.empty() ? "none" : faults.c_str());
    if (producer_) {
      std::printf("[ chaos ] acked: %llu records in %llu batches; %llu attempts unanswered or unavailable\n",
                  static_cast<unsigned long long>(producer_->acked_records()),
                  static_cast<unsigned long long>(producer_->acked_batches()),
                  static_cast<unsigned long long>(producer_->failed_attempts()));
      std::printf("[ chaos ] slowest ack: %lld ms (batch seq %llu)\n",
                  static_cast<long long>(producer_->slowest_ack_ms()),
                  static_cast<unsigned long long>(producer_->slowest_ack_seq()));
    }
    std::printf("[ chaos ] soak: %lld s of faults; slowest recovery (restart or SIGCONT to %llu batches acked): %lld ms\n",
                static_cast<long long>(soak_ms_ / 1000), static_cast<unsigned long long>(kBatchesBetweenRounds),
                static_cast<long long>(slowest_recovery_ms_));
    if (converge_ms_ >= 0) {
      std::printf("[ chaos ] converged (deltasync verify exit 0) %lld ms after the last round\n",
                  static_cast<long long>(converge_ms_));
    } else {
      std::printf("[ chaos ] not converged\n");
    }
    for (const auto& [where, c] : comparisons_) {
      std::printf("[ chaos ] %-8s %zu live records expected: %zu lost, %zu extra, %zu wrong\n", where.c_str(),
                  c.expected, c.lost, c.extra, c.wrong);
    }
    std::fflush(stdout);
  }

  std::mt19937_64 rng_;
  Fleet fleet_;
  std::unique_ptr<LoadProducer> producer_;
  pid_t stopped_pid_ = -1;
  std::map<std::string, FaultCounts> faults_;
  int rounds_done_ = 0;
  int64_t soak_ms_ = 0;
  int64_t slowest_recovery_ms_ = 0;  // restart or SIGCONT to kBatchesBetweenRounds acked
  int64_t converge_ms_ = -1;
  std::map<std::string, Comparison> comparisons_;
};

TEST_F(ChaosSoak, AckedRecordsSurviveRandomKillsAndStopsValueByValue) {
  const auto soak_start = Clock::now();
  for (int round = 1; round <= soak_options.rounds; ++round) ASSERT_NO_FATAL_FAILURE(run_round(round));
  soak_ms_ = ms_since(soak_start);

  Status produced = producer_->stop();
  ASSERT_TRUE(produced.is_ok()) << produced.to_string() << fleet_.logs();
  const auto last_round = Clock::now();
  Status live = fleet_.wait_all_live();
  ASSERT_TRUE(live.is_ok()) << live.to_string();
  ASSERT_TRUE(fleet_.converged());
  converge_ms_ = ms_since(last_round);

  const RecordModel& expected = producer_->acked();
  Comparison& hub = comparisons_["hub"];
  for (const std::string type : {"products", "prices", "inventory"}) {
    auto held = fleet_.hub_records(type);
    ASSERT_TRUE(held.is_ok()) << held.status().to_string();
    compare(type, expected.records(type), *held, hub);
  }
  for (const AgentSpec& spec : fleet_.agents()) {
    Comparison& c = comparisons_[spec.id];
    for (const auto& [type, partition] : spec.subscriptions) {
      auto held = replica_contents(fleet_.replica_path(spec.id), type);
      ASSERT_TRUE(held.is_ok()) << spec.id << ": " << held.status().to_string();
      compare(type, in_partition(expected, type, partition), *held, c);
    }
  }
  for (const auto& [where, c] : comparisons_) {
    std::string shown;
    for (const std::string& e : c.examples) shown += "\n  " + e;
    EXPECT_TRUE(c.clean()) << where << ": " << c.lost << " lost, " << c.extra << " extra, " << c.wrong
                           << " wrong of " << c.expected << shown;
  }
}

bool parse_count(const char* text, uint64_t* out) {
  if (text == nullptr || *text == '\0') return false;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (errno != 0 || *end != '\0' || text[0] == '-') return false;
  *out = v;
  return true;
}

}  // namespace
}  // namespace ds::testing

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf(
          "usage: chaos_soak [--rounds N] [--seed S] [gtest flags]\n"
          "Runs a fleet (nats-server, deltasync-hub, 3 agents) under a producer and, each\n"
          "round, SIGKILLs (restart after 0-3 s) or SIGSTOPs (1-3 s) the hub, an agent or\n"
          "nats-server at random; then checks convergence and every acknowledged record,\n"
          "value by value, in the hub and every replica. Exit 0 when all holds.\n"
          "  --rounds N   faults to inject (default 40, what CI runs)\n"
          "  --seed S     the killer's and the producer's seed (default random, printed)\n"
          "gtest's flags (e.g. --gtest_output=xml:FILE) pass through.\n");
      return 0;
    }
  }
  ::testing::InitGoogleTest(&argc, argv);  // removes the gtest flags
  ds::testing::SoakOptions& opts = ds::testing::soak_options;
  opts.seed = std::random_device{}();
  opts.seed = (opts.seed << 32) ^ std::random_device{}();
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    uint64_t v = 0;
    if ((arg == "--rounds" || arg == "--seed") && i + 1 < argc && ds::testing::parse_count(argv[i + 1], &v)) {
      if (arg == "--rounds") {
        if (v < 1 || v > 1000000) {
          std::fprintf(stderr, "chaos_soak: --rounds must be 1..1000000, got %s\n", argv[i + 1]);
          return 2;
        }
        opts.rounds = static_cast<int>(v);
      } else {
        opts.seed = v;
      }
      ++i;
      continue;
    }
    std::fprintf(stderr, "chaos_soak: bad argument '%s'%s (want --rounds N, --seed S, N and S decimal numbers; --help)\n",
                 arg.c_str(), i + 1 < argc ? (" " + std::string(argv[i + 1])).c_str() : "");
    return 2;
  }
  std::printf("[ chaos ] seed %llu, %d rounds  (reproduce: chaos_soak --rounds %d --seed %llu)\n",
              static_cast<unsigned long long>(opts.seed), opts.rounds, opts.rounds,
              static_cast<unsigned long long>(opts.seed));
  std::fflush(stdout);
  const int result = RUN_ALL_TESTS();
  // After the fleet is gone: its log check is part of the verdict.
  std::printf("[ chaos ] result: %s  (reproduce: chaos_soak --rounds %d --seed %llu)\n",
              result == 0 ? "passed" : "FAILED", opts.rounds, static_cast<unsigned long long>(opts.seed));
  return result;
}
