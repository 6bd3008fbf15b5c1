// Scenario: the hub's store is lost and restored from a `deltasync-hub
// backup` taken while a producer ingested (docs/operations.md, "Backup and
// restore"). The restored hub takes back from the streams what was
// acknowledged after the backup, the producer goes on with the next
// versions, nothing acknowledged is lost, and the agents converge without a
// restart and without data loss.
#include <nats/nats.h>
#include <signal.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "shared/codec.h"
#include "shared/names.h"
#include "shared/nats.h"
#include "testing/child_process.h"
#include "tests/e2e/under_load.h"

namespace ds::testing {
namespace {

class HubRestore : public UnderLoadTest {};

TEST_F(HubRestore, RestoredFromAnOlderBackupTakesBackTheRestFromTheStreamsAndAgentsConverge) {
  // N batches acknowledged (the fixture's warm-up), the backup taken while
  // the producer keeps ingesting, then M more acknowledged after it.
  const std::string backup = fleet_.file("hub-backup.db");
  CommandResult made = run_to_completion({std::string(DELTASYNC_BINARY_DIR) + "/deltasync-hub", "backup", "--config",
                                          fleet_.hub_config_path(), "--to", backup},
                                         fleet_.file("backup-cmd"));
  ASSERT_EQ(made.exit_code, 0) << made.out << made.err;
  ASSERT_NO_FATAL_FAILURE(keep_loading(40));
  Status produced = producer_->stop();
  ASSERT_TRUE(produced.is_ok()) << produced.to_string();

  // The store is lost: the hub stops, the backup goes in its place.
  fleet_.hub().signal(SIGTERM);
  ASSERT_EQ(fleet_.hub().wait_exit(kConvergeTimeoutMs), std::optional<int>(0)) << fleet_.logs();
  std::filesystem::copy_file(backup, fleet_.hub_store_path(), std::filesystem::copy_options::overwrite_existing);
  std::filesystem::remove(fleet_.hub_store_path() + "-wal");
  std::filesystem::remove(fleet_.hub_store_path() + "-shm");
  const size_t reconciled = fleet_.hub().log_count("reconcile DS_INVENTORY: in step");
  Status restarted = fleet_.start_hub();
  ASSERT_TRUE(restarted.is_ok()) << restarted.to_string();
  // The writer reconciles (and takes back) before it takes any ingest.
  for (int i = 0; i < 300 && fleet_.hub().log_count("reconcile DS_INVENTORY: in step") == reconciled; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_GT(fleet_.hub().log_count("took back versions"), 0u) << fleet_.hub().log_text();
  // Everything acknowledged before the stop is there again.
  EXPECT_TRUE(hub_holds_exactly(fleet_, producer_->acked()));

  // Ingest goes on (next versions, next seqs); agents converge.
  Status producing = producer_->start();
  ASSERT_TRUE(producing.is_ok()) << producing.to_string();
  ASSERT_NO_FATAL_FAILURE(keep_loading(30));
  ASSERT_NO_FATAL_FAILURE(finish());
  EXPECT_EQ(fleet_.hub().log_count("data_loss"), 0u) << fleet_.hub().log_text();
  EXPECT_EQ(fleet_.hub().log_count("data loss"), 0u) << fleet_.hub().log_text();
}

// `n` price rows for both stores, priced `price`.
nlohmann::json price_rows(int n, double price) {
  nlohmann::json rows = nlohmann::json::array();
  for (int i = 0; i < n; ++i) {
    for (const std::string store : {"store-1", "store-2"}) {
      const std::string sku = fmt::format("sku-{:03}", i);
      rows.push_back({{"key", store + "/" + sku},
                      {"op", "upsert"},
                      {"fields", {{"store_id", store}, {"sku", sku}, {"price", price + i}}}});
    }
  }
  return rows;
}

// Scenario: docs/operations.md, "When the stream cannot fill the gap". The
// store is restored from a backup older than anything the prices stream
// still holds, while the agents already applied the versions after it. The
// hub refuses prices; the operator gives those versions up as documented
// (hub and nats-server stopped, the stream's directory deleted from
// nats-server's store); the hub recreates the stream from its log, the
// agents that hold versions the hub no longer has reload from a snapshot,
// `deltasync verify --repair` leaves nothing to repair, and prices flow
// again.
TEST(HubRestoreGiveUp, AGapNoStreamCanFillIsGivenUpByDeletingTheStreamAndAgentsFollowTheStore) {
  Fleet fleet;
  Status started = fleet.start();
  ASSERT_TRUE(started.is_ok()) << started.to_string();
  ASSERT_TRUE(fleet.push("prices", price_rows(40, 1.0), 20).is_ok());
  ASSERT_TRUE(fleet.converged()) << fleet.logs();
  const std::string backup = fleet.file("hub-backup.db");
  CommandResult made = run_to_completion({std::string(DELTASYNC_BINARY_DIR) + "/deltasync-hub", "backup", "--config",
                                          fleet.hub_config_path(), "--to", backup},
                                         fleet.file("backup-cmd"));
  ASSERT_EQ(made.exit_code, 0) << made.out << made.err;
  // Acknowledged after the backup, applied by every agent: lost below.
  ASSERT_TRUE(fleet.push("prices", price_rows(40, 100.0), 20).is_ok());
  ASSERT_TRUE(fleet.converged()) << fleet.logs();

  fleet.hub().signal(SIGTERM);
  ASSERT_EQ(fleet.hub().wait_exit(kConvergeTimeoutMs), std::optional<int>(0)) << fleet.logs();
  {
    // The stream no longer holds the first batch the backup lacks (as if it
    // aged out): every batch of the second push goes.
    auto nc = Connection::connect(test_connect_options(fleet.nats()));
    ASSERT_TRUE(nc.is_ok()) << nc.status().to_string();
    auto js = (*nc)->jetstream();
    ASSERT_TRUE(js.is_ok()) << js.status().to_string();
    auto state = (*js)->stream_state(stream_name("prices"));
    ASSERT_TRUE(state.is_ok()) << state.status().to_string();
    const uint64_t half = state->first_seq + (state->last_seq - state->first_seq + 1) / 2;
    for (uint64_t seq = half; seq <= state->last_seq; ++seq) {
      jsErrCode err = static_cast<jsErrCode>(0);
      ASSERT_EQ(js_DeleteMsg((*js)->raw(), stream_name("prices").c_str(), seq, nullptr, &err), NATS_OK) << seq;
    }
  }
  std::filesystem::copy_file(backup, fleet.hub_store_path(), std::filesystem::copy_options::overwrite_existing);
  std::filesystem::remove(fleet.hub_store_path() + "-wal");
  std::filesystem::remove(fleet.hub_store_path() + "-shm");
  fleet.expect_log_line("hub", "the hub cannot take back what the backup lacks");
  fleet.expect_log_line("hub", "reconcile type 'prices'");
  ASSERT_TRUE(fleet.start_hub().is_ok()) << fleet.logs();
  EXPECT_TRUE(wait_until([&] { return fleet.hub().log_count("Restore a newer backup of the store") > 0; },
                         kConvergeTimeoutMs, 100))
      << fleet.logs();

  // Giving the versions up, as documented.
  fleet.hub().signal(SIGTERM);
  ASSERT_EQ(fleet.hub().wait_exit(kConvergeTimeoutMs), std::optional<int>(0)) << fleet.logs();
  // The hub starts with the agents it knew as live; verify needs them
  // reconnected to the new broker and registered again.
  std::map<std::string, size_t> registrations;
  for (const auto& spec : fleet.agents()) {
    registrations[spec.id] = fleet.agent(spec.id).log_count("registered with the hub");
  }
  ASSERT_TRUE(fleet.nats().stop().is_ok());
  const std::filesystem::path stream_dir = std::filesystem::path(fleet.nats().store_dir()) / "jetstream" / "$G" /
                                           "streams" / stream_name("prices");
  ASSERT_TRUE(std::filesystem::is_directory(stream_dir)) << stream_dir;
  std::filesystem::remove_all(stream_dir);
  ASSERT_TRUE(fleet.nats().start().is_ok()) << fleet.nats().log_text();
  ASSERT_TRUE(fleet.start_hub().is_ok()) << fleet.logs();
  ASSERT_TRUE(fleet.wait_all_live().is_ok()) << fleet.logs();
  for (const auto& [id, seen] : registrations) {
    Status registered = fleet.agent(id).wait_for_log("registered with the hub", kConvergeTimeoutMs, seen);
    ASSERT_TRUE(registered.is_ok()) << id << ": " << registered.to_string();
  }

  // The agents follow the store: the second push is gone everywhere.
  CommandResult repair = fleet.cli({"verify", "--repair"}, 120000);
  EXPECT_EQ(repair.exit_code, 0) << repair.out << repair.err << fleet.logs();
  ASSERT_TRUE(fleet.converged()) << fleet.logs();
  auto hub_prices = fleet.hub_records("prices");
  ASSERT_TRUE(hub_prices.is_ok()) << hub_prices.status().to_string();
  ASSERT_EQ(hub_prices->size(), 80u);
  EXPECT_DOUBLE_EQ(hub_prices->at("store-1/sku-007").at("price").get<double>(), 8.0);

  // Prices flow again, from the store's head on.
  ASSERT_TRUE(fleet.push("prices", price_rows(5, 500.0), 20).is_ok());
  ASSERT_TRUE(fleet.converged()) << fleet.logs();
  hub_prices = fleet.hub_records("prices");
  ASSERT_TRUE(hub_prices.is_ok());
  EXPECT_DOUBLE_EQ(hub_prices->at("store-2/sku-003").at("price").get<double>(), 503.0);
}

}  // namespace
}  // namespace ds::testing
