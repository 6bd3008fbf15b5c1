#include "bench/bench_support.h"

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "bench/proc_info.h"
#include "shared/codec.h"
#include "shared/names.h"
#include "tools/sample_data.h"

namespace ds::bench {
namespace {

// `argv` started as a child process, its output in `log_path`.
Result<std::unique_ptr<ChildProcess>> spawn(std::vector<std::string> argv, std::string log_path) {
  auto child = std::make_unique<ChildProcess>(std::move(argv), std::move(log_path));
  DS_RETURN_IF_ERROR(child->start());
  return child;
}

}  // namespace

double seconds_since(Clock::time_point since) { return seconds_between(since, Clock::now()); }

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
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

Result<std::vector<IngestRecord>> base_records(uint64_t n) {
  SampleSpec spec;
  spec.type = kType;
  spec.articles = n;
  return sample_records(spec);
}

std::vector<IngestRecord> fresh_batch(const std::vector<IngestRecord>& base, uint64_t counter) {
  std::vector<IngestRecord> out = base;
  const int64_t now = wall_ms();
  for (auto& r : out) {
    r.fields["name"] = std::string("bench item ") + std::to_string(counter);
    r.ts = now;
  }
  return out;
}

std::vector<IngestRecord> keyed_batch(const std::vector<IngestRecord>& base, uint64_t index) {
  std::vector<IngestRecord> out = base;
  const std::string suffix = "/" + std::to_string(index);
  const int64_t now = wall_ms();
  for (auto& r : out) {
    r.key += suffix;
    r.ts = now;
  }
  return out;
}

ScratchDir::ScratchDir(std::string p) : path(std::move(p)) { std::filesystem::create_directories(path); }

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

std::string ScratchDir::new_log(const std::string& stem) const {
  std::string log = file(stem + ".log");
  for (int n = 2; std::filesystem::exists(log); ++n) log = file(stem + "-" + std::to_string(n) + ".log");
  return log;
}

Status write_text(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return Status::internal("cannot write " + path);
  const size_t n = std::fwrite(text.data(), 1, text.size(), f);
  const bool closed = std::fclose(f) == 0;
  if (n != text.size() || !closed) return Status::internal("short write " + path);
  return Status::ok();
}

std::string hub_toml(const BenchContext& ctx, const ScratchDir& dir, const HubOptions& options) {
  return "[hub]\nname = \"bench-hub\"\nlog_level = \"info\"\n"
         "[nats]\nurl = \"" + ctx.nats_url + "\"\n"
         "[store]\npath = \"" + dir.file("hub.db") + "\"\n"
         "[http]\nlisten = \"\"\n"
         "[liveness]\nheartbeat_interval_ms = " + std::to_string(options.heartbeat_ms) +
         "\ndead_after = " + std::to_string(options.dead_after) + "\n"
         "[retention]\nenabled = " + (options.retention ? "true" : "false") + "\n"
         "[streams]\nreplicas = " + std::to_string(options.stream_replicas) + "\n"
         "[ha]\nenabled = " + (options.ha ? "true" : "false") + "\n"
         "[[types]]\nname = \"products\"\nkey = \"sku\"\n"
         "max_bytes = " + std::to_string(options.max_bytes) + "\n"
         "columns = [{ name = \"name\", type = \"text\" }, { name = \"category\", type = \"text\" },"
         " { name = \"unit\", type = \"text\" }, { name = \"active\", type = \"bool\" },"
         " { name = \"attributes\", type = \"json\" }]\n";
}

Result<HubConfig> hub_config(const BenchContext& ctx, const ScratchDir& dir, const HubOptions& options) {
  return parse_hub_config(hub_toml(ctx, dir, options), dir.file("hub.toml"));
}

Result<std::unique_ptr<ChildProcess>> start_hub(const BenchContext& ctx, const ScratchDir& dir,
                                                const HubOptions& options) {
  if (options.fresh) {
    DS_ASSIGN_OR_RETURN(auto nc, connect(ctx, "bench-cleanup"));
    DS_ASSIGN_OR_RETURN(auto js, nc->jetstream());
    Status deleted = js->delete_stream(stream_name(kType));
    if (!deleted.is_ok() && deleted.code() != StatusCode::kNotFound) return deleted;
  }
  DS_ASSIGN_OR_RETURN(auto hub, spawn_hub(ctx, dir, options));
  DS_RETURN_IF_ERROR(hub->wait_for_log("started", 20000));
  return hub;
}

Result<std::unique_ptr<ChildProcess>> spawn_hub(const BenchContext& ctx, const ScratchDir& dir,
                                                const HubOptions& options) {
  const std::string config = dir.file("hub.toml");
  DS_RETURN_IF_ERROR(write_text(config, hub_toml(ctx, dir, options)));
  return spawn({ctx.bin_dir + "/deltasync-hub", "--config", config}, dir.new_log("hub"));
}

std::string agent_replica(const ScratchDir& dir, const std::string& id) { return dir.file(id + ".db"); }

Result<std::unique_ptr<ChildProcess>> spawn_agent(const BenchContext& ctx, const ScratchDir& dir,
                                                  const std::string& id) {
  const std::string config = dir.file(id + ".toml");
  DS_RETURN_IF_ERROR(write_text(config, "[agent]\nid = \"" + id + "\"\nlog_level = \"info\"\n"
                                        "[nats]\nurl = \"" + ctx.nats_url + "\"\n"
                                        "[replica]\npath = \"" + agent_replica(dir, id) + "\"\n"
                                        "[[subscriptions]]\ntype = \"products\"\npartition = \"*\"\n"));
  return spawn({ctx.bin_dir + "/deltasync-agent", "--config", config, "run"}, dir.new_log(id));
}

Status wait_registered(ChildProcess& agent) { return agent.wait_for_log("registered with the hub", 20000); }

Result<std::unique_ptr<ChildProcess>> start_agent(const BenchContext& ctx, const ScratchDir& dir,
                                                  const std::string& id) {
  DS_ASSIGN_OR_RETURN(auto agent, spawn_agent(ctx, dir, id));
  DS_RETURN_IF_ERROR(wait_registered(*agent));
  return agent;
}

Result<std::unique_ptr<ReplicaProbe>> ReplicaProbe::open(const std::string& path) {
  OpenOptions o;
  o.read_only = true;
  o.create = false;
  DS_ASSIGN_OR_RETURN(auto db, Database::open(path, o));
  return std::unique_ptr<ReplicaProbe>(new ReplicaProbe(std::move(db)));
}

Result<uint64_t> ReplicaProbe::version() {
  DS_ASSIGN_OR_RETURN(Statement st, db_->prepare("SELECT version FROM _deltasync_checkpoint WHERE type = ?"));
  st.bind(1, std::string(kType));
  DS_ASSIGN_OR_RETURN(bool row, st.step());
  return row ? static_cast<uint64_t>(st.column_int64(0)) : uint64_t{0};
}

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
  return Status::deadline_exceeded("replica " + replica + " did not reach version " + std::to_string(version) +
                                   " within " + std::to_string(static_cast<int>(timeout_s)) + " s");
}

