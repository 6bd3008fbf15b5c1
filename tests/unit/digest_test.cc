// The digest definition of shared/digest.h (docs/protocol.md "Digest"): the
// canonical bytes of each column type, bit for bit, and the hub's
// (QueryStore) and the agent's (Replica) code giving the same digests for
// the same rows, the agent's rows arriving through the real codec.

#include "shared/digest.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "agent/replica.h"
#include "hub/ingest_writer.h"
#include "hub/query_store.h"
#include "shared/codec.h"
#include "testing/temp_dir.h"

namespace ds {
namespace {

using namespace std::string_literals;

std::string le(uint64_t v, int bytes) {
  std::string s;
  for (int i = 0; i < bytes; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return s;
}
std::string counted(std::string_view b) { return le(b.size(), 4) + std::string(b); }

DigestOptions buckets(uint32_t n, std::vector<uint32_t> list = {}, size_t list_max_bytes = 256 * 1024) {
  DigestOptions o;
  o.buckets = n;
  o.list = std::move(list);
  o.list_max_bytes = list_max_bytes;
  return o;
}

StoredCell integer(int64_t v) { return {StoredCell::Kind::kInteger, v, 0, {}}; }
StoredCell real(double v) { return {StoredCell::Kind::kReal, 0, v, {}}; }
StoredCell text(std::string_view v) { return {StoredCell::Kind::kText, 0, 0, v}; }
StoredCell blob(std::string_view v) { return {StoredCell::Kind::kBlob, 0, 0, v}; }
StoredCell null() { return {}; }

std::string row_bytes(std::string_view column, ColumnType type, const StoredCell& cell) {
  CanonicalRow row;
  row.begin("k", 7);
  row.add(column, type, cell);
  return row.bytes();
}
const std::string kRowHead = counted("k") + le(7, 8);

TEST(DigestCanonicalTest, EachColumnTypeIsEncodedBitForBit) {
  EXPECT_EQ(row_bytes("c", ColumnType::kText, text("héllo")), kRowHead + counted("c") + "T" + counted("héllo"));
  EXPECT_EQ(row_bytes("c", ColumnType::kInteger, integer(-2)), kRowHead + counted("c") + "I" + le(uint64_t(-2), 8));
  EXPECT_EQ(row_bytes("c", ColumnType::kReal, real(1.5)), kRowHead + counted("c") + "R" + le(0x3ff8000000000000, 8));
  EXPECT_EQ(row_bytes("c", ColumnType::kBool, integer(1)), kRowHead + counted("c") + "B\x01"s);
  EXPECT_EQ(row_bytes("c", ColumnType::kBool, integer(0)), kRowHead + counted("c") + "B\x00"s);
  EXPECT_EQ(row_bytes("c", ColumnType::kBlob, blob("\x00\xff"s)), kRowHead + counted("c") + "X" + counted("\x00\xff"s));
  EXPECT_EQ(row_bytes("c", ColumnType::kJson, text(R"({"a":1})")), kRowHead + counted("c") + "J" + counted(R"({"a":1})"));
  // NULL contributes nothing: the same as a column the table lacks.
  EXPECT_EQ(row_bytes("c", ColumnType::kText, null()), kRowHead);
}

TEST(DigestCanonicalTest, NegativeZeroIsZeroAndEveryNanIsOne) {
  EXPECT_EQ(row_bytes("c", ColumnType::kReal, real(-0.0)), row_bytes("c", ColumnType::kReal, real(0.0)));
  EXPECT_EQ(row_bytes("c", ColumnType::kReal, real(0.0)), kRowHead + counted("c") + "R" + le(0, 8));
  EXPECT_EQ(row_bytes("c", ColumnType::kReal, real(std::nan("1"))),
            row_bytes("c", ColumnType::kReal, real(-std::numeric_limits<double>::quiet_NaN())));
  EXPECT_EQ(row_bytes("c", ColumnType::kReal, real(std::nan(""))), kRowHead + counted("c") + "R" + le(0x7ff8000000000000, 8));
  EXPECT_NE(row_bytes("c", ColumnType::kReal, real(1.0)), row_bytes("c", ColumnType::kReal, real(-1.0)));
}

TEST(DigestCanonicalTest, AValueOfAnotherStorageClassIsForeignAndNeverEqual) {
  // A business system wrote text into an integer column, 2 into a bool.
  EXPECT_EQ(row_bytes("c", ColumnType::kInteger, text("5")), kRowHead + counted("c") + "?\x03"s + counted("5"));
  EXPECT_EQ(row_bytes("c", ColumnType::kBool, integer(2)), kRowHead + counted("c") + "?\x01"s + le(2, 8));
  EXPECT_EQ(row_bytes("c", ColumnType::kText, integer(5)), kRowHead + counted("c") + "?\x01"s + le(5, 8));
  EXPECT_NE(row_bytes("c", ColumnType::kJson, blob("{}")), row_bytes("c", ColumnType::kJson, text("{}")));
}

TEST(DigestCanonicalTest, ColumnsGoInNameOrderWhateverTheDeclarationOrder) {
  TypeSchema ab;
  ab.key = "id";
  ab.columns = {{"a", ColumnType::kInteger}, {"b", ColumnType::kText}};
  TypeSchema ba = ab;
  std::swap(ba.columns[0], ba.columns[1]);
  const Fields f{{"a", int64_t{1}}, {"b", "x"s}};
  EXPECT_EQ(content_hash("k", 1, ab, f), content_hash("k", 1, ba, f));
  CanonicalRow row;
  row.begin("k", 1);
  row.add("a", ColumnType::kInteger, integer(1));
  row.add("b", ColumnType::kText, text("x"));
  EXPECT_EQ(content_hash("k", 1, ab, f), row.hash());
  // Pinned: a change of the definition must be a deliberate, documented one.
  EXPECT_EQ(row.hash(), zero_key_siphash(counted("k") + le(1, 8) + counted("a") + "I" + le(1, 8) + counted("b") +
                                         "T" + counted("x")));
  EXPECT_EQ(zero_key_siphash(""), 0x1e924b9d737700d7ULL);
  EXPECT_NE(content_hash("k", 1, ab, f), content_hash("k", 2, ab, f));
  EXPECT_NE(content_hash("k", 1, ab, f), content_hash("k", 1, ab, {{"a", int64_t{1}}, {"b", "y"s}}));
}

TEST(DigestCanonicalTest, BucketsSplitKeysAndStayInRange) {
  EXPECT_EQ(key_bucket("anything", 1), 0u);
  std::vector<int> seen(16, 0);
  for (int i = 0; i < 1000; ++i) {
    const uint32_t b = key_bucket("key-" + std::to_string(i), 16);
    ASSERT_LT(b, 16u);
    ++seen[b];
  }
  for (int n : seen) EXPECT_GT(n, 20);
  EXPECT_EQ(key_bucket("a", 1024), key_bucket("a", 1024));
}

TEST(DigestWireTest, NewKeysRoundTripAndOldMessagesStillDecode) {
  DigestRequest request;
  request.types = {"thing"};
  request.buckets = 64;
  request.list = {3, 63};
  auto back = decode_digest_request(encode(request));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, request);
  request.list = {64};
  EXPECT_EQ(decode_digest_request(encode(request)).status().code(), StatusCode::kInvalidArgument);

  DigestReply reply;
  reply.agent = "store-1";
  TypeDigest d;
  d.rows = 2;
  d.digest = "2:0000000000000001";
  d.content = "2:00000000000000ff";
  d.buckets = {{1, 0xffffffffffffffffULL}, {1, 7}};
  d.listed = {{"a", 1}, {"b", 2}};
  d.listed_truncated = true;
  reply.types["thing"] = d;
  auto reply_back = decode_digest_reply(encode(reply));
  ASSERT_TRUE(reply_back.is_ok()) << reply_back.status().to_string();
  EXPECT_EQ(*reply_back, reply);

  // What an agent of the first release sends: no content, no buckets.
  TypeDigest old;
  old.rows = 1;
  old.digest = "1:0000000000000001";
  reply.types["thing"] = old;
  reply_back = decode_digest_reply(encode(reply));
  ASSERT_TRUE(reply_back.is_ok());
  EXPECT_EQ(reply_back->types.at("thing").content, "");
  EXPECT_TRUE(reply_back->types.at("thing").buckets.empty());
}

// The hub's store and an agent's replica fed the same ingest, the agent
// through the encoded delta batches, as on the wire.
class HubAndAgentDigestTest : public ::testing::Test {
 protected:
  static TypeConfig thing_type() {
    TypeConfig t;
    t.name = "thing";
    t.schema.key = "id";
    t.schema.partition = "store";
    t.schema.columns = {{"store", ColumnType::kText}, {"name", ColumnType::kText},   {"qty", ColumnType::kInteger},
                        {"price", ColumnType::kReal}, {"active", ColumnType::kBool}, {"image", ColumnType::kBlob},
                        {"attrs", ColumnType::kJson}};
    return t;
  }

