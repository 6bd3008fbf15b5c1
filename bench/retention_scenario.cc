// The `retention` scenario: the hub's store size after many updates of a
// constant set of keys, with retention (docs/operations.md, "Retention") and,
// as the baseline, without it ([retention] enabled = false).
//
// Each run: a fresh hub whose stream keeps at most kStreamBytes (so the
// stream's first batch moves on, as max_age would move it over days), one
// producer sending batches of 1,000 updates round-robin over the keys until
// the target is reached. The store size (hub.db + hub.db-wal) and the change
// log's rows are sampled at every tenth of the way, so the output shows the
// slope as well as the end; after the load the hub gets up to 60 s to finish
// pruning (until the log's rows stay put for 3 s) before the last sample. Target: DELTASYNC_BENCH_RETENTION_UPDATES
// (default 1,000,000, so --all stays short; the documented figure sets
// 10,000,000; --smoke: 20,000), keys DELTASYNC_BENCH_RETENTION_KEYS (default
// 10,000; --smoke 2,000).

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "bench/bench_support.h"

namespace ds::bench {
namespace {

constexpr uint64_t kBatch = 1000;

uint64_t env_or(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strtoull(v, nullptr, 10);
}

double store_bytes(const ScratchDir& dir) {
  double total = 0;
  for (const char* suffix : {"", "-wal"}) {
    std::error_code ec;
    const auto n = std::filesystem::file_size(dir.file(std::string("hub.db") + suffix), ec);
    if (!ec) total += static_cast<double>(n);
  }
  return total;
}

Result<int64_t> log_rows(const ScratchDir& dir) {
  OpenOptions ro;
  ro.read_only = true;
  DS_ASSIGN_OR_RETURN(auto db, Database::open(dir.file("hub.db"), ro));
  return query_scalar_int64(*db, "SELECT count(*) FROM changes");
}

struct RunResult {
  double mib = 0;
  int64_t rows = 0;
  std::vector<std::pair<uint64_t, double>> samples;  // (updates, MiB)
};

Result<RunResult> run_one(BenchContext& ctx, bool retention, uint64_t updates, const std::vector<IngestRecord>& base,
                          int64_t stream_bytes) {
  ScratchDir dir(ctx.work_dir + (retention ? "/retention-on" : "/retention-off"));
  HubOptions options;
  options.max_bytes = stream_bytes;
  options.retention = retention;
  DS_ASSIGN_OR_RETURN(auto hub, start_hub(ctx, dir, options));
  DS_ASSIGN_OR_RETURN(auto nc, connect(ctx, "bench-retention"));
  RunResult out;
  const uint64_t slices = base.size() / kBatch;
  const uint64_t batches = updates / kBatch;
  const uint64_t sample_every = std::max<uint64_t>(1, batches / 10);
  for (uint64_t k = 0; k < batches; ++k) {
    const auto first = base.begin() + static_cast<std::ptrdiff_t>((k % slices) * kBatch);
    const std::vector<IngestRecord> slice(first, first + static_cast<std::ptrdiff_t>(kBatch));
    DS_ASSIGN_OR_RETURN(IngestReply reply, ingest_once(*nc, fresh_batch(slice, k)));
    (void)reply;
    if ((k + 1) % sample_every == 0) {
      out.samples.emplace_back((k + 1) * kBatch, store_bytes(dir) / (1024.0 * 1024.0));
      fmt::print(stderr, "retention {}: {} updates, store {:.1f} MiB\n", retention ? "on" : "off", (k + 1) * kBatch,
                 out.samples.back().second);
    }
  }
  // Let pruning finish what the load left: the log's rows stop falling
  // (unchanged for 3 s; at most 60 s).
  int64_t rows = 0;
  DS_ASSIGN_OR_RETURN(rows, log_rows(dir));
  for (int i = 0, still = 0; retention && i < 60 && still < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    DS_ASSIGN_OR_RETURN(int64_t now, log_rows(dir));
    still = now == rows ? still + 1 : 0;
    rows = now;
  }
  out.rows = rows;
  out.mib = store_bytes(dir) / (1024.0 * 1024.0);
  hub->stop(SIGTERM, kStopGraceMs);
  return out;
}

}  // namespace

Result<std::vector<Figure>> run_retention(BenchContext& ctx) {
  const uint64_t keys = std::max<uint64_t>(kBatch, env_or("DELTASYNC_BENCH_RETENTION_KEYS", ctx.smoke ? 2000 : 10000)) /
                        kBatch * kBatch;
  const uint64_t updates =
      std::max<uint64_t>(keys, env_or("DELTASYNC_BENCH_RETENTION_UPDATES", ctx.smoke ? 20000 : 1000000));
  // The stream keeps about 3 rounds over the keys' changes (a change is some
  // 200 bytes in the stream), so it moves on many times during the run.
  const int64_t stream_bytes = static_cast<int64_t>(keys) * 600;
  DS_ASSIGN_OR_RETURN(auto base, base_records(keys));
  DS_ASSIGN_OR_RETURN(RunResult off, run_one(ctx, false, updates, base, stream_bytes));
  DS_ASSIGN_OR_RETURN(RunResult on, run_one(ctx, true, updates, base, stream_bytes));
  const std::string what = fmt::format("after {} updates of {} keys", updates, keys);
  std::vector<Figure> out;
  out.push_back({"retention", "hub store size " + what, on.mib, "MiB", off.mib});
  out.push_back({"retention", "change-log rows " + what, static_cast<double>(on.rows), "rows",
                 static_cast<double>(off.rows)});
  // Halfway, for the slope: flat with retention, growing without.
  auto halfway = [](const RunResult& r) { return r.samples.empty() ? 0.0 : r.samples[(r.samples.size() - 1) / 2].second; };
  const uint64_t half = on.samples.empty() ? 0 : on.samples[(on.samples.size() - 1) / 2].first;
  out.push_back({"retention", fmt::format("hub store size after {} updates (halfway, during the load)", half),
                 halfway(on), "MiB", halfway(off)});
  return out;
}

}  // namespace ds::bench
