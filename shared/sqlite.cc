#include "shared/sqlite.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>
#include <spdlog/spdlog.h>

#include <cctype>
#include <charconv>
#include <filesystem>
#include <limits>
#include <optional>
#include <system_error>
#include <type_traits>
#include <variant>

namespace ds {
namespace {

// SQL quoted in error messages: whitespace collapsed, long text cut, so a
// multi-line schema statement still gives a one-line message.
std::string sql_excerpt(std::string_view sql) {
  constexpr size_t kMaxChars = 80;
  std::string out;
  bool pending_space = false;
  for (char c : sql) {
    if (std::isspace(static_cast<unsigned char>(c)) != 0) {
      pending_space = !out.empty();
      continue;
    }
    if (out.size() >= kMaxChars) {
      out += "...";
      break;
    }
    if (pending_space) out += ' ';
    pending_space = false;
    out += c;
  }
  return "`" + out + "`";
}

StatusCode code_for(int rc) {
  switch (rc) {
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_ROWID:
      return StatusCode::kAlreadyExists;
    case SQLITE_IOERR_CORRUPTFS:
      return StatusCode::kDataLoss;
    default:
      break;
  }
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_PROTOCOL:
    case SQLITE_SCHEMA:
    case SQLITE_CANTOPEN:
    case SQLITE_FULL:
    case SQLITE_IOERR:
      return StatusCode::kUnavailable;
    case SQLITE_CONSTRAINT:
    case SQLITE_RANGE:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
      return StatusCode::kInvalidArgument;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return StatusCode::kDataLoss;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return StatusCode::kPermissionDenied;
    default:
      return StatusCode::kInternal;
  }
}

bool is_in_memory(const std::string& path) { return path.empty() || path == ":memory:"; }

}  // namespace

Status sqlite_status(sqlite3* db, int rc, std::string_view context) {
  if (rc == SQLITE_OK) return Status::ok();
  // sqlite3_errmsg describes the connection's most recent failure, which is
  // only this one if the codes agree.
  const bool db_has_this_error = db != nullptr && (sqlite3_extended_errcode(db) & 0xff) == (rc & 0xff);
  std::string msg(context);
  if (!msg.empty()) msg += ": ";
  msg += db_has_this_error ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  msg += " (code ";
  msg += std::to_string(rc);
  msg += ")";
  return Status(code_for(rc), std::move(msg));
}

namespace {

// The SQLite result code sqlite_status put at the end of `s`'s message.
std::optional<int> sqlite_code_of(const Status& s) {
  const std::string& m = s.message();
  const size_t at = m.rfind(" (code ");
  if (at == std::string::npos || m.empty() || m.back() != ')') return std::nullopt;
  int code = 0;
  const char* first = m.data() + at + 7;
  const char* last = m.data() + m.size() - 1;
  auto [end, ec] = std::from_chars(first, last, code);
  if (ec != std::errc() || end != last) return std::nullopt;
  return code;
}

}  // namespace

bool is_locked(const Status& s) {
  const std::optional<int> code = sqlite_code_of(s);
  return s.code() == StatusCode::kUnavailable && code.has_value() &&
         ((*code & 0xff) == SQLITE_BUSY || (*code & 0xff) == SQLITE_LOCKED);
}

bool is_disk_full(const Status& s) {
  const std::optional<int> code = sqlite_code_of(s);
  return s.code() == StatusCode::kUnavailable && code == SQLITE_FULL;
}

// --- Statement ---------------------------------------------------------------

void Statement::Finalizer::operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }

Statement& Statement::note_bind(int rc, int index) {
  if (rc != SQLITE_OK && bind_status_.is_ok()) {
    bind_status_ = sqlite_status(db_, rc,
                                 "bind parameter " + std::to_string(index) + " of " +
                                     sql_excerpt(sqlite3_sql(stmt_.get())));
  }
  return *this;
}

bool Statement::check_prepared() {
  if (stmt_) return true;
  if (bind_status_.is_ok()) bind_status_ = Status::internal("bind on a statement that was never prepared");
  return false;
}

Statement& Statement::bind(int index, int64_t v) {
  if (!check_prepared()) return *this;
  return note_bind(sqlite3_bind_int64(stmt_.get(), index, v), index);
}

