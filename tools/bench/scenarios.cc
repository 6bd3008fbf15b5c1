#include "tools/bench/scenarios.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>

#include "shared/codec.h"
#include "shared/messages.h"
#include "shared/names.h"
#include "shared/nats.h"
#include "shared/sqlite.h"
#include "tools/bench/process.h"
#include "tools/sample_data.h"

namespace ds::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr char kType[] = "products";

double seconds_since(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<std::unique_ptr<Connection>> connect(const BenchContext& ctx, const std::string& name) {
  ConnectOptions o;
  o.config.url = ctx.nats_url;
  o.name = name;
  return Connection::connect(std::move(o));
}

// `n` distinct sample records of the benchmark's type.
Result<std::vector<IngestRecord>> base_records(uint64_t n) {
  SampleSpec spec;
  spec.type = kType;
  spec.articles = n;
  return sample_records(spec);
}

// The records with one field changed per call, so that no batch repeats an
// earlier one (a hub may skip unchanged rows; the benchmark must not let it).
std::vector<IngestRecord> fresh_batch(const std::vector<IngestRecord>& base, uint64_t counter) {
  std::vector<IngestRecord> out = base;
  const int64_t now = wall_ms();
  for (auto& r : out) {
    r.fields["name"] = std::string("bench item ") + std::to_string(counter);
    r.ts = now;
  }
  return out;
}

// A scratch subdirectory of the context's work dir, removed afterwards.
struct ScratchDir {
  explicit ScratchDir(std::string p) : path(std::move(p)) { std::filesystem::create_directories(path); }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
  std::string path;
};

Status write_text(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return Status::internal("cannot write " + path);
  const size_t n = std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
  if (n != text.size()) return Status::internal("short write " + path);
  return Status::ok();
}

std::string hub_toml(const BenchContext& ctx, const ScratchDir& dir, int64_t heartbeat_ms) {
  return "[hub]\nname = \"bench-hub\"\nlog_level = \"info\"\n"
         "[nats]\nurl = \"" + ctx.nats_url + "\"\n"
         "[store]\npath = \"" + dir.file("hub.db") + "\"\n"
         "[http]\nlisten = \"\"\n"
         "[liveness]\nheartbeat_interval_ms = " + std::to_string(heartbeat_ms) + "\ndead_after = 3\n"
         "[[types]]\nname = \"products\"\nkey = \"sku\"\n"
         "columns = [{ name = \"name\", type = \"text\" }, { name = \"category\", type = \"text\" },"
         " { name = \"unit\", type = \"text\" }, { name = \"active\", type = \"bool\" },"
         " { name = \"attributes\", type = \"json\" }]\n";
}

// Every hub starts from an empty store, so it must also start from an empty
// stream: versions restart at 1, and a fresh agent would otherwise replay an
// earlier scenario's deltas.
Result<std::unique_ptr<ChildProcess>> start_hub(const BenchContext& ctx, const ScratchDir& dir,
                                                int64_t heartbeat_ms = 1000) {
  {
    DS_ASSIGN_OR_RETURN(auto nc, connect(ctx, "bench-cleanup"));
    DS_ASSIGN_OR_RETURN(auto js, nc->jetstream());
    Status deleted = js->delete_stream(stream_name(kType));
    if (!deleted.is_ok() && deleted.code() != StatusCode::kNotFound) return deleted;
  }
  const std::string config = dir.file("hub.toml");
  DS_RETURN_IF_ERROR(write_text(config, hub_toml(ctx, dir, heartbeat_ms)));
  DS_ASSIGN_OR_RETURN(auto hub, ChildProcess::spawn({ctx.bin_dir + "/deltasync-hub", "--config", config},
                                                    dir.file("hub.log")));
  DS_RETURN_IF_ERROR(hub->wait_for_log("started", 20000));
  return hub;
}

std::string agent_replica(const ScratchDir& dir, const std::string& id) { return dir.file(id + ".db"); }

Result<std::unique_ptr<ChildProcess>> start_agent(const BenchContext& ctx, const ScratchDir& dir,
                                                  const std::string& id) {
  const std::string config = dir.file(id + ".toml");
  DS_RETURN_IF_ERROR(write_text(config, "[agent]\nid = \"" + id + "\"\nlog_level = \"info\"\n"
                                        "[nats]\nurl = \"" + ctx.nats_url + "\"\n"
                                        "[replica]\npath = \"" + agent_replica(dir, id) + "\"\n"
                                        "[[subscriptions]]\ntype = \"products\"\npartition = \"*\"\n"));
  DS_ASSIGN_OR_RETURN(auto agent, ChildProcess::spawn({ctx.bin_dir + "/deltasync-agent", "--config", config, "run"},
                                                      dir.file(id + ".log")));
  DS_RETURN_IF_ERROR(agent->wait_for_log("registered with the hub", 20000));
  return agent;
}

// Reads an agent's applied version of the benchmark type from its replica
// (read-only; the agent keeps writing). 0 before the first apply.
class ReplicaProbe {
 public:
  static Result<std::unique_ptr<ReplicaProbe>> open(const std::string& path) {
    OpenOptions o;
    o.read_only = true;
    o.create = false;
    DS_ASSIGN_OR_RETURN(auto db, Database::open(path, o));
    return std::unique_ptr<ReplicaProbe>(new ReplicaProbe(std::move(db)));
  }
  Result<uint64_t> version() {
    DS_ASSIGN_OR_RETURN(Statement st, db_->prepare("SELECT version FROM _deltasync_checkpoint WHERE type = ?"));
    st.bind(1, std::string(kType));
    DS_ASSIGN_OR_RETURN(bool row, st.step());
    return row ? static_cast<uint64_t>(st.column_int64(0)) : uint64_t{0};
  }

 private:
  explicit ReplicaProbe(std::unique_ptr<Database> db) : db_(std::move(db)) {}
  std::unique_ptr<Database> db_;
};

// Waits (bounded) until the replica has applied `version`.
Status wait_applied(const std::string& replica, uint64_t version, double timeout_s) {
  const auto start = Clock::now();
  std::unique_ptr<ReplicaProbe> probe;
  while (seconds_since(start) < timeout_s) {
    if (!probe) {
      auto p = ReplicaProbe::open(replica);
      if (p.is_ok()) probe = std::move(p).value();
    }
    if (probe) {
      auto v = probe->version();
      if (v.is_ok() && *v >= version) return Status::ok();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return Status::deadline_exceeded("replica " + replica + " did not reach version " + std::to_string(version));
}

// Sends one ingest batch and returns its reply; a rejected batch is an error.
Result<IngestReply> ingest_once(Connection& nc, const std::vector<IngestRecord>& records) {
  IngestRequest req;
  req.records = records;
  DS_ASSIGN_OR_RETURN(Message m, nc.request(Subjects().ingest(kType), encode(req), 30000));
  DS_ASSIGN_OR_RETURN(IngestReply reply, decode_ingest_reply(m.data()));
  if (!reply.ok()) return Status::internal("ingest rejected: " + reply.error->message);
  return reply;
}

// `threads` producers, one connection each, sending batches of `batch`
// records back to back for `seconds`; acknowledged records per second.
Result<double> ingest_rate(const BenchContext& ctx, int threads, uint64_t batch, double seconds) {
  DS_ASSIGN_OR_RETURN(auto base, base_records(batch));
  std::vector<std::unique_ptr<Connection>> conns;
  for (int i = 0; i < threads; ++i) {
    DS_ASSIGN_OR_RETURN(auto c, connect(ctx, "bench-producer-" + std::to_string(i)));
    conns.push_back(std::move(c));
  }
  std::atomic<uint64_t> acked{0};
  std::atomic<uint64_t> counter{0};
  std::mutex error_mu;
  Status first_error;
  const auto start = Clock::now();
  std::vector<std::thread> workers;
  for (int i = 0; i < threads; ++i) {
    workers.emplace_back([&, i] {
      while (seconds_since(start) < seconds) {
        auto r = ingest_once(*conns[static_cast<size_t>(i)], fresh_batch(base, counter.fetch_add(1)));
        if (!r.is_ok()) {
          std::lock_guard lock(error_mu);
          if (first_error.is_ok()) first_error = r.status();
          return;
        }
        acked.fetch_add(base.size());
      }
    });
  }
  for (auto& w : workers) w.join();
  const double elapsed = seconds_since(start);
  DS_RETURN_IF_ERROR(first_error);
  if (acked.load() == 0) return Status::internal("no record acknowledged");
  return static_cast<double>(acked.load()) / elapsed;
}

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
    DS_ASSIGN_OR_RETURN(double rate, ingest_rate(ctx, kThreads, b, ctx.seconds));
    out.push_back({"ingest", "batch " + std::to_string(b) + ", " + std::to_string(kThreads) + " producers", rate,
                   "records/s", ctx.raw_records_per_s});
  }
  return out;
}

// ---- footprint -------------------------------------------------------------

Result<double> file_size(const std::string& path) {
  std::error_code ec;
  const auto n = std::filesystem::file_size(path, ec);
  if (ec) return Status::not_found(path + ": " + ec.message());
  return static_cast<double>(n);
}

Result<double> stripped_size(const std::string& path, const std::string& tmp) {
  const std::string cmd = "strip -o '" + tmp + "' '" + path + "' 2>/dev/null";
  if (std::system(cmd.c_str()) != 0) return Status::unavailable("strip failed on " + path);
  auto n = file_size(tmp);
  std::filesystem::remove(tmp);
  return n;
}

Result<std::vector<Figure>> run_footprint(BenchContext& ctx) {
  std::vector<Figure> out;
  ScratchDir dir(ctx.work_dir + "/footprint");
  for (const std::string bin : {"deltasync-agent", "deltasync-hub"}) {
    const std::string path = ctx.bin_dir + "/" + bin;
    DS_ASSIGN_OR_RETURN(double size, file_size(path));
    out.push_back({"footprint", bin + " binary", size / 1e6, "MB", std::nullopt});
    auto stripped = stripped_size(path, dir.file(bin + ".stripped"));
    if (stripped.is_ok()) out.push_back({"footprint", bin + " stripped", *stripped / 1e6, "MB", std::nullopt});
  }
  DS_ASSIGN_OR_RETURN(auto hub, start_hub(ctx, dir));
  DS_ASSIGN_OR_RETURN(auto agent, start_agent(ctx, dir, "bench-agent"));
  std::this_thread::sleep_for(std::chrono::milliseconds(ctx.smoke ? 1000 : 3000));
  DS_ASSIGN_OR_RETURN(ProcStats idle, proc_stats(agent->pid()));
  out.push_back({"footprint", "agent idle RSS", static_cast<double>(idle.rss_kb) / 1024.0, "MB", std::nullopt});

  const uint64_t batch = 1000;
  const uint64_t batches = ctx.smoke ? 5 : 50;  // smoke: still enough CPU to exceed one clock tick
  DS_ASSIGN_OR_RETURN(auto base, base_records(batch));
  DS_ASSIGN_OR_RETURN(auto nc, connect(ctx, "bench-footprint"));
  DS_ASSIGN_OR_RETURN(ProcStats before, proc_stats(agent->pid()));
  uint64_t last_version = 0;
  for (uint64_t i = 0; i < batches; ++i) {
    DS_ASSIGN_OR_RETURN(IngestReply reply, ingest_once(*nc, fresh_batch(base, i)));
    last_version = reply.last_version;
  }
  DS_RETURN_IF_ERROR(wait_applied(agent_replica(dir, "bench-agent"), last_version, 120));
  DS_ASSIGN_OR_RETURN(ProcStats after, proc_stats(agent->pid()));
  const double applied = static_cast<double>(batch * batches);
  out.push_back({"footprint", "agent CPU per 1000 applied records",
                 (after.cpu_seconds - before.cpu_seconds) * 1000.0 / (applied / 1000.0), "ms", std::nullopt});
  out.push_back({"footprint", "agent RSS after applying", static_cast<double>(after.rss_kb) / 1024.0, "MB",
                 std::nullopt});
  return out;
}

// ---- e2e ------------------------------------------------------------------

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size())));
  return v[i];
}

