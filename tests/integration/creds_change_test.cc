// `deltasync creds add|grant|revoke|rotate --reload` against a real
// nats-server (2.9.10) whose config includes the directory's auth.conf, and
// the real hub (in process) reading its identities.json: each change takes
// effect on the running server and hub without a restart, and touches no
// other identity. The changes are made by the `deltasync` binary, as an
// operator (or deploy/rollout) makes them.
//
// What nats-server 2.9.10 does on a reload (server/reload.go,
// reloadAuthorization), as these tests show: a connected client whose
// nkey is no longer in the users list (revoked, or rotated away) is closed
// at once (clientHasMovedToDifferentAccount: "user/nkey no longer exists");
// its reconnects are refused as an authentication error, and cnats 3.4
// gives up after the second one (Connection's on_closed). Every other
// client is re-checked with the nonce of its original CONNECT, kept, and
// gets its new permissions in place. A connection's public key is fixed at
// connect, so even a process whose seed file was replaced in place must be
// restarted to use a rotated key. JetStream survives the reload only when
// the config file enables it: the harness's nats-server does (see
// testing/nats_server_process.h).

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hub/hub.h"
#include "shared/codec.h"
#include "shared/identities.h"
#include "shared/names.h"
#include "shared/nats.h"
#include "testing/child_process.h"
#include "testing/temp_dir.h"
#include "tests/harness/nats_server.h"
#include "tests/harness/test_credentials.h"
#include "tests/integration/hub_test_util.h"
#include "tools/creds.h"

namespace ds::testing {
namespace {

std::string cli_binary() { return std::string(DELTASYNC_BINARY_DIR) + "/deltasync"; }

// What a connection went through, counted on cnats threads.
struct ConnectionEvents {
  std::atomic<int> disconnected{0};
  std::atomic<int> reconnected{0};
  std::atomic<int> closed{0};
};

class CredsChangeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CommandResult init = creds({"init", "--dir", dir(), "--hub", "hub", "--agent", "store-1:stock:store-1",
                                "--producer", "erp:stock,price"});
    ASSERT_EQ(init.exit_code, 0) << init.err;
    server_ = std::make_unique<NatsServer>(include_auth_conf(dir()));
    Status s = server_->start();
    ASSERT_TRUE(s.is_ok()) << s.to_string();
  }

  void TearDown() override {
    if (hub_) hub_->stop();
    hub_.reset();
    connections_.clear();
    server_.reset();
  }

  const std::string& dir() const { return creds_dir_.path(); }
  std::string pid() const { return std::to_string(server_->pid()); }

  CommandResult creds(std::vector<std::string> args) {
    args.insert(args.begin(), {cli_binary(), "creds"});
    return run_to_completion(args, work_.file("cli"), {}, 30000);
  }

  // A client of the server with the seed in `seed_file`, as `name` (its
  // inbox prefix); events counted in `events` when given.
  Result<std::unique_ptr<Connection>> connect(const std::string& name, const std::string& seed_file,
                                              std::shared_ptr<ConnectionEvents> events = nullptr) {
    ConnectOptions opts = test_connect_options(*server_);
    opts.config.nkey_seed_file = seed_file;
    opts.inbox_prefix = inbox_prefix(name);
    if (events) {
      opts.on_disconnected = [events] { ++events->disconnected; };
      opts.on_reconnected = [events] { ++events->reconnected; };
      opts.on_closed = [events](const Status&) { ++events->closed; };
    }
    return Connection::connect(std::move(opts));
  }

  // Connects, flushes (a round trip the server answered) and disconnects.
  Status can_connect(const std::string& name, const std::string& seed_file) {
    DS_ASSIGN_OR_RETURN(auto nc, connect(name, seed_file));
    return nc->flush(5000);
  }

  std::string seed(const std::string& name) const { return creds_seed_file(dir(), name); }

