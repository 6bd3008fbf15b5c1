// The `footprint` scenario: binary sizes, an agent's idle memory, and its CPU
// per 1,000 applied records.

#include <cstdlib>
#include <filesystem>
#include <thread>

#include "bench/bench_support.h"
#include "bench/proc_info.h"

namespace ds::bench {
namespace {

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

}  // namespace

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
  // /proc reports KiB: RSS figures are in MiB (binary sizes above in MB).
  out.push_back({"footprint", "agent idle RSS", static_cast<double>(idle.rss_kb) / 1024.0, "MiB", std::nullopt});
  // The rest of RSS is pages of shared libraries (libcrypto, libstdc++, libc,
  // libsqlite3), which other processes on the host share.
  out.push_back({"footprint", "agent idle RSS, anonymous only", static_cast<double>(idle.rss_anon_kb) / 1024.0,
                 "MiB", std::nullopt});

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
  out.push_back({"footprint", "agent RSS after applying", static_cast<double>(after.rss_kb) / 1024.0, "MiB",
                 std::nullopt});
  return out;
}

}  // namespace ds::bench
