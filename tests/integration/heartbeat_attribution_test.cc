// Heartbeat replies are attributed by what NATS permissions bind, never by
// what a reply says (docs/architecture.md "Heartbeat", docs/security.md): a real nats-server with the
// credentials `deltasync creds` generates, the real AgentService on the hub's
// identity, and agents on their own identities. The attacker is a
// compromised agent, store-1, acting with its own connection: it forges
// replies for store-2 on every subject it can reach.

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <sstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "agent/agent.h"
#include "shared/codec.h"
#include "shared/config.h"
#include "shared/names.h"
#include "tests/harness/test_agent.h"
#include "tests/harness/test_credentials.h"
#include "tools/creds.h"

namespace ds::testing {
namespace {

constexpr int64_t kForgeEveryMs = 40;

class HeartbeatAttributionTest : public AgentServiceTest {
 protected:
  void SetUp() override {
    auto issued = write_test_credentials(creds_dir_.path(), {{IdentityRole::kHub, "hub"},
                                                             {IdentityRole::kAgent, "store-1:inventory,prices"},
                                                             {IdentityRole::kAgent, "store-2:prices"}});
    ASSERT_TRUE(issued.is_ok()) << issued.status().to_string();
    // As an operator does: the server's config includes the generated file.
    server_ = std::make_unique<NatsServer>(include_auth_conf(creds_dir_.path()));
    Status s = server_->start();
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    auto hub = Connection::connect(options_as("hub"));
    ASSERT_TRUE(hub.is_ok()) << hub.status().to_string();
    nc_ = std::move(hub).value();
    js_ = jetstream(*nc_);
    ASSERT_NE(js_, nullptr);
    config_ = default_config(dir_.file("hub.db"));
    start_service();
  }

  ConnectOptions options_as(const std::string& name) {
    ConnectOptions opts = test_connect_options(*server_);
    opts.config.nkey_seed_file = creds_dir_.file(name + ".nk");
    if (name != "hub") opts.inbox_prefix = inbox_prefix(name);
    opts.name = name;
    return opts;
  }

  // A registered TestAgent on its own identity.
  std::unique_ptr<TestAgent> agent_as(const std::string& id, std::vector<SubscriptionReport> subs,
                                      std::function<void(const std::string&)> on_async_error = {}) {
    ConnectOptions opts = options_as(id);
    opts.on_async_error = std::move(on_async_error);
    auto a = TestAgent::start(std::move(opts), id, std::move(subs));
    EXPECT_TRUE(a.is_ok()) << a.status().to_string();
    if (!a.is_ok()) return nullptr;
    auto reply = (*a)->register_now();
    EXPECT_TRUE(reply.is_ok() && reply->ok()) << (reply.is_ok() ? reply->error->message : reply.status().to_string());
    return std::move(a).value();
  }

  nlohmann::json agent_json(const std::string& id) {
    for (const auto& a : service_->agents_json()) {
      if (a["id"] == id) return a;
    }
    return nullptr;
  }

  std::string server_violations() const {
    std::string out;
    std::istringstream log(server_->log_text());
    for (std::string line; std::getline(log, line);) {
      if (line.find("Violation") != std::string::npos) out += line + "\n";
    }
    return out;
  }

  TempDir creds_dir_{"deltasync-creds"};
};

// What store-1 sends for store-2: degraded, with an error of its choosing.
std::string forged_reply() {
  HeartbeatReply r;
  r.agent = "store-2";
  r.ts = 1;
  r.status = AgentHealth::kDegraded;
  r.error = "forged";
  r.checkpoints["prices"] = Checkpoint{0, 0, 0, ""};
  return encode(r);
}

// The attacker: store-1's own connection. It hears the heartbeats of its
// types; any reply subject a heartbeat carries is answered with the forgery
// (allow_responses would let it through), and every `forge()` publishes the
// forgery on its own ds.hub.beat token and on store-2's (which nats-server
// must refuse).
class Attacker {
 public:
  explicit Attacker(Connection& nc) : nc_(nc) {
    auto sub = nc_.subscribe(Subjects().heartbeat("prices"), [this](Message m) {
      std::lock_guard lock(mu_);
      heartbeats_seen_++;
      if (!m.reply().empty()) reply_subjects_.insert(std::string(m.reply()));
    });
    EXPECT_TRUE(sub.is_ok()) << sub.status().to_string();
    if (sub.is_ok()) sub_ = std::move(sub).value();
    EXPECT_TRUE(nc_.flush().is_ok());
  }

  void forge() {
    const Subjects subjects;
    const std::string body = forged_reply();
    (void)nc_.publish(subjects.hub_beat("store-1"), body);
    (void)nc_.publish(subjects.hub_beat("store-2"), body);
    std::set<std::string> replies;
    {
      std::lock_guard lock(mu_);
      replies = reply_subjects_;
    }
    for (const std::string& r : replies) (void)nc_.publish(r, body);
  }

  int64_t heartbeats_seen() const {
    std::lock_guard lock(mu_);
    return heartbeats_seen_;
  }
  std::set<std::string> reply_subjects() const {
    std::lock_guard lock(mu_);
    return reply_subjects_;
  }

