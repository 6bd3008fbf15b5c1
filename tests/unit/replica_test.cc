#include "agent/replica.h"

#include <gtest/gtest.h>

#include "shared/codec.h"
#include "shared/sqlite.h"
#include "testing/temp_dir.h"

namespace ds {
namespace {

TypeSchema price_schema() {
  TypeSchema s;
  s.key = "sku";
  s.partition = "store";
  s.columns = {{"store", ColumnType::kText}, {"price", ColumnType::kReal}, {"qty", ColumnType::kInteger}};
  return s;
}

Change upsert(uint64_t v, std::string key, Fields f, int64_t ts = 1000) {
  return Change{v, std::move(key), Op::kUpsert, std::move(f), ts, ts + 1};
}
Change del(uint64_t v, std::string key, int64_t ts = 1000) {
  return Change{v, std::move(key), Op::kDelete, {}, ts, ts + 1};
}

class ReplicaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = Replica::open(dir_.file("replica.db"));
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    replica_ = std::move(r).value();
    ASSERT_TRUE(replica_->ensure_table("prices", price_schema()).is_ok());
  }

  void apply(std::vector<Change> changes, uint64_t seq = 1) {
    auto out = replica_->apply("prices", changes, seq);
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  }
  Fields row(const std::string& key) {
    auto f = replica_->row("prices", key);
    EXPECT_TRUE(f.is_ok()) << f.status().to_string();
    return f.is_ok() ? *f : Fields{};
  }
  uint64_t version_of(const std::string& key) {
    auto kv = replica_->key_versions("prices");
    for (const auto& [k, v] : *kv) {
      if (k == key) return v;
    }
    return 0;
  }

  TempDir dir_{"replica-test"};
  std::unique_ptr<Replica> replica_;
};

TEST_F(ReplicaTest, NewerVersionApplies) {
  apply({upsert(1, "a", {{"store", std::string("s1")}, {"price", 1.5}})});
  apply({upsert(2, "a", {{"price", 2.5}})});
  EXPECT_EQ(std::get<double>(row("a")["price"]), 2.5);
  EXPECT_EQ(version_of("a"), 2u);
}

TEST_F(ReplicaTest, HookOutboxKeepsAppliedChangesUntilDone) {
  auto out = replica_->apply("prices", {upsert(1, "a", {{"price", 1.0}}), upsert(2, "b", {{"price", 2.0}})}, 1,
                             /*keep_for_hook=*/true);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_NE(out->hook_entry, 0);
  EXPECT_EQ(out->applied, 2u);
  ASSERT_EQ(out->hooked.size(), 2u);
  EXPECT_EQ(out->hooked[1].key, "b");
  // Nothing applied, nothing for the hook.
  auto replay = replica_->apply("prices", {upsert(2, "b", {{"price", 9.0}})}, 2, true);
  ASSERT_TRUE(replay.is_ok());
  EXPECT_EQ(replay->hook_entry, 0);
  // Without a hook nothing is recorded.
  auto plain = replica_->apply("prices", {upsert(3, "c", {{"price", 3.0}})}, 3);
  ASSERT_TRUE(plain.is_ok());
  EXPECT_EQ(plain->hook_entry, 0);
  EXPECT_EQ(plain->applied, 1u);
  EXPECT_TRUE(plain->hooked.empty());

  auto pending = replica_->pending_hooks();
  ASSERT_TRUE(pending.is_ok()) << pending.status().to_string();
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].id, out->hook_entry);
  EXPECT_EQ((*pending)[0].batch.type, "prices");
  ASSERT_EQ((*pending)[0].batch.changes.size(), 2u);
  EXPECT_EQ((*pending)[0].batch.changes[1].key, "b");

  ASSERT_TRUE(replica_->hook_done(out->hook_entry).is_ok());
  EXPECT_TRUE(replica_->pending_hooks()->empty());
}

