// Scenario: the hub's store is lost and restored from a `deltasync-hub
// backup` taken while a producer ingested (docs/operations.md, "Backup and
// restore"). The restored hub takes back from the streams what was
// acknowledged after the backup, the producer goes on with the next
// versions, nothing acknowledged is lost, and the agents converge without a
// restart and without data loss.
#include <signal.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "tests/e2e/under_load.h"
#include "tools/child_process.h"

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

}  // namespace
}  // namespace ds::testing
