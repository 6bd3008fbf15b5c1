#pragma once
// AgentService calls that answer through a callback, made synchronous for
// tests (the HTTP API calls them without waiting).

#include <chrono>
#include <future>
#include <memory>
#include <string>

#include "hub/agent_service.h"
#include "shared/status.h"

namespace ds::testing {

// Retires `agent` and waits (10 s at most) for the service's answer.
inline Status retire_and_wait(AgentService& service, const std::string& agent) {
  auto done = std::make_shared<std::promise<Status>>();
  std::future<Status> answer = done->get_future();
  service.retire(agent, [done](Status s) { done->set_value(std::move(s)); });
  if (answer.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    return Status::deadline_exceeded("retire " + agent + ": no answer");
  }
  return answer.get();
}

}  // namespace ds::testing
