#pragma once
// LeaseKeeper: the thread that wins and keeps an HA hub's lease
// (hub/hub_lease.h; docs/operations.md, "High availability"), on a NATS
// connection of its own ("deltasync-hub-lease").
//
// Why a thread of its own: the lease must be renewed every third of
// [ha] lease_ms whatever the rest of the hub is doing (a long reconcile, a
// slow commit, a catch-up of the standby), and a renewal must not queue
// behind the hub's own traffic.
//
// What it does: until this hub holds the lease it tries to take it every
// kCandidatePollMs (a free lease at once, another holder's only after it
// went a whole lease without renewal); from then on it renews it every
// renew period. It gives the lease up for good when a renewal finds another
// holder, or when the lease runs out without a successful renewal (the
// broker unreachable for a lease): lost_token() is then requested, and
// valid() is false from that moment on (it is false as soon as the lease
// runs out, even before this thread notices: a hub paused by SIGSTOP sees
// it false when it resumes). A hub that lost the lease steps down (exits);
// started again, it stands by.
//
// Thread-safety: every public method may be called from any thread;
// holder() once acquired(). The thread holds mu_ across key-value round
// trips (at most the JetStream timeout), so acquired(), lost_reason() and
// step_down() may wait that long; valid() never waits.
// release_and_stop() once, from the owner (main).

#include <atomic>
#include <condition_variable>
#include <limits>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>

#include "hub/hub_lease.h"
#include "shared/clock.h"
#include "shared/config.h"
#include "shared/nats.h"
#include "shared/status.h"

namespace ds {

class LeaseKeeper {
 public:
  // How often a candidate looks at the lease (at most; a third of the lease
  // when that is shorter): the takeover comes this much after the lease
  // ran out, at most.
  static constexpr int64_t kCandidatePollMs = 250;

  // Connects (retrying in the background while nats-server is away) and
  // starts the thread. Fails for bad connect options only.
  static Result<std::unique_ptr<LeaseKeeper>> start(const HubConfig& config, const Clock& clock = real_clock());
  ~LeaseKeeper();
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // Blocks until this hub holds the lease (true), or `stop` is requested or
  // the lease was lost (false).
  bool wait_acquired(std::stop_token stop);
  bool acquired() const;
  // Whether this hub may act as the active one now: it holds the lease and
  // the lease has not run out (HubLease::valid_at).
  bool valid() const;
  // Requested when the lease is lost (above).
  std::stop_token lost_token() const { return lost_.get_token(); }
  // Why it was lost; "" while not.
  std::string lost_reason() const;
  // "<hub name>/<instance id>": the Ds-Hub header of this hub's deltas.
  // Set once the lease bucket is open: call it after acquired() is true.
  const std::string& holder() const { return holder_; }

  // Gives the lease up as lost, for `why` (the publisher found another hub's
  // messages in a stream: hub/stream_publisher.h, "Fencing").
  void step_down(const std::string& why) { lose(why); }

  // Stops the thread and, when holding the lease, releases it so a standby
  // takes over at once (graceful stop). Idempotent.
  void release_and_stop();

 private:
  LeaseKeeper(const HubConfig& config, const Clock& clock) : config_(config), clock_(clock) {}
  void run(std::stop_token stop);
  // One step: open the lease when not yet, then try to take it or renew it.
  void step();
  void lose(const std::string& reason);

  const HubConfig config_;
  const Clock& clock_;
  std::unique_ptr<Connection> nc_;
  std::unique_ptr<JetStream> js_;
  std::string holder_;  // set by the thread when the lease opens, before acquired_ (read it after acquired())

  mutable std::mutex mu_;
  std::condition_variable_any cv_;
  std::unique_ptr<HubLease> lease_;  // guarded by mu_; used by the thread (and release_and_stop)
  bool acquired_ = false;            // guarded by mu_
  // HubLease::valid_until_ms after the last successful write; INT64_MIN
  // once lost or released. For valid() without the lock (the thread holds
  // it across key-value round trips).
  std::atomic<int64_t> valid_until_ms_{std::numeric_limits<int64_t>::min()};
  std::string lost_reason_;          // guarded by mu_
  std::stop_source lost_;
  std::atomic<bool> stopped_{false};
  std::jthread thread_;
};

}  // namespace ds
