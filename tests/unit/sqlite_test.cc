#include "shared/sqlite.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace ds {
namespace {

namespace fs = std::filesystem;
using namespace std::string_literals;

// A fresh directory under the system temp dir, removed with its contents.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (fs::temp_directory_path() / "ds_sqlite_test_XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

class SqliteFixture : public ::testing::Test {
 protected:
  std::unique_ptr<Database> open_db(const std::string& name = "test.db", OpenOptions opts = {}) {
    auto db = Database::open(dir_.file(name), opts);
    EXPECT_TRUE(db.is_ok()) << db.status().to_string();
    if (!db.is_ok()) return nullptr;
    return std::move(db).value();
  }

  static std::string query_text(Database& db, const std::string& sql) {
    auto stmt = db.prepare(sql);
    EXPECT_TRUE(stmt.is_ok()) << stmt.status().to_string();
    if (!stmt.is_ok()) return {};
    auto row = stmt->step();
    EXPECT_TRUE(row.is_ok() && *row) << row.status().to_string();
    return stmt->column_text(0);
  }

  static int64_t count_rows(Database& db, const std::string& table) {
    auto n = query_scalar_int64(db, "SELECT count(*) FROM " + table);
    EXPECT_TRUE(n.is_ok()) << n.status().to_string();
    return n.is_ok() ? *n : -1;
  }

