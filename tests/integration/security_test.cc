// docs/security.md against a real nats-server: credentials from `deltasync creds`
// (tools/creds.h) give each process exactly the subjects it needs. Every
// allowance is shown by data arriving and every denial by data never
// arriving (or the JetStream API call failing), because a denied subscribe
// returns OK at once and the violation only arrives asynchronously.
//
// "Never arrives" is made deterministic by a sentinel: the same publisher
// sends the forbidden message first and an allowed one after it on the same
// subject space, and once the allowed one is seen the forbidden one would
// have been too. Where the forbidden receiver is a separate subscription, a
// request to the forbidden subject getting "no responders" proves the server
// holds no subscription for it at all.

#include <nats/nats.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "shared/names.h"
#include "shared/nats.h"
#include "shared/nkeys.h"
#include "testing/temp_dir.h"
#include "tests/harness/consumer_state.h"
#include "tests/harness/nats_server.h"
#include "tests/harness/test_credentials.h"
#include "tools/creds.h"

namespace ds::testing {
namespace {

constexpr int64_t kDeniedApiTimeoutMs = 1000;  // a denied JetStream API call waits this long

// Asynchronous errors (permission violations) one connection reported.
class AsyncErrors {
 public:
  std::function<void(const std::string&)> handler() {
    return [this](const std::string& e) {
      std::lock_guard<std::mutex> lock(mu_);
      errors_.push_back(e);
    };
  }
  bool saw(const std::string& needle) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& e : errors_) {
      if (e.find(needle) != std::string::npos) return true;
    }
    return false;
  }
  bool wait_for(const std::string& needle) const {
    return wait_until([&] { return saw(needle); });
  }
  std::string all() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    for (const auto& e : errors_) out += e + "\n";
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> errors_;  // guarded by mu_
};

struct Client {
  std::unique_ptr<AsyncErrors> errors = std::make_unique<AsyncErrors>();
  std::unique_ptr<Connection> nc;
};

