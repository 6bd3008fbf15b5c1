// IngestWriter over fakes (tests/harness/fake_env.h): its StreamPublisher
// publishes to an in-memory broker the test reads and breaks by hand, time
// is moved by hand, and the store is a real SQLite file (its internals are
// query_store_test.cc's). No nats-server, no sleeping: a test waits for a
// reply (bounded), and holds the writer thread in on_committed when it needs
// batches to queue up behind a commit.

#include "hub/ingest_writer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "shared/codec.h"
#include "shared/names.h"
#include "shared/sqlite.h"
#include "tests/harness/fake_env.h"
#include "testing/temp_dir.h"

namespace ds {
namespace {

using ds::testing::FakeClock;
using ds::testing::FakeStreamAccess;

IngestRecord price(const std::string& key, double value) {
  return IngestRecord{key, Op::kUpsert, {{"price", value}}, std::nullopt, std::nullopt};
}

IngestRequest request(std::vector<IngestRecord> records, std::string producer = "", std::optional<uint64_t> seq = {}) {
  return IngestRequest{std::move(producer), seq, std::move(records)};
}

// A reply the test waits for.
class Reply {
 public:
  IngestReplyFn fn() {
    return [state = state_](const IngestReply& r) {
      std::lock_guard lock(state->mu);
      state->replies.push_back(r);
      state->cv.notify_all();
    };
  }
  // The reply (the first, if several came: see count()); fails the test
  // when none comes within 10 s.
  IngestReply get() const {
    std::unique_lock lock(state_->mu);
    if (!state_->cv.wait_for(lock, std::chrono::seconds(10), [&] { return !state_->replies.empty(); })) {
      ADD_FAILURE() << "no reply";
      return IngestReply{WireError{StatusCode::kInternal, "no reply", std::nullopt}};
    }
    return state_->replies.front();
  }
  bool arrived() const {
    std::lock_guard lock(state_->mu);
    return !state_->replies.empty();
  }
  size_t count() const {
    std::lock_guard lock(state_->mu);
    return state_->replies.size();
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<IngestReply> replies;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

// Holds the writer thread inside on_committed until opened.
class CommitGate {
 public:
  void enter() {
    std::unique_lock lock(mu_);
    ++entered_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  bool wait_entered(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return entered_ >= n; });
  }
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;  // guarded by mu_
  int entered_ = 0;    // guarded by mu_
};

// Counts the writer's passes through its fault points (an injected
// FaultHook) so a test waits for idle rounds and reconciliations instead of
// sleeping.
class FaultPointCounts {
 public:
  void count(FaultPoint point) {
    std::lock_guard lock(mu_);
    ++counts_[point];
    cv_.notify_all();
  }
  int64_t seen(FaultPoint point) {
    std::lock_guard lock(mu_);
    return counts_[point];
  }
  // Waits (at most 10 s) until `point` was passed `n` more times.
  bool wait(FaultPoint point, int n) { return wait_until(point, seen(point) + n); }
  // Waits (at most 10 s) until `point` was passed `count` times in all.
  bool wait_until(FaultPoint point, int64_t count) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return counts_[point] >= count; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<FaultPoint, int64_t> counts_;  // guarded by mu_
};

class IngestWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TypeConfig prices;
    prices.name = "prices";
    prices.schema.key = "sku";
    prices.schema.columns = {{"price", ColumnType::kReal}};
    TypeConfig products;
    products.name = "products";
    products.schema.key = "id";
    products.schema.columns = {{"name", ColumnType::kText}};
    config_.types = {prices, products};
    config_.store_path = dir_.file("hub.db");
    auto store = QueryStore::open(config_.store_path, config_.types);
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    store_ = std::move(store).value();
  }
  void TearDown() override {
    gate_.open();
    if (writer_) writer_->stop();
  }

  // Builds the writer; on_committed records the marks and passes the gate
  // when `gated`.
  void make(IngestWriter::Options options = {}, bool gated = false) {
    publisher_ = std::make_unique<StreamPublisher>(broker_, *store_, config_, metrics_, options.faults);
    writer_ = std::make_unique<IngestWriter>(config_, *store_, *publisher_, metrics_, options, clock_);
    writer_->set_on_committed([this, gated](const std::vector<PartitionMark>& marks) {
      {
        std::lock_guard lock(mu_);
        commits_.push_back(marks);
      }
      if (gated) gate_.enter();
    });
  }
  void start(IngestWriter::Options options = {}, bool gated = false) {
    make(options, gated);
    writer_->start();
  }