  ScratchDir dir_;
};

class SqliteDatabaseTest : public SqliteFixture {};
class SqliteStatementTest : public SqliteFixture {};
class SqliteTransactionTest : public SqliteFixture {};

// --- sqlite_status -------------------------------------------------------------

TEST(SqliteStatusTest, MapsCodesToStatusCodes) {
  const std::vector<std::pair<int, StatusCode>> cases = {
      {SQLITE_BUSY, StatusCode::kUnavailable},
      {SQLITE_LOCKED, StatusCode::kUnavailable},
      {SQLITE_BUSY_SNAPSHOT, StatusCode::kUnavailable},
      {SQLITE_CANTOPEN, StatusCode::kUnavailable},
      {SQLITE_FULL, StatusCode::kUnavailable},
      {SQLITE_IOERR_FSYNC, StatusCode::kUnavailable},
      {SQLITE_CONSTRAINT_UNIQUE, StatusCode::kAlreadyExists},
      {SQLITE_CONSTRAINT_PRIMARYKEY, StatusCode::kAlreadyExists},
      {SQLITE_CONSTRAINT_NOTNULL, StatusCode::kInvalidArgument},
      {SQLITE_CONSTRAINT_FOREIGNKEY, StatusCode::kInvalidArgument},
      {SQLITE_CONSTRAINT, StatusCode::kInvalidArgument},
      {SQLITE_RANGE, StatusCode::kInvalidArgument},
      {SQLITE_CORRUPT, StatusCode::kDataLoss},
      {SQLITE_NOTADB, StatusCode::kDataLoss},
      {SQLITE_READONLY, StatusCode::kPermissionDenied},
      {SQLITE_PERM, StatusCode::kPermissionDenied},
      {SQLITE_AUTH, StatusCode::kPermissionDenied},
      {SQLITE_ERROR, StatusCode::kInternal},
      {SQLITE_NOMEM, StatusCode::kInternal},
      {SQLITE_MISUSE, StatusCode::kInternal},
  };
  for (const auto& [rc, code] : cases) {
    EXPECT_EQ(sqlite_status(nullptr, rc, "ctx").code(), code) << "rc " << rc;
  }
  EXPECT_TRUE(sqlite_status(nullptr, SQLITE_OK, "ctx").is_ok());
}

TEST(SqliteStatusTest, MessageHasContextTextAndCode) {
  const Status s = sqlite_status(nullptr, SQLITE_BUSY, "store /x.db");
  EXPECT_EQ(s.message(), "store /x.db: database is locked (code 5)");
}

TEST(SqliteStatusTest, DiskFullIsToldApartAlsoWithContext) {
  EXPECT_TRUE(is_disk_full(sqlite_status(nullptr, SQLITE_FULL, "store /x.db")));
  EXPECT_TRUE(is_disk_full(sqlite_status(nullptr, SQLITE_FULL, "exec `COMMIT`").with_context("commit")));
  EXPECT_FALSE(is_disk_full(sqlite_status(nullptr, SQLITE_BUSY, "store /x.db")));
  EXPECT_FALSE(is_disk_full(sqlite_status(nullptr, SQLITE_IOERR, "store /x.db")));
  EXPECT_FALSE(is_disk_full(Status::unavailable("the ingest queue is full; retry later")));
  // "(code 13)" in a path is not SQLITE_FULL: the code ends the message.
  EXPECT_FALSE(is_disk_full(sqlite_status(nullptr, SQLITE_BUSY, "store /tmp/a (code 13)/x.db")));
}

TEST(SqliteStatusTest, LockedIsToldApartAlsoWithContextAndExtendedCodes) {
  EXPECT_TRUE(is_locked(sqlite_status(nullptr, SQLITE_BUSY, "store /x.db")));
  EXPECT_TRUE(is_locked(sqlite_status(nullptr, SQLITE_BUSY_SNAPSHOT, "exec `COMMIT`").with_context("commit")));
  EXPECT_TRUE(is_locked(sqlite_status(nullptr, SQLITE_LOCKED, "store /x.db")));
  EXPECT_FALSE(is_locked(sqlite_status(nullptr, SQLITE_FULL, "store /x.db")));
  EXPECT_FALSE(is_locked(sqlite_status(nullptr, SQLITE_IOERR_WRITE, "store /x.db")));
  EXPECT_FALSE(is_locked(Status::unavailable("database is locked (code 5) or so")));
  EXPECT_FALSE(is_locked(sqlite_status(nullptr, SQLITE_FULL, "store /tmp/a (code 5)/x.db")));
}

// --- Database::open ----------------------------------------------------------

TEST_F(SqliteDatabaseTest, OpenCreatesWalDatabaseWithFullSyncAndForeignKeys) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  EXPECT_TRUE(fs::exists(dir_.file("test.db")));
  EXPECT_EQ(query_text(*db, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(*query_scalar_int64(*db, "PRAGMA synchronous"), 2);  // FULL
  EXPECT_EQ(*query_scalar_int64(*db, "PRAGMA foreign_keys"), 1);
  EXPECT_EQ(db->path(), dir_.file("test.db"));
}

// A second connection of the same process must not drop the first one's
// locks: else another process's connection, closing, takes itself for the
// last one and deletes the WAL under the running process (found with
// `deltasync-hub backup` against a running hub).
TEST_F(SqliteDatabaseTest, AnotherProcessClosingLeavesTheWalOfAnOpenDatabase) {
  const std::string path = dir_.file("shared.db");
  auto first = Database::open(path);
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  ASSERT_TRUE((*first)->exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)").is_ok());
  auto second = Database::open(path);  // e.g. a reader or the agent service
  ASSERT_TRUE(second.is_ok()) << second.status().to_string();
  ASSERT_TRUE(fs::exists(path + "-wal"));

  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, "SELECT count(*) FROM t", nullptr, nullptr, nullptr);
    sqlite3_close(db);
    ::_exit(rc == SQLITE_OK ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(fs::exists(path + "-wal")) << "the other process deleted the WAL of an open database";
  // What the first connection commits now is seen by a new connection.
  ASSERT_TRUE((*first)->exec("INSERT INTO t VALUES (2)").is_ok());
  auto third = Database::open(path);
  ASSERT_TRUE(third.is_ok());
  EXPECT_EQ(*query_scalar_int64(**third, "SELECT count(*) FROM t"), 2);
}

TEST_F(SqliteDatabaseTest, SynchronousIsNormalWhenFullIsNotAsked) {
  OpenOptions opts;
  opts.synchronous_full = false;
  auto db = open_db("normal.db", opts);
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(*query_scalar_int64(*db, "PRAGMA synchronous"), 1);  // NORMAL
}

TEST_F(SqliteDatabaseTest, PageCacheIsSqlitesDefaultUnlessAsked) {
  auto plain = open_db("plain.db");
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(*query_scalar_int64(*plain, "PRAGMA cache_size"), -2000);  // SQLite's default, in KiB
  OpenOptions opts;
  opts.cache_kib = 16 * 1024;
  auto big = open_db("big.db", opts);
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(*query_scalar_int64(*big, "PRAGMA cache_size"), -16384);
}

TEST_F(SqliteDatabaseTest, MissingFileWithoutCreateIsNotFoundNamingPath) {
  const std::string path = dir_.file("absent.db");
  OpenOptions opts;
  opts.create = false;
  auto db = Database::open(path, opts);
  ASSERT_FALSE(db.is_ok());
  EXPECT_EQ(db.status().code(), StatusCode::kNotFound);
  EXPECT_NE(db.status().message().find("open " + path), std::string::npos) << db.status().message();
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(SqliteDatabaseTest, ReadOnlyOpenOfMissingFileIsNotFound) {
  OpenOptions opts;
  opts.read_only = true;
  auto db = Database::open(dir_.file("absent.db"), opts);
  ASSERT_FALSE(db.is_ok());
  EXPECT_EQ(db.status().code(), StatusCode::kNotFound);
}

TEST_F(SqliteDatabaseTest, OpenInMissingDirectoryIsUnavailableNamingPath) {
  const std::string path = dir_.file("no/such/dir/x.db");
  auto db = Database::open(path);
  ASSERT_FALSE(db.is_ok());
  EXPECT_EQ(db.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(db.status().message().rfind("open " + path + ": unable to open database file", 0), 0u)
      << db.status().message();
}

TEST_F(SqliteDatabaseTest, FileThatIsNotADatabaseIsDataLoss) {
  const std::string path = dir_.file("garbage.db");
  {
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < 4096; ++i) out.put(static_cast<char>((i * 37 + 11) & 0xff));
  }
  auto rw = Database::open(path);
  ASSERT_FALSE(rw.is_ok());
  EXPECT_EQ(rw.status().code(), StatusCode::kDataLoss) << rw.status().to_string();
  EXPECT_NE(rw.status().message().find("file is not a database"), std::string::npos) << rw.status().message();

  OpenOptions ro;
  ro.read_only = true;
  auto reader = Database::open(path, ro);
  ASSERT_FALSE(reader.is_ok());
  EXPECT_EQ(reader.status().code(), StatusCode::kDataLoss) << reader.status().to_string();
}

TEST_F(SqliteDatabaseTest, ExecRunsSeveralStatements) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->exec("CREATE TABLE t(a INTEGER); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);").is_ok());
  EXPECT_EQ(count_rows(*db, "t"), 2);
  EXPECT_EQ(db->changes(), 1);
  EXPECT_EQ(db->last_insert_rowid(), 2);
}

TEST_F(SqliteDatabaseTest, ExecReportsTheFailingSql) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  const Status s = db->exec("CREATE TABLE t(a); INSERT INTO nowhere VALUES (1)");
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("no such table: nowhere"), std::string::npos) << s.message();
}