// Fixed offered load (batches of 10 every 10 ms = 1,000 records/s) into a hub
// with `agent_count` agent processes. A batch's latency runs from just before
// its ingest request is sent to the first time a poller (every ~0.2 ms, read-
// only on the agent's replica) sees the agent's checkpoint at or past the
// batch's last version: ingest, JetStream, delivery and the agent's commit.
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
  std::thread poller([&] {
    std::vector<uint64_t> last(n, 0);
    while (!stop.load()) {
      uint64_t low = UINT64_MAX;
      for (size_t i = 0; i < n; ++i) {
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
  Status error;
  const auto start = Clock::now();
  for (uint64_t i = 0; seconds_since(start) < ctx.seconds; ++i) {
    std::this_thread::sleep_until(start + kPeriod * i);
    const auto at = Clock::now();
    auto reply = ingest_once(*nc, fresh_batch(base, i));
    if (!reply.is_ok()) {
      error = reply.status();
      break;
    }
    sent.push_back({at, reply->last_version});
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
      {"e2e", who + ", applied records/s (all agents; offered load as baseline)", applied_rate, "records/s",
       1000.0 * static_cast<double>(agent_count)}};
}

Result<std::vector<Figure>> run_e2e(BenchContext& ctx) {
  std::vector<Figure> out;
  for (int agents : {1, 10}) {
    DS_ASSIGN_OR_RETURN(auto figures, run_e2e_with(ctx, ctx.smoke ? std::min(agents, 2) : agents));
    for (auto& f : figures) out.push_back(std::move(f));
  }
  return out;
}

// ---- dead ------------------------------------------------------------------

size_t count_lines(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
  return n;
}

// Ingest rate (batches of 100, 4 producers) on a hub with no agents, then on
// the same hub after `dead` fake agents registered (over NATS, from this
// process), never answered a heartbeat and were declared dead by the hub.
Result<std::vector<Figure>> run_dead(BenchContext& ctx) {
  ScratchDir dir(ctx.work_dir + "/dead");
  constexpr int64_t kHeartbeatMs = 200;
  DS_ASSIGN_OR_RETURN(auto hub, start_hub(ctx, dir, kHeartbeatMs));
  const uint64_t batch = ctx.smoke ? 20 : 100;
  DS_ASSIGN_OR_RETURN(double live_rate, ingest_rate(ctx, 4, batch, ctx.seconds));

  const int dead = ctx.smoke ? 20 : 1000;
  DS_ASSIGN_OR_RETURN(auto nc, connect(ctx, "bench-dead"));
  for (int i = 0; i < dead; ++i) {
    RegisterRequest r;
    r.agent = "dead-" + std::to_string(i);
    r.host = "bench";
    r.version = "bench";
    SubscriptionReport sub;
    sub.type = kType;
    r.subscriptions = {sub};
    DS_ASSIGN_OR_RETURN(Message m, nc->request(Subjects().register_agent(r.agent), encode(r), 30000));
    DS_ASSIGN_OR_RETURN(RegisterReply reply, decode_register_reply(m.data()));
    if (!reply.ok()) return Status::internal("register rejected: " + reply.error->message);
  }
  const auto start = Clock::now();
  while (count_lines(hub->log_text(), "-> dead") < static_cast<size_t>(dead)) {
    if (seconds_since(start) > 120) return Status::deadline_exceeded("the hub did not declare the agents dead");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const double detect_s = seconds_since(start);
  DS_ASSIGN_OR_RETURN(double dead_rate, ingest_rate(ctx, 4, batch, ctx.seconds));
  return std::vector<Figure>{
      {"dead", "0 dead agents, batch " + std::to_string(batch), live_rate, "records/s", std::nullopt},
      {"dead", std::to_string(dead) + " dead agents, batch " + std::to_string(batch), dead_rate, "records/s",
       live_rate},
      {"dead", "time until all " + std::to_string(dead) + " declared dead (heartbeat 200 ms)", detect_s, "s",
       std::nullopt}};
}

}  // namespace

const std::vector<std::string>& scenario_names() {
  static const std::vector<std::string> names = {"raw", "ingest", "footprint", "e2e", "dead"};
  return names;
}

Result<std::vector<Figure>> run_scenario(const std::string& name, BenchContext& ctx) {
  if (name == "raw") return run_raw(ctx);
  if (name == "ingest") return run_ingest(ctx);
  if (name == "footprint") return run_footprint(ctx);
  if (name == "e2e") return run_e2e(ctx);
  if (name == "dead") return run_dead(ctx);
  return Status::invalid_argument("unknown scenario '" + name + "'");
}

}  // namespace ds::bench
