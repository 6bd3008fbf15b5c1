#pragma once
// The data model (docs/protocol.md, "Messages" and "Semantics"): field values,
// business-type schemas, and validation of a record's fields against its type.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "shared/status.h"

namespace ds {

// Raw bytes of a `blob` column (msgpack bin; base64 in JSON).
struct Blob {
  std::string bytes;
  bool operator==(const Blob&) const = default;
};
// A `json` column's value, held as compact JSON text.
struct JsonText {
  std::string text;
  // True when `text` is known to be compact, valid JSON within the nesting
  // limit, as validation would leave it: the msgpack decoder and validation
  // itself produce such text, so a value is parsed once, not at every check.
  // Not part of equality.
  bool canonical = false;
  bool operator==(const JsonText& other) const { return text == other.text; }
};

// A field value as it travels: null, bool, integer, real, text, blob, json.
using Value = std::variant<std::monostate, bool, int64_t, double, std::string, Blob, JsonText>;
// Column name -> value. Ordered so encodings and digests are deterministic.
using Fields = std::map<std::string, Value>;

enum class ColumnType { kText, kInteger, kReal, kBool, kBlob, kJson };

std::string_view column_type_name(ColumnType t);
Result<ColumnType> column_type_from_name(std::string_view name);
// "null", "bool", "integer", "real", "text", "blob", "json": for error messages.
std::string_view value_kind_name(const Value& v);

struct Column {
  std::string name;
  ColumnType type = ColumnType::kText;
  bool operator==(const Column&) const = default;
};

// A business type's schema. The key column holds the record key (text); it is
// not listed in `columns`. The optional partition column is one of `columns`
// and routes each record to the agents of that partition.
struct TypeSchema {
  std::string key;
  std::optional<std::string> partition;
  std::vector<Column> columns;
  bool operator==(const TypeSchema&) const = default;

  const Column* find_column(std::string_view name) const;
};

// Stable hex digest of a schema (key, partition, columns in order). Agents
// report it in heartbeats; the hub holds deltas back on a mismatch.
std::string schema_hash(const TypeSchema& schema);

// Checks `fields` against `schema`: every name is a declared column (or the
// key column with a value equal to `key`), every value has the column's type
// (null is allowed for any column; an integer is accepted for a real column
// and widened; NaN and infinity are refused in real and json columns; a json
// column takes any JSON value: a plain string, number or bool is that JSON
// value, a JsonText is JSON text). Error messages name the column and the
// expected and actual types. Normalises `fields` in place (integer->real
// widening, drops a redundant key column, json values become compact
// JsonText, a JSON null becomes null). A rejected `fields` is left as it was.
Status validate_fields(const TypeSchema& schema, const std::string& key, Fields& fields);

// The checks of validate_fields that need no conversion: true when `fields`
// is already as validate_fields would leave it (nothing to widen, decode or
// drop), false when validate_fields must still run, which may then reject a
// value this does not (base64, JSON text), an error when it would reject.
// Lets a hot path use the fields where they are instead of copying them.
Result<bool> fields_in_stored_form(const TypeSchema& schema, const std::string& key, const Fields& fields);

}  // namespace ds