Statement& Statement::bind(int index, double v) {
  if (!check_prepared()) return *this;
  return note_bind(sqlite3_bind_double(stmt_.get(), index, v), index);
}

Statement& Statement::bind(int index, std::string_view text) {
  if (!check_prepared()) return *this;
  // A null data pointer would bind NULL, and an empty string_view may have one.
  const char* data = text.empty() ? "" : text.data();
  return note_bind(sqlite3_bind_text64(stmt_.get(), index, data, text.size(), SQLITE_TRANSIENT, SQLITE_UTF8),
                   index);
}

Statement& Statement::bind_blob(int index, std::string_view bytes) {
  if (!check_prepared()) return *this;
  // sqlite3_bind_blob with a null pointer binds NULL; an empty blob must stay
  // a (zero-length) blob.
  if (bytes.empty()) return note_bind(sqlite3_bind_zeroblob(stmt_.get(), index, 0), index);
  return note_bind(sqlite3_bind_blob64(stmt_.get(), index, bytes.data(), bytes.size(), SQLITE_TRANSIENT), index);
}

Statement& Statement::bind_null(int index) {
  if (!check_prepared()) return *this;
  return note_bind(sqlite3_bind_null(stmt_.get(), index), index);
}

Statement& Statement::bind(int index, const Value& v) {
  return std::visit(
      [this, index](const auto& x) -> Statement& {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) {
          return bind_null(index);
        } else if constexpr (std::is_same_v<T, bool>) {
          return bind(index, static_cast<int64_t>(x ? 1 : 0));
        } else if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, double>) {
          return bind(index, x);
        } else if constexpr (std::is_same_v<T, std::string>) {
          return bind(index, std::string_view(x));
        } else if constexpr (std::is_same_v<T, Blob>) {
          return bind_blob(index, x.bytes);
        } else {
          static_assert(std::is_same_v<T, JsonText>);
          return bind(index, std::string_view(x.text));
        }
      },
      v);
}

int Statement::parameter_index(const char* name) const {
  if (!stmt_) return 0;
  return sqlite3_bind_parameter_index(stmt_.get(), name);
}

Result<bool> Statement::step() {
  if (!stmt_) return Status::internal("step on a statement that was never prepared");
  if (!bind_status_.is_ok()) return bind_status_;
  const int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return sqlite_status(db_, rc, "step " + sql_excerpt(sqlite3_sql(stmt_.get())));
}

Status Statement::run() {
  while (true) {
    DS_ASSIGN_OR_RETURN(bool has_row, step());
    if (!has_row) return Status::ok();
  }
}

void Statement::reset() {
  // sqlite3_reset repeats the last step's error, which step() already reported.
  if (stmt_) sqlite3_reset(stmt_.get());
  bind_status_ = Status::ok();
}

int Statement::column_count() const { return stmt_ ? sqlite3_column_count(stmt_.get()) : 0; }

bool Statement::column_is_null(int col) const {
  return sqlite3_column_type(stmt_.get(), col) == SQLITE_NULL;
}

int64_t Statement::column_int64(int col) const { return sqlite3_column_int64(stmt_.get(), col); }

double Statement::column_double(int col) const { return sqlite3_column_double(stmt_.get(), col); }

