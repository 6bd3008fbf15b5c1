// StandbyFollower over the in-memory broker (tests/harness/fake_env.h): an
// "active" store commits and its StreamPublisher publishes, a "standby"
// store follows the same streams; both are real SQLite files. Also the
// header Ds-Retry-Keys (hub/retry_key_header.h) the follower relies on.

#include "hub/standby_follower.h"

#include <gtest/gtest.h>

#include "hub/hub_metrics.h"
#include "hub/retry_key_header.h"
#include "hub/stream_publisher.h"
#include "shared/names.h"
#include "tests/harness/fake_env.h"
#include "testing/temp_dir.h"

namespace ds {
namespace {

using ds::testing::FakeStreamAccess;

IngestRecord stock(const std::string& key, int64_t qty, const std::string& store) {
  IngestRecord r;
  r.key = key;
  r.op = Op::kUpsert;
  r.fields = {{"qty", Value(qty)}};
  r.partition = store;
  return r;
}

// A records digest of the size a real one has (BLAKE2b-128), told apart by `n`.
std::string digest(uint64_t n) {
  std::string d = "digest-" + std::to_string(n);
  d.resize(16, '.');
  return d;
}

class StandbyFollowerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TypeConfig t;
    t.name = "stock";
    t.schema.key = "sku";
    t.schema.columns = {{"qty", ColumnType::kInteger}, {"store", ColumnType::kText}};
    t.schema.partition = "store";
    config_.types = {t};
    active_ = open(dir_.file("active.db"));
    standby_ = open(dir_.file("standby.db"));
    publisher_ = std::make_unique<StreamPublisher>(broker_, *active_, config_, metrics_);
    ASSERT_TRUE(publisher_->ensure_streams().is_ok());
    ASSERT_TRUE(publisher_->reconcile().is_ok());
  }

  std::unique_ptr<QueryStore> open(const std::string& path) {
    auto store = QueryStore::open(path, config_.types);
    EXPECT_TRUE(store.is_ok()) << store.status().to_string();
    return store.is_ok() ? std::move(store).value() : nullptr;
  }

  // Commits one ingest batch on the active store; publishes it when asked.
  BatchOutcome commit(std::vector<IngestRecord> records, const std::string& producer, uint64_t seq,
                      bool publish = true, QueryStore* on = nullptr) {
    CommitBatch b{"stock", producer, seq, std::move(records), digest(seq)};
    auto done = (on != nullptr ? on : active_.get())->commit({b}, ++hub_ts_);
    EXPECT_TRUE(done.is_ok()) << done.status().to_string();
    if (!done.is_ok()) return {};
    if (publish) {
      Status s = publisher_->publish("stock", done->batches);
      EXPECT_TRUE(s.is_ok()) << s.to_string();
    }
    return done->outcomes.at(0);
  }

  // Rounds until caught up (bounded).
  void follow(StandbyFollower& f) {
    for (int i = 0; i < 20; ++i) {
      auto n = f.follow_round();
      ASSERT_TRUE(n.is_ok()) << n.status().to_string();
      if (f.caught_up()) return;
    }
    FAIL() << "not caught up after 20 rounds";
  }

  std::string digest_of(QueryStore& s) {
    auto d = s.table_digest("stock", std::nullopt);
    EXPECT_TRUE(d.is_ok());
    return d.is_ok() ? d->content.hex() : "";
  }

  ds::TempDir dir_{"standby-follower-test"};
  HubConfig config_;
  HubMetrics metrics_;
  FakeStreamAccess broker_;
  std::unique_ptr<QueryStore> active_;
  std::unique_ptr<QueryStore> standby_;
  std::unique_ptr<StreamPublisher> publisher_;
  int64_t hub_ts_ = 1000;
};

TEST(RetryKeyHeaderTest, RoundTripsEscapedProducersAndKeysWithoutDigest) {
  std::vector<ProducerRetryKey> keys = {
      {"erp", 7, RetryKey{1, 3, std::string("\x00\xff\x10\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d", 16)}},
      {"a b/c%", 8, RetryKey{4, 4, std::nullopt}},
  };
  const std::string value = encode_retry_keys(keys);
  EXPECT_EQ(value.find('\n'), std::string::npos);
  EXPECT_EQ(value, "erp/7/1/3/00ff100102030405060708090a0b0c0d a%20b%2fc%25/8/4/4/-");
  auto back = decode_retry_keys(value);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, keys);
  // The bound holds for the largest entry: every producer byte escaped, the
  // largest numbers, a 16-byte digest, and the space before it.
  const ProducerRetryKey worst{std::string(64, '\xff'), UINT64_MAX,
                               RetryKey{UINT64_MAX - 1, UINT64_MAX, std::string(16, '\x7f')}};
  EXPECT_LE(encode_retry_keys({worst}).size() + 1, retry_key_header_bound(worst.producer));
  EXPECT_GT(encode_retry_keys({worst}).size() + 1, retry_key_header_bound(worst.producer) - 8) << "a tight bound";
}

