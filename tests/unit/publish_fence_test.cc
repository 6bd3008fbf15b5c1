// The HA fence of StreamPublisher (hub/stream_publisher.h, "Fencing") over
// the in-memory broker, which checks Nats-Expected-Last-Sequence as
// JetStream does: an old active's publication after a takeover is refused
// and it is told to step down; its own lost acks are not mistaken for
// another hub; a lease that ran out publishes nothing.

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <string>
#include <vector>

#include "hub/hub_metrics.h"
#include "hub/ingest_writer.h"
#include "hub/standby_follower.h"
#include "hub/stream_publisher.h"
#include "shared/names.h"
#include "tests/harness/fake_env.h"
#include "testing/temp_dir.h"

namespace ds {
namespace {

using ds::testing::FakeStreamAccess;

// A records digest of a real one's size (BLAKE2b-128).
const std::string kDigest(16, 'd');

// One hub: its store, its publisher and what its fence was told.
struct TestHub {
  std::unique_ptr<QueryStore> store;
  std::unique_ptr<StreamPublisher> publisher;
  bool lease_valid = true;
  std::vector<std::string> fenced;
  int64_t hub_ts = 1000;
};

class PublishFenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TypeConfig t;
    t.name = "prices";
    t.schema.key = "sku";
    t.schema.columns = {{"price", ColumnType::kReal}};
    config_.types = {t};
  }

  std::unique_ptr<TestHub> make_hub(const std::string& name, FaultHook faults = {}) {
    auto hub = std::make_unique<TestHub>();
    auto store = QueryStore::open(dir_.file(name + ".db"), config_.types);
    EXPECT_TRUE(store.is_ok()) << store.status().to_string();
    hub->store = std::move(store).value();
    hub->publisher = std::make_unique<StreamPublisher>(broker_, *hub->store, config_, metrics_, std::move(faults));
    TestHub* h = hub.get();
    hub->publisher->set_fence(PublishFence{name + "/0001", [h] { return h->lease_valid; },
                                           [h](const std::string& why) { h->fenced.push_back(why); }});
    EXPECT_TRUE(hub->publisher->ensure_streams().is_ok());
    return hub;
  }

  // Commits records on `hub` and publishes them; the publication's status.
  Status ingest(TestHub& hub, const std::string& key, double price) {
    return ingest(hub, {IngestRecord{key, Op::kUpsert, {{"price", price}}, {}, {}}});
  }
  Status ingest(TestHub& hub, std::vector<IngestRecord> records, const std::string& type = "prices") {
    CommitBatch b{type, "erp", ++seq_, std::move(records), kDigest};
    auto done = hub.store->commit({b}, ++hub.hub_ts);
    EXPECT_TRUE(done.is_ok()) << done.status().to_string();
    return hub.publisher->publish(type, done->batches);
  }

  std::vector<StoredMessage> stream(const std::string& type = "prices") {
    return broker_.messages(stream_name(type));
  }
  // A one-record batch of `type` sent to `writer`, and its reply.
  static std::future<IngestReply> submit(IngestWriter& writer, const std::string& type, const std::string& key,
                                         uint64_t seq) {
    auto reply = std::make_shared<std::promise<IngestReply>>();
    writer.submit(type, IngestRequest{"erp", seq, {IngestRecord{key, Op::kUpsert, {{"price", 1.0}}, {}, {}}}},
                  [reply](const IngestReply& r) { reply->set_value(r); });
    return reply->get_future();
  }
  static IngestReply wait(std::future<IngestReply>& f) {
    EXPECT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    return f.get();
  }
  uint64_t head(TestHub& hub, const std::string& type) {
    auto st = hub.store->type_state(type);
    EXPECT_TRUE(st.is_ok()) << st.status().to_string();
    return st.is_ok() ? st->version : 0;
  }

  // `a` publishes version 1; `b` follows the stream and claims it.
  void take_over(TestHub& a, TestHub& b) {
    ASSERT_TRUE(a.publisher->reconcile().is_ok());
    ASSERT_TRUE(ingest(a, "k1", 1).is_ok());
    StandbyFollower follower(broker_, *b.store, config_);
    ASSERT_TRUE(follower.follow_round().is_ok());
    ASSERT_TRUE(b.publisher->claim_streams().is_ok());
  }