TEST_F(SqliteDatabaseTest, WriteThroughReadOnlyDatabaseIsPermissionDenied) {
  auto writer = open_db();
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->exec("CREATE TABLE t(a INTEGER)").is_ok());
  OpenOptions ro;
  ro.read_only = true;
  auto reader = open_db("test.db", ro);
  ASSERT_NE(reader, nullptr);
  const Status s = reader->exec("INSERT INTO t VALUES (1)");
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.to_string();
}

TEST_F(SqliteDatabaseTest, PrepareOfBadSqlIsInvalidArgumentWithSqliteText) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  auto stmt = db->prepare("SELEC 1");
  ASSERT_FALSE(stmt.is_ok());
  EXPECT_EQ(stmt.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(stmt.status().message().find("near \"SELEC\": syntax error"), std::string::npos)
      << stmt.status().message();
  EXPECT_NE(stmt.status().message().find("`SELEC 1`"), std::string::npos) << stmt.status().message();
}

TEST_F(SqliteDatabaseTest, PrepareOfUnknownTableIsInvalidArgument) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  auto stmt = db->prepare("SELECT * FROM nowhere");
  ASSERT_FALSE(stmt.is_ok());
  EXPECT_EQ(stmt.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(stmt.status().message().find("no such table: nowhere"), std::string::npos);
}