TEST(RetryKeyHeaderTest, RefusesMalformedEntriesNamingThem) {
  for (const char* bad : {"erp/7/1/3", "erp/x/1/3/-", "erp/7/3/1/-", "erp/7/0/1/-", "/7/1/3/-", "e%2/7/1/3/-",
                          "erp/7/1/3/abc", "erp/7/1/3/ZZ", "erp/7/1/3/00ff", "e p/7/1/3/-"}) {
    auto r = decode_retry_keys(bad);
    EXPECT_FALSE(r.is_ok()) << bad;
    if (!r.is_ok()) {
      EXPECT_NE(r.status().message().find("Ds-Retry-Keys entry 1"), std::string::npos) << bad;
    }
  }
}

TEST_F(StandbyFollowerTest, CopiesTheActiveStoreAndItsRetryKeysFromTheStream) {
  BatchOutcome first = commit({stock("a", 1, "s1"), stock("b", 2, "s2"), stock("c", 3, "s1")}, "erp", 1);
  BatchOutcome second = commit({stock("b", 5, "s2")}, "erp", 2);
  commit({stock("d", 4, "s3")}, "", 0);
  StandbyFollower follower(broker_, *standby_, config_);
  follow(follower);

  EXPECT_EQ(digest_of(*standby_), digest_of(*active_));
  auto a = active_->type_state("stock");
  auto s = standby_->type_state("stock");
  ASSERT_TRUE(a.is_ok() && s.is_ok());
  EXPECT_EQ(s->version, a->version);
  EXPECT_EQ(s->published_seq, a->published_seq);
  EXPECT_EQ(s->published_version, a->version);

  // A retry of an acknowledged batch gets the original range from the
  // standby; the same seq with other records is refused.
  BatchOutcome retried = commit({stock("a", 1, "s1"), stock("b", 2, "s2"), stock("c", 3, "s1")}, "erp", 1,
                                /*publish=*/false, standby_.get());
  EXPECT_TRUE(retried.retried);
  EXPECT_EQ(retried.first_version, first.first_version);
  EXPECT_EQ(retried.last_version, first.last_version);
  CommitBatch other{"stock", "erp", 2, {stock("z", 9, "s1")}, digest(99)};
  auto refused = standby_->commit({other}, ++hub_ts_);
  ASSERT_TRUE(refused.is_ok());
  EXPECT_EQ(refused->outcomes[0].status.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(refused->outcomes[0].status.message().find(std::to_string(second.first_version)), std::string::npos);
}

TEST_F(StandbyFollowerTest, FollowsAsTheActiveGoesOnAndReadsAFarStreamOverSeveralRounds) {
  StandbyFollower follower(broker_, *standby_, config_);
  follow(follower);  // empty stream: caught up at once
  for (uint64_t i = 1; i <= StandbyFollower::kMessagesPerRound + 200; ++i) {
    commit({stock("k" + std::to_string(i % 50), static_cast<int64_t>(i), "s" + std::to_string(i % 50 % 3))}, "erp",
           i);
  }
  auto n = follower.follow_round();
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  EXPECT_EQ(*n, StandbyFollower::kMessagesPerRound);
  EXPECT_FALSE(follower.caught_up());
  follow(follower);
  EXPECT_EQ(digest_of(*standby_), digest_of(*active_));
  commit({stock("late", 1, "s1")}, "erp", 5000);
  follow(follower);
  EXPECT_EQ(digest_of(*standby_), digest_of(*active_));
}

TEST_F(StandbyFollowerTest, StoresOnlyWhatContinuesTheHeadWhenAPartitionsBatchIsNotPublishedYet) {
  // One commit, two partitions: batch 1 holds versions 1 and 3, batch 2
  // version 2. Only batch 1 reaches the stream at first (the follower reads
  // while the active's publication is under way).
  const std::vector<IngestRecord> records = {stock("a", 1, "s1"), stock("b", 2, "s2"), stock("c", 3, "s1")};
  commit(records, "erp", 1);
  const std::vector<StoredMessage> published = broker_.messages(stream_name("stock"));
  ASSERT_EQ(published.size(), 2u);
  broker_.delete_stream(stream_name("stock"));
  broker_.append(stream_name("stock"), published[0]);
  StandbyFollower follower(broker_, *standby_, config_);
  ASSERT_TRUE(follower.follow_round().is_ok());
  EXPECT_FALSE(follower.caught_up());
  auto st = standby_->type_state("stock");
  ASSERT_TRUE(st.is_ok());
  EXPECT_EQ(st->version, 1u) << "version 3 waits for version 2";
  EXPECT_EQ(st->published_seq, 0u) << "message 1 is not stored whole";

  broker_.append(stream_name("stock"), published[1]);
  follow(follower);
  EXPECT_EQ(digest_of(*standby_), digest_of(*active_));
  BatchOutcome retried = commit(records, "erp", 1, false, standby_.get());
  EXPECT_TRUE(retried.retried) << "the key came with the batch of version 3, stored in the second round";
}

TEST_F(StandbyFollowerTest, AStoreThatCommittedOtherChangesAtTheSameVersionsCannotFollow) {
  // The standby was active once: it committed version 1 and never published it.
  commit({stock("mine", 1, "s1")}, "erp", 1, /*publish=*/false, standby_.get());
  commit({stock("theirs", 2, "s1")}, "erp", 1);
  StandbyFollower follower(broker_, *standby_, config_);
  auto n = follower.follow_round();
  ASSERT_FALSE(n.is_ok());
  EXPECT_EQ(n.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(n.status().message().find("version 1"), std::string::npos) << n.status().message();
  EXPECT_NE(n.status().message().find("'mine'"), std::string::npos) << n.status().message();
  EXPECT_NE(n.status().message().find("backup of the active hub's"), std::string::npos) << n.status().message();
}

TEST_F(StandbyFollowerTest, ItsOwnUnacknowledgedCommitsThatTheStreamHoldsAreKept) {
  // This store published version 1 but crashed before marking it: the stream
  // holds it, the store's mark does not say so.
  auto done = standby_->commit({CommitBatch{"stock", "erp", 1, {stock("a", 1, "s1")}, digest(1)}}, ++hub_ts_);
  ASSERT_TRUE(done.is_ok());
  StreamPublisher standby_publisher(broker_, *standby_, config_, metrics_);
  ASSERT_TRUE(standby_publisher.publish("stock", done->batches).is_ok());
  ASSERT_TRUE(standby_->mark_published("stock", 0, 0).is_ok());
  StandbyFollower follower(broker_, *standby_, config_);
  follow(follower);
  auto st = standby_->type_state("stock");
  ASSERT_TRUE(st.is_ok());
  EXPECT_EQ(st->version, 1u);
  EXPECT_EQ(st->published_seq, 1u);
}

TEST_F(StandbyFollowerTest, ABatchInTheStreamTwiceRecordsItsRetryKeyOnce) {
  commit({stock("a", 1, "s1")}, "erp", 1);
  // Republished after its ack was lost, past the duplicate window.
  broker_.append(stream_name("stock"), broker_.messages(stream_name("stock")).back());
  commit({stock("b", 2, "s1")}, "erp", 2);
  StandbyFollower follower(broker_, *standby_, config_);
  follow(follower);
  EXPECT_EQ(digest_of(*standby_), digest_of(*active_));
  EXPECT_TRUE(commit({stock("a", 1, "s1")}, "erp", 1, false, standby_.get()).retried);
}

TEST_F(StandbyFollowerTest, AStreamThatLostMessagesItHadNotReadIsAGap) {
  commit({stock("a", 1, "s1")}, "erp", 1);
  commit({stock("b", 2, "s1")}, "erp", 2);
  // The stream drops its first message (max_age) before the standby read it.
  broker_.age_out(stream_name("stock"), 1);
  StandbyFollower follower(broker_, *standby_, config_);
  auto n = follower.follow_round();
  ASSERT_FALSE(n.is_ok());
  EXPECT_EQ(n.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(n.status().message().find("does not hold version 1"), std::string::npos) << n.status().message();
}

}  // namespace
}  // namespace ds
