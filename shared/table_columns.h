#pragma once
// Schema upgrades in place: the columns a table has, and adding the declared
// columns it lacks (ALTER TABLE ADD COLUMN). The one implementation behind the
// hub's query store (hub/record_tables.*, its change log) and the agent's
// replica (agent/replica.*): a column added to a type in the configuration
// appears in the existing table, removed columns stay there, unused.
//
// Thread-safety: as shared/sqlite.h; the calls run on the thread that owns
// the Database (the one writer of that file). They take no transaction of
// their own: run them inside the caller's, so an upgrade is all-or-nothing.

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "shared/schema.h"
#include "shared/sqlite.h"
#include "shared/status.h"

namespace ds {

// The names of `table`'s columns; empty when there is no such table.
Result<std::set<std::string>> table_columns(Database& db, std::string_view table);

// Adds to `table` each of `columns` it does not have, in order, as the
// column's SQLite type (sql_column_type) with no default, so existing rows
// read NULL there; columns the table has and `columns` does not name are left
// alone. Returns the names it added (empty: nothing was done).
//
// The table and column names must be plain identifiers, [A-Za-z_][A-Za-z0-9_]*
// of at most 128 characters (every table and column name deltasync makes from
// the configuration is, e.g. "t_" + a 64-character type name): anything
// else is InvalidArgument naming it, checked before any change. NotFound when
// the table does not exist.
Result<std::vector<std::string>> add_missing_columns(Database& db, std::string_view table,
                                                     const std::vector<Column>& columns);

}  // namespace ds
