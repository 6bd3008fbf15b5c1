// Retention with the hub and agent binaries and a real nats-server
// (docs/operations.md, "Retention"): under many updates of constant keys the
// hub's change log stays bounded by the keys plus what the stream holds, and
// an agent that was away while its deletes left the stream and were pruned
// on both sides comes back through a snapshot and ends equal to the hub.
#include <signal.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "agent/replica.h"
#include "hub/agent_registry.h"
#include "shared/sqlite.h"
#include "testing/child_process.h"
#include "testing/local_host.h"
#include "tests/harness/hub_process.h"
#include "tests/integration/hub_test_util.h"

namespace ds::testing {
namespace {

constexpr int kKeys = 50;

class HubRetentionTest : public NatsTest {
 protected:
  void SetUp() override {
    NatsTest::SetUp();
    js_ = jetstream(*nc_);
    store_path_ = dir_.file("hub.db");
    // The stream keeps about 64 KiB (some 700 changes), so it moves on
    // quickly; tombstones may go after a second.
    const std::string hub = "[hub]\nname = \"test-hub\"\n[nats]\nurl = \"" + server_->url() +
                            "\"\n[store]\npath = \"" + store_path_ + "\"\n[http]\nlisten = \"\"\n"
                            "[liveness]\nheartbeat_interval_ms = 500\n"
                            "[retention]\ntombstone_max_age = \"1s\"\n"
                            "[[types]]\nname = \"item\"\nkey = \"id\"\nmax_bytes = \"64KiB\"\n"
                            "columns = [{ name = \"n\", type = \"integer\" }]\n";
    hub_ = std::make_unique<HubProcess>(dir_.write_file("hub.toml", hub), dir_.file("hub.log"));
    const std::string agent = "[agent]\nid = \"store-1\"\nlog_level = \"info\"\n[nats]\nurl = \"" + server_->url() +
                              "\"\n[replica]\npath = \"" + dir_.file("store-1.db") +
                              "\"\ntombstone_max_age = \"1s\"\n[[subscriptions]]\ntype = \"item\"\n";
    agent_config_ = dir_.write_file("agent.toml", agent);
  }
  void TearDown() override {
    agent_.reset();
    hub_.reset();
    js_.reset();
    NatsTest::TearDown();
  }

  void start_agent() {
    agent_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{std::string(DELTASYNC_BINARY_DIR) + "/deltasync-agent", "run", "--config",
                                 agent_config_},
        dir_.file("agent.log"));
    ASSERT_TRUE(agent_->start().is_ok());
  }

  // `rounds` batches updating every key from k<first> on once each.
  void update_all(int rounds, int first = 0) {
    for (int r = 0; r < rounds; ++r) {
      IngestRequest req;
      req.producer = "erp";
      req.seq = ++seq_;
      for (int k = first; k < kKeys; ++k) {
        IngestRecord rec;
        rec.key = "k" + std::to_string(k);
        rec.fields = {{"n", static_cast<int64_t>(seq_)}};
        req.records.push_back(std::move(rec));
      }
      auto reply = ingest(*nc_, "item", req);
      ASSERT_TRUE(reply.is_ok() && reply->ok()) << (reply.is_ok() ? reply->error->message : reply.status().to_string());
    }
  }

  int64_t scalar(const std::string& path, const std::string& sql) {
    OpenOptions ro;
    ro.read_only = true;
    auto db = Database::open(path, ro);
    if (!db.is_ok()) return -1;
    auto v = query_scalar_int64(**db, sql);
    return v.is_ok() ? *v : -1;
  }
  int64_t log_rows() { return scalar(store_path_, "SELECT count(*) FROM changes"); }

  // The agent's replica holds what the hub's store holds (content digests).
  bool replica_equals_hub() {
    TypeConfig item;
    item.name = "item";
    item.schema.key = "id";
    item.schema.columns = {{"n", ColumnType::kInteger}};
    QueryStoreOptions ro;
    ro.read_only = true;
    auto hub = QueryStore::open(store_path_, {item}, ro);
    auto rep = Replica::open(dir_.file("store-1.db"), true);
    if (!hub.is_ok() || !rep.is_ok()) return false;
    auto h = (*hub)->table_digest("item", std::nullopt);
    auto r = (*rep)->table_digest("item");
    return h.is_ok() && r.is_ok() && h->content == r->content;
  }

  // The log settles: pruning has caught up with the stream (the rows stay
  // put for a second; at most 20 s).
  int64_t settled_log_rows() {
    int64_t rows = log_rows();
    for (int i = 0, still = 0; i < 80 && still < 4; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      const int64_t now = log_rows();
      still = now == rows ? still + 1 : 0;
      rows = now;
    }
    return rows;
  }

