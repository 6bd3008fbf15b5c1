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
// checked in turn, round-robin, at most `budget` a heartbeat interval
// (next()), by reading its followers from its leader; a round may stop
// early (the service bounds its time), and the next one goes on after the
// last consumer it checked (observe(), unread()). A follower that is
// online but not current for `grace_ms` in a row (a node that came back
// catches up within seconds) makes the consumer stuck: observe() says so,
// and says it again after another `grace_ms` when the hub's order
// (ordered()) did not lead to a new consumer. An offline follower (its node
// is still down) starts no grace. Every consumer is swept, not only those
// created while a node was down: a consumer created a moment before a node
// was lost got stuck the same way, and a new consumer's followers look
// current at first whatever becomes of them. A consumer the hub recreates
// starts afresh (opened()); one no longer open is forgotten.
//
// The cost: `budget` consumer info requests per interval at most; a fleet
// with more open consumers than that is swept in several intervals (64 a
// round at the default 5 s interval: 3,000 consumers in under 4 minutes).
// AgentService also stops a round at its first failed read (a cluster
// electing leaders answers slowly) and after a quarter interval.
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

  explicit ConsumerCopyWatch(int64_t grace_ms = kConsumerCopyGraceMs) : grace_ms_(grace_ms) {}

  // The next up to `budget` of `open` (every consumer believed open, sorted),
  // continuing after the last one checked and wrapping around, so that
  // each is checked once per sweep. Forgets what it knew of consumers no
  // longer in `open`.
  std::vector<Key> next(const std::vector<Key>& open, size_t budget);
  // What the consumer's leader reported at `now_ms`.
  CopyVerdict observe(const Key& key, const std::vector<StreamFollower>& followers, int64_t now_ms);
  // Its followers could not be read: it had its turn all the same.
  void unread(const Key& key) { cursor_ = key; }
  // The hub ordered the agent to register again for this stuck consumer:
  // the grace starts over (if no new consumer comes of it, observe() says
  // kStuck again after another grace).
  void ordered(const Key& key, int64_t now_ms);
  // The hub has just (re)created the consumer: whatever was seen of the
  // one it replaces no longer counts.
  void opened(const Key& key) { behind_since_ms_.erase(key); }
  // Consumers with a follower behind (or offline) at their last check.
  size_t behind() const { return behind_since_ms_.size(); }

 private:
  int64_t grace_ms_;
  std::optional<Key> cursor_;  // the last key checked (observe(), unread())
  // A follower online and not current since then; -1: only offline ones.
  std::map<Key, int64_t> behind_since_ms_;
};

}  // namespace ds
