#include "hub/hub_lease.h"

#include <limits>

#include <spdlog/spdlog.h>

#include <cstdio>
#include <random>
#include <utility>

namespace ds {
namespace {

// 8 hex digits, new at every start: tells a restarted hub from its former self.
std::string new_instance_id() {
  std::random_device rd;
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", static_cast<unsigned>(rd()));
  return buf;
}

// Who a read of the key says holds the lease, for messages.
std::string describe(const std::optional<KeyValueEntry>& entry) {
  if (!entry) return "no one (no key)";
  if (entry->value.empty()) return "no one (released at revision " + std::to_string(entry->revision) + ")";
  return entry->value + " (revision " + std::to_string(entry->revision) + ")";
}

}  // namespace

Result<std::unique_ptr<HubLease>> HubLease::open(JetStream& js, HubLeaseOptions options, const Clock& clock) {
  if (options.hub_name.empty()) return Status::invalid_argument("hub lease: the hub name is empty");
  if (options.lease_ms < kMinHubLeaseMs) {
    return Status::invalid_argument("hub lease: lease_ms must be at least " + std::to_string(kMinHubLeaseMs) +
                                    ", not " + std::to_string(options.lease_ms));
  }
  KeyValueSpec spec;
  spec.bucket = options.bucket;
  spec.replicas = options.replicas;
  spec.history = 1;
  spec.description = "deltasync: the active hub's lease";
  DS_ASSIGN_OR_RETURN(std::unique_ptr<KeyValue> kv, KeyValue::open_or_create(js, spec));
  std::string holder = options.hub_name + "/" + new_instance_id();
  return std::unique_ptr<HubLease>(new HubLease(std::move(kv), std::move(holder), options.lease_ms, clock));
}

HubLease::HubLease(std::unique_ptr<KeyValue> kv, std::string holder, int64_t lease_ms, const Clock& clock)
    : kv_(std::move(kv)), holder_(std::move(holder)), lease_ms_(lease_ms), clock_(clock) {}

Result<bool> HubLease::write_self(uint64_t revision) {
  const int64_t sent_ms = clock_.now_steady_ms();
  Result<uint64_t> written = revision == 0 ? kv_->create(kHubLeaseKey, holder_)
                                           : kv_->update(kHubLeaseKey, holder_, revision);
  if (!written.is_ok()) {
    if (is_revision_conflict(written.status())) return false;
    return written.status();
  }
  holding_ = true;
  revision_ = *written;
  valid_from_ms_ = sent_ms;
  return true;
}

Result<bool> HubLease::try_acquire() {
  if (holding_) {
    Status renewed = renew();
    if (renewed.is_ok()) return true;
    if (is_lease_lost(renewed)) return false;
    return renewed;
  }
  DS_ASSIGN_OR_RETURN(std::optional<KeyValueEntry> entry, kv_->get(kHubLeaseKey));
  const int64_t seen_ms = clock_.now_steady_ms();  // after the read: the revision existed by then

  if (!entry || entry->value.empty() || entry->value == holder_) {
    // Free (never held, deleted, released), or ours already (a write whose
    // answer was lost): written again so that the lease counts from now.
    watched_revision_ = 0;
    DS_ASSIGN_OR_RETURN(bool won, write_self(entry ? entry->revision : 0));
    if (won) {
      spdlog::info("hub lease: {} holds the lease in bucket {} (was held by {}; revision {}, {} ms)", holder_,
                   kv_->bucket(), describe(entry), revision_, lease_ms_);
    }
    return won;
  }

  if (entry->revision != watched_revision_) {
    watched_revision_ = entry->revision;
    watched_since_ms_ = seen_ms;
    return false;
  }
  const int64_t unchanged_ms = seen_ms - watched_since_ms_;
  if (unchanged_ms <= lease_ms_) return false;

  watched_revision_ = 0;  // won or not, the next attempt watches afresh
  DS_ASSIGN_OR_RETURN(bool won, write_self(entry->revision));
  if (won) {
    spdlog::warn("hub lease: {} took the lease in bucket {} over from {}, which did not renew it for {} ms "
                 "(lease {} ms; now revision {})",
                 holder_, kv_->bucket(), entry->value, unchanged_ms, lease_ms_, revision_);
  }
  return won;
}

Status HubLease::renew() {
  if (!holding_) {
    return Status::already_exists("hub lease: " + holder_ + " does not hold the lease in bucket " + kv_->bucket());
  }
  const uint64_t expected = revision_;
  DS_ASSIGN_OR_RETURN(bool renewed, write_self(expected));
  if (renewed) return Status::ok();

  // Another revision is the latest. It may be ours: an earlier renew whose
  // answer was lost (a timeout) did land.
  Result<std::optional<KeyValueEntry>> current = kv_->get(kHubLeaseKey);
  if (!current.is_ok()) {
    return current.status().with_context("hub lease: renew at revision " + std::to_string(expected) +
                                         " refused, and the key could not be read");
  }
  if (*current && (*current)->value == holder_) {
    DS_ASSIGN_OR_RETURN(renewed, write_self((*current)->revision));
    if (renewed) return Status::ok();
  }
  holding_ = false;
  watched_revision_ = 0;
  std::string msg = "hub lease: " + holder_ + " lost the lease in bucket " + kv_->bucket() + " (held at revision " +
                    std::to_string(expected) + "); now held by " + describe(*current);
  spdlog::warn("{}", msg);
  return Status::already_exists(std::move(msg));
}

Status HubLease::release() {
  if (!holding_) return Status::ok();
  holding_ = false;
  watched_revision_ = 0;
  Result<uint64_t> released = kv_->update(kHubLeaseKey, "", revision_);
  if (!released.is_ok()) {
    return released.status().with_context("hub lease: " + holder_ + " releasing the lease");
  }
  spdlog::info("hub lease: {} released the lease in bucket {} (revision {})", holder_, kv_->bucket(), *released);
  return Status::ok();
}

bool HubLease::valid_at(int64_t now_ms) const { return now_ms < valid_until_ms(); }

int64_t HubLease::valid_until_ms() const {
  return holding_ ? valid_from_ms_ + lease_ms_ - lease_ms_ / 10 : std::numeric_limits<int64_t>::min();
}

Result<std::optional<std::string>> HubLease::current_holder() {
  DS_ASSIGN_OR_RETURN(std::optional<KeyValueEntry> entry, kv_->get(kHubLeaseKey));
  if (!entry || entry->value.empty()) return std::optional<std::string>();
  return std::optional<std::string>(std::move(entry->value));
}

}  // namespace ds
