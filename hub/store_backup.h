#pragma once
// StoreBackup: an online copy of the hub's SQLite store (`deltasync-hub
// backup`, docs/operations.md "Backup and restore").
//
// The copy is made with SQLite's online backup API while the hub runs and
// ingests: the source is opened read-only and a read transaction is held on
// it for the whole copy, so every page comes from ONE snapshot of the
// database (WAL mode lets the hub's writer commit meanwhile; the copy never
// restarts and never blocks it). The snapshot is a committed state, so it is
// the store as of some acknowledged point: every record's version is at most
// its type's change-log head, and the log is whole up to it.
//
// The pages go to "<to>.tmp-<pid>" (mode 0600) in the destination's
// directory, `pages_per_step` at a time; the result must pass `PRAGMA
// integrity_check`; then it is fsynced and renamed over `to` (and the
// directory fsynced), so `to` is either the old file or a whole new copy.
// A failure removes the temporary file.
//
// Thread-safety: a free function; uses its own connections only.

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "shared/status.h"

namespace ds {

struct BackupProgress {
  int64_t pages_done = 0;
  int64_t pages_total = 0;
};

struct BackupOptions {
  int pages_per_step = 1024;  // 4 MiB of 4 KiB pages between progress reports
  // Called after every step (on the calling thread); may be empty.
  std::function<void(const BackupProgress&)> on_progress;
};

struct BackupResult {
  int64_t pages = 0;
  int64_t bytes = 0;           // size of the copy
  // Per type, the change-log head in the copy (type_state.version).
  std::vector<std::pair<std::string, uint64_t>> versions;
};

// Copies the store at `from` (it must exist) to `to`. InvalidArgument when
// `to` names `from` or a directory; NotFound when `from` is missing;
// DataLoss when the copy fails its integrity check.
Result<BackupResult> backup_store(const std::string& from, const std::string& to, const BackupOptions& options = {});

}  // namespace ds