bool is_delta_delivery(const ReceivedMessage& m) { return m.reply.rfind("$JS.ACK.", 0) == 0; }

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto result = write_test_credentials(creds_dir_.path(), {{IdentityRole::kHub, "hub"},
                                                             {IdentityRole::kAgent, "store-1:prices,products"},
                                                             {IdentityRole::kAgent, "store-2:prices"},
                                                             {IdentityRole::kAgent, "store-3:prices:store-3"},
                                                             {IdentityRole::kProducer, "erp:prices"}});
    ASSERT_TRUE(result.is_ok()) << result.status().to_string();
    creds_ = *result;
    // Exactly what an operator does: include the generated file from the
    // server's config.
    server_ = std::make_unique<NatsServer>(include_auth_conf(creds_dir_.path()));
    Status s = server_->start();
    ASSERT_TRUE(s.is_ok()) << s.to_string();

    hub_ = connect_as("hub");
    ASSERT_NE(hub_.nc, nullptr);
    auto js = hub_.nc->jetstream();
    ASSERT_TRUE(js.is_ok()) << js.status().to_string();
    hub_js_ = std::move(js).value();
    // Deltas go out with the hub's publisher key only (its service key may
    // not publish into ds.delta.>).
    ConnectOptions po = options_as("hub", creds_dir_.file("hub.publisher.nk"));
    po.inbox_prefix = inbox_prefix("hub");
    auto publisher = Connection::connect(std::move(po));
    ASSERT_TRUE(publisher.is_ok()) << publisher.status().to_string();
    publisher_nc_ = std::move(publisher).value();
    auto pjs = publisher_nc_->jetstream();
    ASSERT_TRUE(pjs.is_ok()) << pjs.status().to_string();
    publisher_js_ = std::move(pjs).value();
  }

  void TearDown() override {
    publisher_js_.reset();
    publisher_nc_.reset();
    hub_js_.reset();
    hub_.nc.reset();
    server_.reset();
  }

  std::string seed_file(const std::string& name) const { return creds_dir_.file(name + ".nk"); }

  ConnectOptions options_as(const std::string& name, const std::string& seed_path) {
    ConnectOptions opts = test_connect_options(*server_);
    opts.config.nkey_seed_file = seed_path;
    if (name != "hub") opts.inbox_prefix = inbox_prefix(name);
    opts.connect_timeout_ms = 2000;
    return opts;
  }

  Client connect_as(const std::string& name) {
    Client c;
    ConnectOptions opts = options_as(name, seed_file(name));
    opts.on_async_error = c.errors->handler();
    auto nc = Connection::connect(std::move(opts));
    EXPECT_TRUE(nc.is_ok()) << name << ": " << nc.status().to_string();
    if (nc.is_ok()) c.nc = std::move(nc).value();
    return c;
  }

  // A request nobody may receive: the server answers "no responders" at
  // once, which proves that no subscription for `subject` exists.
  void expect_no_subscriber(const std::string& subject) {
    // Only the hub's publisher key may publish into ds.delta.>.
    Connection& nc = subject.rfind("ds.delta.", 0) == 0 ? *publisher_nc_ : *hub_.nc;
    auto r = nc.request(subject, "probe", 2000);
    ASSERT_FALSE(r.is_ok()) << subject << " has a subscriber";
    EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << subject << ": " << r.status().to_string();
  }

  // The stream of prices with `n` deltas in it (memory storage for speed).
  void make_prices_stream(int n) {
    StreamSpec spec;
    spec.name = stream_name("prices");
    spec.subjects = {subjects_.delta_filter("prices")};
    spec.memory_storage = true;
    ASSERT_TRUE(publisher_js_->ensure_stream(spec).is_ok());
    for (int i = 1; i <= n; ++i) {
      auto ack = publisher_js_->publish(subjects_.delta("prices", kAllPartitions), "delta-" + std::to_string(i),
                                  msg_id("prices", static_cast<uint64_t>(i)));
      ASSERT_TRUE(ack.is_ok()) << ack.status().to_string();
    }
  }

  // The consumer the hub keeps for `agent` (docs/protocol.md, "Subjects and streams").
  ConsumerSpec agent_consumer(const std::string& agent) const {
    ConsumerSpec spec;
    spec.durable = consumer_name(agent);
    spec.filter_subject = subjects_.delta_filter("prices");
    spec.deliver_subject = subjects_.push(agent, "prices");
    spec.ack_policy = AckPolicy::kExplicit;
    spec.flow_control = true;
    spec.memory_storage = true;
    return spec;
  }

  ConsumerAckState ack_state(const std::string& consumer) {
    return consumer_ack_state(*hub_js_, stream_name("prices"), consumer);
  }

  Subjects subjects_;
  TempDir creds_dir_{"deltasync-creds"};
  std::unique_ptr<Connection> publisher_nc_;
  std::unique_ptr<JetStream> publisher_js_;
  CredsResult creds_;
  std::unique_ptr<NatsServer> server_;
  Client hub_;
  std::unique_ptr<JetStream> hub_js_;
};

TEST_F(SecurityTest, GeneratedSeedFilesAreOwnerOnlyAndConnect) {
  for (const auto& c : creds_.issued) {
    namespace fs = std::filesystem;
    const auto perms = fs::status(c.seed_file).permissions();
    EXPECT_EQ(perms & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write) << c.seed_file;
    Client client = connect_as(c.identity.name);
    EXPECT_NE(client.nc, nullptr) << c.identity.name;
  }
}

TEST_F(SecurityTest, UnknownKeyCannotConnect) {
  auto stranger = generate_user_nkey();
  ASSERT_TRUE(stranger.is_ok());
  const std::string path = creds_dir_.write_file("stranger.nk", stranger->seed + "\n");
  auto nc = Connection::connect(options_as("stranger", path));
  ASSERT_FALSE(nc.is_ok());
  EXPECT_EQ(nc.status().code(), StatusCode::kPermissionDenied) << nc.status().to_string();
}