  void SetUp() override {
    auto store = QueryStore::open(dir_.file("hub.db"), {thing_type()});
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    store_ = std::move(store).value();
    auto replica = Replica::open(dir_.file("replica.db"));
    ASSERT_TRUE(replica.is_ok()) << replica.status().to_string();
    replica_ = std::move(replica).value();
    ASSERT_TRUE(replica_->ensure_table("thing", thing_type().schema).is_ok());
  }

  // JSON ingest, validated as the ingest writer does, committed, and the
  // resulting delta batches applied on the agent after an encode/decode.
  void ingest(const std::string& json_records) {
    auto records = decode_ingest_records_json(json_records);
    ASSERT_TRUE(records.is_ok()) << records.status().to_string();
    auto rejected = validate_ingest_records(thing_type(), *records, message_body_limit(kDefaultMaxPayload));
    ASSERT_FALSE(rejected.has_value()) << rejected->status.to_string();
    auto group = store_->commit({CommitBatch{"thing", "", std::nullopt, std::move(*records), {}}}, 5000);
    ASSERT_TRUE(group.is_ok()) << group.status().to_string();
    ASSERT_TRUE(group->outcomes.at(0).status.is_ok()) << group->outcomes.at(0).status.to_string();
    for (const PendingBatch& b : group->batches) {
      auto wire = decode_delta_batch(encode(b.delta));
      ASSERT_TRUE(wire.is_ok()) << wire.status().to_string();
      auto applied = replica_->apply("thing", wire->changes, ++seq_);
      ASSERT_TRUE(applied.is_ok()) << applied.status().to_string();
      ASSERT_EQ(applied->quarantined, 0u);
    }
  }

