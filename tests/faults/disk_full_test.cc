// Fault: a full disk. The hub's store, or one agent's replica, lives on a
// small tmpfs the test mounts (tests/faults/small_filesystem.h) and fills up
// while a producer ingests (tests/e2e LoadProducer: a batch counts as
// acknowledged only when the hub said ok).
//
// Hub store full: ingest answers "unavailable" naming the full store, and so
// does GET /readyz (503) until the space is back (200 again), on an idle hub
// too, before any batch was refused; what
// was acknowledged is exactly what the hub holds; PRAGMA integrity_check
// stays ok; ingest resumes by itself once the space is back, and the agents
// converge. The hub says so once (one warning when the store fills, one info
// line when it takes writes again), not once per refused batch.
//
// Agent replica full: the hub keeps taking ingest and the other agents keep
// up; the agent's apply pauses without acking (its consumer's ack floor never
// passes what the replica holds), says so once, and resumes and converges by
// itself once the space is back.
//
// Mounting needs root: without it the tests skip.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "shared/codec.h"
#include "shared/names.h"
#include "shared/nats.h"
#include "tests/e2e/fleet.h"
#include "tests/e2e/workload.h"
#include "tests/faults/small_filesystem.h"
#include "tests/harness/consumer_state.h"
#include "tools/hub_client.h"
#include "tools/pusher.h"