TEST_F(SecurityTest, AgentReceivesItsOwnPushSubjectsOnly) {
  Client store1 = connect_as("store-1");
  ASSERT_NE(store1.nc, nullptr);
  MessageCollector seen;
  auto own = store1.nc->subscribe("ds.push.store-1.>", seen.handler());
  ASSERT_TRUE(own.is_ok());
  auto other = store1.nc->subscribe("ds.push.store-2.>", seen.handler());
  ASSERT_TRUE(other.is_ok()) << "a denied subscribe still returns OK; the violation comes later";
  ASSERT_TRUE(store1.nc->flush().is_ok());
  EXPECT_TRUE(store1.errors->wait_for("ds.push.store-2.>")) << store1.errors->all();

  ASSERT_TRUE(hub_.nc->publish("ds.push.store-2.prices", "for store-2").is_ok());
  ASSERT_TRUE(hub_.nc->publish("ds.push.store-1.prices", "for store-1").is_ok());
  ASSERT_TRUE(seen.wait_for(1));
  expect_no_subscriber("ds.push.store-2.prices");
  for (const auto& m : seen.messages()) EXPECT_EQ(m.data, "for store-1") << m.subject;
}

TEST_F(SecurityTest, AgentCannotPublishIntoIngest) {
  MessageCollector ingest;
  auto sub = hub_.nc->subscribe("ds.ingest.>", ingest.handler());
  ASSERT_TRUE(sub.is_ok());
  ASSERT_TRUE(hub_.nc->flush().is_ok());

  Client store1 = connect_as("store-1");
  ASSERT_NE(store1.nc, nullptr);
  ASSERT_TRUE(store1.nc->publish("ds.ingest.prices.store-1", "forged by store-1").is_ok());
  ASSERT_TRUE(store1.nc->flush().is_ok());  // the server has processed (and refused) it
  EXPECT_TRUE(store1.errors->wait_for("ds.ingest.prices.store-1")) << store1.errors->all();

  Client erp = connect_as("erp");
  ASSERT_NE(erp.nc, nullptr);
  ASSERT_TRUE(erp.nc->publish("ds.ingest.prices.erp", "from erp").is_ok());
  ASSERT_TRUE(ingest.wait_for(1));
  ASSERT_TRUE(erp.nc->flush().is_ok());
  ASSERT_TRUE(hub_.nc->flush().is_ok());
  ASSERT_EQ(ingest.count(), 1u);
  EXPECT_EQ(ingest.messages()[0].data, "from erp");
}

TEST_F(SecurityTest, AgentCannotImpersonateAnotherAgent) {
  MessageCollector registrations;
  auto sub = hub_.nc->subscribe(subjects_.register_wildcard(), registrations.handler());
  ASSERT_TRUE(sub.is_ok());
  ASSERT_TRUE(hub_.nc->flush().is_ok());

  Client store1 = connect_as("store-1");
  ASSERT_NE(store1.nc, nullptr);
  ASSERT_TRUE(store1.nc->publish(subjects_.register_agent("store-2"), "i am store-2").is_ok());
  ASSERT_TRUE(store1.nc->publish(subjects_.register_agent("store-1"), "i am store-1").is_ok());
  ASSERT_TRUE(registrations.wait_for(1));
  ASSERT_TRUE(store1.nc->flush().is_ok());
  ASSERT_TRUE(hub_.nc->flush().is_ok());
  ASSERT_EQ(registrations.count(), 1u);
  EXPECT_EQ(registrations.messages()[0].subject, "ds.hub.register.store-1");
  // cnats posts a permission violation to its async callback thread
  // (natsAsyncCb_PostErrHandler): a flush does not wait for the callback.
  EXPECT_TRUE(store1.errors->wait_for("ds.hub.register.store-2")) << store1.errors->all();
}

