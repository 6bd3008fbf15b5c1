// The throughput scenarios: `raw` (the engine's limit), `ingest` (records
// acknowledged to producers) and `e2e` (ingest to committed in agents'
// replicas, with latency percentiles at a fixed offered load).

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>

#include "bench/bench_support.h"
#include "shared/codec.h"

namespace ds::bench {
namespace {

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size())));
  return v[i];
}

// ---- e2e ------------------------------------------------------------------

// Fixed offered load (batches of 10 every 10 ms = 1,000 records/s) into a hub
// with `agent_count` agent processes. A batch's latency runs from just before
// its ingest request is sent to the first time a poller (every ~0.2 ms, read-
// only on the agent's replica) sees the agent's checkpoint at or past the
// batch's last version: ingest, JetStream, delivery and the agent's commit.
// The poller reads only replicas behind the version the batch in flight will
// reach, so between batches it sleeps instead of taking a core from the
// processes it measures. The producer's own wait for the ingest reply is
// reported too: the reply comes after the hub's commit, the JetStream ack and
// the recorded publish mark, so agents often commit before it arrives.
Result<std::vector<Figure>> run_e2e_with(BenchContext& ctx, int agent_count) {
  ScratchDir dir(ctx.work_dir + "/e2e-" + std::to_string(agent_count));
  DS_ASSIGN_OR_RETURN(auto hub, start_hub(ctx, dir));
  std::vector<std::unique_ptr<ChildProcess>> agents;
  std::vector<std::unique_ptr<ReplicaProbe>> probes;
  for (int i = 0; i < agent_count; ++i) {
    const std::string id = "e2e-agent-" + std::to_string(i);
    DS_ASSIGN_OR_RETURN(auto a, start_agent(ctx, dir, id));
    agents.push_back(std::move(a));
    DS_ASSIGN_OR_RETURN(auto probe, ReplicaProbe::open(agent_replica(dir, id)));
    probes.push_back(std::move(probe));
  }
  DS_ASSIGN_OR_RETURN(auto nc, connect(ctx, "bench-e2e"));
  constexpr uint64_t kBatch = 10;
  constexpr auto kPeriod = std::chrono::milliseconds(10);
  DS_ASSIGN_OR_RETURN(auto base, base_records(kBatch));

  struct Point {
    Clock::time_point at;
    uint64_t version;
  };
  const size_t n = static_cast<size_t>(agent_count);
  std::vector<std::vector<Point>> seen(n);  // written by the poller only until it is joined
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> min_applied{0};
  // The version every replica will hold once the batch in flight is applied:
  // this sender alone ingests, so each batch adds exactly kBatch versions.
  std::atomic<uint64_t> target{0};
  std::thread poller([&] {
    std::vector<uint64_t> last(n, 0);
    while (!stop.load()) {
      const uint64_t want = target.load();
      uint64_t low = UINT64_MAX;
      for (size_t i = 0; i < n; ++i) {
        if (last[i] >= want) {
          low = std::min(low, last[i]);
          continue;
        }
        auto v = probes[i]->version();
        if (v.is_ok() && *v > last[i]) {
          last[i] = *v;
          seen[i].push_back({Clock::now(), *v});
        }
        low = std::min(low, last[i]);
      }
      min_applied.store(low);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  std::vector<Point> sent;
  std::vector<double> ack_ms;
  Status error;
  const auto start = Clock::now();
  for (uint64_t i = 0; seconds_since(start) < ctx.seconds; ++i) {
    std::this_thread::sleep_until(start + kPeriod * i);
    target.store((sent.empty() ? 0 : sent.back().version) + kBatch);
    const auto at = Clock::now();
    auto reply = ingest_once(*nc, fresh_batch(base, i));
    if (!reply.is_ok()) {
      error = reply.status();
      break;
    }
    ack_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - at).count());
    sent.push_back({at, reply->last_version});
    target.store(std::max(target.load(), reply->last_version));
  }
  const uint64_t last_version = sent.empty() ? 0 : sent.back().version;
  while (error.is_ok() && min_applied.load() < last_version && seconds_since(start) < ctx.seconds + 60) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stop.store(true);
  poller.join();
  DS_RETURN_IF_ERROR(error);
  if (sent.empty()) return Status::internal("nothing sent");

  std::vector<double> latencies_ms;
  Clock::time_point last_applied = start;
  for (size_t a = 0; a < n; ++a) {
    for (const auto& s : sent) {
      auto it = std::lower_bound(seen[a].begin(), seen[a].end(), s.version,
                                 [](const Point& p, uint64_t v) { return p.version < v; });
      if (it == seen[a].end()) continue;
      latencies_ms.push_back(std::chrono::duration<double, std::milli>(it->at - s.at).count());
      last_applied = std::max(last_applied, it->at);
    }
  }
  if (latencies_ms.size() != sent.size() * n) {
    return Status::deadline_exceeded(std::to_string(sent.size() * n - latencies_ms.size()) +
                                     " batch(es) not applied within 60 s");
  }
  const double applied_rate = static_cast<double>(sent.size() * kBatch * n) /
                              std::chrono::duration<double>(last_applied - start).count();
  const std::string who = std::to_string(agent_count) + (agent_count == 1 ? " agent" : " agents");
  return std::vector<Figure>{
      {"e2e", who + ", p50 latency at 1000 records/s", percentile(latencies_ms, 50), "ms", std::nullopt},
      {"e2e", who + ", p99 latency", percentile(latencies_ms, 99), "ms", std::nullopt},
      {"e2e", who + ", p99.9 latency", percentile(latencies_ms, 99.9), "ms", std::nullopt},
      {"e2e", who + ", ingest reply p50 (hub commit, JetStream ack, mark)", percentile(ack_ms, 50), "ms", std::nullopt},
      {"e2e", who + ", applied records/s (all agents; offered load as baseline)", applied_rate, "records/s",
       1000.0 * static_cast<double>(agent_count)}};
}

}  // namespace