TEST_F(SqliteDatabaseTest, PrepareRejectsASecondStatementButNotATrailingComment) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  auto two = db->prepare("SELECT 1; SELECT 2");
  ASSERT_FALSE(two.is_ok());
  EXPECT_EQ(two.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(two.status().message().find("more than one statement"), std::string::npos);

  EXPECT_TRUE(db->prepare("SELECT 1;  -- why\n ; ").is_ok());
}

TEST_F(SqliteDatabaseTest, PrepareOfEmptySqlIsInvalidArgument) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(db->prepare("  ").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(db->prepare("-- nothing").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(SqliteDatabaseTest, QueryScalarIsNotFoundWithoutARowOrForNull) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->exec("CREATE TABLE t(a INTEGER)").is_ok());
  EXPECT_EQ(query_scalar_int64(*db, "SELECT a FROM t").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(query_scalar_int64(*db, "SELECT max(a) FROM t").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(*query_scalar_int64(*db, "SELECT 42"), 42);
}

// --- Statement -----------------------------------------------------------------

struct RoundTripCase {
  Value value;
  ColumnType type;
};

TEST_F(SqliteStatementTest, EveryValueAlternativeRoundTripsThroughColumnValue) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->exec("CREATE TABLE t(v)").is_ok());
  const std::vector<RoundTripCase> cases = {
      {std::monostate{}, ColumnType::kText},
      {std::monostate{}, ColumnType::kInteger},
      {std::monostate{}, ColumnType::kBlob},
      {true, ColumnType::kBool},
      {false, ColumnType::kBool},
      {int64_t{0}, ColumnType::kInteger},
      {std::numeric_limits<int64_t>::max(), ColumnType::kInteger},
      {std::numeric_limits<int64_t>::min(), ColumnType::kInteger},
      {3.25, ColumnType::kReal},
      {-1e300, ColumnType::kReal},
      {"plain"s, ColumnType::kText},
      {""s, ColumnType::kText},
      {"caf\xc3\xa9 \xe2\x82\xac"s, ColumnType::kText},
      {"nul\0inside"s, ColumnType::kText},
      {Blob{"\x00\x01\xff\x00"s}, ColumnType::kBlob},
      {JsonText{R"({"a":[1,2,{"b":null}]})"}, ColumnType::kJson},
  };
  auto insert = db->prepare("INSERT INTO t(rowid, v) VALUES (?1, ?2)");
  ASSERT_TRUE(insert.is_ok());
  for (size_t i = 0; i < cases.size(); ++i) {
    insert->reset();
    insert->bind(1, static_cast<int64_t>(i)).bind(2, cases[i].value);
    ASSERT_TRUE(insert->run().is_ok()) << "case " << i;
  }
  auto select = db->prepare("SELECT v FROM t WHERE rowid = ?");
  ASSERT_TRUE(select.is_ok());
  for (size_t i = 0; i < cases.size(); ++i) {
    select->reset();
    select->bind(1, static_cast<int64_t>(i));
    auto row = select->step();
    ASSERT_TRUE(row.is_ok() && *row) << "case " << i;
    EXPECT_EQ(select->column_value(0, cases[i].type), cases[i].value) << "case " << i;
  }
}

TEST_F(SqliteStatementTest, EmptyBlobAndEmptyTextAreNotNull) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->exec("CREATE TABLE t(b, b2, s)").is_ok());
  auto insert = db->prepare("INSERT INTO t VALUES (?, ?, ?)");
  ASSERT_TRUE(insert.is_ok());
  // A default string_view has a null data pointer, which sqlite3 alone would
  // turn into NULL.
  ASSERT_TRUE(
      insert->bind(1, Value{Blob{}}).bind_blob(2, std::string_view()).bind(3, std::string_view()).run().is_ok());

  EXPECT_EQ(query_text(*db, "SELECT typeof(b) || ',' || typeof(b2) || ',' || typeof(s) FROM t"), "blob,blob,text");
  auto select = db->prepare("SELECT b, b2, s FROM t");
  ASSERT_TRUE(select.is_ok());
  ASSERT_TRUE(*select->step());
  EXPECT_EQ(select->column_value(0, ColumnType::kBlob), Value{Blob{}});
  EXPECT_EQ(select->column_value(1, ColumnType::kBlob), Value{Blob{}});
  EXPECT_EQ(select->column_value(2, ColumnType::kText), Value{""s});
}