Result<IngestReply> ingest_once(Connection& nc, const std::vector<IngestRecord>& records) {
  IngestRequest req;
  req.records = records;
  DS_ASSIGN_OR_RETURN(Message m, nc.request(Subjects().ingest(kType, "bench"), encode(req), 30000));
  DS_ASSIGN_OR_RETURN(IngestReply reply, decode_ingest_reply(m.data()));
  if (!reply.ok()) return Status::internal("ingest rejected: " + reply.error->message);
  return reply;
}

Result<IngestLoad> ingest_load(const BenchContext& ctx, int threads, const BatchMaker& make_batch, double seconds,
                               uint64_t batches, const AfterAck& after_ack) {
  std::vector<std::unique_ptr<Connection>> conns;
  for (int i = 0; i < threads; ++i) {
    DS_ASSIGN_OR_RETURN(auto c, connect(ctx, "bench-producer-" + std::to_string(i)));
    conns.push_back(std::move(c));
  }
  std::atomic<uint64_t> acked{0};
  std::atomic<uint64_t> next{0};
  std::atomic<uint64_t> last_version{0};
  std::mutex error_mu;
  Status first_error;  // guarded by error_mu
  const auto fail = [&](const Status& s) {
    std::lock_guard lock(error_mu);
    if (first_error.is_ok()) first_error = s;
  };
  IngestLoad load;
  load.start = Clock::now();
  std::vector<std::thread> workers;
  for (int i = 0; i < threads; ++i) {
    workers.emplace_back([&, i] {
      Connection& nc = *conns[static_cast<size_t>(i)];
      while (seconds_since(load.start) < seconds) {
        const uint64_t k = next.fetch_add(1);
        if (k >= batches) return;
        const std::vector<IngestRecord> records = make_batch(k);
        auto reply = ingest_once(nc, records);
        if (!reply.is_ok()) return fail(reply.status());
        if (after_ack) {
          if (Status s = after_ack(nc, records, *reply); !s.is_ok()) return fail(s);
        }
        acked.fetch_add(records.size());
        uint64_t seen = last_version.load();
        while (seen < reply->last_version && !last_version.compare_exchange_weak(seen, reply->last_version)) {
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  load.seconds = seconds_since(load.start);
  DS_RETURN_IF_ERROR(first_error);
  if (acked.load() == 0) return Status::internal("no record acknowledged");
  load.records = acked.load();
  load.last_version = last_version.load();
  return load;
}

Result<IngestLoad> ingest_for(const BenchContext& ctx, int threads, uint64_t batch, double seconds,
                              const AfterAck& after_ack) {
  DS_ASSIGN_OR_RETURN(auto base, base_records(batch));
  return ingest_load(
      ctx, threads, [&base](uint64_t k) { return fresh_batch(base, k); }, seconds, UINT64_MAX, after_ack);
}

bool is_dead_transition(const std::string& log_line) {
  return log_line.find(" agent ") != std::string::npos && log_line.find(" -> dead (") != std::string::npos;
}

std::string agent_of_transition(const std::string& log_line) {
  const size_t begin = log_line.find(" agent ");
  if (begin == std::string::npos) return "";
  const size_t id = begin + 7;
  const size_t end = log_line.find(": ", id);
  return end == std::string::npos ? "" : log_line.substr(id, end - id);
}

Result<std::vector<CpuWindow>> measure_cpu(const std::vector<pid_t>& pids, double seconds) {
  std::vector<ProcStats> before;
  for (pid_t p : pids) {
    DS_ASSIGN_OR_RETURN(ProcStats s, proc_stats(p));
    before.push_back(s);
  }
  const auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  const double wall = seconds_since(start);
  std::vector<CpuWindow> out;
  for (size_t i = 0; i < pids.size(); ++i) {
    DS_ASSIGN_OR_RETURN(ProcStats after, proc_stats(pids[i]));
    out.push_back({(after.cpu_seconds - before[i].cpu_seconds) * 100.0 / wall,
                   static_cast<double>(after.rss_kb) / 1024.0});
  }
  return out;
}

Result<std::unique_ptr<NatsCluster>> start_cluster(const std::string& scenario) {
  std::unique_ptr<NatsCluster> cluster;
  try {
    cluster = std::make_unique<NatsCluster>("nats-server", 3);
  } catch (const std::runtime_error& e) {
    return Status::internal(scenario + ": a 3-node cluster: " + e.what());
  }
  DS_RETURN_IF_ERROR(cluster->start());
  return cluster;
}

}  // namespace ds::bench
