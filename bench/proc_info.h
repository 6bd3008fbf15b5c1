#pragma once
// What /proc says about processes, for the benchmark: the memory and CPU
// accounting of a child (hub, agent, nats-server) and the directory of the
// running executable (where deltasync-hub and deltasync-agent are found).
//
// Thread-safe: plain reads of /proc, no state.

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "shared/status.h"

namespace ds::bench {

// The directory holding the running executable (/proc/self/exe).
std::string self_dir();

// Process accounting read from /proc/<pid>.
struct ProcStats {
  int64_t rss_kb = 0;       // VmRSS
  int64_t rss_anon_kb = 0;  // RssAnon: the process's own memory, without mapped files (shared libraries)
  int64_t peak_rss_kb = 0;  // VmHWM: the highest VmRSS so far
  double cpu_seconds = 0;   // utime + stime
};
Result<ProcStats> proc_stats(pid_t pid);

}  // namespace ds::bench
