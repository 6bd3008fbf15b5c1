#include "shared/schema.h"

#include <sodium.h>

#include <array>
#include <cmath>
#include <nlohmann/json.hpp>

#include "shared/json_text.h"

namespace ds {
namespace {

constexpr std::array<std::string_view, 6> kColumnTypeNames = {"text", "integer", "real",
                                                              "bool", "blob",    "json"};

// Appends `s` as a netstring ("<len>:<bytes>,") so no two different schemas
// serialise to the same bytes whatever their names contain.
void append_netstring(std::string& out, std::string_view s) {
  out += std::to_string(s.size());
  out += ':';
  out += s;
  out += ',';
}

Status column_error(const Column& c, std::string_view got, std::string_view why = {}) {
  std::string m = "column '" + c.name + "' expects " + std::string(column_type_name(c.type)) + ", got " +
                  std::string(got);
  if (!why.empty()) {
    m += ' ';
    m += why;
  }
  return Status::invalid_argument(std::move(m));
}

// Standard base64 with padding, the form JSON producers use for blob columns.
std::optional<std::string> base64_decode(std::string_view b64) {
  std::string bin(b64.size() / 4 * 3 + 3, '\0');
  size_t bin_len = 0;
  const char* end = nullptr;
  const int rc = sodium_base642bin(reinterpret_cast<unsigned char*>(bin.data()), bin.size(), b64.data(),
                                   b64.size(), nullptr, &bin_len, &end, sodium_base64_VARIANT_ORIGINAL);
  if (rc != 0 || end != b64.data() + b64.size()) return std::nullopt;
  bin.resize(bin_len);
  return bin;
}

// Deeper JSON than kMaxJsonDepth (shared/json_text.h) is refused: dump()
// and the msgpack encoder recurse, and a text column value of a million '['
// must not exhaust the stack.

// Compact JSON text of `text`, or the reason it is not acceptable JSON
// (worded to follow "got <kind> ").
Result<std::string> normalise_json(std::string_view text) {
  struct TooDeep {};
  try {
    nlohmann::json j = nlohmann::json::parse(text, [](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
      if ((event == nlohmann::json::parse_event_t::object_start ||
           event == nlohmann::json::parse_event_t::array_start) &&
          depth >= kMaxJsonDepth) {
        throw TooDeep{};
      }
      return true;
    });
    return j.dump();
  } catch (const TooDeep&) {
    return Status::invalid_argument("that nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  } catch (const std::exception&) {
    return Status::invalid_argument("that is not valid JSON");
  }
}

// NaN and infinity are refused in every column: JSON cannot carry them, and
// SQLite would store a NaN as NULL without a word.
Status non_finite_error(const Column& c, double d) {
  return column_error(c, std::isnan(d) ? "NaN" : (d > 0 ? "infinity" : "-infinity"),
                      "(only finite numbers are accepted)");
}

// Whether `v` is stored as it is for column `c` (false), needs a conversion
// by check_value, which may still refuse its content (true), or is of a kind
// the column never takes (the error).
Result<bool> needs_conversion(const Column& c, const Value& v) {
  switch (c.type) {
    case ColumnType::kText:
      if (std::holds_alternative<std::string>(v)) return false;
      break;
    case ColumnType::kInteger:
      if (std::holds_alternative<int64_t>(v)) return false;
      break;
    case ColumnType::kReal:
      if (const auto* d = std::get_if<double>(&v)) {
        if (!std::isfinite(*d)) return non_finite_error(c, *d);
        return false;
      }
      if (std::holds_alternative<int64_t>(v)) return true;
      break;
    case ColumnType::kBool:
      if (std::holds_alternative<bool>(v)) return false;
      break;
    case ColumnType::kBlob:
      if (std::holds_alternative<Blob>(v)) return false;
      if (std::holds_alternative<std::string>(v)) return true;
      break;
    case ColumnType::kJson:
      if (const auto* j = std::get_if<JsonText>(&v)) return !j->canonical;
      if (const auto* d = std::get_if<double>(&v); d != nullptr && !std::isfinite(*d)) {
        return non_finite_error(c, *d);
      }
      if (std::holds_alternative<std::string>(v) || std::holds_alternative<bool>(v) ||
          std::holds_alternative<int64_t>(v) || std::holds_alternative<double>(v)) {
        return true;
      }
      break;
  }
  return column_error(c, value_kind_name(v));
}

// Checks one non-null value against its column; converts it in place where
// the column type allows a conversion (see validate_fields in schema.h).
Status check_value(const Column& c, Value& v) {
  DS_ASSIGN_OR_RETURN(bool converts, needs_conversion(c, v));
  if (!converts) return Status::ok();
  const std::string_view got = value_kind_name(v);
  if (const auto* i = std::get_if<int64_t>(&v); i != nullptr && c.type == ColumnType::kReal) {
    v = static_cast<double>(*i);
    return Status::ok();
  }
  if (const auto* s = std::get_if<std::string>(&v); s != nullptr && c.type == ColumnType::kBlob) {
    auto bin = base64_decode(*s);
    if (!bin) return column_error(c, got, "that is not valid base64");
    v = Blob{std::move(*bin)};
    return Status::ok();
  }
  // A json column holds any JSON value. A plain value is that JSON value
  // itself: a string is a JSON string (never JSON text to parse), a number
  // a number, a bool a bool. Only JsonText is JSON text, made compact here;
  // a JSON null in it is the column's NULL, as a null value is.
  if (const auto* j = std::get_if<JsonText>(&v)) {
    Result<std::string> normalised = normalise_json(j->text);
    if (!normalised.is_ok()) return column_error(c, got, normalised.status().message());
    if (*normalised == "null") {
      v = Value{};
    } else {
      v = JsonText{std::move(normalised).value(), /*canonical=*/true};
    }
    return Status::ok();
  }
  std::string text;
  if (const auto* s = std::get_if<std::string>(&v)) {
    try {
      text = nlohmann::json(*s).dump();
    } catch (const nlohmann::json::exception&) {
      return column_error(c, got, "that is not valid UTF-8 (a JSON string must be)");
    }
  }
  if (const auto* b = std::get_if<bool>(&v)) text = *b ? "true" : "false";
  if (const auto* i = std::get_if<int64_t>(&v)) text = std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) text = nlohmann::json(*d).dump();
  v = JsonText{std::move(text), /*canonical=*/true};
  return Status::ok();
}

std::string describe_columns(const TypeSchema& schema) {
  std::string s = "the type has key '" + schema.key + "' and columns: ";
  for (size_t i = 0; i < schema.columns.size(); ++i) {
    if (i > 0) s += ", ";
    s += schema.columns[i].name;
  }
  if (schema.columns.empty()) s += "(none)";
  return s;
}

}  // namespace

std::string_view column_type_name(ColumnType t) { return kColumnTypeNames[static_cast<size_t>(t)]; }

Result<ColumnType> column_type_from_name(std::string_view name) {
  for (size_t i = 0; i < kColumnTypeNames.size(); ++i) {
    if (kColumnTypeNames[i] == name) return static_cast<ColumnType>(i);
  }
  return Status::invalid_argument("unknown column type '" + std::string(name) +
                                  "' (expected text, integer, real, bool, blob or json)");
}

std::string_view value_kind_name(const Value& v) {
  constexpr std::array<std::string_view, 7> kKinds = {"null", "bool", "integer", "real",
                                                      "text", "blob", "json"};
  static_assert(std::variant_size_v<Value> == kKinds.size());
  return kKinds[v.index()];
}

const Column* TypeSchema::find_column(std::string_view name) const {
  for (const Column& c : columns) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string schema_hash(const TypeSchema& schema) {
  // BLAKE2b works without sodium_init (which only selects faster code paths);
  // calling it once keeps the choice deterministic for the process.
  static const int init = sodium_init();
  (void)init;

  std::string canonical = "deltasync-schema-v1,";
  append_netstring(canonical, schema.key);
  append_netstring(canonical, schema.partition ? "1" : "0");
  append_netstring(canonical, schema.partition.value_or(""));
  for (const Column& c : schema.columns) {
    append_netstring(canonical, c.name);
    append_netstring(canonical, column_type_name(c.type));
  }

  std::array<unsigned char, 16> digest{};
  crypto_generichash(digest.data(), digest.size(), reinterpret_cast<const unsigned char*>(canonical.data()),
                     canonical.size(), nullptr, 0);
  std::array<char, digest.size() * 2 + 1> hex{};
  sodium_bin2hex(hex.data(), hex.size(), digest.data(), digest.size());
  return std::string(hex.data(), digest.size() * 2);
}

Result<bool> fields_in_stored_form(const TypeSchema& schema, const std::string& key, const Fields& fields) {
  bool as_is = true;
  for (const auto& [name, value] : fields) {
    if (name == schema.key) {
      const auto* s = std::get_if<std::string>(&value);
      if (s == nullptr || *s != key) {
        return Status::invalid_argument("column '" + name +
                                        "' is the key column and must equal the record key '" + key + "'");
      }
      as_is = false;  // validate_fields drops it
      continue;
    }
    const Column* column = schema.find_column(name);
    if (column == nullptr) {
      return Status::invalid_argument("unknown column '" + name + "' (" + describe_columns(schema) + ")");
    }
    if (std::holds_alternative<std::monostate>(value)) continue;
    DS_ASSIGN_OR_RETURN(bool converts, needs_conversion(*column, value));
    if (converts) as_is = false;
  }
  return as_is;
}

Status validate_fields(const TypeSchema& schema, const std::string& key, Fields& fields) {
  DS_ASSIGN_OR_RETURN(bool as_is, fields_in_stored_form(schema, key, fields));
  if (as_is) return Status::ok();
  // Normalise a copy so that a rejected record leaves `fields` as it was.
  Fields normalised = fields;
  for (auto it = normalised.begin(); it != normalised.end();) {
    const std::string& name = it->first;
    Value& value = it->second;
    if (name == schema.key) {
      const auto* s = std::get_if<std::string>(&value);
      if (s == nullptr || *s != key) {
        return Status::invalid_argument("column '" + name +
                                        "' is the key column and must equal the record key '" + key + "'");
      }
      it = normalised.erase(it);
      continue;
    }
    const Column* column = schema.find_column(name);
    if (column == nullptr) {
      return Status::invalid_argument("unknown column '" + name + "' (" + describe_columns(schema) + ")");
    }
    if (!std::holds_alternative<std::monostate>(value)) DS_RETURN_IF_ERROR(check_value(*column, value));
    ++it;
  }
  fields = std::move(normalised);
  return Status::ok();
}

}  // namespace ds