  // Reopens the store so that a commit waits `ms` for a lock another
  // connection holds (not 5 s).
  void reopen_store_with_busy_timeout(int ms) {
    store_.reset();
    QueryStoreOptions options;
    options.busy_timeout_ms = ms;
    auto store = QueryStore::open(config_.store_path, config_.types, options);
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    store_ = std::move(store).value();
  }

  Reply submit(const std::string& type, IngestRequest req) {
    Reply r;
    writer_->submit(type, std::move(req), r.fn());
    return r;
  }
  std::vector<std::vector<PartitionMark>> commits() {
    std::lock_guard lock(mu_);
    return commits_;
  }
  // The versions of the changes of every delta batch in `type`'s stream, in
  // stream order.
  std::vector<uint64_t> streamed_versions(const std::string& type) {
    std::vector<uint64_t> out;
    for (const StoredMessage& m : broker_.messages(stream_name(type))) {
      auto batch = decode_delta_batch(m.data);
      EXPECT_TRUE(batch.is_ok()) << batch.status().to_string();
      if (!batch.is_ok()) continue;
      for (const Change& c : batch->changes) out.push_back(c.v);
    }
    return out;
  }

  // Starts the writer over a store that waits 50 ms for a lock, with a hook
  // that counts fault points and, while lock_after_acks_ is armed, takes the
  // store's write lock through other_ right after JetStream's acks (once).
  void start_with_lock_after_acks() {
    reopen_store_with_busy_timeout(50);
    auto other = Database::open(config_.store_path);
    ASSERT_TRUE(other.is_ok()) << other.status().to_string();
    other_ = std::move(other).value();
    IngestWriter::Options options;
    options.faults = [this](FaultPoint point) {
      if (point == FaultPoint::kPublished && lock_after_acks_.exchange(false)) {
        EXPECT_TRUE(other_->exec("BEGIN EXCLUSIVE").is_ok());
      }
      points_.count(point);
      return FaultAction::kGoOn;
    };
    start(options);
  }

  ds::TempDir dir_{"ingest-writer-test"};
  HubConfig config_;
  std::unique_ptr<QueryStore> store_;
  FakeStreamAccess broker_;
  FakeClock clock_;
  HubMetrics metrics_;
  std::unique_ptr<StreamPublisher> publisher_;  // over store_, built by make()
  CommitGate gate_;
  FaultPointCounts points_;
  std::unique_ptr<Database> other_;  // another connection to the store
  std::atomic<bool> lock_after_acks_{false};
  std::mutex mu_;
  std::vector<std::vector<PartitionMark>> commits_;  // guarded by mu_
  std::unique_ptr<IngestWriter> writer_;
};

TEST_F(IngestWriterTest, StoredAndAckedBatchIsAnsweredWithItsVersionsAtTheClocksTime) {
  start();
  clock_.advance(5000);
  const IngestReply r = submit("prices", request({price("a", 1.0), price("b", 2.0)})).get();
  ASSERT_TRUE(r.ok()) << r.error->message;
  EXPECT_EQ(r.first_version, 1u);
  EXPECT_EQ(r.last_version, 2u);

  EXPECT_EQ(streamed_versions("prices"), (std::vector<uint64_t>{1, 2}));
  const auto messages = broker_.messages(stream_name("prices"));
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].msg_id, "prices:1");
  auto batch = decode_delta_batch(messages[0].data);
  ASSERT_TRUE(batch.is_ok());
  EXPECT_EQ(batch->changes[0].hts, clock_.now_system_ms()) << "the commit time is not the clock's";
  const auto c = commits();
  ASSERT_EQ(c.size(), 1u);
  ASSERT_EQ(c[0].size(), 1u);
  EXPECT_EQ(c[0][0].version, 2u);
  EXPECT_EQ(c[0][0].hub_ts, clock_.now_system_ms());
  EXPECT_EQ(writer_->not_ready_reason(), "");
  EXPECT_EQ(metrics_.ingest_batches.load(), 1u);
}

