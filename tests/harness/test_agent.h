#pragma once
// TestAgent: the smallest agent that speaks the hub protocol, built from
// shared/ only, for the hub's integration tests (the real agent lives in
// agent/). It registers, answers heartbeats (broadcast ds.hb.<type> and direct
// probe ds.agent.<id>.hb) with its checkpoints on ds.hub.beat.<id>, and
// receives deltas on plain
// core subscriptions, doing the JetStream parts itself as the protocol notes
// say. One subscription per type on the exact deliver subject
// ds.push.<id>.<type>: nats-server 2.9.10 does not count a wildcard
// subscription (ds.push.<id>.>) as interest of a push consumer and delivers
// nothing to it (seen in HubRegisterTest). Delivered messages carry their
// stream subject (ds.delta.<type>.<partition>), not the deliver subject, so
// the type comes from the subscription. Its subscriptions answer
// flow-control requests and idle heartbeats (shared/jetstream_push.h); it
// acks each delivery with "+ACK" on its $JS.ACK reply subject (taking the
// stream sequence from that subject, parse_ack_subject) and terms one that
// does not decode. It keeps no replica: it records what it received and
// advances its in-memory checkpoint per type.
//
// Thread-safe: cnats threads update the state under mu_; tests read copies.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "hub/agent_registry.h"
#include "hub/agent_service.h"
#include "shared/config.h"
#include "shared/messages.h"
#include "shared/names.h"
#include "shared/nats.h"
#include "shared/status.h"
#include "testing/temp_dir.h"
#include "tests/harness/nats_server.h"

namespace ds::testing {

struct ReceivedBatch {
  std::string type;        // the subscription's type
  uint64_t stream_seq = 0; // from the ack subject
  DeltaBatch batch;
};

class TestAgent {
 public:
  // Connects (opts.url etc. from the caller) and subscribes; does not register.
  static Result<std::unique_ptr<TestAgent>> start(ConnectOptions opts, std::string id,
                                                  std::vector<SubscriptionReport> subscriptions,
                                                  std::string subject_prefix = "ds");
  ~TestAgent();

  const std::string& id() const { return id_; }
  Connection& connection() { return *nc_; }

  // Registers on ds.hub.register.<id> with the current checkpoints. On an ok
  // reply, adopts each delivery's schema hash as the one it reports.
  Result<RegisterReply> register_now(int64_t timeout_ms = 5000);
  // Sends `request` as is to `subject` (for refusal tests).
  Result<RegisterReply> register_raw(const std::string& subject, const RegisterRequest& request,
                                     int64_t timeout_ms = 5000);

  // Stops or resumes answering heartbeats (a "silent" agent).
  void set_answering(bool on) { answering_ = on; }
  // Ignore the per-type broadcast while still answering direct probes.
  void set_answer_broadcasts(bool on) { answer_broadcasts_ = on; }
  // Overrides the schema hash reported for `type`.
  void set_schema_hash(const std::string& type, const std::string& hash);
  void set_checkpoint(const std::string& type, uint64_t version, uint64_t seq, int64_t ts);

  Checkpoint checkpoint(const std::string& type) const;
  std::vector<ReceivedBatch> received() const;
  int64_t probes_answered() const { return probes_answered_; }
  int64_t broadcasts_answered() const { return broadcasts_answered_; }
  // Direct probes that ordered a new registration (HeartbeatRequest "register").
  int64_t register_orders() const { return register_orders_; }

 private:
  TestAgent(std::string id, std::vector<SubscriptionReport> subs, std::string prefix)
      : id_(std::move(id)), subjects_(std::move(prefix)), subscriptions_(std::move(subs)) {}
  void on_heartbeat(const Message& msg, bool direct);
  void on_push(const std::string& type, const Message& msg);
  RegisterRequest build_request() const;

  std::string id_;
  Subjects subjects_;
  std::unique_ptr<Connection> nc_;
  std::vector<std::unique_ptr<Subscription>> subs_;

  std::atomic<bool> answering_{true};
  std::atomic<bool> answer_broadcasts_{true};
  std::atomic<int64_t> probes_answered_{0};
  std::atomic<int64_t> broadcasts_answered_{0};
  std::atomic<int64_t> register_orders_{0};

  mutable std::mutex mu_;
  std::vector<SubscriptionReport> subscriptions_;      // guarded by mu_
  std::map<std::string, Checkpoint> checkpoints_;       // guarded by mu_
  std::vector<ReceivedBatch> received_;                 // guarded by mu_
};

// Polls `done` every 10 ms until it returns true or `timeout_ms` passes;
// returns its last value. For waiting on asynchronous effects, not for
// asserting on durations.
bool eventually(const std::function<bool()>& done, int64_t timeout_ms = 10000);

// Fixture for the hub's agent-facing tests: a nats-server, the hub's
// connection nc_ and JetStream js_, a HubConfig built in code with two types
// ("inventory" partitioned by store_id, "prices" unpartitioned) whose streams
// exist, and an AgentService on a temp hub database. Heartbeat interval
// 200 ms, dead after 3 missed beats (override config_ before start_service()
// by overriding SetUp).
class AgentServiceTest : public NatsTest {
 protected:
  void SetUp() override;
  void TearDown() override;

  static HubConfig default_config(const std::string& store_path);
  // Creates DS_<TYPE> for every configured type and starts service_.
  void start_service();

  std::unique_ptr<TestAgent> make_agent(const std::string& id, std::vector<SubscriptionReport> subs);
  // Publishes a one-change delta batch as the hub would (DeltaBatch msgpack on
  // ds.delta.<type>.<partition>, Nats-Msg-Id <type>:<version>); returns the
  // stream sequence.
  uint64_t publish_change(const std::string& type, const std::string& partition, uint64_t version,
                          const std::string& key, int64_t ts = 1000);
  bool consumer_exists(const std::string& type, const std::string& agent);
  // Removes every message of DS_<TYPE>: earlier checkpoints leave the stream.
  void purge(const std::string& type);
  std::optional<AgentState> state_of(const std::string& agent);
  bool wait_for_state(const std::string& agent, AgentState state, int64_t timeout_ms = 10000);

  TempDir dir_{"hubagents-test"};
  HubConfig config_;
  std::unique_ptr<JetStream> js_;
  std::unique_ptr<Authorizer> authorizer_;  // from config_ at start_service(); outlives service_
  std::unique_ptr<AgentService> service_;
};

}  // namespace ds::testing
