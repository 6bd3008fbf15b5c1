#include "tests/harness/test_agent.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include <nats/nats.h>

#include <spdlog/spdlog.h>

#include "shared/codec.h"
#include "shared/jetstream_push.h"
#include "shared/schema.h"

namespace ds::testing {

Result<std::unique_ptr<TestAgent>> TestAgent::start(ConnectOptions opts, std::string id,
                                                    std::vector<SubscriptionReport> subscriptions,
                                                    std::string subject_prefix) {
  std::unique_ptr<TestAgent> a(new TestAgent(std::move(id), std::move(subscriptions), std::move(subject_prefix)));
  if (opts.name.empty()) opts.name = "test-agent-" + a->id_;
  DS_ASSIGN_OR_RETURN(a->nc_, Connection::connect(std::move(opts)));
  for (const SubscriptionReport& s : a->subscriptions_) {
    a->checkpoints_[s.type] = Checkpoint{s.version, s.seq, s.ts, ""};
  }
  TestAgent* p = a.get();
  DS_ASSIGN_OR_RETURN(auto probe, a->nc_->subscribe(a->subjects_.probe(a->id_),
                                                    [p](Message m) { p->on_heartbeat(m, true); }));
  a->subs_.push_back(std::move(probe));
  for (const SubscriptionReport& s : a->subscriptions_) {
    DS_ASSIGN_OR_RETURN(auto hb, a->nc_->subscribe(a->subjects_.heartbeat(s.type),
                                                   [p](Message m) { p->on_heartbeat(m, false); }));
    a->subs_.push_back(std::move(hb));
  }
  for (const SubscriptionReport& s : a->subscriptions_) {
    DS_ASSIGN_OR_RETURN(auto push, a->nc_->subscribe(a->subjects_.push(a->id_, s.type),
                                                     [p, type = s.type](Message m) { p->on_push(type, m); }));
    a->subs_.push_back(std::move(push));
  }
  DS_RETURN_IF_ERROR(a->nc_->flush());
  return a;
}

TestAgent::~TestAgent() {
  subs_.clear();  // waits for running handlers before the state goes
}

RegisterRequest TestAgent::build_request() const {
  std::lock_guard lock(mu_);
  RegisterRequest r;
  r.agent = id_;
  r.host = "test-host";
  r.version = "test";
  for (SubscriptionReport s : subscriptions_) {
    auto it = checkpoints_.find(s.type);
    if (it != checkpoints_.end()) {
      s.version = it->second.version;
      s.seq = it->second.seq;
      s.ts = it->second.ts;
    }
    r.subscriptions.push_back(s);
  }
  return r;
}

Result<RegisterReply> TestAgent::register_now(int64_t timeout_ms) {
  DS_ASSIGN_OR_RETURN(RegisterReply reply,
                      register_raw(subjects_.register_agent(id_), build_request(), timeout_ms));
  if (reply.ok()) {
    std::lock_guard lock(mu_);
    for (const Delivery& d : reply.deliveries) {
      Checkpoint& cp = checkpoints_[d.type];
      if (cp.schema_hash.empty()) cp.schema_hash = d.schema_hash;
    }
  }
  return reply;
}

Result<RegisterReply> TestAgent::register_raw(const std::string& subject, const RegisterRequest& request,
                                              int64_t timeout_ms) {
  DS_ASSIGN_OR_RETURN(Message m, nc_->request(subject, encode(request), timeout_ms));
  return decode_register_reply(m.data());
}

void TestAgent::set_schema_hash(const std::string& type, const std::string& hash) {
  std::lock_guard lock(mu_);
  checkpoints_[type].schema_hash = hash;
}

void TestAgent::set_checkpoint(const std::string& type, uint64_t version, uint64_t seq, int64_t ts) {
  std::lock_guard lock(mu_);
  Checkpoint& cp = checkpoints_[type];
  cp.version = version;
  cp.seq = seq;
  cp.ts = ts;
}

Checkpoint TestAgent::checkpoint(const std::string& type) const {
  std::lock_guard lock(mu_);
  auto it = checkpoints_.find(type);
  return it == checkpoints_.end() ? Checkpoint{} : it->second;
}

std::vector<ReceivedBatch> TestAgent::received() const {
  std::lock_guard lock(mu_);
  return received_;
}

void TestAgent::on_heartbeat(const Message& msg, bool direct) {
  if (!answering_ || (!direct && !answer_broadcasts_)) return;
  auto request = decode_heartbeat_request(msg.data());
  if (!request.is_ok()) return;
  if (request->reregister) register_orders_++;
  HeartbeatReply reply;
  reply.agent = id_;
  reply.ts = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch()).count();
  {
    std::lock_guard lock(mu_);
    reply.checkpoints = checkpoints_;
  }
  if (nc_->publish(subjects_.hub_beat(id_), encode(reply)).is_ok()) {
    (direct ? probes_answered_ : broadcasts_answered_)++;
  }
}