namespace ds::testing {
namespace {

// Big enough for the fleet's store or replica and its WAL under the test's
// load, small enough to fill in a blink.
constexpr uint64_t kFilesystemBytes = 24ull << 20;
// The hub's one warning when its store fills up (hub/ingest_writer.cc).
constexpr const char* kHubFullWarning = "the hub's store is full";
constexpr const char* kHubBackInfo = "the hub's store takes writes again";
// The agent registry's, when it cannot store heartbeats (hub/agent_service.cc).
constexpr const char* kRegistryFailing = "agent registry: flush heartbeats";
// The agent's (agent/delta_applier.cc).
constexpr const char* kAgentFullWarning = "the replica's disk is full";
constexpr const char* kAgentBackInfo = "the replica takes writes again";

#define SKIP_UNLESS_ROOT()                                                                            \
  if (!SmallFilesystem::can_mount()) {                                                                \
    GTEST_SKIP() << "needs root: the test mounts a size-limited tmpfs to fill up (run ctest as root)"; \
  }

// GET /readyz of the fleet's hub: (status, body); status 0 when it did not answer.
std::pair<int, std::string> readyz(Fleet& fleet) {
  auto client = HubClient::create("http://127.0.0.1:" + std::to_string(fleet.http_port()), "");
  if (!client.is_ok()) return {0, client.status().to_string()};
  auto r = client->request("GET", "/readyz");
  if (!r.is_ok()) return {0, r.status().to_string()};
  return {r->status, r->body};
}

// The one record push_once sends for `seq`: a key of its own, so the end
// can tell which probes the hub holds.
nlohmann::json probe_records(uint64_t seq) {
  return nlohmann::json::array(
      {{{"key", "probe-" + std::to_string(seq)}, {"op", "upsert"}, {"fields", {{"name", "probe"}}}}});
}

// One batch pushed once, no retry: the hub's answer as it is.
Result<IngestReply> push_once(NatsServer& nats, uint64_t seq) {
  ConnectOptions opts = test_connect_options(nats);
  DS_ASSIGN_OR_RETURN(auto nc, Connection::connect(std::move(opts)));
  DS_ASSIGN_OR_RETURN(auto records, decode_ingest_records_json(probe_records(seq).dump()));
  Pusher pusher(*nc, Subjects(), "products",
                PushOptions{.producer = "probe", .first_seq = seq, .timeout_ms = 5000, .attempts = 1});
  return pusher.push(std::move(records));
}

TEST(DiskFull, HubStoreFullIngestUnavailableNothingAckedLostResumesByItself) {
  SKIP_UNLESS_ROOT();
  auto fs = SmallFilesystem::mount(kFilesystemBytes);
  ASSERT_TRUE(fs.is_ok()) << fs.status().to_string();
  Fleet fleet;  // after the filesystem: stopped before it is unmounted
  fleet.set_hub_store_path(fs->file("hub.db"));
  Status started = fleet.start();
  ASSERT_TRUE(started.is_ok()) << started.to_string();
  LoadProducer producer(fleet.nats().url(), "erp");
  ASSERT_TRUE(producer.start().is_ok());
  ASSERT_TRUE(producer.wait_acked(30)) << fleet.logs();

  ASSERT_TRUE(fs->fill().is_ok());
  std::printf("[ info ] %s filled (%llu bytes free) after %llu batches acknowledged\n", fs->path().c_str(),
              static_cast<unsigned long long>(fs->free_bytes()),
              static_cast<unsigned long long>(producer.acked_batches()));
  // The producer's batches are refused (it retries them, unchanged) ...
  ASSERT_TRUE(producer.wait_failed(producer.failed_attempts() + 5)) << fleet.logs();
  // ... with "unavailable", naming the cause. A small batch may still fit
  // into WAL space that a refused commit allocated: SQLite then commits it,
  // and the hub acknowledges it truthfully (it must be held at the end). So
  // probe, one batch at a time, until one is refused.
  constexpr uint64_t kMaxProbes = 20;
  std::vector<uint64_t> probes_acked;
  uint64_t refused_seq = 0;
  Result<IngestReply> answer = Status::internal("not probed");
  for (uint64_t seq = 1; seq <= kMaxProbes; ++seq) {
    answer = push_once(fleet.nats(), seq);
    refused_seq = seq;
    if (!answer.is_ok()) break;
    probes_acked.push_back(seq);
  }
  ASSERT_FALSE(answer.is_ok()) << "all " << kMaxProbes << " batches were acknowledged on a full disk";
  EXPECT_EQ(answer.status().code(), StatusCode::kUnavailable) << answer.status().to_string();
  EXPECT_NE(answer.status().message().find(kHubFullWarning), std::string::npos) << answer.status().to_string();
  EXPECT_EQ(integrity_check(fleet.hub_store_path()), "ok");
  // Not ready, naming the full store (the producer keeps trying meanwhile).
  std::pair<int, std::string> ready;
  EXPECT_TRUE(wait_until([&] {
    ready = readyz(fleet);
    return ready.first == 503 && ready.second.find(kHubFullWarning) != std::string::npos &&
           ready.second.find(fleet.hub_store_path()) != std::string::npos;
  }, 10000)) << ready.first << " " << ready.second;
  // Several seconds full: many refused attempts, still one warning, and
  // not ready the whole time (a commit that fits into WAL space a refused
  // one allocated can succeed meanwhile; readiness must not flap with it).
  const uint64_t failed_full = producer.failed_attempts();
  const auto full_until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  size_t probes = 0;
  std::vector<std::string> ready_while_full;
  while (std::chrono::steady_clock::now() < full_until) {
    ready = readyz(fleet);
    ++probes;
    if (ready.first != 503 || ready.second.find(kHubFullWarning) == std::string::npos) {
      ready_while_full.push_back(std::to_string(ready.first) + " " + ready.second);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::printf("[ info ] %llu attempts refused while full; /readyz asked %zu times\n",
              static_cast<unsigned long long>(producer.failed_attempts()), probes);
  EXPECT_GT(producer.failed_attempts(), failed_full);
  EXPECT_TRUE(ready_while_full.empty()) << ready_while_full.size() << " of " << probes
                                        << " /readyz answers while full did not name the full store, e.g. "
                                        << ready_while_full.front();

  // Space back: ingest resumes by itself.
  ASSERT_TRUE(fs->release().is_ok());
  const auto back = std::chrono::steady_clock::now();
  ASSERT_TRUE(producer.wait_acked(producer.acked_batches() + 30)) << fleet.logs();
  std::printf("[ info ] ingest acknowledged again %lld ms after the space came back\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - back)
                                         .count()));
  EXPECT_TRUE(wait_until([&] {
    ready = readyz(fleet);
    return ready.first == 200;
  }, 10000)) << ready.first << " " << ready.second;
  // A probe refused as stored ("stored as versions ... but not yet
  // published": its published mark could not be written yet) is retried as
  // its answer says (same producer and seq) and must be acknowledged now. A
  // probe refused as not stored is left alone: the hub must not hold it.
  const bool refused_as_stored = answer.status().message().find("stored as versions") != std::string::npos;
  if (refused_as_stored) {
    auto retried = push_once(fleet.nats(), refused_seq);
    ASSERT_TRUE(retried.is_ok()) << retried.status().to_string();
    probes_acked.push_back(refused_seq);
  }
  Status produced = producer.stop();
  ASSERT_TRUE(produced.is_ok()) << produced.to_string();
  ASSERT_TRUE(fleet.converged());
  RecordModel acked = producer.acked();
  for (uint64_t seq : probes_acked) acked.apply("products", probe_records(seq));
  std::printf("[ info ] %zu probe batch(es) acknowledged on the full disk before one was refused (%s)\n",
              probes_acked.size() - (refused_as_stored ? 1 : 0),
              refused_as_stored ? "refused as stored, retried" : "refused as not stored");
  EXPECT_TRUE(hub_holds_exactly(fleet, acked));
  EXPECT_EQ(integrity_check(fleet.hub_store_path()), "ok");

  const std::string log = fleet.hub().log_text();
  EXPECT_EQ(count_lines(log, kHubFullWarning), 1u) << log;
  EXPECT_EQ(count_lines(log, kHubBackInfo), 1u) << log;
  // The registry's heartbeat writes fail too while full: said once, not per tick.
  EXPECT_LE(count_lines(log, kRegistryFailing), 1u) << log;
}

// An idle hub whose disk fills up (another program's files, logs) is not
// ready before any batch is refused: /readyz names the full store within the
// writer's one-second free-space check, and is ready again once the space is
// back; the ingest after that is acknowledged.
TEST(DiskFull, IdleHubOnAFullDiskIsNotReadyUntilTheSpaceIsBack) {
  SKIP_UNLESS_ROOT();
  auto fs = SmallFilesystem::mount(kFilesystemBytes);
  ASSERT_TRUE(fs.is_ok()) << fs.status().to_string();
  Fleet fleet;
  fleet.set_hub_store_path(fs->file("hub.db"));
  Status started = fleet.start();
  ASSERT_TRUE(started.is_ok()) << started.to_string();
  std::pair<int, std::string> ready;
  ASSERT_TRUE(wait_until([&] {
    ready = readyz(fleet);
    return ready.first == 200;
  }, 10000)) << ready.first << " " << ready.second;

  ASSERT_TRUE(fs->fill().is_ok());
  EXPECT_TRUE(wait_until([&] {
    ready = readyz(fleet);
    return ready.first == 503 && ready.second.find(kHubFullWarning) != std::string::npos &&
           ready.second.find(fleet.hub_store_path()) != std::string::npos;
  }, 10000)) << ready.first << " " << ready.second;

  ASSERT_TRUE(fs->release().is_ok());
  EXPECT_TRUE(wait_until([&] {
    ready = readyz(fleet);
    return ready.first == 200;
  }, 10000)) << ready.first << " " << ready.second;
  auto pushed = push_once(fleet.nats(), 1);
  ASSERT_TRUE(pushed.is_ok()) << pushed.status().to_string();
  ASSERT_TRUE(fleet.converged());

  const std::string log = fleet.hub().log_text();
  EXPECT_EQ(count_lines(log, kHubFullWarning), 1u) << log;
  EXPECT_EQ(count_lines(log, "bytes free on its filesystem"), 1u) << log;
  EXPECT_EQ(count_lines(log, kHubBackInfo), 1u) << log;
  EXPECT_LE(count_lines(log, kRegistryFailing), 1u) << log;
}

TEST(DiskFull, AgentReplicaFullApplyPausesWithoutAckResumesAndConverges) {
  SKIP_UNLESS_ROOT();
  auto fs = SmallFilesystem::mount(kFilesystemBytes);
  ASSERT_TRUE(fs.is_ok()) << fs.status().to_string();
  // On consumers: what is checked below is their acknowledgements. (On the
  // live feed a replica that cannot keep up turns its full queue into a gap
  // and takes the type from a consumer: agent/delta_applier.h.)
  FleetOptions on_consumers;
  on_consumers.live_feed = false;
  Fleet fleet(retail_agents(), on_consumers);
  fleet.set_replica_path("store-1", fs->file("store-1.db"));
  Status started = fleet.start();
  ASSERT_TRUE(started.is_ok()) << started.to_string();
  LoadProducer producer(fleet.nats().url(), "erp");
  ASSERT_TRUE(producer.start().is_ok());
  ASSERT_TRUE(producer.wait_acked(30)) << fleet.logs();

  ASSERT_TRUE(fs->fill().is_ok());
  // The hub keeps taking ingest; store-1's replica stops moving.
  ASSERT_TRUE(producer.wait_acked(producer.acked_batches() + 60)) << fleet.logs();
  ASSERT_TRUE(wait_until([&] { return count_lines(fleet.agent("store-1").log_text(), kAgentFullWarning) > 0; },
                         kConvergeTimeoutMs, 200))
      << fleet.logs();
  const std::string replica = fleet.replica_path("store-1");
  auto before = fleet.replica_versions("store-1");
  ASSERT_TRUE(before.is_ok()) << before.status().to_string();
  ASSERT_TRUE(producer.wait_acked(producer.acked_batches() + 30)) << fleet.logs();
  auto during = fleet.replica_versions("store-1");
  ASSERT_TRUE(during.is_ok()) << during.status().to_string();
  EXPECT_EQ(*during, *before) << "store-1's replica moved on a full disk";
  EXPECT_EQ(integrity_check(replica), "ok");

  // Nothing acked that the replica does not hold. products is not
  // partitioned: its consumer sees every message of the stream, so its ack
  // floor is at most the replica's checkpoint. On the partitioned streams
  // the server moves a filtered consumer's floor over other partitions'
  // messages while nothing is pending; with deliveries pending, the floor
  // must not move at all while the disk is full.
  {
    auto nc = Connection::connect(test_connect_options(fleet.nats()));
    ASSERT_TRUE(nc.is_ok()) << nc.status().to_string();
    auto js = (*nc)->jetstream();
    ASSERT_TRUE(js.is_ok()) << js.status().to_string();
    auto checkpoints = [&] {
      std::map<std::string, uint64_t> seqs;
      CommandResult status = run_to_completion(
          {std::string(DELTASYNC_BINARY_DIR) + "/deltasync-agent", "status", "--json", "--config",
           fleet.agent_config("store-1")},
          fleet.file("status"));
      EXPECT_EQ(status.exit_code, 0) << status.err;
      const auto j = nlohmann::json::parse(status.out, nullptr, /*allow_exceptions=*/false);
      for (const auto& t : j.value("types", nlohmann::json::array())) {
        seqs[t.value("type", "")] = t.value("seq", uint64_t{0});
      }
      return seqs;
    };
    auto acks = [&] {
      std::map<std::string, ConsumerAckState> out;
      for (const char* type : {"products", "prices", "inventory"}) {
        out[type] = consumer_ack_state(**js, stream_name(type), consumer_name("store-1"));
      }
      return out;
    };
    const auto seqs = checkpoints();
    const auto first = acks();
    ASSERT_TRUE(producer.wait_acked(producer.acked_batches() + 30)) << fleet.logs();
    const auto second = acks();
    EXPECT_EQ(checkpoints(), seqs) << "store-1's checkpoints moved on a full disk";
    EXPECT_GT(second.at("products").ack_pending, 0) << "no products delivery pending for store-1";
    EXPECT_LE(second.at("products").ack_floor, seqs.at("products")) << "products acked past the replica";
    for (const auto& [type, state] : second) {
      ASSERT_GE(state.ack_pending, 0) << type << ": no consumer info";
      if (first.at(type).ack_pending > 0) {
        EXPECT_EQ(state.ack_floor, first.at(type).ack_floor) << type << ": acked on a full disk";
      }
      std::printf("[ info ] store-1 %s while full: checkpoint seq %llu, ack floor %llu, %lld ack(s) pending\n",
                  type.c_str(), static_cast<unsigned long long>(seqs.at(type)),
                  static_cast<unsigned long long>(state.ack_floor), static_cast<long long>(state.ack_pending));
    }
  }

  // The other agents keep up meanwhile: hq holds every price the hub has.
  ASSERT_TRUE(fs->release().is_ok());
  Status produced = producer.stop();
  ASSERT_TRUE(produced.is_ok()) << produced.to_string();
  ASSERT_TRUE(fleet.converged());
  EXPECT_TRUE(hub_holds_exactly(fleet, producer.acked()));
  EXPECT_EQ(integrity_check(replica), "ok");

  const std::string log = fleet.agent("store-1").log_text();
  EXPECT_EQ(count_lines(log, kAgentFullWarning), 1u) << log;
  EXPECT_EQ(count_lines(log, kAgentBackInfo), 1u) << log;
}

}  // namespace
}  // namespace ds::testing