TEST_F(IngestWriterTest, BadBatchesAreRefusedAtOnceAndStoreNothing) {
  make();  // not even started: these never reach the queue
  const IngestReply unknown = submit("nope", request({price("a", 1.0)})).get();
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error->code, StatusCode::kNotFound);

  IngestRecord bad = price("b", 1.0);
  bad.fields["colour"] = std::string("red");
  const IngestReply invalid = submit("prices", request({price("a", 1.0), bad})).get();
  ASSERT_FALSE(invalid.ok());
  EXPECT_EQ(invalid.error->code, StatusCode::kInvalidArgument);
  EXPECT_EQ(invalid.error->index, 1u) << "the bad record's index";
  EXPECT_TRUE(broker_.messages(stream_name("prices")).empty());
}

TEST_F(IngestWriterTest, BatchBeforeStartIsRefusedUnavailable) {
  make();
  EXPECT_NE(writer_->not_ready_reason(), "");
  const IngestReply r = submit("prices", request({price("a", 1.0)})).get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->code, StatusCode::kUnavailable);
  EXPECT_NE(r.error->message.find("not accepting"), std::string::npos) << r.error->message;
}

TEST_F(IngestWriterTest, BatchesQueuedBehindACommitGoInOneGroupUpToTheRecordLimit) {
  IngestWriter::Options options;
  options.max_group_records = 3;
  start(options, /*gated=*/true);
  Reply first = submit("prices", request({price("a", 1.0)}));
  ASSERT_TRUE(gate_.wait_entered(1));
  // While the writer is inside the first group, four batches of 1, 1, 1 and
  // 2 records queue up: groups {1, 1, 1} and {2}.
  std::vector<Reply> queued;
  queued.push_back(submit("prices", request({price("b", 1.0)})));
  queued.push_back(submit("products", request({{"p1", Op::kUpsert, {{"name", std::string("tea")}}, {}, {}}})));
  queued.push_back(submit("prices", request({price("c", 1.0)})));
  queued.push_back(submit("prices", request({price("d", 1.0), price("e", 1.0)})));
  EXPECT_EQ(metrics_.ingest_queue_depth.load(), 4);
  gate_.open();
  for (const Reply& r : queued) ASSERT_TRUE(r.get().ok());
  ASSERT_TRUE(first.get().ok());

  const auto c = commits();
  ASSERT_EQ(c.size(), 3u) << "groups: the first batch, three batches of one record, the batch of two";
  EXPECT_EQ(c[1].size(), 2u) << "the second group changed prices and products";
  EXPECT_EQ(queued[3].get().first_version, 4u);
  EXPECT_EQ(streamed_versions("prices"), (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(streamed_versions("products"), (std::vector<uint64_t>{1}));
}

TEST_F(IngestWriterTest, FullQueueRefusesUnavailableAtOnce) {
  IngestWriter::Options options;
  options.max_queue = 1;
  start(options, /*gated=*/true);
  Reply first = submit("prices", request({price("a", 1.0)}));
  ASSERT_TRUE(gate_.wait_entered(1));
  Reply queued = submit("prices", request({price("b", 1.0)}));
  Reply refused = submit("prices", request({price("c", 1.0)}));
  ASSERT_TRUE(refused.arrived()) << "a full queue must answer at once";
  ASSERT_FALSE(refused.get().ok());
  EXPECT_EQ(refused.get().error->code, StatusCode::kUnavailable);
  EXPECT_NE(refused.get().error->message.find("queue is full"), std::string::npos);
  EXPECT_FALSE(queued.arrived());
  gate_.open();
  EXPECT_TRUE(queued.get().ok());
  EXPECT_EQ(streamed_versions("prices"), (std::vector<uint64_t>{1, 2}));
}

TEST_F(IngestWriterTest, UnackedPublishIsAnsweredUnavailableAndGoesOutFirstNextTime) {
  start();
  ASSERT_TRUE(submit("prices", request({price("a", 1.0)})).get().ok());

  broker_.set_ack_failure(Status::unavailable("fake broker: no ack"));
  const IngestReply lost = submit("prices", request({price("b", 2.0)}, "p1", 7)).get();
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.error->code, StatusCode::kUnavailable);
  EXPECT_NE(lost.error->message.find("stored as versions 2..2 but not yet published"), std::string::npos)
      << lost.error->message;
  EXPECT_EQ(metrics_.publish_failures.load(), 1u);

  // The broker acks again: the next batch of the type is published after
  // the one it lost, from the log, in order.
  broker_.set_ack_failure(Status::ok());
  const IngestReply next = submit("prices", request({price("c", 3.0)})).get();
  ASSERT_TRUE(next.ok()) << next.error->message;
  EXPECT_EQ(next.first_version, 3u);
  EXPECT_EQ(streamed_versions("prices"), (std::vector<uint64_t>{1, 2, 3}));

  // The producer's retry gets the original range, stores nothing new.
  const IngestReply retried = submit("prices", request({price("b", 2.0)}, "p1", 7)).get();
  ASSERT_TRUE(retried.ok()) << retried.error->message;
  EXPECT_EQ(retried.first_version, 2u);
  EXPECT_EQ(retried.last_version, 2u);
  EXPECT_EQ(metrics_.ingest_retries.load(), 1u);
  EXPECT_EQ(streamed_versions("prices"), (std::vector<uint64_t>{1, 2, 3}));
}

TEST_F(IngestWriterTest, TypeWhoseStreamHoldsWhatTheStoreLacksIsRefusedAndNamedNotReady) {
  // The stream's last message is not a delta batch of this hub: the
  // reconciliation cannot take it back (DataLoss).
  broker_.append(stream_name("prices"), StoredMessage{0, "ds.delta.prices.s1", "not a delta batch", "prices:9"});
  start();
  // A batch of another type is answered after the first reconciliation.
  ASSERT_TRUE(submit("products", request({{"p1", Op::kUpsert, {{"name", std::string("tea")}}, {}, {}}})).get().ok());

  const IngestReply r = submit("prices", request({price("a", 1.0)})).get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->code, StatusCode::kUnavailable);
  EXPECT_NE(r.error->message.find("takes no ingest"), std::string::npos) << r.error->message;
  EXPECT_NE(writer_->not_ready_reason().find("store behind stream for type 'prices'"), std::string::npos)
      << writer_->not_ready_reason();
  EXPECT_EQ(broker_.messages(stream_name("prices")).size(), 1u) << "something was published to the blocked type";
}