TEST_F(SqliteStatementTest, IntegerStoredValueReadAsRealIsConverted) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->exec("CREATE TABLE t(v); INSERT INTO t VALUES (7)").is_ok());
  auto select = db->prepare("SELECT v FROM t");
  ASSERT_TRUE(select.is_ok());
  ASSERT_TRUE(*select->step());
  EXPECT_EQ(select->column_value(0, ColumnType::kReal), Value{7.0});
}

TEST_F(SqliteStatementTest, ConvenienceBindOverloadsPickTheNaturalType) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  auto stmt = db->prepare("SELECT typeof(?1), typeof(?2), typeof(?3), typeof(?4), ?3 || ?4");
  ASSERT_TRUE(stmt.is_ok());
  const std::string owned = "str";
  stmt->bind(1, 5).bind(2, 2.5).bind(3, "lit").bind(4, owned);
  ASSERT_TRUE(*stmt->step());
  EXPECT_EQ(stmt->column_text(0), "integer");
  EXPECT_EQ(stmt->column_text(1), "real");
  EXPECT_EQ(stmt->column_text(2), "text");
  EXPECT_EQ(stmt->column_text(3), "text");
  EXPECT_EQ(stmt->column_text(4), "litstr");
}

TEST_F(SqliteStatementTest, BindOutOfRangeSurfacesAtStepUntilReset) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  auto stmt = db->prepare("SELECT ?1");
  ASSERT_TRUE(stmt.is_ok());
  stmt->bind(9, int64_t{1}).bind(1, int64_t{2});
  auto row = stmt->step();
  ASSERT_FALSE(row.is_ok());
  EXPECT_EQ(row.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(row.status().message().find("bind parameter 9"), std::string::npos) << row.status().message();
  EXPECT_NE(row.status().message().find("out of range"), std::string::npos) << row.status().message();

  stmt->reset();
  auto again = stmt->step();
  ASSERT_TRUE(again.is_ok() && *again) << again.status().to_string();
  EXPECT_EQ(stmt->column_int64(0), 2);
}

TEST_F(SqliteStatementTest, NamedParametersBindAndUnknownNamesFailAtStep) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  auto stmt = db->prepare("SELECT :key");
  ASSERT_TRUE(stmt.is_ok());
  ASSERT_EQ(stmt->parameter_index(":key"), 1);
  stmt->bind(stmt->parameter_index(":key"), "k1");
  ASSERT_TRUE(*stmt->step());
  EXPECT_EQ(stmt->column_text(0), "k1");

  stmt->reset();
  stmt->bind(stmt->parameter_index(":nope"), "x");
  EXPECT_EQ(stmt->step().status().code(), StatusCode::kInvalidArgument);
}

TEST_F(SqliteStatementTest, ResetKeepsBindings) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  auto stmt = db->prepare("SELECT ?");
  ASSERT_TRUE(stmt.is_ok());
  stmt->bind(1, int64_t{11});
  ASSERT_TRUE(*stmt->step());
  stmt->reset();
  ASSERT_TRUE(*stmt->step());
  EXPECT_EQ(stmt->column_int64(0), 11);
}

TEST_F(SqliteStatementTest, MovedFromAndDefaultStatementsFailToStep) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  auto prepared = db->prepare("SELECT 1");
  ASSERT_TRUE(prepared.is_ok());
  Statement moved = std::move(*prepared);
  EXPECT_TRUE(*moved.step());
  EXPECT_EQ(prepared->step().status().code(), StatusCode::kInternal);  // NOLINT(bugprone-use-after-move)
  Statement empty;
  empty.bind(1, int64_t{1});
  EXPECT_EQ(empty.step().status().code(), StatusCode::kInternal);
}