TEST_F(SecurityTest, AgentRequestsGetRepliesThroughItsInboxPrefix) {
  auto responder = hub_.nc->subscribe(subjects_.register_wildcard(), [this](Message m) {
    (void)hub_.nc->respond(m, "accepted " + std::string(Subjects::last_token(m.subject())));
  });
  ASSERT_TRUE(responder.is_ok());
  ASSERT_TRUE(hub_.nc->flush().is_ok());

  Client store1 = connect_as("store-1");
  ASSERT_NE(store1.nc, nullptr);
  auto reply = store1.nc->request(subjects_.register_agent("store-1"), "config", 5000);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  EXPECT_EQ(reply->data(), "accepted store-1");
}

TEST_F(SecurityTest, AgentHearsAndAnswersHeartbeatsOfItsTypesOnly) {
  Client store2 = connect_as("store-2");  // takes prices only
  ASSERT_NE(store2.nc, nullptr);
  auto prices = store2.nc->subscribe(subjects_.heartbeat("prices"), [&](Message m) {
    // Replying to the hub's inbox is allowed only by allow_responses.
    (void)store2.nc->respond(m, "store-2 alive");
  });
  ASSERT_TRUE(prices.is_ok());
  MessageCollector inventory_seen;
  auto inventory = store2.nc->subscribe(subjects_.heartbeat("products"), inventory_seen.handler());
  ASSERT_TRUE(inventory.is_ok());
  ASSERT_TRUE(store2.nc->flush().is_ok());
  EXPECT_TRUE(store2.errors->wait_for("ds.hb.products")) << store2.errors->all();

  auto reply = hub_.nc->request(subjects_.heartbeat("prices"), "beat", 5000);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  EXPECT_EQ(reply->data(), "store-2 alive");
  expect_no_subscriber(subjects_.heartbeat("products"));
  EXPECT_EQ(inventory_seen.count(), 0u);
}

TEST_F(SecurityTest, AgentCannotSubscribeToAnUntakenTypeHeartbeat) {
  Client store1 = connect_as("store-1");  // prices and products, not inventory
  ASSERT_NE(store1.nc, nullptr);
  MessageCollector seen;
  auto sub = store1.nc->subscribe(subjects_.heartbeat("inventory"), seen.handler());
  ASSERT_TRUE(sub.is_ok());
  ASSERT_TRUE(store1.nc->flush().is_ok());
  EXPECT_TRUE(store1.errors->wait_for("ds.hb.inventory")) << store1.errors->all();
  expect_no_subscriber(subjects_.heartbeat("inventory"));
  EXPECT_EQ(seen.count(), 0u);
}

TEST_F(SecurityTest, AgentCannotCreateConsumers) {
  make_prices_stream(3);
  Client store1 = connect_as("store-1");
  ASSERT_NE(store1.nc, nullptr);
  auto js = store1.nc->jetstream(kDeniedApiTimeoutMs);
  ASSERT_TRUE(js.is_ok()) << js.status().to_string();

  // Its own consumer name, and a pull consumer reading everything.
  Status own = (*js)->add_consumer(stream_name("prices"), agent_consumer("store-1"));
  EXPECT_EQ(own.code(), StatusCode::kPermissionDenied) << own.to_string();
  ConsumerSpec pull;
  pull.durable = "sneaky";
  Status sneaky = (*js)->add_consumer(stream_name("prices"), pull);
  EXPECT_FALSE(sneaky.is_ok());

  auto exists = hub_js_->consumer_exists(stream_name("prices"), consumer_name("store-1"));
  ASSERT_TRUE(exists.is_ok()) << exists.status().to_string();
  EXPECT_FALSE(*exists);
  auto names = hub_js_->consumer_names(stream_name("prices"));
  ASSERT_TRUE(names.is_ok()) << names.status().to_string();
  EXPECT_TRUE(names->empty());
}

