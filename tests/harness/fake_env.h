#pragma once
// Fakes of the services' seams (shared/clock.h, shared/messaging.h) for unit
// tests: a clock moved by hand, a broker the test answers by hand. Nothing
// sleeps; where a test must wait for a service's own thread, it waits for an
// event (a publish, a request) with a bound.
//
// Thread-safety: every fake is thread-safe (the service under test calls it
// from its own thread while the test inspects it). FakeMessaging delivers
// to subscribers on the calling thread (deliver()), one message at a time.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "shared/clock.h"
#include "shared/messaging.h"

namespace ds::testing {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t steady_ms = 1'000'000, int64_t system_ms = 1'700'000'000'000)
      : steady_(steady_ms), system_(system_ms) {}
  int64_t now_steady_ms() const override { return steady_.load(); }
  int64_t now_system_ms() const override { return system_.load(); }
  // Both clocks move on by `ms`.
  void advance(int64_t ms) {
    steady_ += ms;
    system_ += ms;
  }

 private:
  std::atomic<int64_t> steady_;
  std::atomic<int64_t> system_;
};

class FakeMessaging final : public Messaging {
 public:
  struct Published {
    std::string subject;
    std::string data;
  };
  // Answers request(); unset: Unavailable ("no responders").
  using Responder = std::function<Result<std::string>(const std::string& subject, const std::string& data)>;

  Status publish(std::string_view subject, std::string_view data) override;
  Result<std::string> request(std::string_view subject, std::string_view data, int64_t timeout_ms) override;
  Result<std::unique_ptr<MessagingSubscription>> subscribe(std::string_view subject,
                                                           EnvelopeHandler handler) override;
  Status flush(int64_t timeout_ms) override;
  bool connected() const override { return connected_.load(); }

  void set_responder(Responder r);
  void set_connected(bool up) { connected_ = up; }
  // What flush() returns from now on.
  void set_flush_status(Status s);

  // Hands `m` to every subscription whose subject matches (NATS wildcards
  // "*" and ">"); returns how many took it.
  int deliver(const Envelope& m);
  // Everything published so far, in order.
  std::vector<Published> published() const;
  // Waits (at most timeout_ms) until a message was published on `subject`
  // and returns the first such; nullopt when none came in time.
  std::optional<Published> wait_published(const std::string& subject, int64_t timeout_ms = 10000) const;
  // Subjects requested so far, in order.
  std::vector<Published> requests() const;

 private:
  struct Sub {
    std::string subject;
    EnvelopeHandler handler;
  };
  class Handle;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<Published> published_;          // guarded by mu_
  std::vector<Published> requests_;           // guarded by mu_
  std::map<uint64_t, std::shared_ptr<Sub>> subs_;  // guarded by mu_
  uint64_t next_sub_ = 1;                     // guarded by mu_
  Responder responder_;                       // guarded by mu_
  Status flush_status_;                       // guarded by mu_
  std::recursive_mutex deliver_mu_;           // one delivery at a time; held while a handler runs
  std::atomic<bool> connected_{true};
};

// True when NATS subject `subject` matches `pattern` ("*" one token, ">" the rest).
bool subject_matches(std::string_view pattern, std::string_view subject);

class FakeConsumerControl final : public ConsumerControl {
 public:
  Result<StreamState> stream_state(std::string_view stream) override;
  Result<StoredMessage> get_message(std::string_view stream, uint64_t seq) override;
  Status add_consumer(std::string_view stream, const ConsumerSpec& spec) override;
  Status delete_consumer(std::string_view stream, std::string_view name) override;
  // The consumer as created, its deliveries as deliver() counted and its
  // followers as set_followers gave them (none by default: one replica).
  // A read with a deadline of its own (timeout_ms > 0: the consumer copy
  // watch's; a plan's reads pass 0) answers the failure fail_timed_reads
  // set, while set.
  Result<std::optional<ConsumerInfo>> consumer_info(std::string_view stream, std::string_view name,
                                                    int64_t timeout_ms) override;

