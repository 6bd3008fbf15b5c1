#pragma once
// FeedOrder: notices a message of the live feed (docs/protocol.md, "Live
// feed") that went missing on its way to the agent, from the stamps the
// broker puts on each one, before anything behind it is applied.
//
// Why: the live feed is a plain NATS subscription (ds.feed.<type>.<partition>,
// or ds.feed.<type>.> for an agent of every partition). Nothing is
// redelivered there, so a message lost (a dropped connection, a slow
// subscriber whose pending limit overflowed) shows only as a hole in the
// sequence; the agent must then take the type from a consumer again, from
// its checkpoint (docs/scaling.md, "The design for 100,000 agents").
//
// The stamps: the stream republishes a message only once it stored it, with
// Nats-Sequence (its stream sequence) and Nats-Last-Sequence (the sequence of
// the stream's previous message on the same subject, 0 for none). `held` is
// the stream sequence up to which the agent holds (or has queued) every
// message of its subscription: the replica's checkpoint sequence at start(),
// then the last message judged in order.
//   - one partition (the subscription is one subject): in order when
//     last <= held < seq: every earlier message of the subject is held.
//     (After a snapshot the checkpoint is the type's sequence, past the
//     partition's last message: last < held is then in order too.)
//   - every partition: the subscription sees every message of the stream,
//     whose sequences have no holes, so in order only when seq == held + 1
//     (the per-subject stamp says nothing of the other partitions).
//   - seq <= held is a gap too: the feed carries each stored message once,
//     in order, so a sequence that goes back means the stream was created
//     anew and numbers differently (a broker that lost its store, a hub
//     restore that gave a gap up); the hub's registration then decides from
//     the stream as it is (consumer_planner.h, "Resume rule").
//   - anything else is a gap: that message and every later one of the type
//     are refused until start() again, after the agent took what is missing
//     from a consumer. A message without valid stamps is a gap too: only the
//     broker may publish on the feed (docs/security.md).
//
// Thread-safety: none; the owner serialises calls (as DeliveryOrder).

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace ds {

// The broker's stamps on a live-feed message.
struct FeedStamp {
  uint64_t seq = 0;           // Nats-Sequence
  uint64_t subject_last = 0;  // Nats-Last-Sequence
};

inline constexpr const char* kStreamSequenceHeader = "Nats-Sequence";
inline constexpr const char* kLastSubjectSequenceHeader = "Nats-Last-Sequence";

// The stamps from the two headers' values; nullopt when either is missing or
// not a decimal number (a sequence is never 0).
std::optional<FeedStamp> feed_stamp(const std::optional<std::string>& seq,
                                    const std::optional<std::string>& subject_last);

class FeedOrder {
 public:
  enum class Verdict {
    kInOrder,  // apply it
    kGap,      // a message is missing before it, or the numbering went back: refuse it, register again
    kRefused,  // behind a gap, before start() again
  };

  // (Re)starts `type` from `held` (see above); `every_partition` for an
  // agent of every partition (ds.feed.<type>.>).
  void start(const std::string& type, uint64_t held, bool every_partition);
  // Stops judging `type`: its messages are kRefused until start().
  void stop(const std::string& type);
  // Judges the message of `type` with `stamp` (nullopt: none valid) and
  // remembers it.
  Verdict observe(const std::string& type, const std::optional<FeedStamp>& stamp);
  // The stream sequence `type` holds everything up to; nullopt when it is
  // not started or behind a gap.
  std::optional<uint64_t> held(const std::string& type) const;

 private:
  struct TypeState {
    uint64_t held = 0;
    bool every_partition = false;
    bool broken = false;  // a gap was seen (or stop()): refuse until start()
  };
  std::map<std::string, TypeState> types_;
};

}  // namespace ds
