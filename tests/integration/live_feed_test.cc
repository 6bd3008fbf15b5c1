// The live feed (docs/protocol.md, "Live feed") on a real nats-server
// 2.9.10: what its stream republish hands a plain subscriber, and that
// agent/feed_order.h judges it right. The broker's side is what the design
// leans on: only what the stream stored is republished (not a duplicate,
// not a publication an expectation refused, so a fenced hub never reaches
// the feed), each with its stream sequence and its subject's previous one.

#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <vector>

#include "agent/feed_order.h"
#include "shared/names.h"
#include "shared/nats.h"
#include "tests/harness/nats_server.h"

namespace ds::testing {
namespace {

constexpr const char* kStream = "DS_PRICES";

// The stream as the hub's StreamPublisher::ensure_streams asks for it.
StreamSpec prices_stream(bool with_feed = true) {
  const Subjects subjects;
  StreamSpec spec;
  spec.name = kStream;
  spec.subjects = {subjects.delta_filter("prices")};
  spec.max_age_ms = 3600 * 1000;
  if (with_feed) {
    spec.republish_source = subjects.delta_filter("prices");
    spec.republish_destination = subjects.feed_filter("prices");
  }
  return spec;
}

struct FeedMessage {
  std::string subject;
  std::string data;
  std::optional<FeedStamp> stamp;
  std::optional<std::string> stream;
};

// Collects feed messages with their stamps (cnats threads).
class FeedCollector {
 public:
  MessageHandler handler() {
    return [this](Message m) {
      FeedMessage f{std::string(m.subject()), std::string(m.data()),
                    feed_stamp(m.header(kStreamSequenceHeader), m.header(kLastSubjectSequenceHeader)),
                    m.header("Nats-Stream")};
      std::lock_guard<std::mutex> lock(mu_);
      messages_.push_back(std::move(f));
    };
  }
  std::vector<FeedMessage> wait_for(size_t n) const {
    wait_until([&] {
      std::lock_guard<std::mutex> lock(mu_);
      return messages_.size() >= n;
    });
    std::lock_guard<std::mutex> lock(mu_);
    return messages_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<FeedMessage> messages_;  // guarded by mu_
};

class LiveFeedTest : public NatsTest {
 protected:
  void SetUp() override {
    NatsTest::SetUp();
    if (HasFatalFailure()) return;
    js_ = jetstream(*nc_);
    ASSERT_NE(js_, nullptr);
  }
  void TearDown() override {
    js_.reset();
    NatsTest::TearDown();
  }

  std::unique_ptr<Subscription> subscribe(const std::string& subject, FeedCollector& into) {
    auto sub = nc_->subscribe(subject, into.handler());
    EXPECT_TRUE(sub.is_ok()) << sub.status().to_string();
    EXPECT_TRUE(nc_->flush().is_ok());
    return sub.is_ok() ? std::move(sub).value() : nullptr;
  }

  uint64_t publish(const std::string& partition, const std::string& data) {
    auto ack = js_->publish(subjects_.delta("prices", partition), data, "prices:" + data);
    EXPECT_TRUE(ack.is_ok()) << ack.status().to_string();
    return ack.is_ok() ? ack->seq : 0;
  }