  // The followers consumer_info reports for `name` on `stream` from now on,
  // until changed (it outlives the consumer's deletion and re-creation).
  void set_followers(const std::string& stream, const std::string& name, std::vector<StreamFollower> followers);
  // Every read with a deadline answers `failure` (OK: answers again).
  void fail_timed_reads(Status failure);
  // How often consumer_info was asked with a deadline, and at all.
  int timed_reads() const;
  int info_reads() const;
  void set_stream(const std::string& stream, StreamState state);
  void put_message(const std::string& stream, StoredMessage m);
  // Drops every consumer, as a broker restart does with memory consumers.
  void lose_consumers();
  // The next delete is acknowledged, but one add of the same name right
  // after it still finds the consumer (already_exists), as on a NATS
  // cluster whose nodes have not all applied the delete yet.
  void linger_next_delete();
  // The consumer `name` on `stream` delivered `count` more messages.
  void deliver(const std::string& stream, const std::string& name, uint64_t count);
  // The next add (or delete) is carried out but answered with a timeout, as
  // a NATS cluster does while the consumer's replicas elect a leader.
  void time_out_next_add();
  void time_out_next_delete();
  // Runs `hook` after every consumer created (on the creating thread,
  // without the fake's lock), e.g. to let time pass during a registration.
  void after_add(std::function<void()> hook);
  // The consumer `name` on `stream`, if it exists.
  std::optional<ConsumerSpec> consumer(const std::string& stream, const std::string& name) const;
  int added() const;
  int deleted() const;  // deletes of consumers that existed

 private:
  mutable std::mutex mu_;
  std::map<std::string, StreamState> streams_;                                // guarded by mu_
  std::map<std::pair<std::string, uint64_t>, StoredMessage> messages_;        // guarded by mu_
  std::map<std::pair<std::string, std::string>, ConsumerSpec> consumers_;     // guarded by mu_
  bool linger_next_delete_ = false;                                           // guarded by mu_
  bool time_out_next_add_ = false;                                            // guarded by mu_
  bool time_out_next_delete_ = false;                                         // guarded by mu_
  std::map<std::pair<std::string, std::string>, uint64_t> delivered_;         // guarded by mu_
  std::function<void()> after_add_;                                           // guarded by mu_
  std::set<std::pair<std::string, std::string>> lingering_;                   // guarded by mu_
  std::map<std::pair<std::string, std::string>, std::vector<StreamFollower>> followers_;  // guarded by mu_
  int timed_reads_ = 0;                                                       // guarded by mu_
  int info_reads_ = 0;                                                        // guarded by mu_
  Status timed_failure_;                                                      // guarded by mu_
  int added_ = 0;                                                             // guarded by mu_
  int deleted_ = 0;                                                           // guarded by mu_
};

// Streams kept in memory: ensure_stream creates them, publish_async stores a
// message in the stream whose subjects match (dropping a Nats-Msg-Id the
// stream holds already, as the duplicate window does, and, as JetStream
// after that, refusing one whose Nats-Expected-Last-Sequence or
// Nats-Expected-Last-Msg-Id is not the stream's last) and wait_published
// hands out the acks. The test can make the broker stop acking, shrink
// max_payload, and put messages into a stream by hand (as a broker that
// holds more than the hub's store).
class FakeStreamAccess final : public StreamAccess {
 public:
  Status ensure_stream(const StreamSpec& spec) override;
  Status publish_async(std::string_view subject, std::string_view data, std::string_view msg_id,
                       const Headers& headers) override;
  Status wait_published(int64_t timeout_ms, std::map<std::string, PubAck>* acks) override;
  int64_t max_payload() const override;
  Result<StreamState> stream_state(std::string_view stream) override;
  Result<StoredMessage> get_message(std::string_view stream, uint64_t seq) override;

  // Not OK: publish_async still takes messages but they are lost and
  // wait_published returns this (a broker that does not ack); OK: normal.
  void set_ack_failure(Status s);
  void set_max_payload(int64_t bytes);
  // Appends `m` (its seq is assigned) to `stream`, creating the stream.
  void append(const std::string& stream, StoredMessage m);
  // Drops `stream` and its messages, as a broker that lost its store.
  void delete_stream(const std::string& stream);
  // Drops the first `n` messages of `stream`, as its max_age does.
  void age_out(const std::string& stream, size_t n);
  // The messages of `stream`, in order.
  std::vector<StoredMessage> messages(const std::string& stream) const;
  int wait_calls() const;

 private:
  struct Stream {
    StreamSpec spec;
    std::vector<StoredMessage> messages;
    uint64_t first_seq = 1;
  };
  // The stream `subject` goes to, or nullptr; mu_ held.
  Stream* stream_for(std::string_view subject);

  mutable std::mutex mu_;
  std::map<std::string, Stream> streams_;       // guarded by mu_
  std::map<std::string, PubAck> unclaimed_;     // acks since the last wait; guarded by mu_
  Status ack_failure_;                          // guarded by mu_
  Status refused_;                              // a refused expected sequence since the last wait; guarded by mu_
  int64_t max_payload_ = 1024 * 1024;           // guarded by mu_
  int wait_calls_ = 0;                          // guarded by mu_
};

}  // namespace ds::testing
