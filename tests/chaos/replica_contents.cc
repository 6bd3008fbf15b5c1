#include "tests/chaos/replica_contents.h"

#include "agent/replica.h"
#include "shared/codec.h"
#include "shared/sqlite.h"

namespace ds::testing {

Result<std::map<std::string, nlohmann::json>> replica_contents(const std::string& replica_path,
                                                               const std::string& type) {
  DS_ASSIGN_OR_RETURN(auto replica, Replica::open(replica_path, /*read_only=*/true));
  const TypeSchema* schema = replica->schema(type);
  if (schema == nullptr) return Status::not_found(replica_path + " has no table for " + type);
  std::string sql = "SELECT " + quote_identifier(schema->key);
  for (const Column& c : schema->columns) sql += ", " + quote_identifier(c.name);
  sql += " FROM " + quote_identifier(type);

  OpenOptions opts;
  opts.read_only = true;
  opts.create = false;
  DS_ASSIGN_OR_RETURN(auto db, Database::open(replica_path, opts));
  DS_ASSIGN_OR_RETURN(Statement rows, db->prepare(sql));
  std::map<std::string, nlohmann::json> out;
  for (;;) {
    DS_ASSIGN_OR_RETURN(bool row, rows.step());
    if (!row) break;
    nlohmann::json fields = nlohmann::json::object();
    for (size_t i = 0; i < schema->columns.size(); ++i) {
      const int col = static_cast<int>(i) + 1;
      if (rows.column_is_null(col)) continue;
      const Value v = rows.column_value(col, schema->columns[i].type);
      auto parsed = nlohmann::json::parse(value_to_json(v), nullptr, /*allow_exceptions=*/false);
      if (parsed.is_discarded()) {
        return Status::data_loss(type + " '" + rows.column_text(0) + "' column " + schema->columns[i].name +
                                 ": not JSON: " + value_to_json(v));
      }
      fields[schema->columns[i].name] = std::move(parsed);
    }
    out[rows.column_text(0)] = std::move(fields);
  }
  return out;
}

}  // namespace ds::testing
