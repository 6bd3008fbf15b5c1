// DeltaApplier over fakes (tests/harness/fake_env.h): deliveries handed in
// by hand, acks read off a fake broker, time moved by hand. No nats-server,
// no sleeping: a posted task is the barrier (it runs after every delivery
// queued before it was committed and acked); the replica is a real SQLite
// file.

#include "agent/delta_applier.h"

#include <sqlite3.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <iterator>
#include <mutex>

#include "shared/codec.h"
#include "tests/harness/fake_env.h"
#include "testing/temp_dir.h"

namespace ds {
namespace {

using ::testing::HasSubstr;
using ds::testing::FakeClock;
using ds::testing::FakeMessaging;

TypeSchema prices_schema(bool with_qty = false) {
  TypeSchema s;
  s.key = "sku";
  s.partition = "store";
  s.columns = {{"store", ColumnType::kText}, {"price", ColumnType::kReal}};
  if (with_qty) s.columns.push_back({"qty", ColumnType::kInteger});
  return s;
}

Change upsert(uint64_t v, std::string key, double price, int64_t hts = 0) {
  return Change{v, std::move(key), Op::kUpsert, {{"store", std::string("s1")}, {"price", price}}, 1000, hts};
}

// The ack subject of the delivery of stream seq `seq` (v1 layout, as
// nats-server 2.9 sends it), with `pending` messages left after it; the
// consumer numbers it `cseq` (0: the same as `seq`).
// `delivered`: how often the consumer sent this message (2 and up: a redelivery).
std::string ack_subject(uint64_t seq, uint64_t pending = 0, const std::string& stream = "DS_PRICES",
                        uint64_t cseq = 0, uint64_t delivered = 1) {
  return "$JS.ACK." + stream + ".ag_store-1." + std::to_string(delivered) + "." + std::to_string(seq) + "." +
         std::to_string(cseq == 0 ? seq : cseq) + ".1700000000000000000." + std::to_string(pending);
}

// What the fake broker received on ack subjects: (subject, body), in order.
using Acks = std::vector<std::pair<std::string, std::string>>;

// A SQL function the test opens and closes: while closed, every call fails
// (as a transient replica failure would); each call is counted and heard.
struct ApplyGate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;     // guarded by mu
  int calls = 0;         // guarded by mu

  static void call(sqlite3_context* ctx, int /*argc*/, sqlite3_value** /*argv*/) {
    auto* gate = static_cast<ApplyGate*>(sqlite3_user_data(ctx));
    bool open = false;
    {
      std::lock_guard lock(gate->mu);
      ++gate->calls;
      open = gate->open;
    }
    gate->cv.notify_all();
    if (open) {
      sqlite3_result_int(ctx, 1);
    } else {
      sqlite3_result_error(ctx, "apply gate closed", -1);
    }
  }
  // Waits (bounded) until the gate was called at least `n` times.
  bool wait_calls(int n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return calls >= n; });
  }
  void set_open() {
    std::lock_guard lock(mu);
    open = true;
  }
};

class DeltaApplierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = Replica::open(dir_.file("replica.db"));
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    replica_ = std::move(r).value();
    ASSERT_TRUE(replica_->ensure_table("prices", prices_schema()).is_ok());
  }
  void TearDown() override {
    if (applier_) applier_->stop();
  }

  void start(ApplierOptions options = {}) {
    applier_ = std::make_unique<DeltaApplier>(*replica_, messaging_, board_, std::move(options), clock_);
    ASSERT_TRUE(applier_->start().is_ok());
  }

  // Stream seq `seq` of `type`'s consumer delivers `body`.
  void deliver_raw(uint64_t seq, const std::string& body, const std::string& type = "prices", uint64_t pending = 0) {
    const std::string stream = "DS_" + std::string(type == "prices" ? "PRICES" : "PRODUCTS");
    applier_->on_push(type, Envelope{"ds.delta." + type + ".s1", ack_subject(seq, pending, stream), body});
  }
  void deliver(uint64_t seq, std::vector<Change> changes, uint64_t pending = 0) {
    deliver_raw(seq, encode(DeltaBatch{"prices", std::move(changes)}), "prices", pending);
  }
  // Stream seq `seq` of prices, numbered `cseq` by its consumer, sent for
  // the `delivered`th time.
  void deliver_numbered(uint64_t seq, uint64_t cseq, std::vector<Change> changes, uint64_t delivered = 1) {
    applier_->on_push("prices", Envelope{"ds.delta.prices.s1", ack_subject(seq, 0, "DS_PRICES", cseq, delivered),
                                         encode(DeltaBatch{"prices", std::move(changes)})});
  }

  // Starts the applier with `options`, recording in gaps_ each registration
  // it asks for (deliveries are handed in on the test thread only).
  void start_counting_gaps(ApplierOptions options = {}) {
    options.on_delivery_gap = [this](const std::string& type) { gaps_.push_back(type); };
    start(std::move(options));
  }

  // Every insert into the prices table asks `gate`; while it is closed the
  // replica's transaction fails (Internal), as a transient failure would.
  void install(ApplyGate& gate) {
    ASSERT_EQ(sqlite3_create_function_v2(replica_->db().raw(), "apply_gate", 0, SQLITE_UTF8, &gate, &ApplyGate::call,
                                         nullptr, nullptr, nullptr),
              SQLITE_OK);
    ASSERT_TRUE(replica_->db()
                    .exec("CREATE TEMP TRIGGER gate_insert BEFORE INSERT ON main.prices BEGIN SELECT apply_gate(); END")
                    .is_ok());
  }

  // Returns once everything handed in before it was handled (committed and
  // acked, quarantined, or held).
  void barrier() {
    auto done = applier_->post([](Replica&) { return Status::ok(); });
    ASSERT_EQ(done.wait_for(std::chrono::seconds(10)), std::future_status::ready) << "the apply thread hangs";
    ASSERT_TRUE(done.get().is_ok());
  }

  Acks acks() const {
    Acks out;
    for (const auto& p : messaging_.published()) {
      if (p.subject.rfind("$JS.ACK.", 0) == 0) out.emplace_back(p.subject, p.data);
    }
    return out;
  }

  double price(const std::string& key) {
    auto row = replica_->row("prices", key);
    EXPECT_TRUE(row.is_ok()) << key << ": " << row.status().to_string();
    return row.is_ok() ? std::get<double>(row->at("price")) : -1;
  }

  ds::TempDir dir_{"delta-applier-test"};
  std::unique_ptr<Replica> replica_;
  FakeMessaging messaging_;
  FakeClock clock_;
  CheckpointBoard board_;
  std::unique_ptr<DeltaApplier> applier_;
  std::vector<std::string> gaps_;
};

TEST_F(DeltaApplierTest, DeliveriesApplyInOrderAndEachIsAckedAfterItsCommit) {
  start();
  deliver(1, {upsert(1, "a", 1.0)});
  deliver(2, {upsert(2, "b", 2.0), upsert(3, "a", 1.5)}, /*pending=*/5);
  barrier();

  EXPECT_EQ(acks(), (Acks{{ack_subject(1), "+ACK"}, {ack_subject(2, 5), "+ACK"}}));
  EXPECT_EQ(price("a"), 1.5);
  EXPECT_EQ(price("b"), 2.0);
  const auto cp = board_.checkpoint("prices");
  ASSERT_TRUE(cp.has_value());
  EXPECT_EQ(cp->seq, 2u);
  EXPECT_EQ(cp->version, 3u);
  EXPECT_EQ(replica_->checkpoints()->at("prices").seq, 2u) << "the board ran ahead of the replica";
  const HeartbeatReply beat = board_.heartbeat("store-1", 0);
  // The broker's pending count of the last delivery, plus what the board
  // counts as queued locally (updated at the end of a drain, so possibly
  // still the barrier's drain here).
  EXPECT_GE(beat.pending, 5u);
  EXPECT_EQ(beat.status, AgentHealth::kOk);
}

