#pragma once
// HubLease: which hub is the active one (issue 16). The active hub holds a
// lease, one key ("active") in a replicated JetStream key-value bucket
// (shared/key_value.h, default "DS_HUB_LEASE"), and renews it every
// renew_period_ms() (a third of the lease); a standby takes it over once the
// holder has stopped renewing for a whole lease.
//
// The key's value names the holder, "<hub name>/<instance id>", the id
// random per HubLease (one per process start): a hub restarted under the
// same name is a new holder and must win the lease like anyone else. An
// empty value means released (a graceful stop), a missing or deleted key
// that there never was a holder; both are free to take at once.
//
// The rule (a revision lease: no clock is compared between hosts). The
// holder renews by update(key, holder, its last revision). A candidate
// reads the key and remembers its revision and the time it first saw that
// revision, by its own steady clock, read after the read returned; when the
// same revision is still the latest more than lease_ms later, it writes
// update(key, itself, that revision). That write succeeds only if the holder
// has not renewed meanwhile: at most one of the two wins.
//
// Why the holder stops acting first. The holder counts its lease from the
// moment it SENT its last successful write (read just before sending) and
// believes itself active until lease_ms - margin (a tenth) after it:
// valid_at(). A revision cannot be seen before the write that made it was
// sent, so a candidate's lease_ms of watching one revision start after the
// holder's count started; it takes over no earlier than lease_ms after the
// send, by then the holder has stopped believing for `margin`. This assumes
// only that the two steady clocks run at the same rate within a tenth
// (over one lease), not that they agree on the time. It also assumes the
// holder checks valid_at() before each act of the active hub; a write
// begun while valid may still land in the margin.
//
// A write whose outcome is unknown (a timeout) leaves the holder's count
// where it was; its next renew then finds another revision and, when the
// key names itself (the lost write did land), renews at that revision
// instead of declaring the lease lost.
//
// Errors: renew() returns kAlreadyExists when the lease was lost to another
// holder (is_lease_lost(); logged as a warning naming it); broker trouble
// is returned as it came (Unavailable / DeadlineExceeded): retry next
// period, valid_at() decides meanwhile.
//
// Time: steady milliseconds from the Clock given (tests move a FakeClock);
// nothing here sleeps. Each call is one to three key-value requests (a
// round trip each, bounded by the JetStream context's timeout: keep that
// well under renew_period_ms(), or a slow broker eats the lease). Not
// thread-safe: one owner thread calls everything (the hub's lease loop)
// and publishes "active" to the others itself.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "shared/clock.h"
#include "shared/key_value.h"
#include "shared/nats.h"
#include "shared/status.h"

namespace ds {

constexpr const char* kHubLeaseBucket = "DS_HUB_LEASE";
constexpr const char* kHubLeaseKey = "active";
constexpr int64_t kMinHubLeaseMs = 1000;

struct HubLeaseOptions {
  std::string hub_name;                  // [hub] name; the holder string's first part
  std::string bucket = kHubLeaseBucket;
  int replicas = 1;                      // the bucket's, when this creates it: 3 on a cluster
  int64_t lease_ms = 4000;               // at least kMinHubLeaseMs ([ha] lease_ms; its default)
};

// renew() or release() found the lease held by another holder.
inline bool is_lease_lost(const Status& s) { return s.code() == StatusCode::kAlreadyExists; }

class HubLease {
 public:
  // Opens (or creates) the bucket; InvalidArgument for an empty hub name or
  // lease_ms < kMinHubLeaseMs. `js` must outlive the HubLease, `clock` too.
  static Result<std::unique_ptr<HubLease>> open(JetStream& js, HubLeaseOptions options, const Clock& clock);

  // A candidate's attempt: true when this holder now holds the lease (the
  // key was free, named this holder already, or a takeover succeeded);
  // false while another holder's lease runs, or when another candidate won
  // the race. Call it every renew_period_ms() while not holding(): a
  // takeover needs two calls more than lease_ms apart seeing the same
  // revision. While holding() it renews instead (false when lost).
  Result<bool> try_acquire();
  // The holder's renewal, every renew_period_ms(). OK: the lease runs again
  // from the time this request was sent. kAlreadyExists (is_lease_lost):
  // another holder took it; holding() is then false. Other errors: the
  // broker's; still holding(), valid_at() counts from the last success.
  Status renew();
  // Graceful stop: writes the empty value at this holder's revision, so a
  // standby takes over at once. holding() is false afterwards whatever
  // happened (the lease then simply runs out). OK when not holding.
  Status release();

  // This holder's own view: holding and now_ms (steady) before the last
  // successful write's send time + lease_ms - lease_ms / 10. Act as the
  // active hub only while this is true.
  bool valid_at(int64_t now_ms) const;
  // The steady time valid_at() turns false at; INT64_MIN when not holding.
  int64_t valid_until_ms() const;
  // Won and not known to be lost or released (valid_at() says whether it
  // still runs).
  bool holding() const { return holding_; }

  // "<hub name>/<instance id>".
  const std::string& holder() const { return holder_; }
  // Who holds it now, as the bucket says (nullopt: free), for logs.
  Result<std::optional<std::string>> current_holder();

  int64_t lease_ms() const { return lease_ms_; }
  int64_t renew_period_ms() const { return lease_ms_ / 3; }

 private:
  HubLease(std::unique_ptr<KeyValue> kv, std::string holder, int64_t lease_ms, const Clock& clock);
  // Writes this holder at `revision` (0: create) and, on success, holds the
  // lease from the time the write was sent; false on a conflict.
  Result<bool> write_self(uint64_t revision);

  std::unique_ptr<KeyValue> kv_;
  const std::string holder_;
  const int64_t lease_ms_;
  const Clock& clock_;

  bool holding_ = false;
  uint64_t revision_ = 0;     // holding: the key's revision this holder wrote last
  int64_t valid_from_ms_ = 0; // holding: when that write was sent (steady)

  // A candidate's watch of another holder's revision.
  uint64_t watched_revision_ = 0;
  int64_t watched_since_ms_ = 0;
};

}  // namespace ds
