#pragma once
// RAII around sqlite3: a Database (WAL mode), prepared Statements, and a
// Transaction that rolls back unless committed. sqlite3 codes are converted to
// Status here, with sqlite3_errmsg in the message.
//
// Thread-safety: a Database and its Statements belong to one thread at a time
// (one writer per database file; readers open their own Database). Connections
// are opened in SQLite's multi-thread mode (SQLITE_OPEN_NOMUTEX): no per-call
// connection mutex, which is exactly as safe as this rule.
//
// Error codes (sqlite_status): busy/locked, I/O, disk full and cannot-open are
// kUnavailable (transient); a UNIQUE or PRIMARY KEY violation is
// kAlreadyExists, any other constraint, a bad bind or bad SQL given to
// prepare() is kInvalidArgument; a corrupt or non-database file is kDataLoss;
// writing through a read-only connection is kPermissionDenied; the rest is
// kInternal.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "shared/schema.h"
#include "shared/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace ds {

// One prepared statement of a Database, finalized on destruction. Move-only.
// It may outlive its Database object (the connection closes once its last
// statement is finalized), but it is used on that Database's thread only.
// A default-constructed or moved-from Statement fails every step().
class Statement {
 public:
  Statement() = default;
  Statement(Statement&&) noexcept = default;
  Statement& operator=(Statement&&) noexcept = default;

  // Binds are 1-based like sqlite3. A failing bind is remembered and returned
  // by the next step(), so call sites read as a straight line. Text and blobs
  // are copied; an empty string binds '' and an empty blob a zero-length blob,
  // never NULL.
  Statement& bind(int index, int64_t v);
  Statement& bind(int index, int v) { return bind(index, static_cast<int64_t>(v)); }
  Statement& bind(int index, double v);
  Statement& bind(int index, std::string_view text);
  // These two exist only because a std::string or a literal would otherwise
  // be ambiguous between the string_view and the Value overloads.
  Statement& bind(int index, const std::string& text) { return bind(index, std::string_view(text)); }
  Statement& bind(int index, const char* text) { return bind(index, std::string_view(text)); }
  Statement& bind_blob(int index, std::string_view bytes);
  Statement& bind_null(int index);
  Statement& bind(int index, const Value& v);  // Blob as blob, JsonText as text
  // Named parameter (":name"); 0 when unknown, which fails the bind and so
  // gives InvalidArgument at step().
  int parameter_index(const char* name) const;

  // Advances: true = a row is available, false = done. After an error, call
  // reset() before stepping again.
  Result<bool> step();
  // Runs to completion, ignoring rows.
  Status run();
  // Resets so the statement can be bound and stepped again; keeps bindings
  // until rebound and forgets a remembered bind failure.
  void reset();

  int column_count() const;
  bool column_is_null(int col) const;
  int64_t column_int64(int col) const;
  double column_double(int col) const;
  std::string column_text(int col) const;
  std::string column_blob(int col) const;
  // The column as a Value, converted by the declared ColumnType (bool from
  // integer, Blob from blob, JsonText from text).
  Value column_value(int col, ColumnType type) const;

  sqlite3_stmt* raw() const { return stmt_.get(); }

 private:
  friend class Database;
  struct Finalizer { void operator()(sqlite3_stmt* s) const; };
  Statement(sqlite3* db, sqlite3_stmt* s) : db_(db), stmt_(s) {}
  // Remembers the first failing bind (rc != SQLITE_OK) in bind_status_.
  Statement& note_bind(int rc, int index);
  // False (and remembered) when there is no prepared statement.
  bool check_prepared();
  sqlite3* db_ = nullptr;
  std::unique_ptr<sqlite3_stmt, Finalizer> stmt_;
  Status bind_status_;
};

struct OpenOptions {
  bool read_only = false;
  bool create = true;
  // synchronous=FULL (durable at commit) when true; NORMAL otherwise.
  bool synchronous_full = true;
  int busy_timeout_ms = 5000;
  // Page cache of the connection in KiB; 0 keeps SQLite's default (2 MiB).
  int cache_kib = 0;
};