TEST_F(DeltaApplierTest, DuplicateAndOlderDeliveriesAreAckedAndChangeNothing) {
  start();
  deliver(1, {upsert(1, "a", 1.0), upsert(2, "b", 2.0)});
  // A redelivery of versions 1..2 and an older version of "a" carrying
  // another value: skipped by the version rule, acked so they stop coming.
  deliver(2, {upsert(1, "a", 99.0), upsert(2, "b", 99.0)});
  deliver(3, {upsert(3, "a", 3.0)});
  deliver(4, {upsert(2, "a", 98.0)});
  barrier();

  EXPECT_EQ(price("a"), 3.0);
  EXPECT_EQ(price("b"), 2.0);
  EXPECT_EQ(acks(), (Acks{{ack_subject(1), "+ACK"},
                          {ack_subject(2), "+ACK"},
                          {ack_subject(3), "+ACK"},
                          {ack_subject(4), "+ACK"}}));
  EXPECT_EQ(board_.checkpoint("prices")->seq, 4u);
  EXPECT_EQ(board_.checkpoint("prices")->version, 3u);
  EXPECT_EQ(*replica_->quarantine_count(), 0u);
}

TEST_F(DeltaApplierTest, UndecodableDeliveryIsQuarantinedAndTerminatedWhileLaterOnesApply) {
  start();
  deliver(1, {upsert(1, "a", 1.0)});
  deliver_raw(2, std::string("\xc1 not msgpack", 13));
  deliver(3, {upsert(2, "b", 2.0)});
  barrier();

  // The +TERM does not overtake the earlier delivery's +ACK.
  EXPECT_EQ(acks(), (Acks{{ack_subject(1), "+ACK"}, {ack_subject(2), "+TERM"}, {ack_subject(3), "+ACK"}}));
  EXPECT_EQ(price("b"), 2.0);
  auto entries = replica_->quarantined();
  ASSERT_TRUE(entries.is_ok());
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ((*entries)[0].kind, "undecodable");
  EXPECT_EQ((*entries)[0].seq, 2u);
  EXPECT_EQ((*entries)[0].payload, std::string("\xc1 not msgpack", 13));
  EXPECT_EQ(board_.quarantined(), 1u);
  EXPECT_EQ(board_.heartbeat("store-1", 0).status, AgentHealth::kDegraded);
}

TEST_F(DeltaApplierTest, BatchNamingAnotherTypeIsQuarantinedNotApplied) {
  start();
  deliver_raw(1, encode(DeltaBatch{"products", {upsert(1, "a", 1.0)}}));
  barrier();

  EXPECT_EQ(acks(), (Acks{{ack_subject(1), "+TERM"}}));
  EXPECT_EQ(replica_->row("prices", "a").status().code(), StatusCode::kNotFound);
  auto entries = replica_->quarantined();
  ASSERT_TRUE(entries.is_ok());
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_NE((*entries)[0].reason.find("names type 'products'"), std::string::npos) << (*entries)[0].reason;
}