TEST_F(IngestWriterTest, CommitRefusedByALockedStoreIsNamedNotReadyUntilACommitSucceeds) {
  // Another process holds the store's write lock (an operator's sqlite3
  // shell in a transaction, say); the writer waits 50 ms for it, not 5 s.
  reopen_store_with_busy_timeout(50);
  IngestWriter::Options options;
  options.faults = [this](FaultPoint point) {
    points_.count(point);
    return FaultAction::kGoOn;
  };
  start(options);
  ASSERT_TRUE(submit("prices", request({price("a", 1.0)}, "erp", 1)).get().ok());
  EXPECT_EQ(writer_->not_ready_reason(), "");

  auto other = Database::open(config_.store_path);
  ASSERT_TRUE(other.is_ok()) << other.status().to_string();
  ASSERT_TRUE((*other)->exec("BEGIN EXCLUSIVE").is_ok());
  const IngestReply refused = submit("prices", request({price("b", 2.0)}, "erp", 2)).get();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error->code, StatusCode::kUnavailable) << refused.error->message;
  EXPECT_NE(refused.error->message.find("locked"), std::string::npos) << refused.error->message;
  const std::string why = writer_->not_ready_reason();
  EXPECT_NE(why.find("the hub's store refused the last commit"), std::string::npos) << why;
  EXPECT_NE(why.find("locked"), std::string::npos) << why;
  EXPECT_EQ(streamed_versions("prices"), (std::vector<uint64_t>{1}));

  // Still held: the idle writer's probe (once a second) finds it held.
  clock_.advance(1000);
  ASSERT_TRUE(points_.wait(FaultPoint::kIdle, 2));
  EXPECT_NE(writer_->not_ready_reason(), "");

  // Lock released: the idle writer's next probe, a second later, finds the
  // store free again: ready before any producer retries; the retry is stored.
  ASSERT_TRUE((*other)->exec("ROLLBACK").is_ok());
  ASSERT_TRUE(points_.wait(FaultPoint::kIdle, 1));
  EXPECT_NE(writer_->not_ready_reason(), "") << "probed again within the second";
  clock_.advance(1000);
  ASSERT_TRUE(points_.wait(FaultPoint::kIdle, 2));
  EXPECT_EQ(writer_->not_ready_reason(), "");
  const IngestReply retried = submit("prices", request({price("b", 2.0)}, "erp", 2)).get();
  ASSERT_TRUE(retried.ok()) << retried.error->message;
  EXPECT_EQ(retried.first_version, 2u);
  EXPECT_EQ(writer_->not_ready_reason(), "");
}