  // Seed files by name with their bytes.
  std::map<std::string, std::string> seeds() const {
    std::map<std::string, std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir())) {
      if (e.path().extension() == ".nk") out[e.path().filename().string()] = read_text_file(e.path().string());
    }
    return out;
  }

  // Waits for the server to log its `n`th completed reload.
  bool wait_reloads(size_t n, int64_t timeout_ms = 10000) {
    return wait_until([&] {
      const std::string log = server_->log_text();
      size_t count = 0;
      for (size_t at = log.find("Reloaded server configuration"); at != std::string::npos;
           at = log.find("Reloaded server configuration", at + 1)) {
        ++count;
      }
      return count >= n;
    }, timeout_ms);
  }

  // Keeps a copy of a seed file the command is about to delete or replace.
  std::string keep_copy(const std::string& name) {
    const std::string copy = work_.file(name + ".old.nk");
    std::filesystem::copy_file(seed(name), copy, std::filesystem::copy_options::overwrite_existing);
    return copy;
  }

  Connection& keep(std::unique_ptr<Connection> nc) {
    connections_.push_back(std::move(nc));
    return *connections_.back();
  }

  TempDir creds_dir_{"deltasync-creds-change"};
  TempDir work_{"deltasync-creds-work"};
  std::unique_ptr<NatsServer> server_;
  std::unique_ptr<Hub> hub_;
  std::vector<std::unique_ptr<Connection>> connections_;
};

TEST_F(CredsChangeTest, AddingAnAgentLeavesEveryOtherSeedAndConnectionAlone) {
  auto events = std::make_shared<ConnectionEvents>();
  auto store1 = connect("store-1", seed("store-1"), events);
  ASSERT_TRUE(store1.is_ok()) << store1.status().to_string();
  Connection& live = keep(std::move(store1).value());
  const auto before = seeds();

  CommandResult add = creds({"add", "--dir", dir(), "--agent", "store-2:stock:store-2", "--reload", pid()});
  ASSERT_EQ(add.exit_code, 0) << add.out << add.err;
  EXPECT_NE(add.out.find("added agent store-2"), std::string::npos) << add.out;
  EXPECT_NE(add.out.find("told to reload"), std::string::npos) << add.out;
  ASSERT_TRUE(wait_reloads(1)) << server_->log_text();

  auto after = seeds();
  ASSERT_EQ(after.size(), before.size() + 1);
  for (const auto& [name, bytes] : before) EXPECT_EQ(after.at(name), bytes) << name << " changed";
  for (const std::string name : {"store-2", "store-1", "erp", "hub"}) {
    Status s = can_connect(name, seed(name));
    EXPECT_TRUE(s.is_ok()) << name << ": " << s.to_string();
  }
  // The connection made before the reload was re-checked and kept.
  EXPECT_TRUE(live.flush(5000).is_ok());
  EXPECT_EQ(events->disconnected.load(), 0);

  // A re-run is a success that changes nothing; other types are an error.
  CommandResult again = creds({"add", "--dir", dir(), "--agent", "store-2:stock:store-2"});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("nothing to do"), std::string::npos) << again.out;
  EXPECT_EQ(seeds(), after);
  CommandResult other = creds({"add", "--dir", dir(), "--agent", "store-2:stock"});
  EXPECT_EQ(other.exit_code, 1) << other.out;
  EXPECT_NE(other.err.find("creds grant"), std::string::npos) << other.err;
}

TEST_F(CredsChangeTest, ARevokedIdentityIsCutOffAndCannotConnectAgain) {
  const std::string old_seed = keep_copy("store-1");  // the agent's host keeps its copy; revoke deletes ours
  const std::string revoked_key = read_creds_dir(dir())->find("store-1")->public_key;
  auto revoked_events = std::make_shared<ConnectionEvents>();
  auto kept_events = std::make_shared<ConnectionEvents>();
  auto store1 = connect("store-1", old_seed, revoked_events);
  auto erp = connect("erp", seed("erp"), kept_events);
  ASSERT_TRUE(store1.is_ok() && erp.is_ok());
  Connection& revoked = keep(std::move(store1).value());
  Connection& other = keep(std::move(erp).value());

  CommandResult revoke = creds({"revoke", "--dir", dir(), "store-1", "--reload", pid()});
  ASSERT_EQ(revoke.exit_code, 0) << revoke.out << revoke.err;
  EXPECT_FALSE(std::filesystem::exists(seed("store-1")));
  EXPECT_EQ(read_text_file(creds_auth_conf(dir())).find(revoked_key), std::string::npos);
  ASSERT_TRUE(wait_reloads(1)) << server_->log_text();

  // nats-server closes the live connection at the reload; cnats' reconnects
  // are refused and it gives up (the same auth error twice).
  EXPECT_TRUE(wait_until([&] { return revoked_events->closed.load() > 0; }, 15000))
      << "still open: disconnected " << revoked_events->disconnected.load();
  EXPECT_TRUE(revoked.closed());
  EXPECT_GE(revoked_events->disconnected.load(), 1);
  EXPECT_EQ(revoked_events->reconnected.load(), 0);
  EXPECT_NE(server_->log_text().find("Nkey \"" + revoked_key + "\""), std::string::npos)
      << "nats-server names the refused key: " << server_->log_text();
  EXPECT_FALSE(can_connect("store-1", old_seed).is_ok()) << "the revoked seed still opens a connection";

  EXPECT_TRUE(other.flush(5000).is_ok());
  EXPECT_EQ(kept_events->disconnected.load(), 0);
  for (const std::string name : {"erp", "hub"}) {
    Status s = can_connect(name, seed(name));
    EXPECT_TRUE(s.is_ok()) << name << ": " << s.to_string();
  }
}

