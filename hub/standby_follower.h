#pragma once
// StandbyFollower: a standby hub's copy of the active hub's store
// (docs/architecture.md, "High availability"). The active hub commits, then
// publishes every delta batch to its type's stream DS_<TYPE>, each with the
// producer retry keys whose last version it holds (hub/retry_key_header.h).
// The standby reads those messages back (direct gets: it holds no consumer)
// and stores them in its own store as the active's commit did: same
// versions, times, batch ids and partitions, rows patched or tombstoned, the
// change log appended, the retry keys recorded (QueryStore::apply_recovered).
// So when it takes over, its store is the active's, up to what the stream
// acknowledged, and a producer's retry of an acknowledged batch is answered
// with the original range.
//
// The rules it keeps, per type:
//   - only changes that continue the store's head are stored (head + 1,
//     head + 2, ...): a batch of one partition may be read before the
//     batch of another holding lower versions; the rest waits for a later
//     round, which reads those messages again;
//   - the published mark (type_state) moves to the last message read whose
//     changes are all stored, after which every message is; the next round
//     starts after it, so it is what this follower has taken whole;
//   - the store must not hold changes the stream does not: versions above
//     the mark when the follower starts (commits of this hub while it was
//     active that it never saw acknowledged) are compared with the stream's
//     (key, operation, business and hub time) as the stream reaches them; a
//     difference means another hub committed other changes at those
//     versions, and the store cannot follow: DataLoss, saying what to do
//     (key, operation, times and fields are compared). A stream that lost
//     messages after the mark before they were read (aged out, purged,
//     recreated) so that what is left does not continue the head is DataLoss
//     too, as is a stream whose end is reached kStalledRounds times in a row
//     with changes that still do not continue it.
// follow_round() reads at most kMessagesPerRound messages of each type, so
// a standby far behind catches up over several rounds.
//
// Thread: one owner thread (the standby's loop); not thread-safe. `streams`
// and `store` (a writer connection) must outlive the follower.

#include <cstdint>
#include <map>
#include <string>

#include "hub/query_store.h"
#include "shared/config.h"
#include "shared/messaging.h"
#include "shared/status.h"

namespace ds {

class StandbyFollower {
 public:
  static constexpr uint64_t kMessagesPerRound = 1000;
  // Rounds that reach a stream's end with changes that do not continue the
  // head, and store nothing, before that is a hole (DataLoss).
  static constexpr int kStalledRounds = 50;

  StandbyFollower(StreamReader& streams, QueryStore& store, const HubConfig& config);

  // Reads and stores what every type's stream holds after the store's
  // published mark (above). Returns the changes stored. Broker trouble
  // fails the round (the next one retries); DataLoss: this store cannot
  // follow that stream (the message says why and what to do).
  Result<uint64_t> follow_round();

  // Whether the last round reached the end of every stream and stored all
  // of it.
  bool caught_up() const { return caught_up_; }

 private:
  // One type's part of a round; sets *at_end when its stream's end is stored.
  Result<uint64_t> follow_type(const TypeConfig& type, bool* at_end);
  // Compares the changes the stream holds at versions this store already
  // has above its mark (see above).
  Status check_same(const TypeConfig& type, const QueryStore::RecoveredChange& from_stream);

  StreamReader& streams_;
  QueryStore& store_;
  const HubConfig& config_;
  // Per type: the head when the follower started, where the store may hold
  // changes the stream has not shown yet (above the mark).
  std::map<std::string, uint64_t> unconfirmed_to_;
  // Per type: consecutive stalled rounds (kStalledRounds).
  std::map<std::string, int> stalled_rounds_;
  bool started_ = false;
  bool caught_up_ = false;
};

}  // namespace ds
