#pragma once
// RAII around sqlite3: a Database (WAL mode), prepared Statements, and a
// Transaction that rolls back unless committed. sqlite3 codes are converted to
// Status here, with sqlite3_errmsg in the message.
//
// Thread-safety: a Database and its Statements belong to one thread at a time
// (one writer per database file; readers open their own Database).

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "shared/schema.h"
#include "shared/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace ds {

class Statement {
 public:
  Statement() = default;
  Statement(Statement&&) noexcept = default;
  Statement& operator=(Statement&&) noexcept = default;

  // Binds are 1-based like sqlite3. A failing bind is remembered and returned
  // by the next step(), so call sites read as a straight line.
  Statement& bind(int index, int64_t v);
  Statement& bind(int index, double v);
  Statement& bind(int index, std::string_view text);
  Statement& bind_blob(int index, std::string_view bytes);
  Statement& bind_null(int index);
  Statement& bind(int index, const Value& v);  // Blob as blob, JsonText as text
  // Named parameter (":name"); InvalidArgument at step() when unknown.
  int parameter_index(const char* name) const;

  // Advances: true = a row is available, false = done.
  Result<bool> step();
  // Runs to completion, ignoring rows.
  Status run();
  // Resets so the statement can be bound and stepped again; keeps bindings
  // until rebound.
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
};

class Database {
 public:
  // Opens (creating if allowed) and sets WAL mode, synchronous, busy timeout
  // and foreign keys. NotFound when the file is missing and create is false.
  static Result<std::unique_ptr<Database>> open(const std::string& path, const OpenOptions& opts = {});

  // Runs one or more statements without results.
  Status exec(std::string_view sql);
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

// BEGIN IMMEDIATE (writer) or BEGIN (deferred, for readers that want one
// consistent view) ... COMMIT; rolls back in the destructor unless committed.
class Transaction {
 public:
  enum class Kind { kImmediate, kDeferred };
  static Result<Transaction> begin(Database& db, Kind kind = Kind::kImmediate);
  Transaction(Transaction&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();

  Status commit();

 private:
  explicit Transaction(Database* db) : db_(db) {}
  Database* db_;
};

// Converts an sqlite3 result code to a Status ("<context>: <errmsg>").
Status sqlite_status(sqlite3* db, int rc, std::string_view context);

}  // namespace ds