TEST_F(CredsChangeTest, ARotatedIdentitysOldSeedIsRefusedAndTheNewOneWorks) {
  const std::string old_seed = keep_copy("erp");
  const std::string hub_seed = read_text_file(seed("hub"));
  const std::string store1_seed = read_text_file(seed("store-1"));
  // A process whose seed file is replaced in place: it signs with the new
  // seed at its reconnect, but cnats sends the public key it read at
  // connect, so it is refused like the old copy and must be restarted.
  auto live_events = std::make_shared<ConnectionEvents>();
  auto live = connect("erp", seed("erp"), live_events);
  ASSERT_TRUE(live.is_ok()) << live.status().to_string();
  keep(std::move(live).value());

  CommandResult rotate = creds({"rotate", "--dir", dir(), "erp", "--reload", pid()});
  ASSERT_EQ(rotate.exit_code, 0) << rotate.out << rotate.err;
  ASSERT_NE(read_text_file(seed("erp")), read_text_file(old_seed));
  EXPECT_EQ(read_text_file(seed("hub")), hub_seed);
  EXPECT_EQ(read_text_file(seed("store-1")), store1_seed);
  ASSERT_TRUE(wait_reloads(1)) << server_->log_text();

  EXPECT_FALSE(can_connect("erp", old_seed).is_ok()) << "the old seed still opens a connection";
  Status fresh = can_connect("erp", seed("erp"));  // the restarted process
  EXPECT_TRUE(fresh.is_ok()) << fresh.to_string();
  EXPECT_TRUE(wait_until([&] { return live_events->closed.load() > 0; }, 15000))
      << "disconnected " << live_events->disconnected.load() << ", reconnected " << live_events->reconnected.load();
  for (const std::string name : {"hub", "store-1"}) {
    Status s = can_connect(name, seed(name));
    EXPECT_TRUE(s.is_ok()) << name << ": " << s.to_string();
  }
}

