#pragma once
// KeyValue: one JetStream key-value bucket (cnats kvStore; the bucket is the
// stream "KV_<bucket>"), with the compare-and-set writes a lease needs. Owns
// its kvStore handle (nats_handles.h); every value read is copied out, so no
// kvEntry outlives a call.
//
// Revisions are the bucket stream's sequence numbers: every write to any key
// of the bucket gets a new, larger one. A write that names a revision is
// accepted only while that revision is the key's latest (JetStream's
// Nats-Expected-Last-Subject-Sequence): that is the whole compare-and-set.
//
// Errors: a write refused because the key is not at the revision the writer
// assumed comes back as kAlreadyExists, for create() ("the key holds a
// value") and update() ("another revision is the latest") alike; see
// is_revision_conflict(). status.h has no FailedPrecondition/Aborted, and a
// KeyValue write is refused with AlreadyExists for no other reason. The
// broker away or slow: Unavailable / DeadlineExceeded (is_transient()). A
// bad bucket or key name: InvalidArgument. Messages name the bucket and key.
//
// How cnats 3.4.1 reports these (src/kv.c): kvStore_Update and
// kvStore_Create publish without asking for the JetStream error code, so a
// conflict is NATS_ERR whose last-error text is the server's "wrong last
// sequence: <seq>" (jsErrCode 10071); create is update(last = 0, "no
// message yet") followed, on failure, by a read: over a delete marker it
// writes again at the marker's revision, so creating a deleted key works.
// kvStore_Get returns NATS_NOT_FOUND both for a key never written and for
// one whose latest entry is a delete (or purge) marker.
//
// Reads are "direct gets" (the bucket allows them): on a cluster any copy
// may answer, and a follower's copy may be a little behind. Writes always
// go to the stream's leader, so a stale read can only make a
// compare-and-set fail, never let a wrong one through.
//
// Thread-safe as JetStream is (cnats locks inside). Destroy it before the
// JetStream context it came from.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "shared/nats.h"
#include "shared/nats_handles.h"
#include "shared/status.h"

namespace ds {

struct KeyValueSpec {
  std::string bucket;       // A-Z a-z 0-9 _ -
  int replicas = 1;         // 1, or 3 on a cluster; used only when the bucket is created
  int history = 1;          // values kept per key, 1..64
  std::string description;  // shown by `nats kv info`
};

struct KeyValueEntry {
  std::string value;
  uint64_t revision = 0;
};

// A write was refused because the key was not at the revision assumed
// (create: it holds a value; update: another revision is the latest).
inline bool is_revision_conflict(const Status& s) { return s.code() == StatusCode::kAlreadyExists; }

class KeyValue {
 public:
  // Binds to the bucket when it exists, whatever its configuration (another
  // replica count included), else creates it from `spec`. A bucket created
  // by someone else meanwhile is bound to as well. Replicas a lone server
  // cannot place fail here (the server's message says so).
  static Result<std::unique_ptr<KeyValue>> open_or_create(JetStream& js, const KeyValueSpec& spec);

  ~KeyValue();
  KeyValue(const KeyValue&) = delete;
  KeyValue& operator=(const KeyValue&) = delete;

  // The key's latest value and revision; nullopt when the key was never
  // written or its latest entry is a delete marker.
  Result<std::optional<KeyValueEntry>> get(std::string_view key);
  // Writes the key only when it holds no value (missing or deleted); the
  // new revision. kAlreadyExists when it holds one.
  Result<uint64_t> create(std::string_view key, std::string_view value);
  // Writes the key only when `last_revision` is its latest revision; the
  // new revision. kAlreadyExists when it is not (is_revision_conflict).
  Result<uint64_t> update(std::string_view key, std::string_view value, uint64_t last_revision);
  // Puts a delete marker on the key (get() then finds nothing). OK when the
  // key does not exist.
  Status remove(std::string_view key);

  const std::string& bucket() const { return bucket_; }

 private:
  KeyValue(std::string bucket, KvStorePtr kv);
  // The Status of a failed write of `key`: a conflict (see above) or the
  // converted cnats status. Runs on the calling thread (last error).
  Status write_status(int s, std::string_view key, std::string_view what) const;
  std::string context(std::string_view key) const;

  std::string bucket_;
  KvStorePtr kv_;
};

}  // namespace ds
