#include "tests/harness/hub_process.h"

namespace ds::testing {
namespace {

// The hub's start-up summary line (hub/hub.cc).
constexpr std::string_view kStartedMarker = "started: nats";
constexpr int64_t kStartTimeoutMs = 15000;

}  // namespace

HubProcess::HubProcess(std::string config_path, std::string log_path)
    : process_({std::string(DELTASYNC_BINARY_DIR) + "/deltasync-hub", "-c", std::move(config_path)},
               std::move(log_path)) {}

Status HubProcess::start(const std::vector<std::pair<std::string, std::string>>& env) {
  if (process_.running()) return Status::internal("hub process already running");
  const size_t started_before = log_count(std::string(kStartedMarker));
  DS_RETURN_IF_ERROR(process_.start(env));
  return process_.wait_for_log(std::string(kStartedMarker), kStartTimeoutMs, started_before);
}

Status HubProcess::launch(const std::vector<std::pair<std::string, std::string>>& env) {
  if (process_.running()) return Status::internal("hub process already running");
  return process_.start(env);
}

void HubProcess::signal(int sig) { process_.signal(sig); }

std::optional<int> HubProcess::wait_exit(int64_t timeout_ms) { return process_.wait_exit(timeout_ms); }

std::string HubProcess::log_text() const { return process_.log_text(); }

size_t HubProcess::log_count(const std::string& needle) const { return process_.log_count(needle); }

}  // namespace ds::testing