TEST_F(CredsChangeTest, AGrantedTypeCanBeRegisteredWithoutRestartingTheHub) {
  auto registry = read_creds_dir(dir());
  ASSERT_TRUE(registry.is_ok()) << registry.status().to_string();
  TempDir data("deltasync-creds-hub");
  HubConfig config = two_type_hub_config(*server_, data);
  config.nats.nkey_seed_file = seed("hub");
  config.identities_file = creds_identities_file(dir());
  auto hub = Hub::start(config);
  ASSERT_TRUE(hub.is_ok()) << hub.status().to_string();
  hub_ = std::move(hub).value();

  auto store1 = connect("store-1", seed("store-1"));
  ASSERT_TRUE(store1.is_ok()) << store1.status().to_string();
  Connection& agent = keep(std::move(store1).value());
  const Subjects subjects("ds");
  auto register_price = [&]() -> Result<RegisterReply> {
    RegisterRequest req;
    req.agent = "store-1";
    req.host = "test";
    req.version = "test";
    req.subscriptions = {SubscriptionReport{"price", "*"}};
    DS_ASSIGN_OR_RETURN(Message m, agent.request(subjects.register_agent("store-1"), encode(req), 5000));
    return decode_register_reply(m.data());
  };
  auto refused = register_price();
  ASSERT_TRUE(refused.is_ok()) << refused.status().to_string();
  ASSERT_FALSE(refused->ok()) << "price was registered before the grant";
  EXPECT_EQ(refused->error->code, StatusCode::kPermissionDenied);

  CommandResult grant = creds({"grant", "--dir", dir(), "store-1", "price", "--reload", pid()});
  ASSERT_EQ(grant.exit_code, 0) << grant.out << grant.err;
  EXPECT_NE(grant.out.find("granted price to agent store-1"), std::string::npos) << grant.out;
  ASSERT_TRUE(wait_reloads(1)) << server_->log_text();

  // The hub re-reads identities.json (at most once a second).
  Result<RegisterReply> reply = Status::internal("not tried");
  EXPECT_TRUE(wait_until([&] {
    reply = register_price();
    return reply.is_ok() && reply->ok();
  }, 15000, 200)) << (reply.is_ok() ? reply->error->message : reply.status().to_string());
  // And nats-server now lets the same connection take the type's heartbeats.
  MessageCollector beats;
  auto sub = agent.subscribe(subjects.heartbeat("price"), beats.handler());
  ASSERT_TRUE(sub.is_ok()) << sub.status().to_string();
  EXPECT_TRUE(beats.wait_for(1)) << "no heartbeat of price reached store-1";
  EXPECT_EQ(read_creds_dir(dir())->find("store-1")->public_key, registry->find("store-1")->public_key);
}

TEST_F(CredsChangeTest, BadRequestsSayWhyAndChangeNothing) {
  const auto before = seeds();
  const std::string auth = read_text_file(creds_auth_conf(dir()));
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string says;
  };
  const std::string own_pid = std::to_string(::getpid());
  const std::vector<Case> cases = {
      {{"revoke", "--dir", dir(), "store-9"}, 1, "no identity named 'store-9' (known: erp, hub, store-1)"},
      {{"rotate", "--dir", dir(), "store-9"}, 1, "no identity named"},
      {{"grant", "--dir", dir(), "store-1", "Stock"}, 2, "invalid business type name"},
      {{"grant", "--dir", dir(), "store-1", "price:a.b"}, 2, "partition"},
      {{"grant", "--dir", dir(), "hub", "price"}, 2, "takes no types"},
      {{"add", "--dir", dir(), "--agent", "store-3"}, 2, "has no business types"},
      {{"add", "--dir", dir(), "--agent", "store-3:stock", "--producer", "pos:stock"}, 2, "exactly one"},
      {{"add", "--dir", work_.path(), "--agent", "store-3:stock"}, 1, "not a credentials directory"},
      {{"add", "--dir", dir(), "--agent", "store-3:stock", "--reload", own_pid}, 2, "not nats-server"},
      {{"init", "--dir", dir(), "--hub", "hub"}, 1, "already exist"},
      {{"--out", dir(), "--hub", "hub"}, 2, "creds init --dir"},
      {{"revoke", "--dir", dir(), "store-1", "--bogus"}, 2, "--bogus"},
  };
  for (const Case& c : cases) {
    CommandResult r = creds(c.args);
    EXPECT_EQ(r.exit_code, c.exit_code) << c.args[0] << " " << c.args.back() << ": " << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << c.args[0] << " " << c.args.back() << ": " << r.err;
  }
  EXPECT_EQ(seeds(), before);
  EXPECT_EQ(read_text_file(creds_auth_conf(dir())), auth);
  EXPECT_FALSE(wait_reloads(1, 1000)) << "a refused change signalled nats-server";

  for (const std::string sub : {"init", "add", "grant", "revoke", "rotate", "list"}) {
    CommandResult help = creds({sub, "--help"});
    EXPECT_EQ(help.exit_code, 0) << sub;
    EXPECT_NE(help.out.find("--dir"), std::string::npos) << sub << ": " << help.out;
  }
  CommandResult list = creds({"list", "--dir", dir(), "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  for (const std::string name : {"\"hub\"", "\"store-1\"", "\"erp\"", "\"seed\": \"ok\""}) {
    EXPECT_NE(list.out.find(name), std::string::npos) << list.out;
  }
}

}  // namespace
}  // namespace ds::testing