 private:
  Connection& nc_;
  mutable std::mutex mu_;
  int64_t heartbeats_seen_ = 0;            // guarded by mu_
  std::set<std::string> reply_subjects_;   // guarded by mu_
  std::unique_ptr<Subscription> sub_;      // last: goes first
};

class AsyncErrors {
 public:
  std::function<void(const std::string&)> handler() {
    return [this](const std::string& e) {
      std::lock_guard lock(mu_);
      all_ += e + "\n";
    };
  }
  std::string all() const {
    std::lock_guard lock(mu_);
    return all_;
  }

 private:
  mutable std::mutex mu_;
  std::string all_;  // guarded by mu_
};

TEST_F(HeartbeatAttributionTest, ForgedRepliesNeitherDegradeNorKeepAliveAnotherAgent) {
  AsyncErrors store1_errors;
  auto store1 = agent_as("store-1", {{.type = "inventory", .partition = "store-1"}, {.type = "prices"}},
                         store1_errors.handler());
  auto store2 = agent_as("store-2", {{.type = "prices"}});
  ASSERT_NE(store1, nullptr);
  ASSERT_NE(store2, nullptr);
  ASSERT_TRUE(consumer_exists("prices", "store-2"));
  Attacker attacker(store1->connection());

  // store-2 answers; store-1 forges on every beat and in between.
  const int64_t beats_before = store2->broadcasts_answered();
  int rounds = 0;
  while (store2->broadcasts_answered() < beats_before + 10 && ++rounds < 500) {
    attacker.forge();
    std::this_thread::sleep_for(std::chrono::milliseconds(kForgeEveryMs));
    const auto a = agent_json("store-2");
    ASSERT_EQ(a["health"], "ok") << a.dump();
    ASSERT_NE(a["last_error"], "forged") << a.dump();
    ASSERT_EQ(a["state"], "live") << a.dump();
    ASSERT_EQ(a["types"]["prices"]["consumer"], true) << a.dump();
    ASSERT_EQ(a["types"]["prices"]["held_back"], false) << a.dump();
  }
  ASSERT_GE(store2->broadcasts_answered(), beats_before + 10) << "store-2 heard too few heartbeats";
  EXPECT_GT(attacker.heartbeats_seen(), 0);
  EXPECT_TRUE(attacker.reply_subjects().empty())
      << "a heartbeat request carried a reply subject: " << *attacker.reply_subjects().begin();
  EXPECT_GT(service_->refused_beats(), 0u) << "the forgeries on ds.hub.beat.store-1 were not seen as such";
  EXPECT_TRUE(consumer_exists("prices", "store-2"));
  EXPECT_NE(store1_errors.all().find("ds.hub.beat.store-2"), std::string::npos)
      << "nats-server let store-1 publish as store-2: " << store1_errors.all();
  // store-1 itself stays what it is: an answering agent.
  EXPECT_EQ(agent_json("store-1")["state"], "live");

  // store-2 really stops: it is declared dead although store-1 keeps forging.
  store2->set_answering(false);
  rounds = 0;
  while (state_of("store-2") != AgentState::kDead && ++rounds < 500) {
    attacker.forge();
    std::this_thread::sleep_for(std::chrono::milliseconds(kForgeEveryMs));
  }
  ASSERT_EQ(state_of("store-2"), AgentState::kDead) << agent_json("store-2").dump();
  EXPECT_FALSE(consumer_exists("prices", "store-2"));
  EXPECT_EQ(agent_json("store-2")["health"], "ok") << "never degraded by a forgery";
}

TEST_F(HeartbeatAttributionTest, RealAgentWithSeveralTypesAnswersWithoutAnyPermissionsViolation) {
  // The real deltasync agent (agent/), taking two types on store-1's identity.
  const std::string toml = "[agent]\nid = \"store-1\"\nlog_level = \"warn\"\n[nats]\nurl = \"" + server_->url() +
                           "\"\nnkey_seed_file = \"" + creds_dir_.file("store-1.nk") + "\"\n[replica]\npath = \"" +
                           dir_.file("store-1.db") + "\"\n" +
                           "[[subscriptions]]\ntype = \"inventory\"\npartition = \"store-1\"\n"
                           "[[subscriptions]]\ntype = \"prices\"\npartition = \"*\"\n";
  auto cfg = load_agent_config(dir_.write_file("store-1.toml", toml));
  ASSERT_TRUE(cfg.is_ok()) << cfg.status().to_string();
  Agent agent(*cfg);
  ASSERT_TRUE(agent.start().is_ok());
  ASSERT_TRUE(agent.wait_registered(0, 10000));

  // Count its replies the way the hub hears them, over several beats.
  std::atomic<int64_t> beats{0};
  auto counter = nc_->subscribe(Subjects().hub_beat("store-1"), [&](Message) { beats++; });
  ASSERT_TRUE(counter.is_ok());
  ASSERT_TRUE(eventually([&] { return beats >= 12; }, 15000)) << "heard " << beats << " replies";
  EXPECT_EQ(state_of("store-1"), AgentState::kLive);
  EXPECT_EQ(service_->refused_beats(), 0u);
  (*counter).reset();
  agent.stop();
  // The server logs every refused publish; a flush makes sure it has
  // processed all the agent sent.
  ASSERT_TRUE(nc_->flush().is_ok());
  EXPECT_EQ(server_violations(), "");
}

}  // namespace
}  // namespace ds::testing
