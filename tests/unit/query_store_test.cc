#include "hub/query_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "shared/codec.h"
#include "testing/temp_dir.h"

namespace ds {
namespace {

TypeConfig price_type() {
  TypeConfig t;
  t.name = "price";
  t.schema.key = "sku";
  t.schema.columns = {{"amount", ColumnType::kReal}, {"currency", ColumnType::kText},
                      {"active", ColumnType::kBool}, {"image", ColumnType::kBlob},
                      {"attrs", ColumnType::kJson}};
  return t;
}

TypeConfig stock_type() {
  TypeConfig t;
  t.name = "stock";
  t.schema.key = "id";
  t.schema.partition = "store";
  t.schema.columns = {{"store", ColumnType::kText}, {"qty", ColumnType::kInteger}};
  return t;
}

IngestRecord upsert(std::string key, Fields f, std::optional<std::string> partition = std::nullopt) {
  IngestRecord r;
  r.key = std::move(key);
  r.fields = std::move(f);
  r.partition = std::move(partition);
  r.ts = 1000;
  return r;
}

IngestRecord remove(std::string key, std::optional<std::string> partition = std::nullopt) {
  IngestRecord r;
  r.key = std::move(key);
  r.op = Op::kDelete;
  r.partition = std::move(partition);
  return r;
}

CommitBatch batch(std::string type, std::vector<IngestRecord> records, std::string producer = {},
                  std::optional<uint64_t> seq = std::nullopt) {
  return CommitBatch{std::move(type), std::move(producer), seq, std::move(records), {}};
}

class QueryStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = open_store(); }

  std::unique_ptr<QueryStore> open_store(std::vector<TypeConfig> types = {price_type(), stock_type()},
                                         QueryStoreOptions options = {}) {
    auto s = QueryStore::open(dir_.file("hub.db"), std::move(types), options);
    EXPECT_TRUE(s.is_ok()) << s.status().to_string();
    return s.is_ok() ? std::move(s).value() : nullptr;
  }

  std::vector<BatchOutcome> commit(std::vector<CommitBatch> batches) { return commit_group(std::move(batches)).outcomes; }

  GroupCommit commit_group(std::vector<CommitBatch> batches) {
    auto r = store_->commit(batches, 5000);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? std::move(r).value() : GroupCommit{};
  }

  TempDir dir_{"query-store-test"};
  std::unique_ptr<QueryStore> store_;
};

TEST_F(QueryStoreTest, UpsertsGetConsecutiveVersionsPerType) {
  auto out = commit({batch("price", {upsert("a", {{"amount", 1.5}}), upsert("b", {{"amount", 2.0}})}),
                     batch("stock", {upsert("s1", {{"store", std::string("p1")}, {"qty", int64_t{3}}}, "p1")}),
                     batch("price", {upsert("c", {{"amount", 3.0}})})});
  ASSERT_EQ(out.size(), 3u);
  for (const auto& o : out) EXPECT_TRUE(o.status.is_ok()) << o.status.to_string();
  EXPECT_EQ(out[0].first_version, 1u);
  EXPECT_EQ(out[0].last_version, 2u);
  EXPECT_EQ(out[1].first_version, 1u);
  EXPECT_EQ(out[1].last_version, 1u);
  EXPECT_EQ(out[2].first_version, 3u);
  EXPECT_EQ(out[2].last_version, 3u);

  auto rec = store_->get("price", "b");
  ASSERT_TRUE(rec.is_ok()) << rec.status().to_string();
  EXPECT_EQ(rec->version, 2u);
  EXPECT_EQ(rec->partition, "_all");
  EXPECT_EQ(rec->ts, 1000);
  EXPECT_EQ(rec->hub_ts, 5000);
  EXPECT_EQ(rec->fields.at("amount"), Value(2.0));
  EXPECT_EQ(store_->type_state("price")->version, 3u);
  EXPECT_EQ(store_->type_state("stock")->version, 1u);
}