TEST_F(SqliteStatementTest, StatementMayOutliveItsDatabase) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  auto stmt = db->prepare("SELECT 5");
  ASSERT_TRUE(stmt.is_ok());
  db.reset();
  auto row = stmt->step();
  ASSERT_TRUE(row.is_ok() && *row);
  EXPECT_EQ(stmt->column_int64(0), 5);
}

TEST_F(SqliteStatementTest, UniqueViolationIsAlreadyExists) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->exec("CREATE TABLE t(k TEXT PRIMARY KEY, u TEXT UNIQUE)").is_ok());
  ASSERT_TRUE(db->exec("INSERT INTO t VALUES ('a', 'x')").is_ok());

  const Status dup_unique = db->exec("INSERT INTO t VALUES ('b', 'x')");
  EXPECT_EQ(dup_unique.code(), StatusCode::kAlreadyExists) << dup_unique.to_string();
  EXPECT_NE(dup_unique.message().find("UNIQUE constraint failed: t.u"), std::string::npos);

  auto insert = db->prepare("INSERT INTO t VALUES (?, ?)");
  ASSERT_TRUE(insert.is_ok());
  insert->bind(1, "a").bind(2, "y");
  EXPECT_EQ(insert->run().code(), StatusCode::kAlreadyExists);
}

TEST_F(SqliteStatementTest, OtherConstraintViolationsAreInvalidArgument) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->exec("CREATE TABLE parent(id INTEGER PRIMARY KEY);"
                       "CREATE TABLE child(id INTEGER PRIMARY KEY, p INTEGER NOT NULL REFERENCES parent(id),"
                       " n INTEGER CHECK (n >= 0))")
                  .is_ok());
  EXPECT_EQ(db->exec("INSERT INTO child VALUES (1, NULL, 0)").code(), StatusCode::kInvalidArgument);
  // Fails only because open() turned foreign keys on.
  EXPECT_EQ(db->exec("INSERT INTO child VALUES (1, 99, 0)").code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(db->exec("INSERT INTO parent VALUES (99)").is_ok());
  EXPECT_EQ(db->exec("INSERT INTO child VALUES (1, 99, -1)").code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(db->exec("INSERT INTO child VALUES (1, 99, 0)").is_ok());
}

// --- Transaction ---------------------------------------------------------------

TEST_F(SqliteTransactionTest, UncommittedTransactionIsRolledBack) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->exec("CREATE TABLE t(a INTEGER)").is_ok());
  {
    auto tx = Transaction::begin(*db);
    ASSERT_TRUE(tx.is_ok()) << tx.status().to_string();
    ASSERT_TRUE(db->exec("INSERT INTO t VALUES (1)").is_ok());
    EXPECT_EQ(count_rows(*db, "t"), 1);
  }
  EXPECT_EQ(count_rows(*db, "t"), 0);
  EXPECT_NE(sqlite3_get_autocommit(db->raw()), 0);
}

TEST_F(SqliteTransactionTest, CommittedTransactionPersistsAcrossReopen) {
  {
    auto db = open_db();
    ASSERT_NE(db, nullptr);
    ASSERT_TRUE(db->exec("CREATE TABLE t(a INTEGER)").is_ok());
    auto tx = Transaction::begin(*db);
    ASSERT_TRUE(tx.is_ok());
    ASSERT_TRUE(db->exec("INSERT INTO t VALUES (1)").is_ok());
    ASSERT_TRUE(tx->commit().is_ok());
    EXPECT_EQ(tx->commit().code(), StatusCode::kInternal);
  }
  auto reopened = open_db();
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(count_rows(*reopened, "t"), 1);
}