  TempDir dir_{"hub-retention-test"};
  std::string store_path_;
  std::string agent_config_;
  uint64_t seq_ = 0;
  std::unique_ptr<HubProcess> hub_;
  std::unique_ptr<ChildProcess> agent_;
  std::unique_ptr<JetStream> js_;
};

TEST_F(HubRetentionTest, TheLogStaysFlatUnderConstantKeys) {
  ASSERT_TRUE(hub_->start().is_ok()) << hub_->log_text();
  ASSERT_NO_FATAL_FAILURE(update_all(200));  // 10,000 updates
  const int64_t after_10k = settled_log_rows();
  ASSERT_NO_FATAL_FAILURE(update_all(200));  // 20,000
  const int64_t after_20k = settled_log_rows();
  std::printf("[ info ] change-log rows: %lld after 10,000 updates, %lld after 20,000 (of %d keys)\n",
              static_cast<long long>(after_10k), static_cast<long long>(after_20k), kKeys);
  // One change per key plus what the 64 KiB stream holds (well under 2,000).
  EXPECT_LT(after_10k, 2500);
  EXPECT_LT(after_20k, 2500);
  EXPECT_LT(after_20k, after_10k + 500) << "the log must not grow with the updates";
  EXPECT_LT(scalar(store_path_, "SELECT count(*) FROM producer_batches"), 100);
  EXPECT_EQ(scalar(store_path_, "SELECT count(*) FROM t_item"), kKeys);
  EXPECT_EQ(hub_->log_count("error [hub]"), 0u) << hub_->log_text();
}

TEST_F(HubRetentionTest, AnAgentBackAfterItsDeletesWerePrunedReloadsAndEndsEqual) {
  ASSERT_TRUE(hub_->start().is_ok()) << hub_->log_text();
  ASSERT_NO_FATAL_FAILURE(start_agent());
  ASSERT_NO_FATAL_FAILURE(update_all(5));
  // The agent deletes a key while running: its own tombstone goes after 1 s.
  {
    IngestRequest req;
    req.producer = "erp";
    req.seq = ++seq_;
    IngestRecord gone;
    gone.key = "k0";
    gone.op = Op::kDelete;
    req.records.push_back(gone);
    auto reply = ingest(*nc_, "item", req);
    ASSERT_TRUE(reply.is_ok() && reply->ok());
  }
  const std::string replica = dir_.file("store-1.db");
  ASSERT_TRUE(wait_until([&] {
    return scalar(replica, "SELECT count(*) FROM _deltasync_tombstone") == 1;
  }, 20000)) << read_text_file(dir_.file("agent.log"));
  ASSERT_TRUE(wait_until([&] {
    return scalar(replica, "SELECT count(*) FROM _deltasync_tombstone") == 0;
  }, 20000)) << "the agent keeps its tombstone past tombstone_max_age";
  ASSERT_EQ(agent_->stop(SIGTERM), std::optional<int>(0)) << read_text_file(dir_.file("agent.log"));

  // Away: ten keys deleted, then enough updates that the stream no longer
  // holds the deletes and the hub prunes their tombstones.
  {
    IngestRequest req;
    req.producer = "erp";
    req.seq = ++seq_;
    for (int k = 1; k <= 10; ++k) {
      IngestRecord gone;
      gone.key = "k" + std::to_string(k);
      gone.op = Op::kDelete;
      req.records.push_back(gone);
    }
    auto reply = ingest(*nc_, "item", req);
    ASSERT_TRUE(reply.is_ok() && reply->ok());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // older than tombstone_max_age
  ASSERT_TRUE(wait_until([&] {
    if (HasFatalFailure()) return true;
    update_all(20, 11);  // the live keys only
    return scalar(store_path_, "SELECT count(*) FROM t_item WHERE _deleted = 1") == 0 &&
           scalar(store_path_, "SELECT count(*) FROM changes WHERE op = 'd'") == 0;
  }, 60000)) << "the hub keeps the tombstones: " << hub_->log_text();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(scalar(store_path_, "SELECT count(*) FROM t_item"), kKeys - 11);

  ASSERT_NO_FATAL_FAILURE(start_agent());
  auto equal = [&] { return replica_equals_hub() && scalar(replica, "SELECT count(*) FROM item") == kKeys - 11; };
  ASSERT_TRUE(wait_until(equal, 30000)) << read_text_file(dir_.file("agent.log")) << hub_->log_text();
  const std::string agent_log = read_text_file(dir_.file("agent.log"));
  EXPECT_NE(agent_log.find("snapshot"), std::string::npos) << agent_log;
  EXPECT_EQ(hub_->log_count("error [hub]"), 0u) << hub_->log_text();
}

// The broker loses its store after the hub compacted the log below the
// stream's start: the hub rebuilds the stream from the compacted log, so
// the same sequence numbers now name later batches. An agent that was away
// since seq 3 must not resume after the new seq 3 (it would skip the one
// message holding k0..k9's last change): the hub sees the checkpoint's
// message carries a batch past the agent's version and orders a snapshot.
TEST_F(HubRetentionTest, AnAgentBackAfterTheBrokerLostACompactedStreamReloadsAndEndsEqual) {
  ASSERT_TRUE(hub_->start().is_ok()) << hub_->log_text();
  ASSERT_NO_FATAL_FAILURE(start_agent());
  ASSERT_NO_FATAL_FAILURE(update_all(3));  // stream seqs 1..3
  const std::string replica = dir_.file("store-1.db");
  // The hub has the agent's checkpoint from its heartbeats (written at the
  // next flush), so it resumes the agent from there and nowhere earlier.
  ASSERT_TRUE(wait_until([&] {
    return scalar(agent_registry_path(store_path_), "SELECT seq FROM agent_subscriptions WHERE agent = 'store-1'") ==
           3;
  }, 20000)) << read_text_file(dir_.file("agent.log"));
  ASSERT_EQ(agent_->stop(SIGTERM), std::optional<int>(0)) << read_text_file(dir_.file("agent.log"));

  // Away: k0..k9 change once (their last change), then k10.. change until
  // the stream moved past that and the hub compacted the log below it.
  {
    IngestRequest req;
    req.producer = "erp";
    req.seq = ++seq_;
    for (int k = 0; k < 10; ++k) {
      IngestRecord rec;
      rec.key = "k" + std::to_string(k);
      rec.fields = {{"n", int64_t{1000}}};
      req.records.push_back(std::move(rec));
    }
    auto reply = ingest(*nc_, "item", req);
    ASSERT_TRUE(reply.is_ok() && reply->ok());
  }
  ASSERT_TRUE(wait_until([&] {
    if (HasFatalFailure()) return true;
    update_all(20, 10);
    auto state = js_->stream_state("DS_ITEM");
    // Compacted: of the first four batches only k0..k9's is left.
    return state.is_ok() && state->first_seq > 5 &&
           scalar(store_path_, "SELECT count(DISTINCT batch) FROM changes WHERE batch <= 160") == 1;
  }, 60000)) << "the hub did not compact: " << hub_->log_text();
  ASSERT_FALSE(HasFatalFailure());

  // The broker loses its store; the hub rebuilds the stream from its log,
  // with room for all of it this time (else the rebuilt stream drops its
  // first messages at once, and seq 3 with them). The agent is dead by then,
  // so the hub opens its consumer only when it is back, on the new stream.
  ASSERT_TRUE(wait_until([&] {
    OpenOptions ro;
    ro.read_only = true;
    auto db = Database::open(agent_registry_path(store_path_), ro);
    if (!db.is_ok()) return false;
    auto st = (*db)->prepare("SELECT state FROM agents WHERE id = 'store-1'");
    if (!st.is_ok()) return false;
    auto row = st->step();
    return row.is_ok() && *row && st->column_text(0) == "dead";
  }, 20000)) << hub_->log_text();
  hub_->signal(SIGTERM);
  ASSERT_EQ(hub_->wait_exit(20000), std::optional<int>(0)) << hub_->log_text();
  const std::string config = read_text_file(dir_.file("hub.toml"));
  const size_t limit = config.find("max_bytes = \"64KiB\"");
  ASSERT_NE(limit, std::string::npos);
  dir_.write_file("hub.toml", std::string(config).replace(limit, 19, "max_bytes = \"8MiB\""));
  ASSERT_TRUE(server_->stop().is_ok());
  std::filesystem::remove_all(server_->store_dir());
  std::filesystem::create_directories(server_->store_dir());
  ASSERT_TRUE(server_->start().is_ok());
  ASSERT_TRUE(hub_->start().is_ok()) << hub_->log_text();
  ASSERT_TRUE(wait_until([&] {
    auto state = js_->stream_state("DS_ITEM");
    return state.is_ok() && state->last_seq > 5;
  }, 20000)) << hub_->log_text();
  auto rebuilt = js_->get_message("DS_ITEM", 3);
  ASSERT_TRUE(rebuilt.is_ok()) << rebuilt.status().to_string();
  ASSERT_NE(rebuilt->msg_id, std::optional<std::string>("item:101")) << "the stream was not renumbered";

  ASSERT_NO_FATAL_FAILURE(start_agent());
  ASSERT_TRUE(wait_until([&] { return replica_equals_hub(); }, 30000)) << "k0..k9 on the agent: "
                                        << scalar(replica, "SELECT count(*) FROM item WHERE n = 1000") << " of 10\n"
                                        << read_text_file(dir_.file("agent.log")) << hub_->log_text();
  EXPECT_EQ(scalar(replica, "SELECT count(*) FROM item WHERE n = 1000"), 10);
  EXPECT_EQ(hub_->log_count("the stream was rebuilt since"), 1u) << hub_->log_text();
  EXPECT_EQ(hub_->log_count("error [hub]"), 0u) << hub_->log_text();
}

}  // namespace
}  // namespace ds::testing