TEST_F(IngestWriterTest, AckedBatchWhoseMarkCannotBeWrittenIsAcknowledgedAndNotPublishedAgain) {
  // Between the commit and the published mark another connection takes the
  // store's write lock: JetStream acks the batch, only its mark fails.
  reopen_store_with_busy_timeout(50);
  auto other = Database::open(config_.store_path);
  ASSERT_TRUE(other.is_ok()) << other.status().to_string();
  std::atomic<bool> lock_after_commit{false};
  make();
  writer_->set_on_committed([&](const std::vector<PartitionMark>&) {
    if (lock_after_commit.exchange(false)) {
      EXPECT_TRUE((*other)->exec("BEGIN EXCLUSIVE").is_ok());
    }
  });
  writer_->start();

  lock_after_commit = true;
  const IngestReply first = submit("prices", request({price("a", 1.0)}, "erp", 1)).get();
  ASSERT_TRUE(first.ok()) << first.error->message;  // stored and in the stream: acknowledged
  EXPECT_EQ(first.first_version, 1u);
  EXPECT_EQ(streamed_versions("prices"), (std::vector<uint64_t>{1}));

  // Lock released: the next batch goes out after the first, which is not
  // published again (its mark is written before).
  ASSERT_TRUE((*other)->exec("ROLLBACK").is_ok());
  const IngestReply second = submit("prices", request({price("b", 2.0)}, "erp", 2)).get();
  ASSERT_TRUE(second.ok()) << second.error->message;
  EXPECT_EQ(streamed_versions("prices"), (std::vector<uint64_t>{1, 2}));
  // (The broker drops a duplicate by its message id: count what was sent.)
  EXPECT_EQ(metrics_.published_batches.load(), 2u) << "a batch was published again";
  writer_->stop();
  auto state = store_->type_state("prices");
  ASSERT_TRUE(state.is_ok()) << state.status().to_string();
  EXPECT_EQ(state->published_version, 2u);
  EXPECT_EQ(state->version, 2u);
}