TEST_F(ReplicaTest, WriteRefusedByTheReplicaIsSetAsideAloneAndTheRestApplies) {
  // A business system's own rule on the replica table, refusing one key.
  ASSERT_TRUE(replica_->db()
                  .exec("CREATE TRIGGER no_bad BEFORE INSERT ON prices WHEN NEW.sku = 'bad' "
                        "BEGIN SELECT RAISE(ABORT, 'sku bad is refused'); END")
                  .is_ok());
  auto out = replica_->apply("prices",
                             {upsert(1, "a", {{"price", 1.0}}), upsert(2, "bad", {{"price", 2.0}}),
                              del(3, "a"), upsert(4, "c", {{"price", 4.0}})},
                             7);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->applied, 3u);
  EXPECT_EQ(out->quarantined, 1u);
  EXPECT_EQ(out->checkpoint.version, 4u);
  EXPECT_EQ(out->checkpoint.seq, 7u);
  EXPECT_EQ(version_of("c"), 4u);
  EXPECT_EQ(version_of("bad"), 0u);
  EXPECT_EQ(replica_->row("prices", "a").status().code(), StatusCode::kNotFound);
  auto q = replica_->quarantined();
  ASSERT_TRUE(q.is_ok());
  ASSERT_EQ(q->size(), 1u);
  EXPECT_EQ((*q)[0].key, "bad");
  EXPECT_NE((*q)[0].reason.find("sku bad is refused"), std::string::npos) << (*q)[0].reason;
}

TEST_F(ReplicaTest, OlderAndDuplicateVersionsAreIgnored) {
  apply({upsert(5, "a", {{"price", 5.0}})});
  auto out = replica_->apply("prices", {upsert(5, "a", {{"price", 9.0}}), upsert(3, "a", {{"price", 3.0}})}, 2);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->skipped, 2u);
  EXPECT_EQ(out->applied, 0u);
  EXPECT_EQ(std::get<double>(row("a")["price"]), 5.0);
  EXPECT_EQ(version_of("a"), 5u);
}

TEST_F(ReplicaTest, TombstonesOlderThanTheHorizonArePrunedNewerOnesStillBlockReplays) {
  // Deletes at hub times 1001 (old) and 5001 (recent).
  apply({upsert(1, "old", {{"price", 1.0}}), upsert(2, "new", {{"price", 1.0}}), del(3, "old", 1000),
         del(4, "new", 5000)});
  auto dropped = replica_->prune_tombstones(3000, 100);
  ASSERT_TRUE(dropped.is_ok()) << dropped.status().to_string();
  EXPECT_EQ(*dropped, 1u);
  // The recent tombstone still blocks an older replay; the pruned one no
  // longer does (by then the stream holds no such replay).
  apply({upsert(2, "new", {{"price", 1.0}}), upsert(1, "old", {{"price", 1.0}})});
  EXPECT_EQ(*replica_->row_count("prices"), 1u);
  EXPECT_EQ(version_of("old"), 1u);
  EXPECT_EQ(version_of("new"), 0u);
  EXPECT_EQ(*replica_->prune_tombstones(3000, 100), 0u);
}

TEST_F(ReplicaTest, TombstonesOfAnOlderReplicaGetTheTimeOfTheUpgrade) {
  apply({upsert(1, "a", {{"price", 1.0}}), del(2, "a", 1000)});
  replica_.reset();
  {
    auto db = Database::open(dir_.file("replica.db"));
    ASSERT_TRUE(db.is_ok());
    // As a replica from before tombstone retention: no hub_ts column.
    ASSERT_TRUE((*db)->exec("CREATE TABLE t2 AS SELECT type, key, version FROM _deltasync_tombstone;"
                            "DROP TABLE _deltasync_tombstone; ALTER TABLE t2 RENAME TO _deltasync_tombstone")
                    .is_ok());
  }
  auto r = Replica::open(dir_.file("replica.db"));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  replica_ = std::move(r).value();
  // Stamped with the time of the upgrade: a cutoff in 2001 keeps it.
  EXPECT_EQ(*replica_->prune_tombstones(1000000000000, 100), 0u);
  apply({upsert(1, "a", {{"price", 1.0}})});
  EXPECT_EQ(*replica_->row_count("prices"), 0u);
}