std::string Statement::column_text(int col) const {
  // The pointer first, then the size: that order keeps the size in UTF-8.
  const unsigned char* p = sqlite3_column_text(stmt_.get(), col);
  const int n = sqlite3_column_bytes(stmt_.get(), col);
  if (p == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
}

std::string Statement::column_blob(int col) const {
  const void* p = sqlite3_column_blob(stmt_.get(), col);
  const int n = sqlite3_column_bytes(stmt_.get(), col);
  if (p == nullptr) return {};
  return std::string(static_cast<const char*>(p), static_cast<size_t>(n));
}

Value Statement::column_value(int col, ColumnType type) const {
  if (column_is_null(col)) return std::monostate{};
  switch (type) {
    case ColumnType::kInteger:
      return column_int64(col);
    case ColumnType::kReal:
      return column_double(col);
    case ColumnType::kBool:
      return column_int64(col) != 0;
    case ColumnType::kText:
      return column_text(col);
    case ColumnType::kBlob:
      return Blob{column_blob(col)};
    case ColumnType::kJson:
      return JsonText{column_text(col)};
  }
  return std::monostate{};
}

// --- Database ----------------------------------------------------------------

void Database::Closer::operator()(sqlite3* db) const {
  // close_v2 defers the close until outstanding Statements are finalized.
  sqlite3_close_v2(db);
}

Result<std::unique_ptr<Database>> Database::open(const std::string& path, const OpenOptions& opts) {
  const std::string context = "open " + path;
  const bool in_memory = is_in_memory(path);
  if ((opts.read_only || !opts.create) && !in_memory) {
    std::error_code ec;
    const bool exists = std::filesystem::exists(path, ec);
    // On an error other than "missing" (ec set), let sqlite3 report it.
    if (!ec && !exists) return Status::not_found(context + ": no such file");
  }

  // A new database file is created owner-only here, whatever the umask:
  // SQLite would create it 0644 & ~umask, and it gives the -wal and -shm
  // files the mode of the database file, so this covers all three. An
  // existing file keeps the mode its owner gave it.
  //
  // Only a file that does not exist yet is touched (O_EXCL): closing any
  // descriptor of a file drops every POSIX lock this process holds on it,
  // so opening and closing an existing database here would drop the SHARED
  // lock the process's other connections hold on it. Without that lock, the
  // next connection of another process (a backup, a sqlite3 shell) to close
  // believes it is the last one, checkpoints and deletes the -wal and -shm
  // files under the running process, whose later commits then go to a
  // deleted file.
  if (!opts.read_only && opts.create && !in_memory) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) ::close(fd);  // EEXIST: leave it alone; other errors: let sqlite3 report them
  }

  // NOMUTEX: multi-thread mode; see the thread-safety note in sqlite.h.
  // EXRESCODE: extended result codes from open and every later call.
  int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
  if (opts.read_only) {
    flags |= SQLITE_OPEN_READONLY;
  } else {
    flags |= SQLITE_OPEN_READWRITE;
    if (opts.create) flags |= SQLITE_OPEN_CREATE;
  }
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  // Owned before checking rc: a failed open still returns a handle to close.
  std::unique_ptr<Database> db(new Database(path, raw));
  if (rc != SQLITE_OK) return sqlite_status(raw, rc, context);

  sqlite3_busy_timeout(raw, opts.busy_timeout_ms);

  if (!opts.read_only && !in_memory) {
    auto stmt = db->prepare("PRAGMA journal_mode=WAL");
    if (!stmt.is_ok()) return stmt.status().with_context(context);
    auto has_row = stmt->step();
    if (!has_row.is_ok()) return has_row.status().with_context(context);
    const std::string mode = *has_row ? stmt->column_text(0) : std::string();
    if (mode != "wal") return Status::internal(context + ": could not enable WAL (journal_mode is '" + mode + "')");
  }
  DS_RETURN_IF_ERROR(
      db->exec(opts.synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL").with_context(context));
  DS_RETURN_IF_ERROR(db->exec("PRAGMA foreign_keys=ON").with_context(context));
  if (opts.cache_kib > 0) {
    DS_RETURN_IF_ERROR(db->exec("PRAGMA cache_size=-" + std::to_string(opts.cache_kib)).with_context(context));
  }
  // Reads the header and schema here whatever the pragmas above touched, so a
  // file that is not a database fails at open, not at first use.
  DS_RETURN_IF_ERROR(db->exec("SELECT count(*) FROM sqlite_schema").with_context(context));
  return db;
}

Status Database::exec(std::string_view sql) {
  const std::string owned(sql);  // sqlite3_exec wants a NUL-terminated string
  const int rc = sqlite3_exec(db_.get(), owned.c_str(), nullptr, nullptr, nullptr);
  if (rc == SQLITE_OK) return Status::ok();
  return sqlite_status(db_.get(), rc, "exec " + sql_excerpt(sql));
}

Result<Statement*> StatementCache::get(std::string_view sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    DS_ASSIGN_OR_RETURN(Statement st, db_.prepare(sql));
    it = statements_.emplace(std::string(sql), std::move(st)).first;
  } else {
    it->second.reset();
  }
  return &it->second;
}

