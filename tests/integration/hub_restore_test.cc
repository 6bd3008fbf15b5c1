// Backup and restore with the hub binary and a real nats-server
// (docs/operations.md, "Backup and restore"): a store restored from an older
// `deltasync-hub backup` takes back from the streams what the backup lacks
// and goes on with the right next versions; when a stream no longer holds
// the gap, the hub refuses ingest of that type, says what to do, and is not
// ready.
#include <nats/nats.h>
#include <signal.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <thread>

#include "shared/sqlite.h"
#include "testing/child_process.h"
#include "tests/harness/hub_process.h"
#include "tests/integration/hub_test_util.h"

namespace ds::testing {
namespace {

constexpr std::string_view kToken = "restore-test-token-0123456789";

// The whole store as rows of text: every record (tombstones included),
// every change of the log except its producer (the stream does not carry
// it), each type's head and every producer retry key.
using StoreDump = std::map<std::string, std::vector<std::string>>;

StoreDump dump_store(const std::string& path) {
  StoreDump out;
  OpenOptions ro;
  ro.read_only = true;
  auto db = Database::open(path, ro);
  EXPECT_TRUE(db.is_ok()) << db.status().to_string();
  if (!db.is_ok()) return out;
  const std::vector<std::pair<std::string, std::string>> queries = {
      {"price", "SELECT _key, amount, currency, _partition, _version, _ts, _hub_ts, _deleted FROM t_price ORDER BY _key"},
      {"stock", "SELECT _key, store, qty, _partition, _version, _ts, _hub_ts, _deleted FROM t_stock ORDER BY _key"},
      {"changes", "SELECT type, version, key, op, partition, batch, hex(fields), ts, hub_ts FROM changes"
                  " ORDER BY type, version"},
      {"heads", "SELECT type, version FROM type_state ORDER BY type"},
      {"retry_keys", "SELECT producer, type, seq, first_version, last_version, hex(digest) FROM producer_batches"
                     " ORDER BY type, seq"}};
  for (const auto& [name, sql] : queries) {
    auto s = (*db)->prepare(sql);
    EXPECT_TRUE(s.is_ok()) << s.status().to_string();
    if (!s.is_ok()) continue;
    for (;;) {
      auto row = s->step();
      if (!row.is_ok() || !*row) break;
      std::string line;
      for (int i = 0; i < s->column_count(); ++i) line += (s->column_is_null(i) ? "NULL" : s->column_text(i)) + "|";
      out[name].push_back(line);
    }
  }
  return out;
}

// Polls every 50 ms for up to 15 s.
bool eventually(const std::function<bool()>& pred) { return wait_until(pred, 15000, 50); }

class HubRestoreTest : public NatsTest {
 protected:
  void SetUp() override {
    NatsTest::SetUp();
    js_ = jetstream(*nc_);
    http_port_ = free_tcp_port();
    config_ = two_type_hub_config(*server_, dir_);
    config_path_ = dir_.write_file(
        "hub.toml", two_type_hub_toml(*server_, dir_, "127.0.0.1:" + std::to_string(http_port_), std::string(kToken)));
    hub_ = std::make_unique<HubProcess>(config_path_, dir_.file("hub.log"));
  }
  void TearDown() override {
    hub_.reset();
    js_.reset();
    NatsTest::TearDown();
  }

  // Batch n of prices: 5 records over 30 keys, every fourth batch ends with a
  // delete; batch n of stock: 4 records over two stores.
  void ingest_round(uint64_t n) {
    IngestRequest prices;
    prices.producer = "erp";
    prices.seq = n;
    for (uint64_t j = 0; j < 5; ++j) {
      prices.records.push_back(price_record("sku-" + std::to_string((n * 3 + j) % 30), static_cast<double>(n) + 0.5));
    }
    if (n % 4 == 0) {
      prices.records.back().op = Op::kDelete;
      prices.records.back().fields.clear();
    }
    auto p = ingest(*nc_, "price", prices);
    ASSERT_TRUE(p.is_ok() && p->ok()) << (p.is_ok() ? p->error->message : p.status().to_string());
    IngestRequest stock;
    stock.producer = "erp";
    stock.seq = n;
    for (uint64_t j = 0; j < 4; ++j) {
      stock.records.push_back(stock_record("item-" + std::to_string((n + j) % 12) + "-" + std::to_string(j % 2),
                                           "store-" + std::to_string(j % 2), static_cast<int64_t>(n * 10 + j)));
    }
    auto s = ingest(*nc_, "stock", stock);
    ASSERT_TRUE(s.is_ok() && s->ok()) << (s.is_ok() ? s->error->message : s.status().to_string());
  }