// One sqlite3 connection, closed on destruction. Not copyable or movable;
// held by unique_ptr. Used by one thread at a time.
class Database {
 public:
  // Opens (creating if allowed) and sets WAL mode, synchronous, busy timeout
  // and foreign keys, then reads the schema so a file that is not a database
  // fails here (kDataLoss) rather than at first use. A read-only connection
  // leaves the journal mode as the file has it. NotFound when the file is
  // missing and create is false (or read_only). Messages start "open <path>: ".
  static Result<std::unique_ptr<Database>> open(const std::string& path, const OpenOptions& opts = {});

  // Runs one or more statements, discarding any rows.
  Status exec(std::string_view sql);
  // Prepares exactly one statement; trailing SQL other than whitespace and
  // comments is kInvalidArgument, as is empty SQL.
  Result<Statement> prepare(std::string_view sql);

  int64_t changes() const;
  int64_t last_insert_rowid() const;
  const std::string& path() const { return path_; }
  sqlite3* raw() const { return db_.get(); }

 private:
  struct Closer { void operator()(sqlite3* db) const; };
  Database(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}
  std::string path_;
  std::unique_ptr<sqlite3, Closer> db_;
};

// Prepared statements of one Database kept by SQL text, so a hot path
// compiles each distinct statement once. Statements are reset before they are
// handed out (use them through StatementUse so they are reset afterwards
// too). SQLite recompiles a cached statement by itself after a schema change;
// clear() drops them all (e.g. before a table they name is dropped). Same
// thread rules as its Database, which must outlive it.
class StatementCache {
 public:
  explicit StatementCache(Database& db) : db_(db) {}
  // Looked up without building a string (hot paths pass string literals).
  Result<Statement*> get(std::string_view sql);
  void clear() { statements_.clear(); }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  Database& db_;
  std::unordered_map<std::string, Statement, Hash, std::equal_to<>> statements_;
};

// Resets a (cached) statement when a use begins and ends, so no SELECT keeps
// a read transaction (and the WAL) pinned between calls.
class StatementUse {
 public:
  explicit StatementUse(Statement& s) : s_(s) { s_.reset(); }
  ~StatementUse() { s_.reset(); }
  StatementUse(const StatementUse&) = delete;
  StatementUse& operator=(const StatementUse&) = delete;
  Statement* operator->() { return &s_; }
  Statement& operator*() { return s_; }

 private:
  Statement& s_;
};

// BEGIN IMMEDIATE (writer) or BEGIN (deferred, for readers that want one
// consistent view) ... COMMIT; rolls back in the destructor unless committed.
// A failed commit() leaves the transaction open for the destructor to roll
// back (or already rolled back by SQLite, which the destructor notices). Must
// not outlive its Database; nested transactions are not supported.
class Transaction {
 public:
  enum class Kind { kImmediate, kDeferred };
  // BEGIN; when the connection is already in a transaction (a held group
  // commit, hub/query_store.h), a SAVEPOINT inside it instead, which commit()
  // releases into it and the destructor rolls back to.
  static Result<Transaction> begin(Database& db, Kind kind = Kind::kImmediate);
  Transaction(Transaction&& o) noexcept : db_(o.db_), nested_(o.nested_) { o.db_ = nullptr; }
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();

  // Commits; a second call after success is kInternal.
  Status commit();

 private:
  Transaction(Database* db, bool nested) : db_(db), nested_(nested) {}
  Database* db_;
  bool nested_;
};

// Converts an sqlite3 result code (primary or extended) to a Status
// "<context>: <errmsg> (code N)". The message is sqlite3_errmsg(db) when db's
// last error is rc, else sqlite3_errstr(rc); db may be null.
Status sqlite_status(sqlite3* db, int rc, std::string_view context);

// Whether `s` (from sqlite_status, with any context added before) is SQLITE_FULL:
// the database's filesystem has no space left (or the database reached its
// page limit). kUnavailable: transient, the space may come back.
bool is_disk_full(const Status& s);
// Whether `s` (as above) is SQLITE_BUSY or SQLITE_LOCKED: another connection
// held a lock longer than the busy timeout. kUnavailable: transient.
bool is_locked(const Status& s);

// `name` quoted as an SQL identifier ("a""b" for a"b).
std::string quote_identifier(std::string_view name);
// The SQLite column type a business column is stored as.
std::string_view sql_column_type(ColumnType type);

// Runs a query expected to yield one integer in its first row and column
// ("SELECT count(*) ...", "PRAGMA user_version"). NotFound when there is no
// row or the value is NULL.
Result<int64_t> query_scalar_int64(Database& db, std::string_view sql);

}  // namespace ds
