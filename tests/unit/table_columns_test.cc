// add_missing_columns (shared/table_columns.h), the in-place schema upgrade
// of the hub's record tables and the agent's replica tables.
#include "shared/table_columns.h"

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "shared/sqlite.h"
#include "testing/temp_dir.h"

namespace ds {
namespace {

class TableColumnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = Database::open(dir_.file("t.db"));
    ASSERT_TRUE(db.is_ok()) << db.status().to_string();
    db_ = std::move(db).value();
    ASSERT_TRUE(db_->exec("CREATE TABLE item(id TEXT PRIMARY KEY, n INTEGER)").is_ok());
    ASSERT_TRUE(db_->exec("INSERT INTO item(id, n) VALUES('a', 1)").is_ok());
  }

  std::set<std::string> columns(const std::string& table) {
    auto have = table_columns(*db_, table);
    EXPECT_TRUE(have.is_ok()) << have.status().to_string();
    return have.is_ok() ? *have : std::set<std::string>{};
  }

  TempDir dir_{"table-columns-test"};
  std::unique_ptr<Database> db_;
};

TEST_F(TableColumnsTest, MissingColumnIsAddedWithItsTypeAndExistingRowsReadNull) {
  auto added = add_missing_columns(*db_, "item", {{"n", ColumnType::kInteger}, {"price", ColumnType::kReal}});
  ASSERT_TRUE(added.is_ok()) << added.status().to_string();
  EXPECT_EQ(*added, std::vector<std::string>{"price"});
  EXPECT_EQ(columns("item"), (std::set<std::string>{"id", "n", "price"}));
  auto type = db_->prepare("SELECT type FROM pragma_table_info('item') WHERE name = 'price'");
  ASSERT_TRUE(type.is_ok());
  ASSERT_TRUE(*type->step());
  EXPECT_EQ(type->column_text(0), "REAL");
  auto nulls = query_scalar_int64(*db_, "SELECT count(*) FROM item WHERE price IS NULL");
  ASSERT_TRUE(nulls.is_ok());
  EXPECT_EQ(*nulls, 1);
}

TEST_F(TableColumnsTest, NothingIsDoneWhenEveryColumnIsPresent) {
  auto added = add_missing_columns(*db_, "item", {{"n", ColumnType::kInteger}});
  ASSERT_TRUE(added.is_ok()) << added.status().to_string();
  EXPECT_TRUE(added->empty());
  // A column the table has beyond the declared ones stays.
  added = add_missing_columns(*db_, "item", {});
  ASSERT_TRUE(added.is_ok());
  EXPECT_TRUE(added->empty());
  EXPECT_EQ(columns("item"), (std::set<std::string>{"id", "n"}));
}

TEST_F(TableColumnsTest, BadColumnNameIsRefusedBeforeAnyChange) {
  // The good column before the bad one is not added either.
  auto added = add_missing_columns(*db_, "item", {{"price", ColumnType::kReal}, {"x\" INTEGER, y", ColumnType::kText}});
  ASSERT_FALSE(added.is_ok());
  EXPECT_EQ(added.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(added.status().message().find("not a plain identifier"), std::string::npos) << added.status().to_string();
  EXPECT_EQ(columns("item"), (std::set<std::string>{"id", "n"}));
  for (const char* bad : {"", "1st", "a-b", "a b"}) {
    auto r = add_missing_columns(*db_, "item", {{bad, ColumnType::kText}});
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << "'" << bad << "'";
  }
  EXPECT_EQ(columns("item"), (std::set<std::string>{"id", "n"}));
}

TEST_F(TableColumnsTest, BadOrMissingTableIsRefused) {
  auto bad = add_missing_columns(*db_, "item; DROP TABLE item", {{"price", ColumnType::kReal}});
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  auto missing = add_missing_columns(*db_, "nothing", {{"price", ColumnType::kReal}});
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("'nothing'"), std::string::npos) << missing.status().to_string();
  EXPECT_TRUE(columns("nothing").empty());
  EXPECT_EQ(columns("item"), (std::set<std::string>{"id", "n"}));
}

}  // namespace
}  // namespace ds
