#include "tests/harness/hub_process.h"

#include <chrono>
#include <thread>

namespace ds::testing {
namespace {

// The hub's start-up summary line (hub/hub.cc).
constexpr std::string_view kStartedMarker = "started: nats";

}  // namespace

HubProcess::HubProcess(std::string config_path, std::string log_path)
    : process_({std::string(DELTASYNC_BINARY_DIR) + "/deltasync-hub", "-c", std::move(config_path)},
               std::move(log_path)) {}

Status HubProcess::start(const std::vector<std::pair<std::string, std::string>>& env) {
  if (process_.running()) return Status::internal("hub process already running");
  const size_t started_before = log_count(std::string(kStartedMarker));
  DS_RETURN_IF_ERROR(process_.start(env));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline) {
    if (log_count(std::string(kStartedMarker)) > started_before) return Status::ok();
    if (!process_.running()) return Status::internal("deltasync-hub exited during start-up:\n" + log_text());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Status::deadline_exceeded("deltasync-hub did not start within 15 s:\n" + log_text());
}

void HubProcess::signal(int sig) { process_.signal(sig); }

std::optional<int> HubProcess::wait_exit(int64_t timeout_ms) { return process_.wait_exit(timeout_ms); }

std::string HubProcess::log_text() const { return process_.log_text(); }

size_t HubProcess::log_count(const std::string& needle) const { return process_.log_count(needle); }

}  // namespace ds::testing
