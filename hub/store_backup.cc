#include "hub/store_backup.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>

#include "shared/sqlite.h"

namespace ds {
namespace {

namespace fs = std::filesystem;

struct BackupFinisher {
  void operator()(sqlite3_backup* b) const { sqlite3_backup_finish(b); }
};
using BackupHandle = std::unique_ptr<sqlite3_backup, BackupFinisher>;

struct RawCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using RawDatabase = std::unique_ptr<sqlite3, RawCloser>;

Status errno_status(const std::string& what) {
  const int e = errno;
  return Status::unavailable(what + ": " + std::strerror(e));
}

Status fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_status("open " + path + " for fsync");
  const int rc = ::fsync(fd);
  Status s = rc == 0 ? Status::ok() : errno_status("fsync " + path);
  ::close(fd);
  return s;
}

// Removes the temporary copy (and any journal SQLite left beside it) unless
// released.
class TempCopy {
 public:
  explicit TempCopy(std::string path) : path_(std::move(path)) {}
  ~TempCopy() {
    if (path_.empty()) return;
    for (const char* suffix : {"", "-journal", "-wal", "-shm"}) ::unlink((path_ + suffix).c_str());
  }
  TempCopy(const TempCopy&) = delete;
  TempCopy& operator=(const TempCopy&) = delete;
  const std::string& path() const { return path_; }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

}  // namespace

Result<BackupResult> backup_store(const std::string& from, const std::string& to, const BackupOptions& options) {
  if (to.empty()) return Status::invalid_argument("backup: no destination file given");
  std::error_code ec;
  if (fs::is_directory(to, ec)) {
    return Status::invalid_argument("backup: " + to + " is a directory; name the file to write (e.g. " +
                                    (fs::path(to) / "hub-backup.db").string() + ")");
  }
  if (!fs::exists(from, ec)) return Status::not_found("backup: the store " + from + " does not exist");
  if (fs::exists(to, ec) && fs::equivalent(from, to, ec)) {
    return Status::invalid_argument("backup: " + to + " is the store itself; write the copy elsewhere");
  }
  const fs::path dir = fs::absolute(to).parent_path();
  if (!fs::is_directory(dir, ec)) {
    return Status::invalid_argument("backup: the directory " + dir.string() + " of " + to + " does not exist");
  }

  // The source: an existing store, never created here.
  OpenOptions source_options;
  source_options.create = false;
  DS_ASSIGN_OR_RETURN(std::unique_ptr<Database> source, Database::open(from, source_options));
  // One read transaction for the whole copy: every step reads the same
  // snapshot, so the hub's commits meanwhile neither restart the copy nor
  // leak half into it.
  DS_RETURN_IF_ERROR(source->exec("BEGIN").with_context("backup: read transaction"));
  DS_RETURN_IF_ERROR(source->exec("SELECT count(*) FROM sqlite_schema").with_context("backup: read transaction"));

  TempCopy temp(to + ".tmp-" + std::to_string(::getpid()));
  ::unlink(temp.path().c_str());
  {
    const int fd = ::open(temp.path().c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return errno_status("backup: create " + temp.path());
    ::close(fd);
  }

  BackupResult result;
  {
    sqlite3* raw = nullptr;
    const int rc = sqlite3_open_v2(temp.path().c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
    RawDatabase dest(raw);
    if (rc != SQLITE_OK) return sqlite_status(raw, rc, "backup: open " + temp.path());
    {
      BackupHandle backup(sqlite3_backup_init(dest.get(), "main", source->raw(), "main"));
      if (!backup) return sqlite_status(dest.get(), sqlite3_errcode(dest.get()), "backup: start");
      const int pages = options.pages_per_step > 0 ? options.pages_per_step : -1;
      for (;;) {
        const int step = sqlite3_backup_step(backup.get(), pages);
        if (step != SQLITE_OK && step != SQLITE_DONE) return sqlite_status(dest.get(), step, "backup: copy");
        const BackupProgress progress{sqlite3_backup_pagecount(backup.get()) - sqlite3_backup_remaining(backup.get()),
                                      sqlite3_backup_pagecount(backup.get())};
        result.pages = progress.pages_total;
        if (options.on_progress) options.on_progress(progress);
        if (step == SQLITE_DONE) break;
      }
      const int finished = sqlite3_backup_finish(backup.release());
      if (finished != SQLITE_OK) return sqlite_status(dest.get(), finished, "backup: finish");
    }
    (void)source->exec("COMMIT");
    source.reset();

    // The copy must be a whole database before it replaces anything.
    sqlite3_stmt* check_raw = nullptr;
    int prc = sqlite3_prepare_v2(dest.get(), "PRAGMA integrity_check", -1, &check_raw, nullptr);
    std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)> check(check_raw, &sqlite3_finalize);
    if (prc != SQLITE_OK) return sqlite_status(dest.get(), prc, "backup: integrity check");
    std::string verdict;
    for (;;) {
      const int s = sqlite3_step(check.get());
      if (s == SQLITE_DONE) break;
      if (s != SQLITE_ROW) return sqlite_status(dest.get(), s, "backup: integrity check");
      const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(check.get(), 0));
      if (!verdict.empty()) verdict += "; ";
      verdict += text == nullptr ? "" : text;
    }
    check.reset();
    if (verdict != "ok") {
      return Status::data_loss("backup: the copy fails PRAGMA integrity_check: " + verdict + " (" + to +
                               " was left as it was)");
    }
    sqlite3_stmt* st_raw = nullptr;
    prc = sqlite3_prepare_v2(dest.get(), "SELECT type, version FROM type_state ORDER BY type", -1, &st_raw, nullptr);
    std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)> st(st_raw, &sqlite3_finalize);
    if (prc != SQLITE_OK) {
      return sqlite_status(dest.get(), prc, "backup: " + from + " is not a deltasync hub store (no type_state)");
    }
    while (sqlite3_step(st.get()) == SQLITE_ROW) {
      const auto* type = reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 0));
      result.versions.emplace_back(type == nullptr ? "" : type, static_cast<uint64_t>(sqlite3_column_int64(st.get(), 1)));
    }
  }

  DS_RETURN_IF_ERROR(fsync_path(temp.path(), false));
  if (::chmod(temp.path().c_str(), 0600) != 0) return errno_status("backup: chmod " + temp.path());
  struct stat sb {};
  if (::stat(temp.path().c_str(), &sb) == 0) result.bytes = static_cast<int64_t>(sb.st_size);
  if (::rename(temp.path().c_str(), to.c_str()) != 0) return errno_status("backup: rename to " + to);
  temp.release();
  DS_RETURN_IF_ERROR(fsync_path(dir.string(), true));
  return result;
}

}  // namespace ds
