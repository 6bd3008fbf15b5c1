// The retention rule, case by case, on QueryStore::prune_step
// (docs/operations.md, "Retention"): below keep_from the log keeps the latest
// change per key, old tombstones go with their deletes, old retry keys go;
// from keep_from on nothing is touched.
#include <gtest/gtest.h>

#include "hub/query_store.h"
#include "shared/sqlite.h"
#include "testing/temp_dir.h"

namespace ds {
namespace {

TypeConfig item_type() {
  TypeConfig t;
  t.name = "item";
  t.schema.key = "id";
  t.schema.columns = {{"n", ColumnType::kInteger}};
  return t;
}

IngestRecord put(const std::string& key, int64_t n) {
  IngestRecord r;
  r.key = key;
  r.fields = {{"n", n}};
  return r;
}

IngestRecord del(const std::string& key) {
  IngestRecord r;
  r.key = key;
  r.op = Op::kDelete;
  return r;
}

class StoreRetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = QueryStore::open(dir_.file("hub.db"), {item_type()});
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    store_ = std::move(s).value();
  }
  // Commits one batch at hub time `hub_ts`, as (producer, type, seq) when seq > 0.
  void commit(std::vector<IngestRecord> records, int64_t hub_ts, uint64_t seq = 0) {
    CommitBatch b{"item", seq > 0 ? "erp" : "", seq > 0 ? std::optional<uint64_t>(seq) : std::nullopt,
                  std::move(records), "d"};
    auto r = store_->commit({b}, hub_ts);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    ASSERT_TRUE(r->outcomes[0].status.is_ok()) << r->outcomes[0].status.to_string();
  }
  std::vector<int64_t> log_versions() {
    OpenOptions ro;
    ro.read_only = true;
    auto db = Database::open(dir_.file("hub.db"), ro);
    auto s = (*db)->prepare("SELECT version FROM changes ORDER BY version");
    std::vector<int64_t> out;
    while (*s->step()) out.push_back(s->column_int64(0));
    return out;
  }
  // A whole pass below keep_from in steps of `step` versions.
  QueryStore::PruneStep pass(uint64_t keep_from, int64_t tombstones_before, size_t step = 5000) {
    QueryStore::PruneStep total;
    uint64_t cursor = 0;
    for (int i = 0; i < 1000; ++i) {
      auto r = store_->prune_step("item", cursor, keep_from, tombstones_before, step);
      EXPECT_TRUE(r.is_ok()) << r.status().to_string();
      if (!r.is_ok()) break;
      total.changes_dropped += r->changes_dropped;
      total.tombstones_dropped += r->tombstones_dropped;
      total.retry_keys_dropped += r->retry_keys_dropped;
      if (r->scanned_to == 0) break;
      EXPECT_GT(r->scanned_to, cursor);
      cursor = r->scanned_to;
    }
    return total;
  }

  TempDir dir_{"store-retention-test"};
  std::unique_ptr<QueryStore> store_;
};

TEST_F(StoreRetentionTest, BelowKeepFromOnlyTheLatestChangePerKeyStays) {
  commit({put("a", 1), put("b", 1)}, 1000);  // 1, 2
  commit({put("a", 2)}, 1000);                // 3
  commit({put("a", 3), put("b", 2)}, 1000);  // 4, 5
  commit({put("a", 4)}, 1000);                // 6
  // The stream holds from version 5 on: 1..4 lie below and each has a newer
  // change of its key.
  const auto dropped = pass(5, 0);
  EXPECT_EQ(dropped.changes_dropped, 4u);
  EXPECT_EQ(log_versions(), (std::vector<int64_t>{5, 6}));
  EXPECT_EQ(store_->get("item", "a")->version, 6u);
}

TEST_F(StoreRetentionTest, ChangesTheStreamStillHoldsAreKeptWhole) {
  commit({put("a", 1)}, 1000);
  commit({put("a", 2)}, 1000);
  commit({put("a", 3)}, 1000);
  EXPECT_EQ(pass(2, 0).changes_dropped, 1u);  // only version 1 lies below
  EXPECT_EQ(log_versions(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(pass(1, 0).changes_dropped, 0u);  // nothing below version 1
}

TEST_F(StoreRetentionTest, OldTombstonesGoWithTheirDeletesNewOnesStay) {
  commit({put("old", 1), put("new", 1), put("held", 1)}, 1000);  // 1..3
  commit({del("old")}, 1000);                                    // 4
  commit({del("new")}, 9000);                                    // 5
  commit({put("live", 1)}, 9000);                                // 6
  commit({del("held")}, 1000);                                   // 7: at keep_from, old but held
  const auto dropped = pass(7, 5000);
  EXPECT_EQ(dropped.tombstones_dropped, 1u);
  EXPECT_EQ(store_->get("item", "old").status().code(), StatusCode::kNotFound);
  auto kept = store_->get("item", "new");
  ASSERT_TRUE(kept.is_ok());
  EXPECT_TRUE(kept->deleted);
  EXPECT_TRUE(store_->get("item", "held")->deleted);
  // Gone: old's put and delete (no row any more), the superseded puts of
  // new and held. Kept: new's delete (its tombstone stays), live, held's delete.
  EXPECT_EQ(log_versions(), (std::vector<int64_t>{5, 6, 7}));
}

TEST_F(StoreRetentionTest, AZeroHorizonKeepsEveryTombstone) {
  commit({put("a", 1)}, 1000);
  commit({del("a")}, 1000);
  commit({put("b", 1)}, 1000);
  EXPECT_EQ(pass(4, 0).tombstones_dropped, 0u);
  EXPECT_TRUE(store_->get("item", "a")->deleted);
  EXPECT_EQ(log_versions(), (std::vector<int64_t>{2, 3}));
}

TEST_F(StoreRetentionTest, RetryKeysBelowKeepFromGoAndARetryIsThenNew) {
  commit({put("a", 1)}, 1000, 1);  // version 1
  commit({put("a", 2)}, 1000, 2);  // version 2
  commit({put("b", 1)}, 1000, 3);  // version 3
  EXPECT_EQ(pass(3, 0).retry_keys_dropped, 2u);
  // seq 3 is still known: a retry is answered with its range.
  CommitBatch again{"item", "erp", 3, {put("b", 1)}, "d"};
  auto r = store_->commit({again}, 1000);
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE(r->outcomes[0].retried);
  // seq 1 is forgotten: stored as new.
  CommitBatch old{"item", "erp", 1, {put("a", 1)}, "d"};
  r = store_->commit({old}, 1000);
  ASSERT_TRUE(r.is_ok());
  EXPECT_FALSE(r->outcomes[0].retried);
  EXPECT_EQ(r->outcomes[0].first_version, 4u);
}

TEST_F(StoreRetentionTest, StepsAreBoundedAndAPassEnds) {
  for (int i = 0; i < 50; ++i) commit({put("k" + std::to_string(i % 5), i)}, 1000);
  auto first = store_->prune_step("item", 0, 41, 0, 10);
  ASSERT_TRUE(first.is_ok());
  EXPECT_EQ(first->scanned_to, 10u);
  EXPECT_EQ(first->changes_dropped, 10u);  // 1..10 all superseded
  const auto rest = pass(41, 0, 10);
  EXPECT_EQ(rest.changes_dropped, 30u);     // 11..40
  EXPECT_EQ(log_versions().size(), 10u);    // 41..50
  // Steps count rows, not versions: the compacted stretch below 41 is walked
  // again in one step that ends the pass.
  auto again = store_->prune_step("item", 0, 41, 0, 10);
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again->scanned_to, 0u);
}

}  // namespace
}  // namespace ds