// What verify shows next to an agent's checkpoint of one partition: the
// newest change of that partition, a delete included, not the type's.
TEST_F(QueryStoreTest, PartitionVersionIsTheNewestChangeOfThePartition) {
  commit({batch("stock", {upsert("s1", {{"store", std::string("p1")}, {"qty", int64_t{1}}}, "p1"),
                          upsert("s2", {{"store", std::string("p2")}, {"qty", int64_t{2}}}, "p2")})});
  commit({batch("stock", {remove("s1", "p1")})});
  commit({batch("stock", {upsert("s3", {{"store", std::string("p2")}, {"qty", int64_t{3}}}, "p2")})});
  EXPECT_EQ(store_->type_state("stock")->version, 4u);
  EXPECT_EQ(*store_->partition_version("stock", "p1"), 3u) << "the delete is the partition's newest change";
  EXPECT_EQ(*store_->partition_version("stock", "p2"), 4u);
  EXPECT_EQ(*store_->partition_version("stock", "p9"), 0u);
  EXPECT_EQ(store_->partition_version("nope", "p1").status().code(), StatusCode::kNotFound);
}

TEST_F(QueryStoreTest, PatchUpsertChangesOnlyTheGivenColumns) {
  commit({batch("price", {upsert("a", {{"amount", 1.5}, {"currency", std::string("EUR")}})})});
  commit({batch("price", {upsert("a", {{"amount", 2.5}})})});
  auto rec = store_->get("price", "a");
  ASSERT_TRUE(rec.is_ok());
  EXPECT_EQ(rec->version, 2u);
  EXPECT_EQ(rec->fields.at("amount"), Value(2.5));
  EXPECT_EQ(rec->fields.at("currency"), Value(std::string("EUR")));
  EXPECT_EQ(rec->fields.at("active"), Value(std::monostate{}));
}