TEST_F(SqliteTransactionTest, FailedCommitIsRolledBackByTheDestructor) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->exec("CREATE TABLE parent(id INTEGER PRIMARY KEY);"
                       "CREATE TABLE child(p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
                  .is_ok());
  {
    auto tx = Transaction::begin(*db);
    ASSERT_TRUE(tx.is_ok());
    ASSERT_TRUE(db->exec("INSERT INTO child VALUES (7)").is_ok());  // checked only at COMMIT
    const Status s = tx->commit();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
    EXPECT_EQ(sqlite3_get_autocommit(db->raw()), 0);  // still open after the failed COMMIT
  }
  EXPECT_NE(sqlite3_get_autocommit(db->raw()), 0);
  EXPECT_EQ(count_rows(*db, "child"), 0);
}

TEST_F(SqliteTransactionTest, MovedTransactionRollsBackOnce) {
  auto db = open_db();
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->exec("CREATE TABLE t(a INTEGER)").is_ok());
  {
    auto tx = Transaction::begin(*db);
    ASSERT_TRUE(tx.is_ok());
    Transaction owner = std::move(*tx);
    ASSERT_TRUE(db->exec("INSERT INTO t VALUES (1)").is_ok());
    ASSERT_TRUE(owner.commit().is_ok());
  }  // the moved-from transaction must not roll back anything
  EXPECT_EQ(count_rows(*db, "t"), 1);
}

TEST_F(SqliteTransactionTest, ReaderSeesLastCommittedStateWhileWriterHoldsTransaction) {
  auto writer = open_db();
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->exec("CREATE TABLE t(a INTEGER); INSERT INTO t VALUES (1)").is_ok());

  auto tx = Transaction::begin(*writer);
  ASSERT_TRUE(tx.is_ok());
  ASSERT_TRUE(writer->exec("INSERT INTO t VALUES (2); INSERT INTO t VALUES (3)").is_ok());

  OpenOptions ro;
  ro.read_only = true;
  ro.busy_timeout_ms = 0;  // a WAL reader must not need to wait at all
  auto reader = open_db("test.db", ro);
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(query_text(*reader, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(count_rows(*reader, "t"), 1);

  ASSERT_TRUE(tx->commit().is_ok());
  EXPECT_EQ(count_rows(*reader, "t"), 3);
}

TEST_F(SqliteTransactionTest, DeferredReadTransactionKeepsOneView) {
  auto writer = open_db();
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->exec("CREATE TABLE t(a INTEGER); INSERT INTO t VALUES (1)").is_ok());
  OpenOptions ro;
  ro.read_only = true;
  auto reader = open_db("test.db", ro);
  ASSERT_NE(reader, nullptr);

  auto view = Transaction::begin(*reader, Transaction::Kind::kDeferred);
  ASSERT_TRUE(view.is_ok()) << view.status().to_string();
  EXPECT_EQ(count_rows(*reader, "t"), 1);  // the snapshot starts at the first read
  ASSERT_TRUE(writer->exec("INSERT INTO t VALUES (2)").is_ok());
  EXPECT_EQ(count_rows(*reader, "t"), 1);
  ASSERT_TRUE(view->commit().is_ok());
  EXPECT_EQ(count_rows(*reader, "t"), 2);
}

TEST_F(SqliteTransactionTest, SecondWriterIsUnavailableWhileFirstHoldsTheLock) {
  OpenOptions quick;
  quick.busy_timeout_ms = 20;
  auto first = open_db("test.db", quick);
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(first->exec("CREATE TABLE t(a INTEGER)").is_ok());

  auto held = Transaction::begin(*first);
  ASSERT_TRUE(held.is_ok());
  // Opening a second writer does not need the write lock.
  auto second = open_db("test.db", quick);
  ASSERT_NE(second, nullptr);

  auto blocked = Transaction::begin(*second);
  ASSERT_FALSE(blocked.is_ok());
  EXPECT_EQ(blocked.status().code(), StatusCode::kUnavailable) << blocked.status().to_string();
  EXPECT_NE(blocked.status().message().find("database is locked"), std::string::npos);

  ASSERT_TRUE(held->commit().is_ok());
  auto now_free = Transaction::begin(*second);
  EXPECT_TRUE(now_free.is_ok()) << now_free.status().to_string();
}

}  // namespace
}  // namespace ds
