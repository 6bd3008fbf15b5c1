#include "hub/registration_queue.h"

#include <functional>
#include <set>
#include <string>
#include <utility>

#include "shared/names.h"

namespace ds {

void RegistrationQueue::push(QueuedRegistration r) {
  std::lock_guard lock(mu_);
  queue_.push_back(std::move(r));
}

std::vector<QueuedRegistration> RegistrationQueue::take(size_t max) {
  std::lock_guard lock(mu_);
  std::vector<QueuedRegistration> batch;
  std::set<std::string, std::less<>> agents;
  for (auto it = queue_.begin(); it != queue_.end() && batch.size() < max;) {
    if (agents.contains(Subjects::last_token(it->msg.subject))) {
      ++it;
      continue;
    }
    batch.push_back(std::move(*it));
    agents.emplace(Subjects::last_token(batch.back().msg.subject));
    it = queue_.erase(it);
  }
  return batch;
}

size_t RegistrationQueue::size() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

}  // namespace ds
