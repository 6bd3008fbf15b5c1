#pragma once
// LivenessTracker: the agent liveness state machine of docs/architecture.md
// ("Heartbeat", "Accountable time"), with no clock, thread or I/O of its own.
// The caller passes "now" (milliseconds) into every call, so tests drive time
// by hand. The service feeds it the hub's accountable time (AccountableClock,
// below): silence the agent could not have broken (the hub stalled, its broker
// connection down, its beats not confirmed at the broker) is not counted
// against the agent.
//
//   live    --no reply for more than interval + grace------------> suspect
//   live/suspect --no reply for dead_after x interval or more-----> dead
//   suspect/dead --any accepted heartbeat reply--------------------> live
//   any     --registration------------------------------------------> live
//   any     --retire by an operator---------------------------------> retired
//
// Silence is measured from the last accepted reply or registration, not from
// the last probe, so an agent that answers late still counts as answering.
// `retired` sticks: heartbeat replies of a retired agent are ignored (not
// accepted) until the agent registers again, which is an explicit request to
// take part and therefore makes it live. Dead agents are not probed directly
// (they still hear the per-type broadcast, which is how they come back).
//
// Every method returns the transitions it caused; the caller logs and stores
// them. Not thread-safe: one owner thread.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/status.h"

namespace ds {

enum class AgentState { kLive, kSuspect, kDead, kRetired };

// "live", "suspect", "dead", "retired": stored in the agents table and shown by
// the API.
std::string_view agent_state_name(AgentState state);
Result<AgentState> agent_state_from_name(std::string_view name);

// AccountableClock: the time liveness counts, in milliseconds from the hub's
// start; fed steady-clock readings, one per liveness tick. The rule: at each
// tick,
//
//   step = steady time since the previous tick, capped at max_step_ms
//   accountable += step   if `heard`: the broker connection is up and was not
//                         lost since the previous tick, and the newest
//                         heartbeat round was confirmed at the broker (its
//                         publish and a flush round trip succeeded in time)
//   accountable += 0      otherwise
//
// So a hub that stops running (SIGSTOP, a paused VM, a long fsync: its ticks
// stop) charges its agents at most max_step for the whole pause; a broker
// connection that is down, or a broker that does not answer (stalled,
// restarting), charges nothing from the tick that notices it until a beat
// is confirmed again. While the hub runs normally (ticks closer than
// max_step), accountable time advances exactly as the steady clock. Progress
// is guaranteed: every heard tick advances it (by at most max_step), so an
// agent that is really gone is still declared dead even by a hub whose ticks
// run late. Pure: no clock, thread or I/O of its own; one owner thread.
class AccountableClock {
 public:
  AccountableClock(int64_t max_step_ms, int64_t steady_start_ms)
      : max_step_ms_(max_step_ms < 1 ? 1 : max_step_ms), last_tick_ms_(steady_start_ms) {}

  // One tick at steady time `steady_now_ms`; returns the new accountable time.
  int64_t tick(int64_t steady_now_ms, bool heard);
  // The accountable time as of the last tick.
  int64_t now() const { return accountable_ms_; }
  // The accountable time at `steady_now_ms` between ticks, for stamping
  // replies, registrations and probes: the last tick's, plus the steady time
  // since it (capped at max_step) when that tick was heard. The next tick may
  // be unheard and return less; the tracker keeps the later stamp.
  int64_t at(int64_t steady_now_ms) const;
  int64_t max_step_ms() const { return max_step_ms_; }

 private:
  int64_t max_step_ms_;
  int64_t last_tick_ms_;
  int64_t accountable_ms_ = 0;
  bool last_heard_ = true;
};

struct LivenessOptions {
  int64_t interval_ms = 5000;  // heartbeat interval
  int64_t dead_after = 3;      // missed beats until dead (at least 1)
  // Extra silence tolerated before "suspect": the broadcast period itself
  // jitters with scheduling and the replies take a round trip, so a healthy
  // agent's silence briefly exceeds one interval. -1 = interval / 2.
  int64_t grace_ms = -1;
};

struct Transition {
  std::string agent;
  std::optional<AgentState> from;  // nullopt: the agent was not known before
  AgentState to = AgentState::kLive;
  std::string reason;
  bool operator==(const Transition&) const = default;
};

class LivenessTracker {
 public:
  explicit LivenessTracker(LivenessOptions options);

  int64_t interval_ms() const { return interval_ms_; }
  // Silence after which a live agent becomes suspect (strictly more than this).
  int64_t suspect_after_ms() const { return suspect_after_ms_; }
  // Silence at which an agent becomes dead (this much or more).
  int64_t dead_after_ms() const { return dead_after_ms_; }

  // Adds an agent known from storage (hub restart) in `state`; its silence is
  // counted from `now_ms`, so a restart gives every agent a fresh window.
  void restore(const std::string& agent, AgentState state, int64_t now_ms);

  // Registration: the agent becomes (or is added as) live.
  std::optional<Transition> on_registered(const std::string& agent, int64_t now_ms);

  struct ReplyEffect {
    bool accepted = false;  // false: unknown or retired agent, reply ignored
    std::optional<Transition> transition;
  };
  ReplyEffect on_reply(const std::string& agent, int64_t now_ms);

  // Operator retire. NotFound for an unknown agent; no transition when it is
  // already retired.
  Result<std::optional<Transition>> retire(const std::string& agent, int64_t now_ms);

  // Applies the silence rules to every agent (at most one transition per
  // agent per call: straight to dead when the silence already warrants it).
  std::vector<Transition> evaluate(int64_t now_ms);

  // The hub's broker connection came back after an outage: live and suspect
  // agents' silence counts from `now_ms` again, since their own connections
  // went through the same outage and may come back later than the hub's.
  // States do not change.
  void excuse_silence(int64_t now_ms);

  // Agents to probe directly on the next beat: the suspect ones.
  std::vector<std::string> probe_targets() const;

  // True when `agent` is live or suspect, its last reply is older than one
  // interval and it was not probed within the last quarter interval (so a
  // burst of updates does not turn into a burst of probes).
  bool needs_refresh(const std::string& agent, int64_t now_ms) const;
  void record_probe(const std::string& agent, int64_t now_ms);

  std::optional<AgentState> state(const std::string& agent) const;
  std::optional<int64_t> last_reply_ms(const std::string& agent) const;

 private:
  struct Entry {
    AgentState state = AgentState::kLive;
    int64_t last_reply_ms = 0;
    int64_t last_probe_ms = INT64_MIN / 2;
  };
  std::optional<Transition> move(const std::string& agent, Entry& e, AgentState to, std::string reason);

  int64_t interval_ms_;
  int64_t suspect_after_ms_;
  int64_t dead_after_ms_;
  std::map<std::string, Entry, std::less<>> agents_;
};

}  // namespace ds
