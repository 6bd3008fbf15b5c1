#include "bench/proc_info.h"

#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <vector>

#include "testing/local_host.h"

namespace ds::bench {

std::string self_dir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : exe.parent_path().string();
}

Result<ProcStats> proc_stats(pid_t pid) {
  ProcStats out;
  const std::string base = "/proc/" + std::to_string(pid);
  std::istringstream status(read_text_file(base + "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) out.rss_kb = std::stoll(line.substr(6));
    if (line.rfind("RssAnon:", 0) == 0) out.rss_anon_kb = std::stoll(line.substr(8));
    if (line.rfind("VmHWM:", 0) == 0) out.peak_rss_kb = std::stoll(line.substr(6));
  }
  const std::string stat = read_text_file(base + "/stat");
  // The command name (field 2) may hold spaces; fields resume after ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return Status::not_found("no " + base + "/stat");
  std::istringstream rest(stat.substr(close + 2));
  std::vector<std::string> fields;
  for (std::string f; rest >> f;) fields.push_back(f);
  // Fields 14 and 15 of stat(5) are utime and stime; `fields` starts at 3.
  if (fields.size() < 13) return Status::internal("short " + base + "/stat");
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  out.cpu_seconds = static_cast<double>(std::stoll(fields[11]) + std::stoll(fields[12])) / ticks;
  return out;
}

}  // namespace ds::bench