  CommandResult backup(const std::string& to) {
    return run_to_completion({std::string(DELTASYNC_BINARY_DIR) + "/deltasync-hub", "backup", "--config", config_path_,
                              "--to", to},
                             dir_.file("backup-cmd"));
  }

  void stop_hub() {
    hub_->signal(SIGTERM);
    ASSERT_EQ(hub_->wait_exit(20000), std::optional<int>(0)) << hub_->log_text();
  }

  // What an operator does: the hub stopped, the backup copied over the store,
  // the old store's -wal and -shm removed.
  void restore(const std::string& backup_file) {
    std::filesystem::copy_file(backup_file, config_.store_path, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::remove(config_.store_path + "-wal");
    std::filesystem::remove(config_.store_path + "-shm");
  }

  uint64_t restore_across_an_unfillable_gap();

  uint64_t head(const std::string& type) {
    auto reader = open_reader(config_);
    return reader ? reader->type_state(type)->version : 0;
  }

  TempDir dir_{"hub-restore-test"};
  HubConfig config_;
  std::string config_path_;
  int http_port_ = 0;
  std::unique_ptr<HubProcess> hub_;
  std::unique_ptr<JetStream> js_;
};

TEST_F(HubRestoreTest, RestoredFromAnOlderBackupTakesBackWhatTheStreamHolds) {
  ASSERT_TRUE(hub_->start().is_ok()) << hub_->log_text();
  for (uint64_t n = 1; n <= 12; ++n) ASSERT_NO_FATAL_FAILURE(ingest_round(n));

  const std::string backup_file = dir_.file("backup.db");
  CommandResult made = backup(backup_file);
  ASSERT_EQ(made.exit_code, 0) << made.out << made.err;
  EXPECT_NE(made.out.find("integrity ok"), std::string::npos) << made.out;
  EXPECT_NE(made.err.find("pages"), std::string::npos) << made.err;  // progress
  struct stat sb {};
  ASSERT_EQ(::stat(backup_file.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);
  const uint64_t price_at_backup = head("price");
  EXPECT_EQ(price_at_backup, 60u);

  for (uint64_t n = 13; n <= 25; ++n) ASSERT_NO_FATAL_FAILURE(ingest_round(n));
  const uint64_t price_head = head("price");
  const uint64_t stock_head = head("stock");
  ASSERT_GT(price_head, price_at_backup);
  stop_hub();
  StoreDump before = dump_store(config_.store_path);

  restore(backup_file);
  EXPECT_EQ(head("price"), price_at_backup);
  const size_t reconciled = hub_->log_count("reconcile DS_STOCK: in step with the log");
  ASSERT_TRUE(hub_->start().is_ok()) << hub_->log_text();
  const std::string took_back =
      "recover DS_PRICE: took back versions " + std::to_string(price_at_backup + 1) + ".." + std::to_string(price_head);
  ASSERT_TRUE(eventually([&] { return hub_->log_count("reconcile DS_STOCK: in step with the log") > reconciled; }))
      << hub_->log_text();
  EXPECT_EQ(hub_->log_count(took_back), 1u) << hub_->log_text();
  EXPECT_EQ(hub_->log_count("recover DS_STOCK: took back versions"), 1u) << hub_->log_text();
  EXPECT_EQ(hub_->log_count("error [hub]"), 0u) << hub_->log_text();
  EXPECT_EQ(http(http_port_, "GET", "/readyz").status, 200);

  // Ingest goes on with the next versions, and the stream gets them.
  IngestRequest next;
  next.producer = "erp";
  next.seq = 26;
  next.records = {price_record("sku-new", 9.5)};
  auto r = ingest(*nc_, "price", next);
  ASSERT_TRUE(r.is_ok() && r->ok()) << (r.is_ok() ? r->error->message : r.status().to_string());
  EXPECT_EQ(r->first_version, price_head + 1);
  auto messages = stream_messages(*js_, "DS_PRICE");
  ASSERT_FALSE(messages.empty());
  EXPECT_EQ(messages.back().msg_id, std::optional<std::string>("price:" + std::to_string(price_head + 1)));
  stop_hub();

  // Apart from that one change, the store is exactly what it was before the stop.
  StoreDump after = dump_store(config_.store_path);
  ASSERT_EQ(after["changes"].size(), before["changes"].size() + 1);
  const std::string new_change = "price|" + std::to_string(price_head + 1) + "|";
  after["changes"].erase(std::remove_if(after["changes"].begin(), after["changes"].end(),
                                        [&](const std::string& l) { return l.rfind(new_change, 0) == 0; }),
                         after["changes"].end());
  after["price"].erase(std::remove_if(after["price"].begin(), after["price"].end(),
                                      [](const std::string& l) { return l.rfind("sku-new|", 0) == 0; }),
                       after["price"].end());
  after["heads"] = {"price|" + std::to_string(price_head) + "|", "stock|" + std::to_string(stock_head) + "|"};
  // The retry keys taken back with the changes (header Ds-Retry-Keys): a
  // producer's retry of a batch acknowledged after the backup gets its range.
  std::erase_if(after["retry_keys"], [](const std::string& l) { return l.rfind("erp|price|26|", 0) == 0; });
  ASSERT_EQ(before["retry_keys"].size(), 50u);
  for (const auto& [table, rows] : before) {
    const std::vector<std::string>& now = after[table];
    for (size_t i = 0; i < std::max(rows.size(), now.size()); ++i) {
      const std::string was = i < rows.size() ? rows[i] : "(none)";
      const std::string is = i < now.size() ? now[i] : "(none)";
      EXPECT_EQ(is, was) << table << " row " << i;
      if (is != was) break;
    }
  }
}

// Restores the store from a backup whose next price version the stream no
// longer holds (its message deleted, as when it aged out) and starts the
// hub; returns the backup's price head.
uint64_t HubRestoreTest::restore_across_an_unfillable_gap() {
  EXPECT_TRUE(hub_->start().is_ok()) << hub_->log_text();
  for (uint64_t n = 1; n <= 4; ++n) ingest_round(n);
  const std::string backup_file = dir_.file("backup.db");
  EXPECT_EQ(backup(backup_file).exit_code, 0);
  const uint64_t price_at_backup = head("price");
  for (uint64_t n = 5; n <= 8; ++n) ingest_round(n);
  stop_hub();

  uint64_t gap_seq = 0;
  for (const StoredMessage& m : stream_messages(*js_, "DS_PRICE")) {
    auto d = decode_delta_batch(m.data);
    EXPECT_TRUE(d.is_ok());
    if (!d.is_ok()) continue;
    for (const Change& c : d->changes) {
      if (c.v == price_at_backup + 1) gap_seq = m.seq;
    }
  }
  EXPECT_NE(gap_seq, 0u);
  jsErrCode err = static_cast<jsErrCode>(0);
  EXPECT_EQ(js_DeleteMsg(js_->raw(), "DS_PRICE", gap_seq, nullptr, &err), NATS_OK);

  restore(backup_file);
  EXPECT_TRUE(hub_->start().is_ok()) << hub_->log_text();
  return price_at_backup;
}

TEST_F(HubRestoreTest, AGapTheStreamNoLongerHoldsRefusesIngestOfThatTypeAndSaysWhatToDo) {
  const uint64_t price_at_backup = restore_across_an_unfillable_gap();
  ASSERT_FALSE(HasFailure());
  const std::string advice =
      "Restore a newer backup of the store (one taken after version " + std::to_string(price_at_backup) + ")";
  EXPECT_TRUE(eventually([&] { return hub_->log_count(advice) > 0; })) << hub_->log_text();
  HttpResponse ready;
  EXPECT_TRUE(eventually([&] {
    ready = http(http_port_, "GET", "/readyz");
    return ready.body.find("store behind stream for type 'price'") != std::string::npos;
  })) << ready.body;
  EXPECT_EQ(ready.status, 503);

  IngestRequest next;
  next.producer = "erp";
  next.seq = 100;
  next.records = {price_record("sku-new", 9.5)};
  auto refused = ingest(*nc_, "price", next);
  ASSERT_TRUE(refused.is_ok());
  ASSERT_FALSE(refused->ok());
  EXPECT_EQ(refused->error->code, StatusCode::kUnavailable);
  EXPECT_EQ(head("price"), price_at_backup) << "nothing of type price may be stored";
  // The other type took back its gap and goes on.
  EXPECT_TRUE(eventually([&] { return hub_->log_count("recover DS_STOCK: took back versions") == 1; }))
      << hub_->log_text();
  IngestRequest stock;
  stock.producer = "erp";
  stock.seq = 100;
  stock.records = {stock_record("item-x", "store-0", 1)};
  auto ok = ingest(*nc_, "stock", stock);
  ASSERT_TRUE(ok.is_ok() && ok->ok()) << (ok.is_ok() ? ok->error->message : ok.status().to_string());
  stop_hub();
}

// docs/operations.md, "When the stream cannot fill the gap", step 2, with
// nothing but the hub and nats-server: both stopped, the type's stream
// directory deleted from nats-server's store. The hub recreates the stream
// from its change log and goes on from the store's head.
TEST_F(HubRestoreTest, GivingUpTheGapByDeletingTheStreamGoesOnFromTheStoresHead) {
  const uint64_t price_at_backup = restore_across_an_unfillable_gap();
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(eventually(
      [&] { return http(http_port_, "GET", "/readyz").body.find("store behind stream") != std::string::npos; }));
  stop_hub();
  ASSERT_TRUE(server_->stop().is_ok());
  const std::filesystem::path stream_dir =
      std::filesystem::path(server_->store_dir()) / "jetstream" / "$G" / "streams" / "DS_PRICE";
  ASSERT_TRUE(std::filesystem::is_directory(stream_dir)) << stream_dir;
  std::filesystem::remove_all(stream_dir);
  ASSERT_TRUE(server_->start().is_ok()) << server_->log_text();

  const size_t republished = hub_->log_count("reconcile DS_PRICE: republished");
  const size_t errors = hub_->log_count("error [hub]");
  ASSERT_TRUE(hub_->start().is_ok()) << hub_->log_text();
  HttpResponse ready;
  EXPECT_TRUE(eventually([&] {
    ready = http(http_port_, "GET", "/readyz");
    return ready.status == 200;
  })) << ready.body << hub_->log_text();

  IngestRequest next;
  next.producer = "erp";
  next.seq = 100;
  next.records = {price_record("sku-new", 9.5)};
  ASSERT_TRUE(wait_until([&] { return nc_->connected(); }, 15000, 50));
  auto r = ingest(*nc_, "price", next);
  ASSERT_TRUE(r.is_ok() && r->ok()) << (r.is_ok() ? r->error->message : r.status().to_string());
  EXPECT_EQ(r->first_version, price_at_backup + 1);

  // The new stream holds every version of the store, in order, once.
  uint64_t expect = 1;
  for (const StoredMessage& m : stream_messages(*js_, "DS_PRICE")) {
    auto d = decode_delta_batch(m.data);
    ASSERT_TRUE(d.is_ok()) << d.status().to_string();
    for (const Change& c : d->changes) EXPECT_EQ(c.v, expect++) << "message seq " << m.seq;
  }
  EXPECT_EQ(expect, price_at_backup + 2);
  stop_hub();
  EXPECT_EQ(hub_->log_count("reconcile DS_PRICE: republished"), republished + 1) << hub_->log_text();
  EXPECT_EQ(hub_->log_count("error [hub]"), errors) << hub_->log_text();
}

// /readyz says ready only once every stream is reconciled with the change
// log: here, after the hub took back hundreds of versions a restored store
// lacked (the warning saying so is written, and flushed, before that).
TEST_F(HubRestoreTest, NotReadyUntilTheStreamsAreReconciled) {
  ASSERT_TRUE(hub_->start().is_ok()) << hub_->log_text();
  ASSERT_NO_FATAL_FAILURE(ingest_round(1));
  const std::string backup_file = dir_.file("backup.db");
  ASSERT_EQ(backup(backup_file).exit_code, 0);
  for (uint64_t n = 2; n <= 400; ++n) ASSERT_NO_FATAL_FAILURE(ingest_round(n));
  stop_hub();
  restore(backup_file);

  const size_t took_back = hub_->log_count("recover DS_PRICE: took back versions");
  ASSERT_TRUE(hub_->start().is_ok()) << hub_->log_text();
  std::vector<std::string> reasons;
  HttpResponse ready;
  ASSERT_TRUE(eventually([&] {
    ready = http(http_port_, "GET", "/readyz");
    if (ready.status != 200 && (reasons.empty() || reasons.back() != ready.body)) reasons.push_back(ready.body);
    return ready.status == 200;
  })) << ready.body;
  EXPECT_EQ(hub_->log_count("recover DS_PRICE: took back versions"), took_back + 1)
      << "ready before the streams were reconciled\n" << hub_->log_text();
  const bool said_why = std::any_of(reasons.begin(), reasons.end(), [](const std::string& r) {
    return r.find("reconciling the streams with the change log") != std::string::npos;
  });
  EXPECT_TRUE(said_why || reasons.empty()) << reasons.front();
  stop_hub();
}

TEST_F(HubRestoreTest, BackupCommandErrorsAreClear) {
  CommandResult no_to = run_to_completion(
      {std::string(DELTASYNC_BINARY_DIR) + "/deltasync-hub", "backup", "--config", config_path_}, dir_.file("c1"));
  EXPECT_EQ(no_to.exit_code, 2) << no_to.err;
  EXPECT_NE(no_to.err.find("--to"), std::string::npos) << no_to.err;
  CommandResult missing = run_to_completion({std::string(DELTASYNC_BINARY_DIR) + "/deltasync-hub", "backup",
                                             "--store", dir_.file("nope.db"), "--to", dir_.file("b.db")},
                                            dir_.file("c2"));
  EXPECT_EQ(missing.exit_code, 1) << missing.err;
  EXPECT_NE(missing.err.find("does not exist"), std::string::npos) << missing.err;
  EXPECT_FALSE(std::filesystem::exists(dir_.file("b.db")));
}

}  // namespace
}  // namespace ds::testing
