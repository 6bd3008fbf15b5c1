// Snapshot pages on ds.hub.snapshot.<agent> from a hub running in-process.

#include <gtest/gtest.h>

#include "hub/hub.h"
#include "tests/integration/hub_test_util.h"

namespace ds::testing {
namespace {

class HubSnapshotTest : public InProcessHubTest {
 protected:
  void SetUp() override {
    InProcessHubTest::SetUp();
    if (HasFatalFailure()) return;
    start_hub();
  }

  Result<SnapshotReply> page(const std::string& agent, const SnapshotRequest& req) {
    DS_ASSIGN_OR_RETURN(Message m, nc_->request(Subjects().snapshot(agent), encode(req), 5000));
    return decode_snapshot_reply(m.data());
  }
};

TEST_F(HubSnapshotTest, PagesCoverTheLivePartitionWithTheStreamHighWaterMark) {
  IngestRequest req;
  for (int i = 0; i < 9; ++i) {
    req.records.push_back(stock_record("k" + std::to_string(i), i % 3 == 0 ? "store-2" : "store-1", i));
  }
  ASSERT_TRUE(ingest(*nc_, "stock", req)->ok());
  IngestRequest del;
  IngestRecord gone;
  gone.key = "k1";
  gone.op = Op::kDelete;
  del.records = {gone};
  ASSERT_TRUE(ingest(*nc_, "stock", del)->ok());

  std::vector<std::string> keys;
  SnapshotRequest sreq{"stock", "store-1", std::nullopt, 2};
  std::optional<uint64_t> high_seq;
  for (int n = 0; n < 20; ++n) {
    auto reply = page("store-1-agent", sreq);
    ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
    ASSERT_TRUE(!reply->error.has_value()) << reply->error->message;
    if (!high_seq) {
      high_seq = reply->high_seq;
      EXPECT_EQ(reply->high_version, 10u);
    }
    for (const SnapshotRecord& r : reply->records) {
      keys.push_back(r.key);
      EXPECT_EQ(r.f.at("store"), Value(std::string("store-1")));
    }
    if (reply->done) break;
    sreq.after_key = reply->records.back().key;
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"k2", "k4", "k5", "k7", "k8"}));
  // The high-water mark is the stream sequence of the last published batch.
  auto js = jetstream(*nc_);
  EXPECT_EQ(high_seq, std::optional<uint64_t>(js->stream_state("DS_STOCK")->last_seq));
}

TEST_F(HubSnapshotTest, AllPartitionsWithStar) {
  IngestRequest req;
  req.records = {stock_record("a", "store-1", 1), stock_record("b", "store-2", 2)};
  ASSERT_TRUE(ingest(*nc_, "stock", req)->ok());
  auto reply = page("agent-1", SnapshotRequest{"stock", "*", std::nullopt, 100});
  ASSERT_TRUE(reply.is_ok() && !reply->error.has_value());
  EXPECT_EQ(reply->records.size(), 2u);
  EXPECT_TRUE(reply->done);
}

TEST_F(HubSnapshotTest, RequestsThatDoNotFitAreRefused) {
  auto unknown = page("agent-1", SnapshotRequest{"nosuch", "*", std::nullopt, 10});
  ASSERT_TRUE(unknown.is_ok());
  ASSERT_FALSE(!unknown->error.has_value());
  EXPECT_EQ(unknown->error->code, StatusCode::kNotFound);

  auto unpartitioned = page("agent-1", SnapshotRequest{"price", "store-1", std::nullopt, 10});
  ASSERT_TRUE(unpartitioned.is_ok());
  ASSERT_FALSE(!unpartitioned->error.has_value());
  EXPECT_EQ(unpartitioned->error->code, StatusCode::kInvalidArgument);

  auto bad_agent = nc_->request("ds.hub.snapshot.bad!agent", encode(SnapshotRequest{"price", "*", std::nullopt, 10}),
                                5000);
  ASSERT_TRUE(bad_agent.is_ok()) << bad_agent.status().to_string();
  auto decoded = decode_snapshot_reply(bad_agent->data());
  ASSERT_TRUE(decoded.is_ok());
  ASSERT_FALSE(!decoded->error.has_value());
  EXPECT_EQ(decoded->error->code, StatusCode::kInvalidArgument);

  auto garbage = nc_->request(Subjects().snapshot("agent-1"), "\xc1not msgpack", 5000);
  ASSERT_TRUE(garbage.is_ok());
  auto g = decode_snapshot_reply(garbage->data());
  ASSERT_TRUE(g.is_ok());
  EXPECT_FALSE(!g->error.has_value());
}

}  // namespace
}  // namespace ds::testing