TEST_F(DeltaApplierTest, MessageThatIsNotAJetStreamDeliveryIsDroppedUnacked) {
  start();
  applier_->on_push("prices", Envelope{"ds.delta.prices.s1", "", encode(DeltaBatch{"prices", {upsert(1, "a", 1.0)}})});
  applier_->on_push("prices",
                    Envelope{"ds.delta.prices.s1", "_INBOX.x", encode(DeltaBatch{"prices", {upsert(2, "b", 1.0)}})});
  deliver(1, {upsert(3, "c", 3.0)});
  barrier();

  EXPECT_EQ(messaging_.published().size(), 1u) << "something was published to a subject that is no ack subject";
  EXPECT_EQ(acks(), (Acks{{ack_subject(1), "+ACK"}}));
  EXPECT_EQ(replica_->row("prices", "a").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(replica_->row("prices", "b").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(price("c"), 3.0);
}

TEST_F(DeltaApplierTest, DeliveriesOfATypeWithoutTableAreHeldUntilATaskCreatesIt) {
  start();
  const TypeSchema products = prices_schema();
  deliver_raw(1, encode(DeltaBatch{"products", {upsert(1, "p1", 1.0)}}), "products");
  deliver_raw(2, encode(DeltaBatch{"products", {upsert(2, "p2", 2.0)}}), "products");
  deliver(1, {upsert(1, "a", 1.0)});  // another type is not held with them
  barrier();
  EXPECT_EQ(acks(), (Acks{{ack_subject(1), "+ACK"}}));
  EXPECT_FALSE(board_.checkpoint("products").has_value());

  auto created = applier_->post([&](Replica& r) { return r.ensure_table("products", products); });
  ASSERT_TRUE(created.get().is_ok());
  barrier();
  EXPECT_EQ(acks(), (Acks{{ack_subject(1), "+ACK"},
                          {ack_subject(1, 0, "DS_PRODUCTS"), "+ACK"},
                          {ack_subject(2, 0, "DS_PRODUCTS"), "+ACK"}}));
  EXPECT_EQ(replica_->key_versions("products")->size(), 2u);
  EXPECT_EQ(board_.checkpoint("products")->seq, 2u);
}

TEST_F(DeltaApplierTest, DeliveryWithAColumnTheReplicaLacksIsHeldWithLaterOnesUntilTheSchemaArrives) {
  start();
  deliver(1, {upsert(1, "a", 1.0)});
  Change with_qty = upsert(2, "b", 2.0);
  with_qty.f["qty"] = int64_t{4};
  deliver(2, {with_qty});
  deliver(3, {upsert(3, "c", 3.0)});  // fits the old schema, but may not overtake seq 2
  barrier();
  EXPECT_EQ(acks(), (Acks{{ack_subject(1), "+ACK"}}));
  EXPECT_EQ(board_.checkpoint("prices")->seq, 1u);

  auto ensured = applier_->post([](Replica& r) { return r.ensure_table("prices", prices_schema(/*with_qty=*/true)); });
  ASSERT_TRUE(ensured.get().is_ok());
  barrier();
  EXPECT_EQ(acks(), (Acks{{ack_subject(1), "+ACK"}, {ack_subject(2), "+ACK"}, {ack_subject(3), "+ACK"}}));
  EXPECT_EQ(std::get<int64_t>(replica_->row("prices", "b")->at("qty")), 4);
  EXPECT_EQ(board_.checkpoint("prices")->seq, 3u);
}

TEST_F(DeltaApplierTest, FailedCommitIsRetriedBeforeAnythingLaterAndAckedOnlyOnceItCommits) {
  ApplyGate gate;
  ASSERT_NO_FATAL_FAILURE(install(gate));
  start();
  deliver(1, {upsert(1, "a", 1.0)});
  deliver(2, {upsert(2, "b", 2.0)});
  ASSERT_TRUE(gate.wait_calls(2)) << "the failed group was not retried";

  // Failed twice: nothing acked, the checkpoint where it was, the error
  // reported.
  EXPECT_TRUE(acks().empty());
  ASSERT_TRUE(board_.checkpoint("prices").has_value());
  EXPECT_EQ(board_.checkpoint("prices")->seq, 0u);
  const HeartbeatReply beat = board_.heartbeat("store-1", 0);
  ASSERT_TRUE(beat.error.has_value());
  EXPECT_NE(beat.error->find("apply gate closed"), std::string::npos) << *beat.error;

  gate.set_open();
  barrier();
  EXPECT_EQ(acks(), (Acks{{ack_subject(1), "+ACK"}, {ack_subject(2), "+ACK"}}));
  EXPECT_EQ(board_.checkpoint("prices")->seq, 2u);
  EXPECT_FALSE(board_.heartbeat("store-1", 0).error.has_value()) << "the error outlived the commit";
}

TEST_F(DeltaApplierTest, StopDuringAFailingCommitAppliesAndAcksNothingAfterIt) {
  ApplyGate gate;
  ASSERT_NO_FATAL_FAILURE(install(gate));
  // Both deliveries in one drain, one group each.
  ApplierOptions one_change_per_group;
  one_change_per_group.max_changes_per_transaction = 1;
  applier_ = std::make_unique<DeltaApplier>(*replica_, messaging_, board_, one_change_per_group, clock_);
  deliver(1, {upsert(1, "a", 1.0)});
  deliver(2, {upsert(2, "b", 2.0)});
  ASSERT_TRUE(applier_->start().is_ok());
  ASSERT_TRUE(gate.wait_calls(2)) << "the failed group was not retried";
  // The failure clears just as the agent stops (seq 1 is in its backoff):
  // seq 2 must not commit ahead of seq 1.
  gate.set_open();
  applier_->stop();
  const Acks acked = acks();
  const bool seq1_acked = !acked.empty() && acked.front() == Acks::value_type{ack_subject(1), "+ACK"};
  // Either way, the acks are a prefix of the stream, in order, and the
  // checkpoint is where they end.
  ASSERT_TRUE(board_.checkpoint("prices").has_value());
  if (!seq1_acked) {
    EXPECT_TRUE(acked.empty()) << "acked after a delivery that never committed: " << acked.front().first;
    EXPECT_EQ(board_.checkpoint("prices")->seq, 0u) << "the checkpoint passed seq 1, which never committed";
    auto row = replica_->row("prices", "b");
    EXPECT_FALSE(row.is_ok() && !row->empty()) << "seq 2 was applied ahead of seq 1";
  } else {
    ASSERT_LE(acked.size(), 2u);
    if (acked.size() == 2) {
      EXPECT_EQ(acked[1], (Acks::value_type{ack_subject(2), "+ACK"}));
    }
    EXPECT_EQ(board_.checkpoint("prices")->seq, acked.size()) << "the checkpoint and the acks disagree";
  }
}

// A delivery in flight when the connection dropped is lost; the consumer
// goes on with the next ones (agent/delivery_order.h). Applied, they would
// move the checkpoint past the lost one.
TEST_F(DeltaApplierTest, ADeliveryThatSkipsAheadIsRefusedWithEveryLaterOneUntilTheNewConsumerDelivers) {
  AgentMetrics metrics({"prices"});
  ApplierOptions options;
  options.metrics = &metrics;
  start_counting_gaps(std::move(options));
  deliver(1, {upsert(1, "a", 1.0)});
  deliver(2, {upsert(2, "b", 2.0)});
  // Consumer delivery 3 (stream seq 3, key c) never arrives.
  deliver(4, {upsert(4, "d", 4.0)});
  deliver(5, {upsert(5, "e", 5.0)});
  barrier();

  EXPECT_EQ(gaps_, std::vector<std::string>{"prices"}) << "one registration asked for, not one per refused delivery";
  EXPECT_EQ(metrics.type("prices")->delivery_gaps.load(), 1u);
  EXPECT_EQ(acks(), (Acks{{ack_subject(1), "+ACK"}, {ack_subject(2), "+ACK"}})) << "a refused delivery was acked";
  EXPECT_EQ(replica_->row("prices", "d").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(board_.checkpoint("prices")->seq, 2u) << "the checkpoint passed the missing delivery";
  const HeartbeatReply stalled = board_.heartbeat("store-1", 0);
  EXPECT_EQ(stalled.status, AgentHealth::kDegraded) << "the heartbeat hid the refused type";
  EXPECT_THAT(stalled.error.value_or(""), HasSubstr("prices: a delivery went missing"));

  // The consumer the hub recreated from the checkpoint numbers from 1 again.
  deliver_numbered(3, 1, {upsert(3, "c", 3.0)});
  deliver_numbered(4, 2, {upsert(4, "d", 4.0)});
  barrier();
  EXPECT_EQ(price("c"), 3.0);
  EXPECT_EQ(price("d"), 4.0);
  EXPECT_EQ(board_.checkpoint("prices")->seq, 4u);
  EXPECT_EQ(gaps_.size(), 1u);
  EXPECT_EQ(board_.heartbeat("store-1", 0).status, AgentHealth::kOk) << "the gap's error outlived the recovery";
}

TEST_F(DeltaApplierTest, ANewConsumerNumbersFromOneAgainAndIsNoGap) {
  start_counting_gaps();
  deliver_numbered(1, 1, {upsert(1, "a", 1.0)});
  deliver_numbered(2, 2, {upsert(2, "b", 2.0)});
  deliver_numbered(3, 1, {upsert(3, "c", 3.0)});  // the hub recreated the consumer
  deliver_numbered(4, 2, {upsert(4, "d", 4.0)});
  barrier();
  EXPECT_TRUE(gaps_.empty());
  EXPECT_EQ(acks().size(), 4u);
  EXPECT_EQ(price("d"), 4.0);
}

// The hub recreated the consumer and its delivery 1 was lost: its 2 is
// below the old consumer's last number, and must not pass as in order.
TEST_F(DeltaApplierTest, ARecreatedConsumerWhoseFirstDeliveryWasLostIsAGap) {
  start_counting_gaps();
  for (uint64_t n = 1; n <= 5; ++n) deliver_numbered(n, n, {upsert(n, "k" + std::to_string(n), 1.0)});
  deliver_numbered(7, 2, {upsert(7, "g", 7.0)});  // the new consumer's 1 (stream seq 6) never came
  barrier();
  EXPECT_EQ(gaps_, std::vector<std::string>{"prices"});
  EXPECT_EQ(replica_->row("prices", "g").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(board_.checkpoint("prices")->seq, 5u);
  EXPECT_EQ(acks().size(), 5u) << "the refused delivery was acked";
}

TEST_F(DeltaApplierTest, ANumberSeenAgainIsAGap) {
  start_counting_gaps();
  deliver_numbered(1, 1, {upsert(1, "a", 1.0)});
  deliver_numbered(2, 2, {upsert(2, "b", 2.0)});
  deliver_numbered(4, 2, {upsert(4, "d", 4.0)});  // a recreated consumer's 2: its 1 (seq 3) was lost
  barrier();
  EXPECT_EQ(gaps_, std::vector<std::string>{"prices"});
  EXPECT_EQ(acks().size(), 2u);
  EXPECT_EQ(board_.checkpoint("prices")->seq, 2u);
}

// Two drops in a row: the old consumer delivered 1; the first reconnect's
// registration recreated it; the second drop lost the new consumer's 1,
// and its 2 looks like "last + 1". After a lost connection, and from the
// start of a registration, only a 1 is taken.
TEST_F(DeltaApplierTest, AfterALostConnectionOnlyANewConsumersFirstDeliveryIsTaken) {
  AgentMetrics metrics({"prices"});
  ApplierOptions options;
  options.metrics = &metrics;
  start_counting_gaps(std::move(options));
  deliver_numbered(1, 1, {upsert(1, "a", 1.0)});
  barrier();
  applier_->expect_new_consumers();
  deliver_numbered(3, 2, {upsert(3, "c", 3.0)});  // the new consumer's 2; its 1 (seq 2) was lost
  barrier();
  EXPECT_EQ(replica_->row("prices", "c").status().code(), StatusCode::kNotFound) << "applied past the lost delivery";
  EXPECT_EQ(board_.checkpoint("prices")->seq, 1u);
  EXPECT_EQ(acks().size(), 1u);
  EXPECT_TRUE(gaps_.empty()) << "the reconnect's registration is on its way already";
  EXPECT_EQ(metrics.type("prices")->delivery_gaps.load(), 0u) << "a lost connection counted as a gap";
  EXPECT_EQ(board_.heartbeat("store-1", 0).status, AgentHealth::kOk);

  // The consumer the reconnect's registration recreated.
  deliver_numbered(2, 1, {upsert(2, "b", 2.0)});
  deliver_numbered(3, 2, {upsert(3, "c", 3.0)});
  barrier();
  EXPECT_EQ(price("b"), 2.0);
  EXPECT_EQ(price("c"), 3.0);
  EXPECT_EQ(board_.checkpoint("prices")->seq, 3u);
}

// After a gap, a redelivery the agent refuses asks for a registration again:
// the consumer meant to end the gap may have lost its delivery 1 too.
TEST_F(DeltaApplierTest, ARefusedRedeliveryAsksForAnotherRegistration) {
  start_counting_gaps();
  deliver_numbered(1, 1, {upsert(1, "a", 1.0)});
  deliver_numbered(3, 3, {upsert(3, "c", 3.0)});  // gap: 2 lost
  deliver_numbered(4, 4, {upsert(4, "d", 4.0)});  // refused, a first delivery: no new request
  barrier();
  EXPECT_EQ(gaps_.size(), 1u);
  // The old consumer redelivers 3 and 4 after ack_wait (delivered count 2):
  // one more registration, not one per redelivery.
  clock_.advance(30000);
  deliver_numbered(3, 5, {upsert(3, "c", 3.0)}, 2);
  deliver_numbered(4, 6, {upsert(4, "d", 4.0)}, 2);
  barrier();
  EXPECT_EQ(gaps_.size(), 2u);
  // Redeliveries that keep coming ask again, at most every kGapRetriggerMs.
  clock_.advance(DeltaApplier::kGapRetriggerMs);
  deliver_numbered(3, 7, {upsert(3, "c", 3.0)}, 3);
  barrier();
  EXPECT_EQ(gaps_.size(), 3u);
  EXPECT_EQ(acks().size(), 1u) << "only delivery 1 was taken";
}

// Waiting for a new consumer without a gap (a lost connection), the first
// refused redelivery asks for a registration at once, and the heartbeat
// says the type is refused.
TEST_F(DeltaApplierTest, ARefusedRedeliveryWhileWaitingForANewConsumerRegistersAtOnce) {
  start_counting_gaps();
  deliver_numbered(1, 1, {upsert(1, "a", 1.0)});
  barrier();
  applier_->expect_new_consumers();
  deliver_numbered(2, 2, {upsert(2, "b", 2.0)});  // the old consumer, refused: no request yet
  barrier();
  EXPECT_TRUE(gaps_.empty());
  EXPECT_EQ(board_.heartbeat("store-1", 0).status, AgentHealth::kOk);
  deliver_numbered(2, 3, {upsert(2, "b", 2.0)}, 2);  // its redelivery: no new consumer came
  barrier();
  EXPECT_EQ(gaps_, std::vector<std::string>{"prices"});
  EXPECT_EQ(board_.heartbeat("store-1", 0).status, AgentHealth::kDegraded);
  EXPECT_EQ(acks().size(), 1u);
}

TEST_F(DeltaApplierTest, TheFirstDeliveryOfARunMustBeNumberedOne) {
  start_counting_gaps();
  // The agent subscribes only after its registration created the consumer:
  // delivery 2 first means delivery 1 went to someone else.
  deliver_numbered(7, 2, {upsert(7, "g", 7.0)});
  barrier();
  EXPECT_EQ(gaps_, std::vector<std::string>{"prices"});
  EXPECT_TRUE(acks().empty());
}

TEST_F(DeltaApplierTest, FailingHookQuarantinesTheAppliedBatchAtTheClocksTime) {
  ApplierOptions options;
  options.hooks["prices"] = HookSpec{"exit 7", /*retries=*/0, /*timeout_ms=*/5000};
  start(std::move(options));
  clock_.advance(12345);
  deliver(1, {upsert(1, "a", 1.0), upsert(2, "b", 2.0)});
  barrier();

  // Applied and acked before the hook ran; the hook's failure sets the batch
  // aside and empties the outbox.
  EXPECT_EQ(acks(), (Acks{{ack_subject(1), "+ACK"}}));
  EXPECT_EQ(price("a"), 1.0);
  auto entries = replica_->quarantined();
  ASSERT_TRUE(entries.is_ok());
  ASSERT_EQ(entries->size(), 1u);
  const QuarantineEntry& e = (*entries)[0];
  EXPECT_EQ(e.kind, "hook");
  EXPECT_EQ(e.version, 1u);
  EXPECT_EQ(e.at, clock_.now_system_ms());
  EXPECT_NE(e.reason.find("status 7"), std::string::npos) << e.reason;
  auto batch = decode_delta_batch(e.payload);
  ASSERT_TRUE(batch.is_ok());
  EXPECT_EQ(batch->changes.size(), 2u);
  EXPECT_TRUE(replica_->pending_hooks()->empty());
  EXPECT_EQ(board_.quarantined(), 1u);
}

TEST_F(DeltaApplierTest, HookBatchLeftInTheOutboxRunsFirstAtStart) {
  const std::string out = dir_.file("hook-out");
  // A crash after the commit, before the hook: the outbox row is there.
  auto applied = replica_->apply("prices", {upsert(1, "a", 1.0)}, 1, /*keep_for_hook=*/true);
  ASSERT_TRUE(applied.is_ok());
  ASSERT_NE(applied->hook_entry, 0);
  ApplierOptions options;
  options.hooks["prices"] = HookSpec{"cat >> " + out, 0, 5000};
  start(std::move(options));
  barrier();
  EXPECT_TRUE(replica_->pending_hooks()->empty());
  EXPECT_EQ(*replica_->quarantine_count(), 0u);
  std::ifstream in(out);
  const std::string ran((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(ran.find("\"a\""), std::string::npos) << "the hook did not get the batch: " << ran;
  EXPECT_TRUE(acks().empty());
}

TEST_F(DeltaApplierTest, TaskPostedAfterStopIsRefusedUnavailable) {
  start();
  applier_->stop();
  auto refused = applier_->post([](Replica&) { return Status::ok(); });
  ASSERT_EQ(refused.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  EXPECT_EQ(refused.get().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace ds
