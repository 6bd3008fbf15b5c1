#pragma once
// Registrar: registers the agent with the hub (ds.hub.register.<agent>) at
// start and again whenever trigger() is called (every NATS reconnect, and a
// delivery that went missing on the way: agent/delivery_order.h), and
// carries out what the reply orders:
//   - resume: stream   -> the table is ensured (new columns added in place);
//                         the hub has created the push consumer from the
//                         reported checkpoint seq + 1;
//   - resume: snapshot -> the snapshot is paged through ds.hub.snapshot.<agent>
//                         (a progress line every kProgressPages pages), the
//                         FIRST page's high_version / high_seq are kept, the
//                         pages are loaded atomically and the checkpoint set to
//                         that mark; then the agent registers again, reporting
//                         it, and gets resume: stream.
// The report holds, per configured subscription, the checkpoint the apply
// thread last committed (from the CheckpointBoard) and the table's row count.
//
// While the hub does not answer (NATS or hub down) or refuses, registration
// is retried with capped backoff (0.5 s doubling to 30 s); the agent keeps
// answering heartbeats and applying whatever arrives meanwhile (except a
// type refused after a delivery gap or a lost connection, which waits for
// the consumer the next registration recreates). A successful registration
// ends, on the board, the delivery gaps found before it began.
//
// Every replica write goes through DeltaApplier::post (the single writer).
//
// Seams: the registrar talks to the hub only through Messaging (request;
// shared/messaging.h) and reaches the replica only through a post function
// (DeltaApplier::post in production), so unit tests
// (tests/unit/registrar_test.cc) answer its requests with a fake broker and
// run its replica tasks inline. It reads no clock: its only waits (the retry
// backoff, a replica task) are bounded condition waits, and trigger() cuts
// the backoff short.
//
// Thread-safety: trigger() is thread-safe (cnats callbacks call it);
// start()/stop() belong to the owner's thread.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <optional>
#include <vector>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "agent/checkpoint_board.h"
#include "agent/delta_applier.h"
#include "shared/config.h"
#include "shared/messaging.h"
#include "shared/messages.h"
#include "shared/names.h"
#include "shared/nats.h"

namespace ds {

class Registrar {
 public:
  static constexpr uint32_t kSnapshotPageLimit = 1000;
  static constexpr int kProgressPages = 10;
  // A failed registration is retried after this, doubling up to kMaxBackoffMs.
  static constexpr int64_t kFirstBackoffMs = 500;
  static constexpr int64_t kMaxBackoffMs = 30000;

  // Runs a task on the replica's single writer; the future holds its Status.
  using PostTask = std::function<std::future<Status>(DeltaApplier::Task)>;

  // Production: requests over `nc`, replica tasks through applier.post().
  Registrar(Connection& nc, const AgentConfig& config, DeltaApplier& applier, CheckpointBoard& board);
  // Over explicit seams; `messaging` must outlive the registrar. Tests set
  // the first backoff (e.g. long, to tell a trigger from the timed retry).
  Registrar(Messaging& messaging, const AgentConfig& config, PostTask post, CheckpointBoard& board,
            int64_t first_backoff_ms = kFirstBackoffMs);
  ~Registrar();
  Registrar(const Registrar&) = delete;
  Registrar& operator=(const Registrar&) = delete;

  // Hears the outcome of each registration on the registrar's thread:
  // (true, summary) after one that succeeded, (false, the error and the
  // retry delay) after one that failed. deltasync-agent reports readiness
  // to the service manager with it (shared/service_notify.h).
  using OutcomeListener = std::function<void(bool registered, const std::string& status)>;
  // Before start().
  void set_listener(OutcomeListener listener) { listener_ = std::move(listener); }
  // Runs on the registrar's thread after each registration that succeeded,
  // before it is counted; an error makes it count as failed (retried like
  // one). The agent subscribes to its deliveries here (agent/agent.h says
  // why only then). Before start().
  using RegisteredHook = std::function<Status()>;
  void set_on_registered(RegisteredHook hook) { on_registered_ = std::move(hook); }
  // Runs on the registrar's thread before each registration attempt (the
  // hub recreates every consumer at a registration: the agent makes every
  // type wait for its new consumer's delivery 1 here). Before start().
  void set_on_registering(std::function<void()> hook) { on_registering_ = std::move(hook); }
  // Runs on the registrar's thread after each registration attempt, before
  // the on_registered hook: the deliveries of the reply that ended it and
  // the checkpoint sequence it reported per type, or nullopt when it failed
  // (the applier's live-feed rule, agent/delivery_source.h). Before start().
  using RepliedHook = std::function<void(const std::optional<std::vector<Delivery>>& deliveries,
                                         const std::map<std::string, uint64_t>& reported_seq)>;
  void set_on_replied(RepliedHook hook) { on_replied_ = std::move(hook); }
  // Whether registrations ask for the live feed (SubscriptionReport::feed):
  // the agent hears it (unset: never). Called on the registrar's thread;
  // thread-safe. Before start().
  void set_feed_wanted(std::function<bool()> wanted) { feed_wanted_ = std::move(wanted); }

  void start();
  void stop();
  // Asks for a new registration (coalesced with one already pending).
  void trigger();
  // Successful registrations so far (each one that ended in resume: stream
  // for every type); tests wait on it.
  uint64_t registrations() const { return registrations_.load(); }
  // Waits until registrations() > `after` or the timeout passes.
  bool wait_registered(uint64_t after, int64_t timeout_ms);

 private:
  void run();
  // What a registration ended with: its reply's deliveries and the
  // checkpoint sequence its last request reported per type.
  struct Registered {
    std::vector<Delivery> deliveries;
    std::map<std::string, uint64_t> reported_seq;
  };
  // One full registration: report, ensure tables, snapshots, report again.
  Result<Registered> register_once();
  Result<RegisterRequest> build_request();
  Status load_snapshot(const Delivery& delivery, const std::string& partition);
  Status run_on_writer(DeltaApplier::Task task);

  std::unique_ptr<Messaging> own_messaging_;  // set by the Connection constructor
  Messaging& nc_;
  const AgentConfig& config_;
  Subjects subjects_;
  PostTask post_;
  CheckpointBoard& board_;
  OutcomeListener listener_;  // set before the thread starts, then only read by it
  RegisteredHook on_registered_;  // likewise
  std::function<void()> on_registering_;  // likewise
  RepliedHook on_replied_;                // likewise
  std::function<bool()> feed_wanted_;     // likewise
  const int64_t first_backoff_ms_ = kFirstBackoffMs;

  std::mutex mu_;
  std::condition_variable cv_;
  bool wanted_ = true;   // guarded by mu_
  bool stop_ = false;    // guarded by mu_
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> registrations_{0};
  std::thread thread_;
};

}  // namespace ds