  TableDigest hub(const std::optional<std::string>& partition, DigestOptions options = {}) {
    auto d = store_->table_digest("thing", partition, options);
    EXPECT_TRUE(d.is_ok()) << d.status().to_string();
    return d.is_ok() ? *d : TableDigest{};
  }
  TableDigest agent(DigestOptions options = {}) {
    auto d = replica_->table_digest("thing", options);
    EXPECT_TRUE(d.is_ok()) << d.status().to_string();
    return d.is_ok() ? *d : TableDigest{};
  }

  TempDir dir_{"digest-test"};
  std::unique_ptr<QueryStore> store_;
  std::unique_ptr<Replica> replica_;
  uint64_t seq_ = 0;
};

constexpr const char* kRows = R"([
  {"key": "a", "op": "upsert", "fields": {"store": "s1", "name": "Äpfel", "qty": 3, "price": -0.0, "active": true,
   "image": "AP8=", "attrs": {"z": [1, 2.5, {"y": null}], "a": "x"}}},
  {"key": "b", "op": "upsert", "fields": {"store": "s1", "qty": -9223372036854775808, "price": 7, "active": false,
   "attrs": { "b" : 1 ,"a":[ ] }}},
  {"key": "c", "op": "upsert", "fields": {"store": "s1", "name": "", "price": 1e308, "attrs": 5}},
  {"key": "d", "op": "upsert", "fields": {"store": "s1", "name": "gone"}},
  {"key": "d", "op": "delete"}
])";

TEST_F(HubAndAgentDigestTest, SameRowsGiveTheSameDigestsOnHubAndAgent) {
  ingest(kRows);
  // A patch: only some columns change.
  ingest(R"([{"key": "a", "op": "upsert", "fields": {"qty": 4, "attrs": {"b": true, "a": [ ]}}}])");
  const TableDigest h = hub("s1", buckets(4, {0, 1, 2, 3}));
  const TableDigest g = agent(buckets(4, {0, 1, 2, 3}));
  EXPECT_EQ(h.content.count, 3u);
  EXPECT_EQ(h.content, g.content);
  EXPECT_EQ(h.keys, g.keys);
  EXPECT_EQ(h.buckets, g.buckets);
  EXPECT_EQ(h.listed, g.listed);
  ASSERT_EQ(h.listed.size(), 3u);
  EXPECT_EQ(h.listed[0].key, "a");
  // The stored JSON is the compact, key-sorted text on both sides.
  auto rec = store_->get("thing", "a");
  ASSERT_TRUE(rec.is_ok());
  EXPECT_EQ(std::get<JsonText>(rec->fields.at("attrs")).text, R"({"a":[],"b":true})");
  EXPECT_EQ(std::get<JsonText>(replica_->row("thing", "a")->at("attrs")).text, R"({"a":[],"b":true})");
  EXPECT_EQ(std::get<JsonText>(replica_->row("thing", "b")->at("attrs")).text, R"({"a":[],"b":1})");
  // And equal to content_hash over the hub's stored values.
  Digest from_values;
  auto stored = store_->list("thing", std::string("s1"), std::nullopt, 100);
  ASSERT_TRUE(stored.is_ok());
  for (const StoredRecord& r : *stored) {
    from_values.add_hash(content_hash(r.key, r.version, thing_type().schema, r.fields));
  }
  EXPECT_EQ(from_values, h.content);
}