TEST_F(QueryStoreTest, DeleteLeavesATombstoneThatListsAndSnapshotsSkip) {
  commit({batch("price", {upsert("a", {{"amount", 1.0}, {"currency", std::string("EUR")}}),
                          upsert("b", {{"amount", 2.0}})})});
  commit({batch("price", {remove("a")})});
  auto rec = store_->get("price", "a");
  ASSERT_TRUE(rec.is_ok());
  EXPECT_TRUE(rec->deleted);
  EXPECT_EQ(rec->version, 3u);
  EXPECT_EQ(rec->fields.at("currency"), Value(std::monostate{}));

  auto list = store_->list("price", std::nullopt, std::nullopt, 100);
  ASSERT_TRUE(list.is_ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(list->at(0).key, "b");
  auto page = store_->snapshot_page(SnapshotRequest{"price", "*", std::nullopt, 100}, 1 << 20);
  ASSERT_TRUE(page.is_ok());
  ASSERT_EQ(page->records.size(), 1u);
  EXPECT_EQ(page->records[0].key, "b");

  // A deleted key comes back with only the columns of its new upsert.
  commit({batch("price", {upsert("a", {{"amount", 9.0}})})});
  rec = store_->get("price", "a");
  EXPECT_FALSE(rec->deleted);
  EXPECT_EQ(rec->fields.at("currency"), Value(std::monostate{}));
}

TEST_F(QueryStoreTest, RetriedProducerSeqIsNotStoredTwice) {
  auto first = commit({batch("price", {upsert("a", {{"amount", 1.0}}), upsert("b", {{"amount", 1.0}})}, "erp", 7)});
  ASSERT_TRUE(first[0].status.is_ok());
  EXPECT_FALSE(first[0].retried);
  auto again = commit({batch("price", {upsert("a", {{"amount", 1.0}}), upsert("b", {{"amount", 1.0}})}, "erp", 7),
                       batch("price", {upsert("c", {{"amount", 1.0}})}, "erp", 8)});
  EXPECT_TRUE(again[0].retried);
  EXPECT_EQ(again[0].first_version, 1u);
  EXPECT_EQ(again[0].last_version, 2u);
  EXPECT_FALSE(again[1].retried);
  EXPECT_EQ(again[1].first_version, 3u);
  EXPECT_EQ(store_->type_state("price")->version, 3u);
  auto log = store_->batches_after("price", 0);
  ASSERT_TRUE(log.is_ok());
  size_t changes = 0;
  for (const auto& b : *log) changes += b.delta.changes.size();
  EXPECT_EQ(changes, 3u);
}

TEST_F(QueryStoreTest, ASeqReusedForOtherRecordsIsRefusedNamingTheStoredRange) {
  CommitBatch first = batch("price", {upsert("a", {{"amount", 1.0}})}, "erp", 7);
  first.digest = "digest-of-a";
  ASSERT_TRUE(commit({first})[0].status.is_ok());
  CommitBatch same = first;
  EXPECT_TRUE(commit({same})[0].retried);
  CommitBatch other = batch("price", {upsert("z", {{"amount", 2.0}})}, "erp", 7);
  other.digest = "digest-of-z";
  auto out = commit({other});
  EXPECT_EQ(out[0].status.code(), StatusCode::kAlreadyExists) << out[0].status.to_string();
  EXPECT_NE(out[0].status.message().find("versions 1..1"), std::string::npos) << out[0].status.message();
  EXPECT_FALSE(out[0].retried);
  EXPECT_EQ(store_->get("price", "z").status().code(), StatusCode::kNotFound) << "nothing stored";
  EXPECT_EQ(store_->type_state("price")->version, 1u);
  // The key is the producer's, per type: another producer's seq 7 is its own.
  CommitBatch theirs = batch("price", {upsert("z", {{"amount", 2.0}})}, "pos", 7);
  theirs.digest = "digest-of-z";
  EXPECT_TRUE(commit({theirs})[0].status.is_ok());
}

TEST_F(QueryStoreTest, SameSeqTwiceInOneGroupIsStoredOnce) {
  auto out = commit({batch("price", {upsert("a", {{"amount", 1.0}})}, "erp", 1),
                     batch("price", {upsert("a", {{"amount", 1.0}})}, "erp", 1)});
  EXPECT_FALSE(out[0].retried);
  EXPECT_TRUE(out[1].retried);
  EXPECT_EQ(out[1].first_version, out[0].first_version);
  EXPECT_EQ(store_->type_state("price")->version, 1u);
}

TEST_F(QueryStoreTest, MovingAKeyToAnotherPartitionRejectsOnlyItsBatch) {
  commit({batch("stock", {upsert("s1", {{"store", std::string("p1")}, {"qty", int64_t{1}}}, "p1")})});
  auto out = commit({batch("stock", {upsert("s2", {{"qty", int64_t{5}}}, "p2")}),
                     batch("stock", {upsert("s3", {{"qty", int64_t{1}}}, "p1"),
                                     upsert("s1", {{"store", std::string("p2")}}, "p2")}),
                     batch("stock", {upsert("s4", {{"qty", int64_t{1}}}, "p1")})});
  ASSERT_EQ(out.size(), 3u);
  EXPECT_TRUE(out[0].status.is_ok());
  EXPECT_EQ(out[1].status.code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(out[1].index.has_value());
  EXPECT_EQ(*out[1].index, 1u);
  EXPECT_NE(out[1].status.message().find("moving it"), std::string::npos) << out[1].status.message();
  EXPECT_TRUE(out[2].status.is_ok());
  // Versions stay contiguous: the rejected batch used none.
  EXPECT_EQ(out[0].first_version, 2u);
  EXPECT_EQ(out[2].first_version, 3u);
  EXPECT_EQ(store_->get("stock", "s3").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->get("stock", "s1")->partition, "p1");
  EXPECT_EQ(store_->get("stock", "s4")->version, 3u);
}

TEST_F(QueryStoreTest, PatchOfAStoredKeyKeepsItsPartition) {
  commit({batch("stock", {upsert("s1", {{"store", std::string("p1")}, {"qty", int64_t{1}}}, "p1")})});
  auto out = commit({batch("stock", {upsert("s1", {{"qty", int64_t{9}}})})});
  ASSERT_TRUE(out[0].status.is_ok()) << out[0].status.to_string();
  auto log = store_->batches_after("stock", 1);
  ASSERT_TRUE(log.is_ok());
  ASSERT_EQ(log->size(), 1u);
  EXPECT_EQ(log->at(0).partition, "p1");
}

TEST_F(QueryStoreTest, NewKeyWithoutPartitionIsRejected) {
  auto out = commit({batch("stock", {upsert("s1", {{"qty", int64_t{1}}})})});
  EXPECT_EQ(out[0].status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(out[0].index, std::optional<uint32_t>(0));
  EXPECT_EQ(store_->type_state("stock")->version, 0u);
}

TEST_F(QueryStoreTest, UnknownTypeIsNotFound) {
  auto out = commit({batch("nope", {upsert("a", {})})});
  EXPECT_EQ(out[0].status.code(), StatusCode::kNotFound);
}

TEST_F(QueryStoreTest, DeltaBatchesGroupOnePartitionOfOneCommitUpToPublishBatch) {
  store_.reset();
  QueryStoreOptions options;
  options.publish_batch = 2;
  store_ = open_store({price_type(), stock_type()}, options);
  commit({batch("stock", {upsert("a", {}, "p1"), upsert("b", {}, "p2"), upsert("c", {}, "p1"),
                          upsert("d", {}, "p1")})});
  commit({batch("stock", {upsert("e", {}, "p1")})});
  auto log = store_->batches_after("stock", 0);
  ASSERT_TRUE(log.is_ok());
  // p1: {1,3} then {4}; p2: {2}; next commit: {5}. Ascending by first version.
  ASSERT_EQ(log->size(), 4u);
  EXPECT_EQ(log->at(0).batch, 1u);
  EXPECT_EQ(log->at(0).partition, "p1");
  ASSERT_EQ(log->at(0).delta.changes.size(), 2u);
  EXPECT_EQ(log->at(0).delta.changes[1].v, 3u);
  EXPECT_EQ(log->at(1).batch, 2u);
  EXPECT_EQ(log->at(1).partition, "p2");
  EXPECT_EQ(log->at(2).batch, 4u);
  EXPECT_EQ(log->at(3).batch, 5u);
  EXPECT_EQ(log->at(3).delta.changes[0].key, "e");

  auto after = store_->batches_after("stock", 2);
  ASSERT_TRUE(after.is_ok());
  ASSERT_EQ(after->size(), 2u);
  EXPECT_EQ(after->at(0).batch, 4u);
}

// The writer publishes a commit's delta batches from memory and reconciliation
// republishes them from the log: both must be the same batches, change for
// change, or a republished Nats-Msg-Id would carry other content. Includes a
// batch rejected mid-group (its changes must leave the open delta batches),
// deletes, patches, in-place updates and a tombstone revived elsewhere.
TEST_F(QueryStoreTest, GroupCommitBatchesAreWhatTheLogReadsBack) {
  store_.reset();
  QueryStoreOptions options;
  options.publish_batch = 2;
  store_ = open_store({price_type(), stock_type()}, options);
  commit({batch("stock", {upsert("a", {{"qty", int64_t{1}}}, "p1"), upsert("gone", {{"qty", int64_t{1}}}, "p2")}),
          batch("price", {upsert("x", {{"amount", 1.0}})})});
  commit({batch("stock", {remove("gone")})});
  const uint64_t stock_before = store_->type_state("stock")->version;
  const uint64_t price_before = store_->type_state("price")->version;
  GroupCommit g = commit_group({
      batch("stock", {upsert("a", {{"qty", int64_t{2}}}), upsert("b", {{"qty", int64_t{1}}}, "p2")}),
      batch("price", {upsert("x", {{"currency", std::string("EUR")}}), remove("x"), upsert("y", {{"amount", 2.0}})}),
      batch("stock", {upsert("c", {{"qty", int64_t{1}}}, "p1"), upsert("a", {}, "p2")}),  // moves a: rejected
      batch("stock", {upsert("gone", {{"qty", int64_t{7}}}, "p1"), remove("b"), upsert("d", {}, "p1")}),
  });
  ASSERT_EQ(g.outcomes.size(), 4u);
  EXPECT_TRUE(g.outcomes[0].status.is_ok());
  EXPECT_TRUE(g.outcomes[1].status.is_ok());
  EXPECT_EQ(g.outcomes[2].status.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(g.outcomes[3].status.is_ok());
  EXPECT_EQ(store_->get("stock", "gone")->partition, "p1");  // a tombstone may come back elsewhere
  EXPECT_FALSE(store_->get("stock", "gone")->deleted);
  EXPECT_TRUE(store_->get("stock", "b")->deleted);
  EXPECT_EQ(store_->get("stock", "a")->fields.at("qty"), Value(int64_t{2}));

  for (const auto& [type, before] : {std::pair{std::string("stock"), stock_before}, std::pair{std::string("price"), price_before}}) {
    auto log = store_->batches_after(type, before);
    ASSERT_TRUE(log.is_ok()) << log.status().to_string();
    std::vector<PendingBatch> mine;
    for (const PendingBatch& b : g.batches) {
      if (b.delta.type == type) mine.push_back(b);
    }
    ASSERT_EQ(mine.size(), log->size()) << type;
    ASSERT_FALSE(mine.empty()) << type;
    for (size_t i = 0; i < mine.size(); ++i) {
      EXPECT_EQ(mine[i].batch, log->at(i).batch) << type << " " << i;
      EXPECT_EQ(mine[i].partition, log->at(i).partition) << type << " " << i;
      ASSERT_EQ(mine[i].delta.changes.size(), log->at(i).delta.changes.size()) << type << " " << i;
      for (size_t c = 0; c < mine[i].delta.changes.size(); ++c) {
        EXPECT_EQ(mine[i].delta.changes[c].v, log->at(i).delta.changes[c].v) << type << " " << i << " " << c;
        EXPECT_EQ(mine[i].delta.changes[c].key, log->at(i).delta.changes[c].key) << type << " " << i << " " << c;
      }
      // The same message bytes. (Values may differ in kind before encoding: a
      // real 2.0 reads back from the log as the integer msgpack made of it.)
      EXPECT_EQ(encode(mine[i].delta), encode(log->at(i).delta)) << type << " " << i;
    }
  }
}

TEST_F(QueryStoreTest, BatchesAfterStopsAtWholeBatches) {
  for (int i = 0; i < 3; ++i) commit({batch("price", {upsert("k" + std::to_string(i), {}), upsert("x", {})})});
  auto log = store_->batches_after("price", 0, 3);
  ASSERT_TRUE(log.is_ok());
  ASSERT_EQ(log->size(), 2u);
  EXPECT_EQ(log->at(1).delta.changes.size(), 2u);
}

TEST_F(QueryStoreTest, MarkPublishedDerivesThePublishedVersion) {
  commit({batch("stock", {upsert("a", {}, "p1"), upsert("b", {}, "p2"), upsert("c", {}, "p1")})});
  ASSERT_TRUE(store_->mark_published("stock", 1, 10).is_ok());
  auto st = store_->type_state("stock");
  EXPECT_EQ(st->published_batch, 1u);
  EXPECT_EQ(st->published_version, 3u);  // batch 1 holds versions 1 and 3
  EXPECT_EQ(st->published_seq, 10u);
  ASSERT_TRUE(store_->mark_published("stock", 2, 11).is_ok());
  EXPECT_EQ(store_->type_state("stock")->published_version, 3u);
  EXPECT_EQ(store_->mark_published("nope", 1, 1).code(), StatusCode::kNotFound);
}

TEST_F(QueryStoreTest, ChangeLogKeepsEveryValueKind) {
  Fields f{{"amount", 1.25},
           {"currency", std::string("EUR")},
           {"active", true},
           {"image", Blob{std::string("\x00\x01\xff", 3)}},
           {"attrs", JsonText{R"({"a":[1,2]})"}}};
  commit({batch("price", {upsert("a", f)})});
  auto log = store_->batches_after("price", 0);
  ASSERT_TRUE(log.is_ok());
  ASSERT_EQ(log->size(), 1u);
  EXPECT_EQ(log->at(0).delta.changes[0].f, f);
  EXPECT_EQ(log->at(0).delta.changes[0].op, Op::kUpsert);
  EXPECT_EQ(log->at(0).delta.changes[0].ts, 1000);
  EXPECT_EQ(log->at(0).delta.changes[0].hts, 5000);
  auto rec = store_->get("price", "a");
  for (const auto& [name, value] : f) EXPECT_EQ(rec->fields.at(name), value) << name;
}

TEST_F(QueryStoreTest, ABatchReadBackFromTheLogEncodesAsTheCommitPublishedIt) {
  // Republication reads the log: its bytes must be the ones the commit
  // published from memory, -0.0 and integral reals included.
  GroupCommit g = commit_group({batch("price", {upsert("a", {{"amount", -0.0}}), upsert("b", {{"amount", 4.0}})})});
  ASSERT_EQ(g.batches.size(), 1u);
  auto log = store_->batches_after("price", 0);
  ASSERT_TRUE(log.is_ok()) << log.status().to_string();
  ASSERT_EQ(log->size(), 1u);
  ASSERT_EQ(log->at(0).delta.changes.size(), 2u);
  const Value& minus_zero = log->at(0).delta.changes[0].f.at("amount");
  ASSERT_TRUE(std::holds_alternative<double>(minus_zero));
  EXPECT_TRUE(std::signbit(std::get<double>(minus_zero)));
  EXPECT_EQ(log->at(0).delta.changes[1].f.at("amount"), Value(4.0));
  EXPECT_EQ(encode(log->at(0).delta), encode(g.batches[0].delta));
}

TEST_F(QueryStoreTest, AddedColumnIsAddedInPlaceOnReopen) {
  commit({batch("price", {upsert("a", {{"amount", 1.0}})})});
  store_.reset();
  TypeConfig wider = price_type();
  wider.schema.columns.push_back({"note", ColumnType::kText});
  store_ = open_store({wider, stock_type()});
  ASSERT_NE(store_, nullptr);
  commit({batch("price", {upsert("a", {{"note", std::string("hello")}})})});
  auto rec = store_->get("price", "a");
  ASSERT_TRUE(rec.is_ok());
  EXPECT_EQ(rec->fields.at("amount"), Value(1.0));
  EXPECT_EQ(rec->fields.at("note"), Value(std::string("hello")));
  EXPECT_EQ(rec->version, 2u);
}

TEST_F(QueryStoreTest, ATypeWithTheLongestNameAllowedReopens) {
  // Its table is "t_" + 64 characters: the in-place column upgrade that runs
  // on every reopen must take that name.
  TypeConfig longest = price_type();
  longest.name = std::string(64, 'p');
  store_.reset();
  store_ = open_store({longest});
  ASSERT_NE(store_, nullptr);
  commit({batch(longest.name, {upsert("a", {{"amount", 1.0}})})});
  store_.reset();
  store_ = open_store({longest});
  ASSERT_NE(store_, nullptr);
  auto rec = store_->get(longest.name, "a");
  ASSERT_TRUE(rec.is_ok()) << rec.status().to_string();
  EXPECT_EQ(rec->fields.at("amount"), Value(1.0));
}

TEST_F(QueryStoreTest, SnapshotPagesCoverTheLiveRowsOfAPartition) {
  std::vector<IngestRecord> records;
  for (int i = 0; i < 7; ++i) records.push_back(upsert("k" + std::to_string(i), {}, i % 2 == 0 ? "p1" : "p2"));
  commit({batch("stock", records)});
  ASSERT_TRUE(store_->mark_published("stock", 1, 42).is_ok());

  std::vector<std::string> keys;
  SnapshotRequest req{"stock", "p1", std::nullopt, 3};
  for (int page = 0; page < 10; ++page) {
    auto reply = store_->snapshot_page(req, 1 << 20);
    ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
    EXPECT_EQ(reply->high_seq, 42u);
    EXPECT_EQ(reply->high_version, 7u);
    for (const auto& r : reply->records) keys.push_back(r.key);
    if (reply->done) break;
    req.after_key = reply->records.back().key;
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"k0", "k2", "k4", "k6"}));
}

TEST_F(QueryStoreTest, ReaderSeesTheWritersCommits) {
  QueryStoreOptions ro;
  ro.read_only = true;
  auto reader = QueryStore::open(dir_.file("hub.db"), {price_type(), stock_type()}, ro);
  ASSERT_TRUE(reader.is_ok()) << reader.status().to_string();
  commit({batch("price", {upsert("a", {{"amount", 4.0}})})});
  auto rec = (*reader)->get("price", "a");
  ASSERT_TRUE(rec.is_ok()) << rec.status().to_string();
  EXPECT_EQ(rec->fields.at("amount"), Value(4.0));
  EXPECT_EQ((*reader)->commit({batch("price", {upsert("b", {})})}, 1).status().code(),
            StatusCode::kPermissionDenied);
}

TEST_F(QueryStoreTest, DigestDependsOnRowsAndVersionsNotOnOrder) {
  commit({batch("price", {upsert("a", {}), upsert("b", {})})});
  auto d1 = store_->digest("price", std::nullopt);
  ASSERT_TRUE(d1.is_ok());
  Digest expected;
  expected.add("b", 2);
  expected.add("a", 1);
  EXPECT_EQ(*d1, expected);
  EXPECT_EQ(d1->count, 2u);

  commit({batch("price", {upsert("a", {})})});
  auto d2 = store_->digest("price", std::nullopt);
  EXPECT_NE(*d2, *d1);
  commit({batch("price", {remove("b")})});
  Digest only_a;
  only_a.add("a", 3);
  EXPECT_EQ(*store_->digest("price", std::nullopt), only_a);
}

TEST(DigestTest, RowHashIsStable) {
  // Pinned values: hub, agent and later versions must agree bit for bit.
  EXPECT_EQ(row_hash("a", 1), 0x958050ae2845838cULL);
  EXPECT_EQ(row_hash("store-17/sku-1", 42), 0x416ebfa4687d3527ULL);
  EXPECT_NE(row_hash("a", 1), row_hash("a", 2));
  EXPECT_NE(row_hash("ab", 1), row_hash("a", 1));
  Digest d;
  EXPECT_EQ(d.hex(), "0:0000000000000000");
  d.add("a", 1);
  d.add("a", 1);
  EXPECT_EQ(d.sum, 2 * row_hash("a", 1));
}

// ---- cutting by bytes ----

TEST(BatchCutRuleTest, AChangeJoinsUnlessCountOrBytesWouldBeExceeded) {
  const BatchLimits limits{3, 100};
  EXPECT_TRUE(joins_open_batch(limits, 1, 40, 60));    // exactly full
  EXPECT_FALSE(joins_open_batch(limits, 1, 40, 61));   // one byte over
  EXPECT_FALSE(joins_open_batch(limits, 3, 10, 1));    // count reached
  EXPECT_TRUE(joins_open_batch(limits, 2, 10, 1));
}

// A batch's encoding as the cutting rule counts it.
size_t bound_of(const PendingBatch& b) {
  size_t bytes = delta_batch_overhead(b.delta.type);
  for (const Change& c : b.delta.changes) bytes += encoded_size(c);
  return bytes;
}

std::vector<Change> changes_of(const std::vector<PendingBatch>& batches) {
  std::vector<Change> out;
  for (const PendingBatch& b : batches) out.insert(out.end(), b.delta.changes.begin(), b.delta.changes.end());
  return out;
}

TEST_F(QueryStoreTest, DeltaBatchesAreCutByBytesAndTheLogReadsBackTheSameBatches) {
  store_.reset();
  QueryStoreOptions options;
  options.publish_batch = 500;
  options.max_batch_bytes = 1000;
  store_ = open_store({price_type(), stock_type()}, options);
  std::vector<IngestRecord> records;
  for (int i = 0; i < 20; ++i) {
    records.push_back(upsert("k" + std::to_string(i), {{"currency", std::string(static_cast<size_t>(100 + 20 * i), 'c')}}));
  }
  GroupCommit g = commit_group({batch("price", records)});
  ASSERT_TRUE(g.outcomes[0].status.is_ok());
  ASSERT_GT(g.batches.size(), 5u);
  for (const PendingBatch& b : g.batches) {
    EXPECT_LE(encode(b.delta).size(), 1000u) << b.batch;
    EXPECT_LE(bound_of(b), 1000u) << b.batch;
    EXPECT_EQ(b.batch, b.delta.changes.front().v);
  }
  // Deterministic and stored: the log gives the very same batches.
  auto log = store_->batches_after("price", 0);
  ASSERT_TRUE(log.is_ok());
  ASSERT_EQ(log->size(), g.batches.size());
  for (size_t i = 0; i < log->size(); ++i) {
    EXPECT_EQ(log->at(i).batch, g.batches[i].batch);
    EXPECT_EQ(encode(log->at(i).delta), encode(g.batches[i].delta));
  }
  EXPECT_EQ(changes_of(*log).size(), 20u);

  // The limit is read again before every commit: a larger one, fewer batches.
  store_->set_max_batch_bytes(1 << 20);
  GroupCommit big = commit_group({batch("price", records)});
  EXPECT_EQ(big.batches.size(), 1u);
}

TEST_F(QueryStoreTest, AChangeLargerThanTheLimitGetsABatchOfItsOwn) {
  store_->set_max_batch_bytes(300);
  GroupCommit g = commit_group({batch("price", {upsert("a", {{"amount", 1.0}}),
                                                upsert("huge", {{"currency", std::string(1000, 'x')}}),
                                                upsert("b", {{"amount", 2.0}})})});
  ASSERT_EQ(g.batches.size(), 3u);
  EXPECT_EQ(g.batches[1].delta.changes.size(), 1u);
  EXPECT_EQ(g.batches[1].delta.changes[0].key, "huge");
}

TEST_F(QueryStoreTest, AnUnpublishedBatchIsCutAgainUnderASmallerLimit) {
  std::vector<IngestRecord> records;
  for (int i = 0; i < 10; ++i) records.push_back(upsert("k" + std::to_string(i), {{"currency", std::string(300, 'c')}}));
  GroupCommit g = commit_group({batch("price", records), batch("price", {upsert("next", {{"amount", 1.0}})})});
  ASSERT_EQ(g.batches.size(), 1u);  // one commit, one batch
  const std::vector<Change> before = changes_of(*store_->batches_after("price", 0));

  // It fits: nothing changes.
  auto same = store_->recut_batch("price", 1);
  ASSERT_TRUE(same.is_ok()) << same.status().to_string();
  EXPECT_EQ(*same, 1u);

  // The broker's limit shrank: the unpublished batch becomes several, each
  // within it, the first keeping its id, the changes the same and in order.
  const size_t limit = bound_of(g.batches[0]) / 3;
  store_->set_max_batch_bytes(limit);
  auto parts = store_->recut_batch("price", 1);
  ASSERT_TRUE(parts.is_ok()) << parts.status().to_string();
  EXPECT_GE(*parts, 3u);
  auto log = store_->batches_after("price", 0);
  ASSERT_TRUE(log.is_ok());
  EXPECT_EQ(log->size(), *parts);
  EXPECT_EQ(log->at(0).batch, 1u);
  for (const PendingBatch& b : *log) {
    EXPECT_LE(bound_of(b), std::max(limit, delta_batch_overhead("price") + encoded_size(b.delta.changes[0])));
    EXPECT_EQ(b.batch, b.delta.changes.front().v);
  }
  std::vector<Change> after = changes_of(*log);
  auto by_version = [](const Change& a, const Change& b) { return a.v < b.v; };
  std::vector<Change> sorted_before = before;
  std::sort(sorted_before.begin(), sorted_before.end(), by_version);
  std::sort(after.begin(), after.end(), by_version);
  EXPECT_EQ(after, sorted_before);

  // A published batch is never cut again (the stream holds it under its id).
  ASSERT_TRUE(store_->mark_published("price", log->back().batch, 9).is_ok());
  EXPECT_EQ(store_->recut_batch("price", 1).status().code(), StatusCode::kInternal);
}

TEST_F(QueryStoreTest, SnapshotPagesAreCutByBytesAndStillCoverEveryRow) {
  std::vector<IngestRecord> records;
  for (int i = 0; i < 50; ++i) {
    records.push_back(upsert("k" + std::to_string(100 + i), {{"currency", std::string(200, 'c')}}));
  }
  commit({batch("price", records)});
  const size_t max_bytes = 2000;
  std::vector<std::string> keys;
  SnapshotRequest req{"price", "*", std::nullopt, 10000};
  int pages = 0;
  for (; pages < 100; ++pages) {
    auto reply = store_->snapshot_page(req, max_bytes);
    ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
    EXPECT_LE(encode(*reply).size(), max_bytes);
    ASSERT_FALSE(reply->records.empty());
    for (const auto& r : reply->records) keys.push_back(r.key);
    if (reply->done) break;
    req.after_key = reply->records.back().key;
  }
  EXPECT_GT(pages, 3);
  ASSERT_EQ(keys.size(), 50u);
  EXPECT_EQ(keys.front(), "k100");
  EXPECT_EQ(keys.back(), "k149");

  // A page that ends exactly at the last row says done.
  req.after_key = "k147";
  auto last = store_->snapshot_page(req, max_bytes);
  ASSERT_TRUE(last.is_ok());
  EXPECT_EQ(last->records.size(), 2u);
  EXPECT_TRUE(last->done);
}

TEST_F(QueryStoreTest, ASnapshotRowTooLargeForAnyPageIsAClearError) {
  commit({batch("price", {upsert("a", {{"amount", 1.0}}), upsert("big", {{"currency", std::string(5000, 'x')}})})});
  SnapshotRequest req{"price", "*", std::string("a"), 100};
  auto reply = store_->snapshot_page(req, 2000);
  ASSERT_FALSE(reply.is_ok());
  EXPECT_EQ(reply.status().code(), StatusCode::kInternal);
  EXPECT_NE(reply.status().message().find("row 'big'"), std::string::npos) << reply.status().message();
  EXPECT_NE(reply.status().message().find("max_payload"), std::string::npos) << reply.status().message();
  // The row before it is served alone, not done.
  req.after_key.reset();
  auto first = store_->snapshot_page(req, 2000);
  ASSERT_TRUE(first.is_ok());
  ASSERT_EQ(first->records.size(), 1u);
  EXPECT_FALSE(first->done);
}

}  // namespace
}  // namespace ds
