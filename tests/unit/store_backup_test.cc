// deltasync-hub backup's copy (hub/store_backup.h): taken while a writer
// commits without pause, it is one committed state of the store: whole
// (integrity ok), owner-only, every record at a version its change log holds,
// the log contiguous up to the head.
#include "hub/store_backup.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "hub/query_store.h"
#include "shared/sqlite.h"
#include "testing/temp_dir.h"

namespace ds {
namespace {

TypeConfig item_type() {
  TypeConfig t;
  t.name = "item";
  t.schema.key = "id";
  t.schema.columns = {{"n", ColumnType::kInteger}, {"pad", ColumnType::kText}};
  return t;
}

// One batch: 50 upserts of keys (i*7 + j) % 400 and a delete now and then.
CommitBatch round_batch(int i) {
  CommitBatch b;
  b.type = "item";
  for (int j = 0; j < 50; ++j) {
    IngestRecord r;
    r.key = "k" + std::to_string((i * 7 + j) % 400);
    if (j == 49 && i % 3 == 0) {
      r.op = Op::kDelete;
    } else {
      r.fields = {{"n", int64_t{i}}, {"pad", std::string(200, 'x')}};
    }
    b.records.push_back(std::move(r));
  }
  return b;
}

class StoreBackupTest : public ::testing::Test {
 protected:
  TempDir dir_{"store-backup-test"};
};

TEST_F(StoreBackupTest, CopyTakenWhileTheWriterCommitsIsOneCommittedState) {
  const std::string path = dir_.file("hub.db");
  auto store = QueryStore::open(path, {item_type()});
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();
  for (int i = 0; i < 200; ++i) ASSERT_TRUE((*store)->commit({round_batch(i)}, 1).is_ok());

  std::atomic<bool> done{false};
  std::atomic<int> commits{0};
  std::thread writer([&] {
    for (int i = 200; !done.load() && i < 100000; ++i) {
      if (!(*store)->commit({round_batch(i)}, 1).is_ok()) break;
      ++commits;
    }
  });
  const std::string to = dir_.file("backup.db");
  BackupOptions options;
  options.pages_per_step = 8;  // many steps, with commits between them
  int steps = 0;
  options.on_progress = [&](const BackupProgress&) {
    ++steps;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  };
  const int commits_before = commits.load();
  auto result = backup_store(path, to, options);
  const int commits_during = commits.load() - commits_before;
  done.store(true);
  writer.join();
  ASSERT_TRUE(result.is_ok()) << result.status().to_string();
  EXPECT_GT(steps, 10);
  EXPECT_GT(commits_during, 0) << "the writer must have committed while the copy ran";
  ASSERT_EQ(result->versions.size(), 1u);
  const uint64_t head = result->versions[0].second;
  EXPECT_GE(head, 200u * 50u);

  struct stat sb {};
  ASSERT_EQ(::stat(to.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);
  EXPECT_FALSE(std::filesystem::exists(to + ".tmp-" + std::to_string(::getpid())));

  OpenOptions ro;
  ro.read_only = true;
  auto copy = Database::open(to, ro);
  ASSERT_TRUE(copy.is_ok()) << copy.status().to_string();
  auto check = (*copy)->prepare("PRAGMA integrity_check");
  ASSERT_TRUE(check.is_ok());
  ASSERT_TRUE(*check->step());
  EXPECT_EQ(check->column_text(0), "ok");
  // The log is contiguous 1..head, and it is the head type_state names.
  EXPECT_EQ(*query_scalar_int64(**copy, "SELECT version FROM type_state WHERE type = 'item'"),
            static_cast<int64_t>(head));
  EXPECT_EQ(*query_scalar_int64(**copy, "SELECT count(*) FROM changes WHERE type = 'item'"),
            static_cast<int64_t>(head));
  EXPECT_EQ(*query_scalar_int64(**copy, "SELECT max(version) FROM changes WHERE type = 'item'"),
            static_cast<int64_t>(head));
  // Every record is at its key's newest change in the log, none beyond it.
  EXPECT_EQ(*query_scalar_int64(**copy, "SELECT count(*) FROM t_item WHERE _version > " + std::to_string(head)), 0);
  EXPECT_EQ(*query_scalar_int64(**copy,
                                "SELECT count(*) FROM t_item r WHERE r._version <> (SELECT max(version) FROM changes c"
                                " WHERE c.type = 'item' AND c.key = r._key)"),
            0);
  EXPECT_EQ(*query_scalar_int64(**copy, "SELECT count(*) FROM t_item"),
            *query_scalar_int64(**copy, "SELECT count(DISTINCT key) FROM changes WHERE type = 'item'"));
}

TEST_F(StoreBackupTest, RefusesToOverwriteTheStoreOrWriteIntoADirectory) {
  const std::string path = dir_.file("hub.db");
  ASSERT_TRUE(QueryStore::open(path, {item_type()}).is_ok());
  auto self = backup_store(path, path);
  EXPECT_EQ(self.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(self.status().message().find("is the store itself"), std::string::npos) << self.status().message();
  auto into_dir = backup_store(path, dir_.path());
  EXPECT_EQ(into_dir.status().code(), StatusCode::kInvalidArgument);
  auto missing = backup_store(dir_.file("nope.db"), dir_.file("b.db"));
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(dir_.file("b.db")));
}

TEST_F(StoreBackupTest, ReplacesAnOlderCopyWhole) {
  const std::string path = dir_.file("hub.db");
  auto store = QueryStore::open(path, {item_type()});
  ASSERT_TRUE(store.is_ok());
  ASSERT_TRUE((*store)->commit({round_batch(1)}, 1).is_ok());
  const std::string to = dir_.file("backup.db");
  ASSERT_TRUE(backup_store(path, to).is_ok());
  ASSERT_TRUE((*store)->commit({round_batch(2)}, 1).is_ok());
  auto again = backup_store(path, to);
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_EQ(again->versions.at(0).second, 100u);
}

}  // namespace
}  // namespace ds
