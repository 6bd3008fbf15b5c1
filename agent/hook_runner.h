#pragma once
// HookRunner: runs a type's hook command (`/bin/sh -c <command>`) for one
// applied batch, feeding it the batch as JSON lines on stdin, one change per
// line:
//   {"type":"prices","v":42,"key":"sku-1","op":"u","f":{"price":1.5},"ts":..,"hts":..}
// ("op" is "u" or "d"; a delete has "f":{}). Exit status 0 is success; any
// other status, death by a signal or running past the timeout (the hook's
// whole process group is then killed) is a failure. A failure is retried
// `retries` times with doubling backoff (200 ms, capped at 5 s).
//
// The hook runs in its own process group with stdin the batch, stdout and
// stderr inherited (they land in the agent's log), and no other descriptor.
// The agent ignores SIGPIPE (a hook that exits without reading its input must
// not kill the agent): constructing a HookRunner sets that process-wide.
//
// Thread-safety: run() may be called from several threads at once.

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "shared/messages.h"
#include "shared/status.h"

namespace ds {

struct HookSpec {
  std::string command;
  int64_t retries = 3;
  int64_t timeout_ms = 10000;
};

class HookRunner {
 public:
  // `stop`, when given, cuts the backoff waits short (shutdown); the attempt
  // under way still finishes or times out.
  explicit HookRunner(const std::atomic<bool>* stop = nullptr);

  // One batch: the first attempt plus up to spec.retries retries. The Status
  // names the last failure ("hook 'cmd' exited with status 3 (attempt 4 of 4)").
  Status run(const HookSpec& spec, const std::string& type, const std::vector<Change>& changes) const;
  // A single attempt with `input` on stdin.
  Status run_once(const HookSpec& spec, const std::string& input) const;

  // The JSON lines a hook receives for `changes` of `type`.
  static std::string json_lines(const std::string& type, const std::vector<Change>& changes);

 private:
  const std::atomic<bool>* stop_;
};

}  // namespace ds