TEST_F(HubAndAgentDigestTest, RowOrderDoesNotMatter) {
  ingest(R"([{"key": "a", "op": "upsert", "fields": {"store": "s1", "qty": 1}},
             {"key": "b", "op": "upsert", "fields": {"store": "s1", "qty": 2}}])");
  TempDir other("digest-test-other");
  auto replica = Replica::open(other.file("replica.db"));
  ASSERT_TRUE(replica.is_ok());
  ASSERT_TRUE((*replica)->ensure_table("thing", thing_type().schema).is_ok());
  const std::vector<Change> reversed{{2, "b", Op::kUpsert, {{"store", "s1"s}, {"qty", int64_t{2}}}, 0, 0},
                                     {1, "a", Op::kUpsert, {{"store", "s1"s}, {"qty", int64_t{1}}}, 0, 0}};
  ASSERT_TRUE((*replica)->apply("thing", reversed, 1).is_ok());
  EXPECT_EQ((*replica)->table_digest("thing")->content, hub("s1").content);
  EXPECT_EQ(agent().content, hub("s1").content);
}

TEST_F(HubAndAgentDigestTest, OneChangedFieldChangesTheContentDigestAndItsBucketOnly) {
  ingest(kRows);
  ASSERT_EQ(agent().content, hub("s1").content);
  // A business system writes into the replica: same key, same version.
  ASSERT_TRUE(replica_->db().exec("UPDATE thing SET qty = 99 WHERE id = 'b'").is_ok());
  const TableDigest h = hub("s1", buckets(8));
  const TableDigest g = agent(buckets(8));
  EXPECT_EQ(h.keys, g.keys) << "the keys digest cannot see it";
  EXPECT_NE(h.content, g.content);
  EXPECT_EQ(h.content.count, g.content.count);
  std::vector<uint32_t> differing;
  for (uint32_t b = 0; b < 8; ++b) {
    if (!(h.buckets[b] == g.buckets[b])) differing.push_back(b);
  }
  ASSERT_EQ(differing, std::vector<uint32_t>{key_bucket("b", 8)});
  const TableDigest hl = hub("s1", buckets(8, differing));
  const TableDigest gl = agent(buckets(8, differing));
  ASSERT_EQ(hl.listed.size(), gl.listed.size());
  for (size_t i = 0; i < hl.listed.size(); ++i) {
    EXPECT_EQ(hl.listed[i].key, gl.listed[i].key);
    EXPECT_EQ(hl.listed[i].hash != gl.listed[i].hash, hl.listed[i].key == "b") << hl.listed[i].key;
  }
  // A type change of the stored value (text in an integer column) is seen too.
  ASSERT_TRUE(replica_->db().exec("UPDATE thing SET qty = 'many' WHERE id = 'a'").is_ok());
  EXPECT_NE(agent(buckets(8)).buckets[key_bucket("a", 8)], h.buckets[key_bucket("a", 8)]);
}

TEST_F(HubAndAgentDigestTest, ListingStopsAtItsByteLimitInKeyOrder) {
  std::string rows = "[";
  for (int i = 0; i < 50; ++i) {
    rows += std::string(i ? "," : "") + R"({"key": "k)" + std::to_string(100 + i) + R"(", "op": "upsert", "fields": {"store": "s1"}})";
  }
  ingest(rows + "]");
  const TableDigest all = agent(buckets(1, {0}));
  EXPECT_EQ(all.listed.size(), 50u);
  EXPECT_FALSE(all.listed_truncated);
  const TableDigest some = agent(buckets(1, {0}, 10 * 12));
  EXPECT_TRUE(some.listed_truncated);
  ASSERT_EQ(some.listed.size(), 10u);
  EXPECT_EQ(some.listed.back().key, "k109");
  EXPECT_EQ(replica_->table_digest("thing", buckets(2, {2})).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(replica_->table_digest("thing", buckets(kMaxDigestBuckets + 1)).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ds