TEST_F(SecurityTest, AgentCannotReadStreamMessagesThroughTheApi) {
  make_prices_stream(2);
  Client store1 = connect_as("store-1");
  ASSERT_NE(store1.nc, nullptr);
  auto js = store1.nc->jetstream(kDeniedApiTimeoutMs);
  ASSERT_TRUE(js.is_ok()) << js.status().to_string();

  auto by_seq = (*js)->get_message(stream_name("prices"), 1);
  ASSERT_FALSE(by_seq.is_ok());
  EXPECT_EQ(by_seq.status().code(), StatusCode::kPermissionDenied) << by_seq.status().to_string();
  auto last = (*js)->get_last_message(stream_name("prices"), subjects_.delta("prices", kAllPartitions));
  EXPECT_FALSE(last.is_ok());

  // The hub can, so the stream really holds them.
  auto hub_view = hub_js_->get_message(stream_name("prices"), 1);
  ASSERT_TRUE(hub_view.is_ok()) << hub_view.status().to_string();
  EXPECT_EQ(hub_view->data, "delta-1");
}

TEST_F(SecurityTest, AgentTakesTheLiveFeedOfItsGrantOnlyAndOnlyTheBrokerWritesIt) {
  StreamSpec spec;
  spec.name = stream_name("prices");
  spec.subjects = {subjects_.delta_filter("prices")};
  spec.memory_storage = true;
  spec.republish_source = subjects_.delta_filter("prices");
  spec.republish_destination = subjects_.feed_filter("prices");
  ASSERT_TRUE(publisher_js_->ensure_stream(spec).is_ok());

  Client store3 = connect_as("store-3");  // prices of partition store-3 only
  ASSERT_NE(store3.nc, nullptr);
  MessageCollector seen;
  auto own = store3.nc->subscribe(subjects_.feed("prices", "store-3"), seen.handler());
  ASSERT_TRUE(own.is_ok());
  // One at a time: cnats reports each violation with the connection's last
  // error, which a second one would overwrite.
  auto other = store3.nc->subscribe(subjects_.feed("prices", "store-4"), seen.handler());
  ASSERT_TRUE(other.is_ok());
  ASSERT_TRUE(store3.nc->flush().is_ok());
  EXPECT_TRUE(store3.errors->wait_for("ds.feed.prices.store-4")) << store3.errors->all();
  auto every = store3.nc->subscribe(subjects_.feed_filter("prices"), seen.handler());
  ASSERT_TRUE(every.is_ok());
  ASSERT_TRUE(store3.nc->flush().is_ok());
  EXPECT_TRUE(store3.errors->wait_for("ds.feed.prices.>")) << store3.errors->all();

  // Neither of the hub's keys may write the feed: agents trust what comes
  // there as what the stream stored.
  ASSERT_TRUE(hub_.nc->publish(subjects_.feed("prices", "store-3"), "forged by the service key").is_ok());
  ASSERT_TRUE(publisher_nc_->publish(subjects_.feed("prices", "store-3"), "forged by the publisher key").is_ok());
  ASSERT_TRUE(hub_.nc->flush().is_ok());
  ASSERT_TRUE(publisher_nc_->flush().is_ok());
  EXPECT_TRUE(hub_.errors->wait_for("ds.feed.prices.store-3")) << hub_.errors->all();
  // Another partition's batch first, then its own (the sentinel): both come
  // from the stream's republish, in order.
  ASSERT_TRUE(publisher_js_->publish(subjects_.delta("prices", "store-4"), "store-4 batch", "prices:1").is_ok());
  ASSERT_TRUE(publisher_js_->publish(subjects_.delta("prices", "store-3"), "store-3 batch", "prices:2").is_ok());
  ASSERT_TRUE(seen.wait_for(1));
  ASSERT_TRUE(store3.nc->flush().is_ok());
  const std::vector<ReceivedMessage> got = seen.messages();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].subject, "ds.feed.prices.store-3");
  EXPECT_EQ(got[0].data, "store-3 batch");
}