TEST_F(IngestWriterTest, BacklogPublicationWhoseMarkCannotBeWrittenIsAcknowledgedAndNotPublishedAgain) {
  // The type is in the backlog (its last publication was not acked), so the
  // next batch goes out from the log; right after JetStream's acks another
  // connection takes the store's write lock, and only the mark fails.
  start_with_lock_after_acks();

  broker_.set_ack_failure(Status::unavailable("fake broker: no ack"));
  ASSERT_FALSE(submit("prices", request({price("a", 1.0)}, "erp", 1)).get().ok());
  broker_.set_ack_failure(Status::ok());

  lock_after_acks_ = true;
  const IngestReply second = submit("prices", request({price("b", 2.0)}, "erp", 2)).get();
  ASSERT_TRUE(second.ok()) << second.error->message;  // stored and in the stream: acknowledged
  EXPECT_EQ(second.first_version, 2u);
  EXPECT_EQ(streamed_versions("prices"), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(writer_->not_ready_reason(), "") << "a refused mark is no refused commit";

  // Lock released: the next batch goes out after the two, which are not
  // published again; the retried first batch gets its range.
  ASSERT_TRUE(other_->exec("ROLLBACK").is_ok());
  const IngestReply third = submit("prices", request({price("c", 3.0)}, "erp", 3)).get();
  ASSERT_TRUE(third.ok()) << third.error->message;
  const IngestReply retried = submit("prices", request({price("a", 1.0)}, "erp", 1)).get();
  ASSERT_TRUE(retried.ok()) << retried.error->message;
  EXPECT_EQ(retried.first_version, 1u);
  EXPECT_EQ(streamed_versions("prices"), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(metrics_.published_batches.load(), 3u) << "a batch was published again";
  writer_->stop();
  auto state = store_->type_state("prices");
  ASSERT_TRUE(state.is_ok()) << state.status().to_string();
  EXPECT_EQ(state->published_version, 3u);
}

TEST_F(IngestWriterTest, ReconciliationWithAMarkHeldInMemoryRepublishesWhatTheBrokerLostAndNothingElse) {
  start_with_lock_after_acks();
  lock_after_acks_ = true;
  ASSERT_TRUE(submit("prices", request({price("a", 1.0)}, "erp", 1)).get().ok());
  ASSERT_EQ(streamed_versions("prices"), (std::vector<uint64_t>{1}));  // its mark only in memory: locked

  // A reconnect's reconciliation while the lock is still held: the stream
  // holds batch 1, which is not published again.
  int64_t reconciled = points_.seen(FaultPoint::kReconciled);
  writer_->request_reconcile();
  ASSERT_TRUE(points_.wait_until(FaultPoint::kReconciled, ++reconciled));
  EXPECT_EQ(metrics_.published_batches.load(), 1u) << "an acked batch was published again";

  // The broker lost its store (the stream comes back empty): batch 1 is
  // published again, though the log never took its mark.
  broker_.delete_stream(stream_name("prices"));
  writer_->request_reconcile();
  ASSERT_TRUE(points_.wait_until(FaultPoint::kReconciled, ++reconciled));
  EXPECT_EQ(streamed_versions("prices"), (std::vector<uint64_t>{1})) << "the broker's loss was not refilled";

  ASSERT_TRUE(other_->exec("ROLLBACK").is_ok());
  ASSERT_TRUE(submit("prices", request({price("b", 2.0)}, "erp", 2)).get().ok());
  EXPECT_EQ(streamed_versions("prices"), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(metrics_.published_batches.load(), 3u);  // 1, 1 again (refill), 2
  writer_->stop();
  auto state = store_->type_state("prices");
  ASSERT_TRUE(state.is_ok()) << state.status().to_string();
  EXPECT_EQ(state->published_version, 2u);
}

TEST_F(IngestWriterTest, StopAnswersWhatIsQueuedThenRefusesUnavailable) {
  IngestWriter::Options options;
  options.max_queue = 1u << 20;  // never full here: the refusal below is stop()'s
  start(options, /*gated=*/true);
  Reply first = submit("prices", request({price("a", 1.0)}));
  ASSERT_TRUE(gate_.wait_entered(1));
  Reply queued = submit("prices", request({price("b", 1.0)}));
  std::thread stopper([&] { writer_->stop(); });
  // Once stop() has taken effect a batch is refused at once; until then it
  // queues like `queued` (bounded: stop() takes effect before it joins).
  std::vector<Reply> before_stop;
  Reply probe;
  for (size_t i = 0; i < options.max_queue; ++i) {
    probe = submit("prices", request({price("p" + std::to_string(i), 1.0)}));
    if (probe.arrived()) break;
    before_stop.push_back(probe);
    std::this_thread::yield();  // let the stopper run
  }
  ASSERT_TRUE(probe.arrived()) << "stop() never refused a batch";
  ASSERT_FALSE(probe.get().ok());
  EXPECT_EQ(probe.get().error->code, StatusCode::kUnavailable);
  EXPECT_NE(probe.get().error->message.find("not accepting"), std::string::npos) << probe.get().error->message;
  gate_.open();
  stopper.join();
  // Everything queued before stop() was stored, published and answered.
  EXPECT_TRUE(first.get().ok());
  EXPECT_TRUE(queued.get().ok());
  for (const Reply& r : before_stop) EXPECT_TRUE(r.get().ok());
  EXPECT_EQ(streamed_versions("prices").size(), 2 + before_stop.size());
  const IngestReply after = submit("prices", request({price("z", 1.0)})).get();
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error->code, StatusCode::kUnavailable);
}

}  // namespace
}  // namespace ds