  ds::TempDir dir_{"publish-fence-test"};
  HubConfig config_;
  HubMetrics metrics_;
  FakeStreamAccess broker_;
  uint64_t seq_ = 0;
};

TEST_F(PublishFenceTest, EveryMessageNamesItsHubAndFollowsTheOneBefore) {
  auto a = make_hub("a");
  ASSERT_TRUE(a->publisher->claim_streams().is_ok()) << "an empty stream needs no claim";
  ASSERT_TRUE(a->publisher->reconcile().is_ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(ingest(*a, "k" + std::to_string(i), i).is_ok());
  ASSERT_EQ(stream().size(), 5u);
  for (const StoredMessage& m : stream()) EXPECT_EQ(m.header("Ds-Hub"), "a/0001");
  EXPECT_TRUE(a->fenced.empty());
}

TEST_F(PublishFenceTest, ALeaseThatRanOutPublishesNothing) {
  auto a = make_hub("a");
  ASSERT_TRUE(a->publisher->reconcile().is_ok());
  a->lease_valid = false;
  Status s = ingest(*a, "k", 1);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.to_string();
  EXPECT_NE(s.message().find("lease has run out"), std::string::npos) << s.message();
  EXPECT_TRUE(stream().empty());
}

TEST_F(PublishFenceTest, AnOldActiveIsRefusedAfterATakeoverAndToldToStepDown) {
  auto a = make_hub("a");
  ASSERT_TRUE(a->publisher->reconcile().is_ok());
  ASSERT_TRUE(ingest(*a, "k1", 1).is_ok());
  ASSERT_TRUE(ingest(*a, "k2", 2).is_ok());

  // b follows, takes over and claims the stream; a was only paused.
  auto b = make_hub("b");
  StandbyFollower follower(broker_, *b->store, config_);
  ASSERT_TRUE(follower.follow_round().is_ok());
  ASSERT_TRUE(follower.caught_up());
  ASSERT_TRUE(b->publisher->claim_streams().is_ok());
  ASSERT_TRUE(b->publisher->reconcile().is_ok());
  ASSERT_EQ(stream().size(), 3u);
  EXPECT_EQ(stream().back().header("Ds-Hub"), "b/0001");
  EXPECT_EQ(*stream().back().msg_id, "prices:2:b/0001") << "a copy of the last batch, under b";

  // a resumes and publishes its next commit: refused, and told why.
  Status s = ingest(*a, "k3", 3);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.to_string();
  ASSERT_EQ(a->fenced.size(), 1u);
  EXPECT_NE(a->fenced[0].find("from hub b/0001"), std::string::npos) << a->fenced[0];
  ASSERT_EQ(stream().size(), 3u) << "nothing of a's after the claim";

  // b goes on right after its claim: version 3 is b's.
  ASSERT_TRUE(ingest(*b, "k3b", 30).is_ok());
  ASSERT_EQ(stream().size(), 4u);
  auto st = b->store->type_state("prices");
  ASSERT_TRUE(st.is_ok());
  EXPECT_EQ(st->version, 3u);
  EXPECT_EQ(st->published_seq, 4u);
  EXPECT_TRUE(b->fenced.empty());

  // A reconcile of a (its broker connection came back) does not take b's
  // changes as its own: it is fenced again.
  Status r = a->publisher->reconcile();
  EXPECT_FALSE(r.is_ok());
  EXPECT_EQ(a->fenced.size(), 2u);
}

// A round of several batches after a claim: the first is refused, and so
// is every one after it (each expects the one before), though the second's
// expected sequence would be the claim's.
TEST_F(PublishFenceTest, NothingOfARoundAfterItsRefusedFirstBatchLands) {
  auto a = make_hub("a");
  auto b = make_hub("b");
  ASSERT_NO_FATAL_FAILURE(take_over(*a, *b));
  ASSERT_EQ(stream().size(), 2u);
  // Two commits of a published in one round: two batches.
  CommitBatch group{"prices", "erp", ++seq_, {}, kDigest};
  for (int i = 0; i < 3; ++i) group.records.push_back(IngestRecord{"r" + std::to_string(i), Op::kUpsert,
                                                                   {{"price", 1.0 * i}}, {}, {}});
  auto done = a->store->commit({group}, ++a->hub_ts);
  ASSERT_TRUE(done.is_ok());
  auto second = a->store->commit({CommitBatch{"prices", "erp", ++seq_, {IngestRecord{"r9", Op::kUpsert,
                                                                                     {{"price", 9.0}}, {}, {}}},
                                              kDigest}},
                                 ++a->hub_ts);
  ASSERT_TRUE(second.is_ok());
  std::vector<PendingBatch> both = done->batches;
  both.insert(both.end(), second->batches.begin(), second->batches.end());
  ASSERT_EQ(both.size(), 2u);
  Status s = a->publisher->publish("prices", both);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.to_string();
  EXPECT_EQ(a->fenced.size(), 1u);
  ASSERT_EQ(stream().size(), 2u) << "neither batch of the round landed after the claim";
}

// The new active's first batch has the number the old active's pending one
// has: JetStream checks duplicate ids before expectations, so the ids must
// differ, and the old active's batch is refused, not taken for a duplicate.
TEST_F(PublishFenceTest, TheOldActivesBatchIsNotADuplicateOfTheNewActivesSameNumberedOne) {
  auto a = make_hub("a");
  auto b = make_hub("b");
  ASSERT_NO_FATAL_FAILURE(take_over(*a, *b));
  ASSERT_TRUE(b->publisher->reconcile().is_ok());
  ASSERT_TRUE(ingest(*b, "from-b", 2).is_ok());  // version 2 on b
  Status s = ingest(*a, "from-a", 3);             // version 2 on a
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.to_string();
  EXPECT_EQ(a->fenced.size(), 1u);
  ASSERT_EQ(stream().size(), 3u);
  EXPECT_EQ(stream().back().header("Ds-Hub"), "b/0001");
  EXPECT_EQ(*stream().back().msg_id, "prices:2:b/0001");
}

TEST_F(PublishFenceTest, ItsOwnMessagesWhoseAcksWereLostAreNotAnotherHub) {
  auto a = make_hub("a");
  ASSERT_TRUE(a->publisher->reconcile().is_ok());
  ASSERT_TRUE(ingest(*a, "k1", 1).is_ok());
  // The stream took batch 2 but its ack was lost: the mark stays at 1.
  ASSERT_TRUE(ingest(*a, "k2", 2).is_ok());
  ASSERT_TRUE(a->store->mark_published("prices", 1, 1).is_ok());
  ASSERT_TRUE(ingest(*a, "k3", 3).is_ok());
  EXPECT_TRUE(a->fenced.empty());
  ASSERT_EQ(stream().size(), 3u);
  auto st = a->store->type_state("prices");
  ASSERT_TRUE(st.is_ok());
  EXPECT_EQ(st->published_seq, 3u);
}

// The ingest writer of a fenced hub keeps a group only once the stream has
// it: a group the fence refuses is not stored at all, so the hub's store
// never holds what another hub may have committed at the same versions.
TEST_F(PublishFenceTest, TheWriterDropsAGroupTheFenceRefusedAndKeepsOneTheBrokerFailed) {
  auto a = make_hub("a");
  IngestWriter writer(config_, *a->store, *a->publisher, metrics_);
  writer.start();
  auto send = [&](const std::string& key, uint64_t seq) {
    auto reply = submit(writer, "prices", key, seq);
    return wait(reply);
  };

  IngestReply ok = send("k1", 1);
  EXPECT_FALSE(ok.error) << ok.error->message;
  EXPECT_EQ(head(*a, "prices"), 1u);

  a->lease_valid = false;
  IngestReply refused = send("k2", 2);
  ASSERT_TRUE(refused.error);
  EXPECT_EQ(refused.error->code, StatusCode::kUnavailable);
  EXPECT_NE(refused.error->message.find("no longer the active one"), std::string::npos) << refused.error->message;
  EXPECT_EQ(head(*a, "prices"), 1u) << "the refused group is not stored";
  EXPECT_EQ(stream().size(), 1u);

  a->lease_valid = true;
  broker_.set_ack_failure(Status::unavailable("fake broker: no ack"));
  IngestReply unacked = send("k2", 2);
  ASSERT_TRUE(unacked.error);
  EXPECT_NE(unacked.error->message.find("stored as versions 2..2"), std::string::npos) << unacked.error->message;
  EXPECT_EQ(head(*a, "prices"), 2u) << "a broker failure keeps the group: it may have reached the stream";
  writer.stop();
}

// A group of two types: the stream of the first takes its batch, the fence
// refuses the second's (another hub claimed that stream). The writer drops
// the whole group: the hub steps down, and its store must hold nothing a
// stream lacks, or, started again as a standby, it could not follow the
// stream where the other hub used the same versions.
TEST_F(PublishFenceTest, TheWriterDropsAGroupTheFenceRefusedThoughAStreamTookPartOfIt) {
  TypeConfig stock = config_.types[0];
  stock.name = "stock";
  config_.types.push_back(stock);
  // a's publication of the first group waits at its lease check until the
  // second group is queued, so the second group holds both types.
  std::promise<void> at_check;
  std::promise<void> queued;
  std::shared_future<void> second_queued = queued.get_future().share();
  std::atomic<bool> wait_once{false};
  auto a = make_hub("a", [&](FaultPoint p) {
    if (p == FaultPoint::kLeaseChecked && wait_once.exchange(false)) {
      at_check.set_value();
      second_queued.wait();
    }
    return FaultAction::kGoOn;
  });
  IngestWriter writer(config_, *a->store, *a->publisher, metrics_);
  writer.start();
  seq_ = 100;  // b's producer seqs (ingest()), apart from those a's writer is sent
  auto first_stock = submit(writer, "stock", "s1", 1);
  IngestReply r1 = wait(first_stock);
  ASSERT_FALSE(r1.error) << r1.error->message;

  // b follows, takes over (claiming stock; prices never held a message)
  // and publishes stock version 2 of its own.
  auto b = make_hub("b");
  StandbyFollower b_follower(broker_, *b->store, config_);
  ASSERT_TRUE(b_follower.follow_round().is_ok());
  ASSERT_TRUE(b->publisher->claim_streams().is_ok());
  ASSERT_TRUE(b->publisher->reconcile().is_ok());
  ASSERT_TRUE(ingest(*b, {IngestRecord{"s2-of-b", Op::kUpsert, {{"price", 2.0}}, {}, {}}}, "stock").is_ok());
  ASSERT_EQ(stream("stock").size(), 3u);

  // a, only paused, goes on: a group of prices alone, then one of both.
  wait_once = true;
  auto p1 = submit(writer, "prices", "p1", 2);
  ASSERT_EQ(at_check.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto p2 = submit(writer, "prices", "p2", 3);
  auto s2 = submit(writer, "stock", "s2-of-a", 4);
  queued.set_value();
  IngestReply rp1 = wait(p1);
  EXPECT_FALSE(rp1.error) << "an empty stream expects nothing else: " << rp1.error->message;
  for (auto* f : {&p2, &s2}) {
    IngestReply r = wait(*f);
    ASSERT_TRUE(r.error);
    EXPECT_EQ(r.error->code, StatusCode::kUnavailable);
    EXPECT_NE(r.error->message.find("no longer the active one"), std::string::npos) << r.error->message;
  }
  writer.stop();
  ASSERT_FALSE(a->fenced.empty());
  ASSERT_EQ(stream("prices").size(), 2u) << "the stream of prices took a's second group's batch";
  EXPECT_EQ(head(*a, "prices"), 1u) << "yet the group is dropped from a's store";
  EXPECT_EQ(head(*a, "stock"), 1u);

  // a, started again, stands by: its follower takes back what the streams
  // hold, b's stock version 2 included, without finding its store diverged.
  StandbyFollower a_follower(broker_, *a->store, config_);
  auto followed = a_follower.follow_round();
  ASSERT_TRUE(followed.is_ok()) << followed.status().to_string();
  EXPECT_TRUE(a_follower.caught_up());
  EXPECT_EQ(head(*a, "prices"), 2u);
  EXPECT_EQ(head(*a, "stock"), 2u);
}

}  // namespace
}  // namespace ds