  Subjects subjects_;
  std::unique_ptr<JetStream> js_;
};

TEST_F(LiveFeedTest, EveryStoredMessageComesAgainWithItsSequenceAndItsSubjectsPrevious) {
  ASSERT_TRUE(js_->ensure_stream(prices_stream()).is_ok());
  auto state = js_->stream_state(kStream);
  ASSERT_TRUE(state.is_ok());
  EXPECT_EQ(state->republish_destination, "ds.feed.prices.>");
  FeedCollector one, every;
  auto s1 = subscribe(subjects_.feed("prices", "store-1"), one);
  auto s2 = subscribe(subjects_.feed_filter("prices"), every);

  publish("store-1", "1");  // seq 1
  publish("store-2", "2");  // seq 2
  publish("store-2", "3");  // seq 3
  publish("store-1", "4");  // seq 4

  const std::vector<FeedMessage> mine = one.wait_for(2);
  ASSERT_EQ(mine.size(), 2u);
  EXPECT_EQ(mine[0].subject, "ds.feed.prices.store-1");
  EXPECT_EQ(mine[0].data, "1");
  EXPECT_EQ(mine[0].stream, kStream);
  ASSERT_TRUE(mine[0].stamp && mine[1].stamp);
  EXPECT_EQ(mine[0].stamp->seq, 1u);
  EXPECT_EQ(mine[0].stamp->subject_last, 0u);
  EXPECT_EQ(mine[1].data, "4");
  EXPECT_EQ(mine[1].stamp->seq, 4u);
  EXPECT_EQ(mine[1].stamp->subject_last, 1u) << "the previous message of ds.delta.prices.store-1";

  const std::vector<FeedMessage> all = every.wait_for(4);
  ASSERT_EQ(all.size(), 4u);
  FeedOrder order;
  order.start("prices", 0, /*every_partition=*/true);
  for (size_t i = 0; i < all.size(); ++i) {
    ASSERT_TRUE(all[i].stamp.has_value()) << i;
    EXPECT_EQ(all[i].stamp->seq, i + 1);
    EXPECT_EQ(order.observe("prices", all[i].stamp), FeedOrder::Verdict::kInOrder) << i;
  }
}

TEST_F(LiveFeedTest, ADuplicateOrARefusedPublicationNeverReachesTheFeed) {
  ASSERT_TRUE(js_->ensure_stream(prices_stream()).is_ok());
  FeedCollector feed;
  auto sub = subscribe(subjects_.feed_filter("prices"), feed);

  publish("store-1", "1");
  // The same batch again: the duplicate window drops it.
  auto again = js_->publish(subjects_.delta("prices", "store-1"), "1", "prices:1");
  ASSERT_TRUE(again.is_ok());
  EXPECT_TRUE(again->duplicate);
  // A fenced hub's publication: it expects a last sequence the stream is past.
  ASSERT_TRUE(js_->publish_async(subjects_.delta("prices", "store-1"), "fenced", "prices:fenced",
                                 {{"Nats-Expected-Last-Sequence", "0"}})
                  .is_ok());
  EXPECT_EQ(js_->wait_published().code(), StatusCode::kAlreadyExists);
  // The sentinel: once it arrived, the two before it would have.
  publish("store-1", "2");

  const std::vector<FeedMessage> got = feed.wait_for(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].data, "1");
  EXPECT_EQ(got[1].data, "2");
  EXPECT_EQ(got[1].stamp->seq, 2u);
  EXPECT_EQ(got[1].stamp->subject_last, 1u);
}

TEST_F(LiveFeedTest, AMessageMissedWhileAwayIsAGapAtTheNextOne) {
  ASSERT_TRUE(js_->ensure_stream(prices_stream()).is_ok());
  FeedCollector before;
  auto sub = subscribe(subjects_.feed("prices", "store-1"), before);
  publish("store-1", "1");
  ASSERT_EQ(before.wait_for(1).size(), 1u);
  sub.reset();  // away: a dropped connection loses what the feed sent meanwhile
  publish("store-1", "2");
  publish("store-2", "3");
  FeedCollector after;
  sub = subscribe(subjects_.feed("prices", "store-1"), after);
  publish("store-1", "4");
  const std::vector<FeedMessage> got = after.wait_for(1);
  ASSERT_EQ(got.size(), 1u);

  FeedOrder order;
  order.start("prices", 1, false);  // the agent held message 1
  EXPECT_EQ(order.observe("prices", got[0].stamp), FeedOrder::Verdict::kGap) << "message 2 is missing";
  // Had it taken 2 from a consumer meanwhile, 4 continues it (3 is another
  // partition's).
  order.start("prices", 2, false);
  EXPECT_EQ(order.observe("prices", got[0].stamp), FeedOrder::Verdict::kInOrder);
}

TEST_F(LiveFeedTest, AStreamCreatedWithoutTheFeedIsStillEnsuredAndKeepsNone) {
  // A stream from before the feed: nats-server 2.9 cannot add a republish
  // in place, so ensure_stream keeps none (and still applies the rest).
  ASSERT_TRUE(js_->ensure_stream(prices_stream(/*with_feed=*/false)).is_ok());
  StreamSpec now = prices_stream();
  now.max_age_ms = 7200 * 1000;
  Status s = js_->ensure_stream(now);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  auto state = js_->stream_state(kStream);
  ASSERT_TRUE(state.is_ok());
  EXPECT_EQ(state->republish_destination, "");
  // And one with the feed keeps it when ensured again.
  ASSERT_TRUE(js_->delete_stream(kStream).is_ok());
  ASSERT_TRUE(js_->ensure_stream(prices_stream()).is_ok());
  ASSERT_TRUE(js_->ensure_stream(now).is_ok());
  state = js_->stream_state(kStream);
  ASSERT_TRUE(state.is_ok());
  EXPECT_EQ(state->republish_destination, "ds.feed.prices.>");
}

}  // namespace
}  // namespace ds::testing