// ---- raw -------------------------------------------------------------------

Result<std::vector<Figure>> run_raw(BenchContext& ctx) {
  DS_ASSIGN_OR_RETURN(auto nc, connect(ctx, "bench-raw"));
  DS_ASSIGN_OR_RETURN(auto js, nc->jetstream());
  StreamSpec spec;
  spec.name = "BENCH_RAW";
  spec.subjects = {"bench.raw.>"};
  DS_RETURN_IF_ERROR(js->ensure_stream(spec));
  DS_ASSIGN_OR_RETURN(auto base, base_records(1));
  IngestRequest one;
  one.records = fresh_batch(base, 0);
  const std::string payload = encode(one);
  constexpr int kWindow = 1000;  // publishes in flight before waiting for their acks
  uint64_t published = 0;
  const auto start = Clock::now();
  while (seconds_since(start) < ctx.seconds) {
    for (int i = 0; i < kWindow; ++i) {
      DS_RETURN_IF_ERROR(js->publish_async("bench.raw.products", payload, ""));
    }
    DS_RETURN_IF_ERROR(js->wait_published(30000));
    published += kWindow;
  }
  const double rate = static_cast<double>(published) / seconds_since(start);
  (void)js->delete_stream(spec.name);
  ctx.raw_records_per_s = rate;
  return std::vector<Figure>{
      {"raw", "payload size", static_cast<double>(payload.size()), "bytes", std::nullopt},
      {"raw", "async publish, 1 record/msg", rate, "records/s", std::nullopt}};
}

// ---- ingest ----------------------------------------------------------------

Result<std::vector<Figure>> run_ingest(BenchContext& ctx) {
  ScratchDir dir(ctx.work_dir + "/ingest");
  DS_ASSIGN_OR_RETURN(auto hub, start_hub(ctx, dir));
  std::vector<Figure> out;
  constexpr int kThreads = 4;
  const std::vector<uint64_t> batches = ctx.smoke ? std::vector<uint64_t>{1, 10, 50}
                                                  : std::vector<uint64_t>{1, 100, 1000};
  for (uint64_t b : batches) {
    DS_ASSIGN_OR_RETURN(IngestLoad load, ingest_for(ctx, kThreads, b, ctx.seconds));
    out.push_back({"ingest", "batch " + std::to_string(b) + ", " + std::to_string(kThreads) + " producers",
                   load.records_per_s(), "records/s", ctx.raw_records_per_s});
  }
  return out;
}

// ---- e2e (run_e2e_with above) ----------------------------------------------

Result<std::vector<Figure>> run_e2e(BenchContext& ctx) {
  std::vector<Figure> out;
  for (int agents : {1, 10}) {
    DS_ASSIGN_OR_RETURN(auto figures, run_e2e_with(ctx, ctx.smoke ? std::min(agents, 2) : agents));
    for (auto& f : figures) out.push_back(std::move(f));
  }
  return out;
}

}  // namespace ds::bench
