#pragma once
// RegistrationQueue: registrations that arrived (on a cnats thread) and wait
// for the agent service's thread, which takes them in batches of distinct
// agents and carries out a batch's consumer creates concurrently
// (hub/agent_service.h, "Registrations in flight").
//
// The rule it keeps: a batch never holds two registrations of one agent.
// Two registrations of the same agent would plan and create the same
// consumers at once; the later one stays queued, in its place, for a later
// batch. Otherwise a batch is the queue's head in arrival order.
//
// Thread-safe: push() from cnats threads, take() from the service thread.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

#include "shared/messaging.h"

namespace ds {

struct QueuedRegistration {
  Envelope msg;            // the request as it arrived on ds.hub.register.<agent>
  int64_t received_ms = 0;  // steady time of its arrival (the agent's reply timeout runs from here)
};

class RegistrationQueue {
 public:
  void push(QueuedRegistration r);
  // Up to `max` registrations, oldest first, at most one per agent (the
  // subject's last token); the rest stay queued in order.
  std::vector<QueuedRegistration> take(size_t max);
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::deque<QueuedRegistration> queue_;  // guarded by mu_; arrival order
};

}  // namespace ds