TEST_F(ReplicaTest, DeleteRemovesRowAndBlocksOlderUpsertReplay) {
  apply({upsert(1, "a", {{"price", 1.0}}), del(2, "a")});
  EXPECT_EQ(*replica_->row_count("prices"), 0u);
  apply({upsert(1, "a", {{"price", 1.0}})});
  EXPECT_EQ(*replica_->row_count("prices"), 0u);
  apply({upsert(3, "a", {{"price", 3.0}})});
  EXPECT_EQ(std::get<double>(row("a")["price"]), 3.0);
  // The tombstone is gone once a newer upsert won: version 2 replays stay ignored.
  apply({del(2, "a")});
  EXPECT_EQ(*replica_->row_count("prices"), 1u);
}

TEST_F(ReplicaTest, UpsertPatchesOnlyTheGivenColumns) {
  apply({upsert(1, "a", {{"store", std::string("s1")}, {"price", 1.0}, {"qty", int64_t{7}}})});
  apply({upsert(2, "a", {{"qty", int64_t{8}}})});
  Fields f = row("a");
  EXPECT_EQ(std::get<std::string>(f["store"]), "s1");
  EXPECT_EQ(std::get<double>(f["price"]), 1.0);
  EXPECT_EQ(std::get<int64_t>(f["qty"]), 8);
}

TEST_F(ReplicaTest, NewRowWithPartialColumnsHasNullsElsewhere) {
  apply({upsert(1, "a", {{"qty", int64_t{1}}})});
  EXPECT_TRUE(std::holds_alternative<std::monostate>(row("a")["price"]));
}

TEST_F(ReplicaTest, CheckpointAdvancesWithTheBatchAndSurvivesReopen) {
  apply({upsert(1, "a", {{"price", 1.0}}, 100), upsert(2, "b", {{"price", 2.0}}, 300),
         upsert(3, "c", {{"price", 3.0}}, 200)},
        17);
  replica_.reset();
  auto reopened = Replica::open(dir_.file("replica.db"));
  ASSERT_TRUE(reopened.is_ok());
  auto cps = (*reopened)->checkpoints();
  ASSERT_TRUE(cps.is_ok());
  const ReplicaCheckpoint& cp = cps->at("prices");
  EXPECT_EQ(cp.version, 3u);
  EXPECT_EQ(cp.seq, 17u);
  EXPECT_EQ(cp.ts, 300);
  EXPECT_EQ(cp.schema_hash, schema_hash(price_schema()));
  ASSERT_NE((*reopened)->schema("prices"), nullptr);
  EXPECT_EQ(*(*reopened)->schema("prices"), price_schema());
}

TEST_F(ReplicaTest, ChangeBreakingTheSchemaIsQuarantinedAndTheRestApply) {
  auto out = replica_->apply("prices",
                             {upsert(1, "a", {{"price", 1.0}}), upsert(2, "b", {{"colour", std::string("red")}}),
                              upsert(3, "c", {{"price", std::string("not a number")}}), upsert(4, "d", {{"price", 4.0}})},
                             9);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->applied, 2u);
  EXPECT_EQ(out->quarantined, 2u);
  EXPECT_EQ(*replica_->row_count("prices"), 2u);
  auto q = replica_->quarantined();
  ASSERT_TRUE(q.is_ok());
  ASSERT_EQ(q->size(), 2u);
  EXPECT_EQ((*q)[0].key, "b");
  EXPECT_EQ((*q)[0].kind, "apply");
  EXPECT_NE((*q)[0].reason.find("colour"), std::string::npos) << (*q)[0].reason;
  auto payload = decode_delta_batch((*q)[1].payload);
  ASSERT_TRUE(payload.is_ok());
  EXPECT_EQ(payload->changes.at(0).key, "c");
  EXPECT_EQ(replica_->checkpoints()->at("prices").version, 4u);
}

TEST_F(ReplicaTest, ApplyToUnknownTypeIsNotFound) {
  auto out = replica_->apply("nope", {upsert(1, "a", {})}, 1);
  EXPECT_EQ(out.status().code(), StatusCode::kNotFound);
}