void TestAgent::on_push(const std::string& type, const Message& msg) {
  // Flow-control requests and idle heartbeats were answered by the
  // subscription (shared/jetstream_push.h): only deliveries get here.
  auto ack = parse_ack_subject(msg.reply());
  if (!ack.is_ok()) {
    spdlog::warn("test agent {}: not a delivery on {}: {}", id_, msg.subject(), ack.status().to_string());
    return;
  }
  const uint64_t seq = ack->stream_seq;
  auto batch = decode_delta_batch(msg.data());
  if (!batch.is_ok()) {
    spdlog::warn("test agent {}: undecodable delta on {}: {}", id_, msg.subject(), batch.status().to_string());
    (void)acknowledge(*nc_, msg.reply(), AckKind::kTerm);
    return;
  }
  {
    std::lock_guard lock(mu_);
    Checkpoint& cp = checkpoints_[type];
    for (const Change& c : batch->changes) {
      cp.version = std::max(cp.version, c.v);
      cp.ts = std::max(cp.ts, c.ts);
    }
    cp.seq = std::max(cp.seq, seq);
    received_.push_back({type, seq, std::move(batch).value()});
  }
  (void)acknowledge(*nc_, msg.reply(), AckKind::kAck);
}

bool eventually(const std::function<bool()>& done, int64_t timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

// ---- AgentServiceTest ----

HubConfig AgentServiceTest::default_config(const std::string& store_path) {
  HubConfig c;
  c.name = "test-hub";
  c.store_path = store_path;
  c.http_listen = "";
  c.heartbeat_interval_ms = 200;
  c.dead_after = 3;
  c.max_ack_pending = 100;
  TypeConfig inventory;
  inventory.name = "inventory";
  inventory.schema.key = "sku";
  inventory.schema.partition = "store_id";
  inventory.schema.columns = {{"store_id", ColumnType::kText}, {"qty", ColumnType::kInteger}};
  TypeConfig prices;
  prices.name = "prices";
  prices.schema.key = "sku";
  prices.schema.columns = {{"price", ColumnType::kReal}};
  c.types = {inventory, prices};
  return c;
}

void AgentServiceTest::SetUp() {
  NatsTest::SetUp();
  if (HasFatalFailure()) return;
  js_ = jetstream(*nc_);
  ASSERT_NE(js_, nullptr);
  config_ = default_config(dir_.file("hub.db"));
}

void AgentServiceTest::start_service() {
  const Subjects subjects(config_.nats.subject_prefix);
  for (const TypeConfig& t : config_.types) {
    StreamSpec spec;
    spec.name = stream_name(t.name);
    spec.subjects = {subjects.delta_filter(t.name)};
    Status s = js_->ensure_stream(spec);
    ASSERT_TRUE(s.is_ok()) << s.to_string();
  }
  auto authorizer = Authorizer::open(config_);
  ASSERT_TRUE(authorizer.is_ok()) << authorizer.status().to_string();
  authorizer_ = std::move(authorizer).value();
  auto svc = AgentService::start(config_, *nc_, *js_, *authorizer_);
  ASSERT_TRUE(svc.is_ok()) << svc.status().to_string();
  service_ = std::move(svc).value();
}

void AgentServiceTest::TearDown() {
  if (service_) service_->stop();
  service_.reset();
  js_.reset();
  NatsTest::TearDown();
}

std::unique_ptr<TestAgent> AgentServiceTest::make_agent(const std::string& id,
                                                        std::vector<SubscriptionReport> subs) {
  ConnectOptions opts = test_connect_options(*server_);
  opts.name = "agent-" + id;
  auto a = TestAgent::start(std::move(opts), id, std::move(subs), config_.nats.subject_prefix);
  EXPECT_TRUE(a.is_ok()) << a.status().to_string();
  if (!a.is_ok()) return nullptr;
  return std::move(a).value();
}

uint64_t AgentServiceTest::publish_change(const std::string& type, const std::string& partition,
                                          uint64_t version, const std::string& key, int64_t ts) {
  DeltaBatch b;
  b.type = type;
  Change c;
  c.v = version;
  c.key = key;
  c.ts = ts;
  c.hts = ts + 1;
  c.f["qty"] = static_cast<int64_t>(version);
  b.changes.push_back(c);
  const Subjects subjects(config_.nats.subject_prefix);
  auto ack = js_->publish(subjects.delta(type, partition), encode(b), msg_id(type, version));
  EXPECT_TRUE(ack.is_ok()) << ack.status().to_string();
  return ack.is_ok() ? ack->seq : 0;
}

bool AgentServiceTest::consumer_exists(const std::string& type, const std::string& agent) {
  auto e = js_->consumer_exists(stream_name(type), consumer_name(agent));
  EXPECT_TRUE(e.is_ok()) << e.status().to_string();
  return e.is_ok() && *e;
}

void AgentServiceTest::purge(const std::string& type) {
  jsErrCode jerr = static_cast<jsErrCode>(0);
  ASSERT_EQ(js_PurgeStream(js_->raw(), stream_name(type).c_str(), nullptr, &jerr), NATS_OK) << jerr;
}

std::optional<AgentState> AgentServiceTest::state_of(const std::string& agent) {
  auto a = service_->registry().find(agent);
  if (!a) return std::nullopt;
  return a->state;
}

bool AgentServiceTest::wait_for_state(const std::string& agent, AgentState state, int64_t timeout_ms) {
  return eventually([&] { return state_of(agent) == state; }, timeout_ms);
}

}  // namespace ds::testing
