#include "shared/table_columns.h"

#include "shared/names.h"

namespace ds {
namespace {

// Room for every table deltasync names: a type name (at most 64 characters,
// shared/names.h) behind the hub's "t_" prefix, and more.
constexpr size_t kMaxIdentifierChars = 128;

bool is_plain_identifier(std::string_view name) {
  if (name.empty() || name.size() > kMaxIdentifierChars) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char ch = name[i];
    const bool letter = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
    const bool digit = ch >= '0' && ch <= '9';
    if (!letter && !(digit && i > 0)) return false;
  }
  return true;
}

Status check_identifier(std::string_view what, std::string_view name) {
  if (is_plain_identifier(name)) return Status::ok();
  return Status::invalid_argument(std::string(what) + " name " + quoted_for_message(name) +
                                  " is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most " +
                                  std::to_string(kMaxIdentifierChars) + " characters)");
}

}  // namespace

Result<std::set<std::string>> table_columns(Database& db, std::string_view table) {
  DS_ASSIGN_OR_RETURN(Statement s, db.prepare("SELECT name FROM pragma_table_info(?)"));
  s.bind(1, table);
  std::set<std::string> names;
  for (;;) {
    DS_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    names.insert(s.column_text(0));
  }
  return names;
}

Result<std::vector<std::string>> add_missing_columns(Database& db, std::string_view table,
                                                     const std::vector<Column>& columns) {
  DS_RETURN_IF_ERROR(check_identifier("table", table));
  for (const Column& c : columns) {
    DS_RETURN_IF_ERROR(check_identifier("table " + quoted_for_message(table) + ": column", c.name));
  }
  DS_ASSIGN_OR_RETURN(std::set<std::string> have, table_columns(db, table));
  if (have.empty()) return Status::not_found("table " + quoted_for_message(table) + " does not exist");
  std::vector<std::string> added;
  for (const Column& c : columns) {
    if (have.count(c.name) != 0) continue;
    DS_RETURN_IF_ERROR(db.exec("ALTER TABLE " + quote_identifier(table) + " ADD COLUMN " +
                               quote_identifier(c.name) + " " + std::string(sql_column_type(c.type))));
    have.insert(c.name);
    added.push_back(c.name);
  }
  return added;
}

}  // namespace ds
