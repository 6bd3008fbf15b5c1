#include "hub/liveness_tracker.h"

#include <algorithm>
#include <utility>

namespace ds {

std::string_view agent_state_name(AgentState state) {
  switch (state) {
    case AgentState::kLive: return "live";
    case AgentState::kSuspect: return "suspect";
    case AgentState::kDead: return "dead";
    case AgentState::kRetired: return "retired";
  }
  return "unknown";
}

Result<AgentState> agent_state_from_name(std::string_view name) {
  for (AgentState s : {AgentState::kLive, AgentState::kSuspect, AgentState::kDead, AgentState::kRetired}) {
    if (agent_state_name(s) == name) return s;
  }
  return Status::invalid_argument("unknown agent state '" + std::string(name) + "'");
}

int64_t AccountableClock::tick(int64_t steady_now_ms, bool heard) {
  const int64_t gap = std::max<int64_t>(steady_now_ms - last_tick_ms_, 0);
  last_tick_ms_ = std::max(last_tick_ms_, steady_now_ms);
  if (heard) accountable_ms_ += std::min(gap, max_step_ms_);
  last_heard_ = heard;
  return accountable_ms_;
}

int64_t AccountableClock::at(int64_t steady_now_ms) const {
  if (!last_heard_) return accountable_ms_;
  return accountable_ms_ + std::clamp<int64_t>(steady_now_ms - last_tick_ms_, 0, max_step_ms_);
}

LivenessTracker::LivenessTracker(LivenessOptions options)
    : interval_ms_(std::max<int64_t>(options.interval_ms, 1)) {
  const int64_t grace = options.grace_ms < 0 ? interval_ms_ / 2 : options.grace_ms;
  suspect_after_ms_ = interval_ms_ + grace;
  dead_after_ms_ = std::max<int64_t>(options.dead_after, 1) * interval_ms_;
}

std::optional<Transition> LivenessTracker::move(const std::string& agent, Entry& e, AgentState to,
                                                std::string reason) {
  if (e.state == to) return std::nullopt;
  Transition t{agent, e.state, to, std::move(reason)};
  e.state = to;
  return t;
}

void LivenessTracker::restore(const std::string& agent, AgentState state, int64_t now_ms) {
  Entry& e = agents_[agent];
  e.state = state;
  e.last_reply_ms = now_ms;
}

std::optional<Transition> LivenessTracker::on_registered(const std::string& agent, int64_t now_ms) {
  auto [it, inserted] = agents_.try_emplace(agent);
  Entry& e = it->second;
  e.last_reply_ms = now_ms;
  if (inserted) return Transition{agent, std::nullopt, AgentState::kLive, "first registration"};
  return move(agent, e, AgentState::kLive, "registered");
}

LivenessTracker::ReplyEffect LivenessTracker::on_reply(const std::string& agent, int64_t now_ms) {
  auto it = agents_.find(agent);
  if (it == agents_.end() || it->second.state == AgentState::kRetired) return {};
  Entry& e = it->second;
  e.last_reply_ms = std::max(e.last_reply_ms, now_ms);
  return {true, move(agent, e, AgentState::kLive, "heartbeat reply")};
}

Result<std::optional<Transition>> LivenessTracker::retire(const std::string& agent, int64_t /*now_ms*/) {
  auto it = agents_.find(agent);
  if (it == agents_.end()) return Status::not_found("unknown agent '" + agent + "'");
  return move(agent, it->second, AgentState::kRetired, "retired by operator");
}

std::vector<Transition> LivenessTracker::evaluate(int64_t now_ms) {
  std::vector<Transition> out;
  for (auto& [agent, e] : agents_) {
    if (e.state != AgentState::kLive && e.state != AgentState::kSuspect) continue;
    const int64_t silence = now_ms - e.last_reply_ms;
    std::optional<Transition> t;
    if (silence >= dead_after_ms_) {
      t = move(agent, e, AgentState::kDead, "no heartbeat reply for " + std::to_string(silence) + " ms");
    } else if (silence > suspect_after_ms_) {
      t = move(agent, e, AgentState::kSuspect, "no heartbeat reply for " + std::to_string(silence) + " ms");
    }
    if (t) out.push_back(std::move(*t));
  }
  return out;
}

void LivenessTracker::excuse_silence(int64_t now_ms) {
  for (auto& [agent, e] : agents_) {
    if (e.state == AgentState::kLive || e.state == AgentState::kSuspect) {
      e.last_reply_ms = std::max(e.last_reply_ms, now_ms);
    }
  }
}

std::vector<std::string> LivenessTracker::probe_targets() const {
  std::vector<std::string> out;
  for (const auto& [agent, e] : agents_) {
    if (e.state == AgentState::kSuspect) out.push_back(agent);
  }
  return out;
}

bool LivenessTracker::needs_refresh(const std::string& agent, int64_t now_ms) const {
  auto it = agents_.find(agent);
  if (it == agents_.end()) return false;
  const Entry& e = it->second;
  if (e.state != AgentState::kLive && e.state != AgentState::kSuspect) return false;
  return now_ms - e.last_reply_ms > interval_ms_ && now_ms - e.last_probe_ms >= interval_ms_ / 4;
}

void LivenessTracker::record_probe(const std::string& agent, int64_t now_ms) {
  auto it = agents_.find(agent);
  if (it != agents_.end()) it->second.last_probe_ms = now_ms;
}

std::optional<AgentState> LivenessTracker::state(const std::string& agent) const {
  auto it = agents_.find(agent);
  if (it == agents_.end()) return std::nullopt;
  return it->second.state;
}

std::optional<int64_t> LivenessTracker::last_reply_ms(const std::string& agent) const {
  auto it = agents_.find(agent);
  if (it == agents_.end()) return std::nullopt;
  return it->second.last_reply_ms;
}

}  // namespace ds