Result<Statement> Database::prepare(std::string_view sql) {
  if (sql.size() >= static_cast<size_t>(std::numeric_limits<int>::max())) {
    return Status::invalid_argument("prepare: SQL too long");
  }
  auto failed = [&](int rc) {
    Status s = sqlite_status(db_.get(), rc, "prepare " + sql_excerpt(sql));
    // At prepare time SQLITE_ERROR means the SQL itself is wrong.
    if ((rc & 0xff) == SQLITE_ERROR) return Status::invalid_argument(s.message());
    return s;
  };
  sqlite3_stmt* raw = nullptr;
  const char* tail = nullptr;
  int rc = sqlite3_prepare_v3(db_.get(), sql.data(), static_cast<int>(sql.size()), 0, &raw, &tail);
  if (rc != SQLITE_OK) return failed(rc);
  Statement stmt(db_.get(), raw);
  if (!stmt.stmt_) return Status::invalid_argument("prepare " + sql_excerpt(sql) + ": no SQL statement");

  // Anything after the first statement would be silently ignored by sqlite3;
  // only whitespace, comments and semicolons may follow.
  const char* const end = sql.data() + sql.size();
  while (tail != nullptr && tail < end) {
    sqlite3_stmt* extra = nullptr;
    const char* next = nullptr;
    rc = sqlite3_prepare_v3(db_.get(), tail, static_cast<int>(end - tail), 0, &extra, &next);
    if (extra != nullptr) {
      sqlite3_finalize(extra);
      return Status::invalid_argument("prepare " + sql_excerpt(sql) + ": more than one statement");
    }
    if (rc != SQLITE_OK) return failed(rc);
    if (next == tail) break;
    tail = next;
  }
  return stmt;
}

int64_t Database::changes() const { return sqlite3_changes64(db_.get()); }

int64_t Database::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_.get()); }

// --- Transaction -------------------------------------------------------------

Result<Transaction> Transaction::begin(Database& db, Kind kind) {
  if (sqlite3_get_autocommit(db.raw()) == 0) {
    // Inside the connection's open transaction: a savepoint, which that
    // transaction's end makes durable or undoes with everything else.
    DS_RETURN_IF_ERROR(db.exec("SAVEPOINT nested_transaction").with_context(db.path()));
    return Transaction(&db, /*nested=*/true);
  }
  DS_RETURN_IF_ERROR(db.exec(kind == Kind::kImmediate ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED").with_context(db.path()));
  return Transaction(&db, /*nested=*/false);
}

Status Transaction::commit() {
  if (db_ == nullptr) return Status::internal("commit: the transaction is already finished");
  DS_RETURN_IF_ERROR(db_->exec(nested_ ? "RELEASE nested_transaction" : "COMMIT").with_context(db_->path()));
  db_ = nullptr;
  return Status::ok();
}

Transaction::~Transaction() {
  if (db_ == nullptr) return;
  // After some errors (I/O, disk full) SQLite has rolled back already.
  if (sqlite3_get_autocommit(db_->raw()) != 0) return;
  const Status s =
      db_->exec(nested_ ? "ROLLBACK TO nested_transaction; RELEASE nested_transaction" : "ROLLBACK");
  if (!s.is_ok()) spdlog::warn("{}: rollback failed: {}", db_->path(), s.to_string());
}

// --- helpers -----------------------------------------------------------------

Result<int64_t> query_scalar_int64(Database& db, std::string_view sql) {
  DS_ASSIGN_OR_RETURN(Statement stmt, db.prepare(sql));
  DS_ASSIGN_OR_RETURN(bool has_row, stmt.step());
  if (!has_row) return Status::not_found(sql_excerpt(sql) + ": no row");
  if (stmt.column_is_null(0)) return Status::not_found(sql_excerpt(sql) + ": value is NULL");
  return stmt.column_int64(0);
}

std::string quote_identifier(std::string_view name) {
  std::string q = "\"";
  for (char ch : name) {
    if (ch == '"') q += '"';
    q += ch;
  }
  q += '"';
  return q;
}

std::string_view sql_column_type(ColumnType type) {
  switch (type) {
    case ColumnType::kText: return "TEXT";
    case ColumnType::kInteger: return "INTEGER";
    case ColumnType::kReal: return "REAL";
    case ColumnType::kBool: return "INTEGER";
    case ColumnType::kBlob: return "BLOB";
    case ColumnType::kJson: return "TEXT";
  }
  return "TEXT";
}

}  // namespace ds
