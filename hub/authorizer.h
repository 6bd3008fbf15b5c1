#pragma once
// Authorizer: what the identity behind a request may make the hub do.
//
// The hub holds every NATS right, so it must never act on what a request
// says about who sent it. The identity is what NATS authenticated and its
// permissions bind to a subject token: the agent id in
// ds.hub.register.<agent> / ds.hub.snapshot.<agent>, the producer in
// ds.ingest.<type>.<producer>. The Authorizer checks that identity against
// the identity registry `deltasync creds` wrote ([auth] identities_file,
// shared/identities.h) and answers permission_denied beyond it:
//
//   may_take(agent, type, partition)  registrations and snapshot reads: the
//       agent holds a grant for the type, for that partition or for "*";
//       a request for every partition ("*") needs a "*" grant.
//   may_ingest(producer, type)        the producer holds a grant for the type.
//   may_reply(name, reply_subject)    the hub publishes a reply only into the
//       requester's own inbox, `_INBOX_<name>.…` (the only inbox its NATS
//       permissions let it read). Anything else (a stream subject, the
//       JetStream API, another identity's inbox) is refused, so a request
//       cannot make the hub publish where the requester may not.
//
// Without an identities file (an open NATS server, for development) every
// identity may take and send every type, and replies may also go to cnats'
// default inbox `_INBOX.…`; the reply rule is otherwise the same.
//
// The registry is read at start and again when the file changes (checked at
// most once a second, on use), so identities `deltasync creds` adds are
// honoured without a restart. A file that no longer parses keeps the last
// good registry in force and is reported once per change.
//
// Thread-safe: called from cnats threads (ingest, snapshots) and the agent
// service's thread.

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <sys/types.h>

#include "shared/config.h"
#include "shared/identities.h"
#include "shared/status.h"

namespace ds {

class Authorizer {
 public:
  // Reads the registry named by config.identities_file ("" = open mode).
  // Fails when the file is missing or malformed, or its subject prefix is
  // not the hub's.
  static Result<std::unique_ptr<Authorizer>> open(const HubConfig& config);

  bool open_mode() const { return path_.empty(); }

  Status may_take(std::string_view agent, std::string_view type, std::string_view partition);
  Status may_ingest(std::string_view producer, std::string_view type);
  Status may_reply(std::string_view name, std::string_view reply_subject) const;

 private:
  struct FileStamp {
    ino_t inode = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileStamp&) const = default;
  };

  Authorizer(std::string path, std::string subject_prefix) : path_(std::move(path)), prefix_(std::move(subject_prefix)) {}
  // The registry in force, re-read first if the file changed.
  std::shared_ptr<const IdentityRegistry> registry();
  Status reload_locked(const FileStamp& stamp);

  const std::string path_;
  const std::string prefix_;
  std::mutex mu_;
  std::shared_ptr<const IdentityRegistry> registry_;  // guarded by mu_
  FileStamp stamp_;                                    // guarded by mu_: of the file last read
  FileStamp refused_;                                  // guarded by mu_: of the last bad file reported
  std::chrono::steady_clock::time_point checked_;      // guarded by mu_
};

}  // namespace ds
