#pragma once
// SmallFilesystem: a size-limited tmpfs mounted for one test on a mount point
// of its own (a fresh directory under $TMPDIR or /tmp), so the test can fill
// it up (fill(): a filler file grown until ENOSPC) and give the space back
// (release()). The destructor removes the filler, unmounts (lazily, should a
// process still hold a file there) and removes the mount point, also when
// the test failed half-way. Mounting needs root: check can_mount() first and
// skip. Not thread-safe; the test's main thread owns it.
//
// Also here: integrity_check(path), SQLite's PRAGMA integrity_check on a
// database another process writes (opened read-only), and count_lines(),
// the log lines a test counts.

#include <cstdint>
#include <string>

#include "shared/status.h"

namespace ds::testing {

class SmallFilesystem {
 public:
  // Whether this process may mount (root); the reason to skip when not.
  static bool can_mount();
  // Mounts a tmpfs of `bytes`.
  static Result<SmallFilesystem> mount(uint64_t bytes);
  SmallFilesystem(SmallFilesystem&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  SmallFilesystem& operator=(SmallFilesystem&&) = delete;
  ~SmallFilesystem();

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  // Bytes still free (statvfs f_bavail).
  uint64_t free_bytes() const;
  // Writes the filler file until the filesystem refuses more (ENOSPC).
  Status fill();
  // Deletes the filler: the space is back.
  Status release();

 private:
  explicit SmallFilesystem(std::string path) : path_(std::move(path)) {}
  std::string filler() const { return path_ + "/.filler"; }
  std::string path_;
};

// "ok" when SQLite's PRAGMA integrity_check finds nothing wrong with the
// database at `path`, else what it found (or why it could not look).
std::string integrity_check(const std::string& path);

// How many lines of `text` contain `needle`.
size_t count_lines(const std::string& text, const std::string& needle);

}  // namespace ds::testing