TEST_F(ReplicaTest, NewColumnIsAddedInPlace) {
  apply({upsert(1, "a", {{"price", 1.0}})});
  TypeSchema wider = price_schema();
  wider.columns.push_back({"colour", ColumnType::kText});
  ASSERT_TRUE(replica_->ensure_table("prices", wider).is_ok());
  EXPECT_EQ(std::get<double>(row("a")["price"]), 1.0);
  apply({upsert(2, "a", {{"colour", std::string("red")}})});
  EXPECT_EQ(std::get<std::string>(row("a")["colour"]), "red");
  EXPECT_EQ(replica_->checkpoints()->at("prices").schema_hash, schema_hash(wider));
}

TEST_F(ReplicaTest, SnapshotReplacesTheTableAtomicallyForReaders) {
  apply({upsert(1, "old", {{"price", 1.0}}), del(2, "gone")}, 2);
  ASSERT_TRUE(replica_->begin_snapshot("prices").is_ok());
  ASSERT_TRUE(replica_->stage_snapshot_page("prices", {{10, "k1", {{"price", 10.0}}, 500}}).is_ok());
  ASSERT_TRUE(replica_->stage_snapshot_page("prices", {{11, "k2", {{"price", 11.0}}, 600}}).is_ok());

  // A reader between pages still sees exactly the old table.
  auto reader = Replica::open(dir_.file("replica.db"), /*read_only=*/true);
  ASSERT_TRUE(reader.is_ok()) << reader.status().to_string();
  auto before = (*reader)->key_versions("prices");
  ASSERT_TRUE(before.is_ok());
  ASSERT_EQ(before->size(), 1u);
  EXPECT_EQ((*before)[0].first, "old");

  ASSERT_TRUE(replica_->finish_snapshot("prices", 11, 40).is_ok());
  auto after = (*reader)->key_versions("prices");
  ASSERT_TRUE(after.is_ok());
  ASSERT_EQ(after->size(), 2u);
  EXPECT_EQ((*after)[0], (std::pair<std::string, uint64_t>{"k1", 10}));
  auto cp = replica_->checkpoints()->at("prices");
  EXPECT_EQ(cp.version, 11u);
  EXPECT_EQ(cp.seq, 40u);
  EXPECT_EQ(cp.ts, 600);
  // The stream resumes after the snapshot: newer changes apply, older are skipped.
  apply({upsert(11, "k2", {{"price", 99.0}}), upsert(12, "k1", {{"price", 12.0}})}, 41);
  EXPECT_EQ(std::get<double>(row("k2")["price"]), 11.0);
  EXPECT_EQ(std::get<double>(row("k1")["price"]), 12.0);
}

TEST_F(ReplicaTest, QuarantineEntriesCanBeListedAndDropped) {
  QuarantineEntry e;
  e.type = "prices";
  e.kind = "undecodable";
  e.seq = 5;
  e.reason = "bad bytes";
  e.payload = std::string("\xc1\x00", 2);
  auto id = replica_->quarantine(e);
  ASSERT_TRUE(id.is_ok());
  EXPECT_EQ(*replica_->quarantine_count(), 1u);
  auto got = replica_->quarantine_entry(*id);
  ASSERT_TRUE(got.is_ok());
  EXPECT_EQ(got->payload, e.payload);
  EXPECT_EQ(got->seq, 5u);
  ASSERT_TRUE(replica_->drop_quarantined(*id).is_ok());
  EXPECT_EQ(*replica_->quarantine_count(), 0u);
  EXPECT_EQ(replica_->drop_quarantined(*id).code(), StatusCode::kNotFound);
}

TEST_F(ReplicaTest, ReadOnlyReplicaRefusesWrites) {
  auto reader = Replica::open(dir_.file("replica.db"), /*read_only=*/true);
  ASSERT_TRUE(reader.is_ok());
  EXPECT_FALSE((*reader)->ensure_table("other", price_schema()).is_ok());
}

}  // namespace
}  // namespace ds
