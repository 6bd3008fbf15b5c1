#pragma once
// ConsumerCopyWatch: notices an agent consumer whose copy on a NATS cluster
// node stays behind although the node is up, so that the hub can order the
// agent to register again, which recreates its consumers with every node
// (docs/reliability.md, "A NATS cluster").
//
// Why: with nats-server 2.9.10, an R3 consumer created while one node was
// down sometimes never gets a working copy on that node once it is back.
// The node's copy stays "not current" (its /healthz fails, its log says the
// consumer has NO quorum), its leader reports it `current: false` with a
// growing lag, and waiting does not heal it (240 s tried). Deliveries go on
// through the other two copies, but the consumer has lost its spare: one
// more node lost stops the agent's deliveries. Recreating the consumer while
// every node is up heals it: the new copy on the returned node is current
// within about 1.5 s.
//
// The rule. On replicated streams every consumer the hub believes open is
// checked in turn, round-robin (the sweep), by reading its followers from
// its leader; a consumer found with a follower behind is checked again in
// every following round (the recheck) until it is current or repaired, so
// its grace is timed from samples an interval apart, not a sweep apart.
// A follower that is online but not current for `grace_ms` in a row (a
// node that came back catches up within seconds) makes the consumer stuck:
// observe() says so, and says it again after another `grace_ms` when the
// hub's order (ordered()) did not lead to a new consumer. The grace starts
// over when another follower is the one behind, or when two samples are
// more than `grace_ms` apart (a round cut short: nothing is known of the
// time between). An offline follower (its node is still down) starts no
// grace; but a follower behind while another is offline is stuck all the
// same: the consumer then has no quorum and delivers nothing, and a new
// one, made by the two nodes that are up, delivers again (the node that is
// down may need a repair of its own when it returns). Every consumer is
// swept, not only those created while a node was down: one created a
// moment before a node was lost got stuck the same way, and a new
// consumer's followers look current at first whatever becomes of them. A
// consumer the hub recreates starts afresh (opened()); one no longer open
// is forgotten.
//
// The cost: kConsumerCopyChecksPerRound consumer info requests per
// heartbeat interval at most, rechecks first (at most half of them); a
// fleet with more open consumers than that is swept in several intervals
// (3,000 consumers in under 4 minutes at the default 5 s). AgentService
// also holds a round to a quarter interval, stops it at its first failed
// read (a cluster electing leaders answers slowly), and gives at most
// kConsumerCopyOrdersPerRound orders a round: each one re-registers an
// agent, and registration on R3 ran at about 2 agents a second
// (docs/scaling.md).
//
// Pure state: no clock (callers pass now), no I/O, no thread; AgentService
// owns one on its service thread, hands it the open consumers and reads the
// followers through the delivery manager.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "shared/nats.h"

namespace ds {

// A follower online and not current for this long (steady ms) is stuck.
constexpr int64_t kConsumerCopyGraceMs = 10000;
// Consumer info reads a heartbeat round at most.
constexpr size_t kConsumerCopyChecksPerRound = 64;
// Orders to register again a round at most.
constexpr int kConsumerCopyOrdersPerRound = 2;

struct CopyVerdict {
  enum class Kind {
    kCurrent,  // every follower online and current
    kWaiting,  // a follower offline, or behind for less than the grace
    kStuck,    // a follower online and behind for the grace: order a registration
  };
  Kind kind = Kind::kWaiting;
  std::string node{};        // kStuck: the follower's server name
  int64_t behind_ms = 0;     // kStuck: for how long it has been behind
  uint64_t lag = 0;          // kStuck: operations it is behind
};

class ConsumerCopyWatch {
 public:
  using Key = std::pair<std::string, std::string>;  // (agent, type)
  struct Round {
    std::vector<Key> recheck;  // found with a follower behind at their last check
    std::vector<Key> sweep;    // the next ones in turn
  };

  explicit ConsumerCopyWatch(int64_t grace_ms = kConsumerCopyGraceMs) : grace_ms_(grace_ms) {}

  // This round's consumers, `budget` at most, from `open` (every consumer
  // believed open, sorted): the rechecks (half the budget at most), then
  // the sweep, continuing after the last consumer swept() and wrapping
  // around, never one twice a round. Forgets what it knew of consumers no
  // longer in `open`.
  Round next(const std::vector<Key>& open, size_t budget);
  // What the consumer's leader reported at `now_ms`.
  CopyVerdict observe(const Key& key, const std::vector<StreamFollower>& followers, int64_t now_ms);
  // A sweep consumer had its turn (read or not): the next sweep goes on
  // after it.
  void swept(const Key& key) { cursor_ = key; }
  // The hub ordered the agent to register again for this stuck consumer:
  // the grace starts over (if no new consumer comes of it, observe() says
  // kStuck again after another grace).
  void ordered(const Key& key, int64_t now_ms);
  // The hub has just (re)created the consumer: whatever was seen of the
  // one it replaces no longer counts.
  void opened(const Key& key) { behind_.erase(key); }

 private:
  struct Behind {
    std::string node;        // the follower behind
    int64_t since_ms = 0;    // behind since then, as far as the samples tell
    int64_t last_ms = 0;     // the latest sample
  };
  int64_t grace_ms_;
  std::optional<Key> cursor_;    // the last consumer swept
  std::map<Key, Behind> behind_;  // consumers with a follower behind at their last check
};

}  // namespace ds