TEST_F(SecurityTest, HubCreatedPushConsumerDeliversToItsAgentWhichAcks) {
  make_prices_stream(3);
  Client store1 = connect_as("store-1");
  ASSERT_NE(store1.nc, nullptr);
  MessageCollector deliveries;
  // The exact deliver subject: on nats-server 2.9.10 a push consumer does
  // not deliver to a wildcard subscription such as ds.push.store-1.> (seen
  // with and without authorization).
  auto sub = store1.nc->subscribe(subjects_.push("store-1", "prices"), deliveries.handler());
  ASSERT_TRUE(sub.is_ok());
  ASSERT_TRUE(store1.nc->flush().is_ok());

  ASSERT_TRUE(hub_js_->add_consumer(stream_name("prices"), agent_consumer("store-1")).is_ok());
  std::vector<ReceivedMessage> deltas;
  ASSERT_TRUE(wait_until([&] {
    deltas.clear();
    for (auto& m : deliveries.messages()) {
      if (is_delta_delivery(m)) deltas.push_back(m);
    }
    return deltas.size() >= 3;
  })) << [&] {
    std::string seen;
    for (const auto& m : deliveries.messages()) seen += m.subject + " reply=" + m.reply + " data=" + m.data + "\n";
    return seen + store1.errors->all() + hub_.errors->all();
  }();
  ASSERT_EQ(deltas.size(), 3u);
  for (size_t i = 0; i < deltas.size(); ++i) {
    // JetStream hands the message over with its stream subject; the deliver
    // subject only routes it.
    EXPECT_EQ(deltas[i].subject, "ds.delta.prices._all");
    EXPECT_EQ(deltas[i].data, "delta-" + std::to_string(i + 1));
    ASSERT_TRUE(store1.nc->publish(deltas[i].reply, "+ACK").is_ok());
  }
  ASSERT_TRUE(store1.nc->flush().is_ok());
  EXPECT_TRUE(wait_until([&] {
    const ConsumerAckState st = ack_state(consumer_name("store-1"));
    return st.ack_floor == 3 && st.ack_pending == 0;
  })) << "acks from store-1 did not reach the consumer";
  EXPECT_EQ(store1.errors->all(), "");
}

TEST_F(SecurityTest, AgentTakesAndAcksItsOwnConsumerButCannotCallTheConsumerApi) {
  make_prices_stream(2);
  ASSERT_TRUE(hub_js_->add_consumer(stream_name("prices"), agent_consumer("store-1")).is_ok());
  ASSERT_TRUE(hub_js_->add_consumer(stream_name("prices"), agent_consumer("store-2")).is_ok());

  Client store1 = connect_as("store-1");
  ASSERT_NE(store1.nc, nullptr);
  auto js = store1.nc->jetstream(kDeniedApiTimeoutMs);
  ASSERT_TRUE(js.is_ok()) << js.status().to_string();

  MessageCollector own_deltas;
  auto own = store1.nc->subscribe(subjects_.push("store-1", "prices"), own_deltas.handler(store1.nc.get()));
  ASSERT_TRUE(own.is_ok()) << own.status().to_string();
  ASSERT_TRUE(own_deltas.wait_for(2));
  EXPECT_TRUE(wait_until([&] {
    const ConsumerAckState st = ack_state(consumer_name("store-1"));
    return st.ack_floor == 2 && st.ack_pending == 0;
  }));

  // No JetStream API right, not even a look at its own consumer.
  for (const char* agent : {"store-1", "store-2"}) {
    auto info = (*js)->consumer_exists(stream_name("prices"), consumer_name(agent));
    ASSERT_FALSE(info.is_ok()) << agent;
    EXPECT_EQ(info.status().code(), StatusCode::kPermissionDenied) << agent << ": " << info.status().to_string();
  }
}

TEST_F(SecurityTest, ProducerIngestsItsTypesOnly) {
  auto responder = hub_.nc->subscribe(subjects_.ingest_wildcard(), [this](Message m) {
    (void)hub_.nc->respond(m, "stored " + std::string(m.subject()));
  });
  ASSERT_TRUE(responder.is_ok());
  MessageCollector ingest;
  auto watch = hub_.nc->subscribe(subjects_.ingest_wildcard(), ingest.handler());
  ASSERT_TRUE(watch.is_ok());
  ASSERT_TRUE(hub_.nc->flush().is_ok());

  Client erp = connect_as("erp");
  ASSERT_NE(erp.nc, nullptr);
  ASSERT_TRUE(erp.nc->publish(subjects_.ingest("products", "erp"), "not my type").is_ok());
  ASSERT_TRUE(erp.nc->flush().is_ok());
  EXPECT_TRUE(erp.errors->wait_for("ds.ingest.products.erp")) << erp.errors->all();
  // Nor may it send in another producer's name.
  ASSERT_TRUE(erp.nc->publish(subjects_.ingest("prices", "pos"), "someone else's").is_ok());
  auto reply = erp.nc->request(subjects_.ingest("prices", "erp"), "batch", 5000);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  EXPECT_EQ(reply->data(), "stored ds.ingest.prices.erp");
  ASSERT_TRUE(ingest.wait_for(1));
  ASSERT_TRUE(hub_.nc->flush().is_ok());
  ASSERT_EQ(ingest.count(), 1u);
  EXPECT_EQ(ingest.messages()[0].subject, "ds.ingest.prices.erp");
}

TEST_F(SecurityTest, ProducerCannotReadDeltasOrPushSubjects) {
  Client erp = connect_as("erp");
  ASSERT_NE(erp.nc, nullptr);
  MessageCollector seen;
  // One at a time: the async error text is the connection's last error when
  // the callback runs, so two violations in flight may both show the second.
  auto push = erp.nc->subscribe("ds.push.>", seen.handler());
  ASSERT_TRUE(push.is_ok());
  ASSERT_TRUE(erp.nc->flush().is_ok());
  EXPECT_TRUE(erp.errors->wait_for("ds.push.>")) << erp.errors->all();
  auto deltas = erp.nc->subscribe("ds.delta.>", seen.handler());
  ASSERT_TRUE(deltas.is_ok());
  ASSERT_TRUE(erp.nc->flush().is_ok());
  EXPECT_TRUE(erp.errors->wait_for("ds.delta.>")) << erp.errors->all();
  expect_no_subscriber("ds.push.store-1.prices");
  expect_no_subscriber("ds.delta.prices._all");
  EXPECT_EQ(seen.count(), 0u);
}

TEST_F(SecurityTest, ProducerWithoutItsInboxPrefixGetsNoReplies) {
  auto responder = hub_.nc->subscribe(subjects_.ingest_wildcard(), [this](Message m) {
    (void)hub_.nc->respond(m, "stored");
  });
  ASSERT_TRUE(responder.is_ok());
  ASSERT_TRUE(hub_.nc->flush().is_ok());

  auto errors = std::make_unique<AsyncErrors>();
  ConnectOptions opts = options_as("erp", seed_file("erp"));
  opts.inbox_prefix.clear();  // cnats default _INBOX.
  opts.on_async_error = errors->handler();
  auto erp = Connection::connect(std::move(opts));
  ASSERT_TRUE(erp.is_ok()) << erp.status().to_string();
  auto reply = (*erp)->request(subjects_.ingest("prices", "erp"), "batch", 1000);
  EXPECT_FALSE(reply.is_ok());
  EXPECT_TRUE(errors->wait_for("_INBOX.")) << errors->all();
}

}  // namespace
}  // namespace ds::testing
