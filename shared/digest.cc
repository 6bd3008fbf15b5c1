#include "shared/digest.h"

#include <sodium.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>

namespace ds {
namespace {

void append_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void append_bytes(std::string& out, std::string_view bytes) {
  append_le(out, static_cast<uint64_t>(bytes.size()), 4);
  out.append(bytes);
}

uint64_t canonical_real_bits(double d) {
  if (std::isnan(d)) return 0x7ff8000000000000ULL;
  if (d == 0.0) d = 0.0;  // -0.0 compares equal to 0.0: both become +0.0
  uint64_t bits = 0;
  std::memcpy(&bits, &d, sizeof bits);
  return bits;
}

// The payload of a value by its storage class alone.
void append_payload(std::string& out, const StoredCell& cell) {
  switch (cell.kind) {
    case StoredCell::Kind::kInteger: append_le(out, static_cast<uint64_t>(cell.integer), 8); break;
    case StoredCell::Kind::kReal: append_le(out, canonical_real_bits(cell.real), 8); break;
    case StoredCell::Kind::kText:
    case StoredCell::Kind::kBlob: append_bytes(out, cell.bytes); break;
    case StoredCell::Kind::kNull: break;
  }
}

// The storage class a declared column type is stored with.
StoredCell::Kind stored_kind(ColumnType type) {
  switch (type) {
    case ColumnType::kText:
    case ColumnType::kJson: return StoredCell::Kind::kText;
    case ColumnType::kInteger:
    case ColumnType::kBool: return StoredCell::Kind::kInteger;
    case ColumnType::kReal: return StoredCell::Kind::kReal;
    case ColumnType::kBlob: return StoredCell::Kind::kBlob;
  }
  return StoredCell::Kind::kText;
}

char type_tag(ColumnType type) {
  switch (type) {
    case ColumnType::kText: return 'T';
    case ColumnType::kInteger: return 'I';
    case ColumnType::kReal: return 'R';
    case ColumnType::kBool: return 'B';
    case ColumnType::kBlob: return 'X';
    case ColumnType::kJson: return 'J';
  }
  return '?';
}

// A Value as SQLite gives it back after Statement::bind(Value).
StoredCell cell_of(const Value& v) {
  StoredCell c;
  std::visit(
      [&c](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) {
          c.kind = StoredCell::Kind::kNull;
        } else if constexpr (std::is_same_v<T, bool>) {
          c.kind = StoredCell::Kind::kInteger;
          c.integer = x ? 1 : 0;
        } else if constexpr (std::is_same_v<T, int64_t>) {
          c.kind = StoredCell::Kind::kInteger;
          c.integer = x;
        } else if constexpr (std::is_same_v<T, double>) {
          c.kind = std::isnan(x) ? StoredCell::Kind::kNull : StoredCell::Kind::kReal;
          c.real = x;
        } else if constexpr (std::is_same_v<T, std::string>) {
          c.kind = StoredCell::Kind::kText;
          c.bytes = x;
        } else if constexpr (std::is_same_v<T, Blob>) {
          c.kind = StoredCell::Kind::kBlob;
          c.bytes = x.bytes;
        } else {
          static_assert(std::is_same_v<T, JsonText>);
          c.kind = StoredCell::Kind::kText;
          c.bytes = x.text;
        }
      },
      v);
  return c;
}

std::vector<Column> sorted_columns(std::vector<Column> columns) {
  std::sort(columns.begin(), columns.end(), [](const Column& a, const Column& b) { return a.name < b.name; });
  return columns;
}

}  // namespace

uint64_t zero_key_siphash(std::string_view bytes) {
  static const std::array<unsigned char, crypto_shorthash_KEYBYTES> kZeroKey{};
  std::array<unsigned char, crypto_shorthash_BYTES> out{};
  crypto_shorthash(out.data(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), kZeroKey.data());
  uint64_t h = 0;
  for (size_t i = 0; i < out.size(); ++i) h |= static_cast<uint64_t>(out[i]) << (8 * i);
  return h;
}

uint64_t row_hash(std::string_view key, uint64_t version) {
  std::string input;
  input.reserve(4 + key.size() + 8);
  append_bytes(input, key);
  append_le(input, version, 8);
  return zero_key_siphash(input);
}

uint32_t key_bucket(std::string_view key, uint32_t buckets) {
  if (buckets <= 1) return 0;
  return static_cast<uint32_t>(zero_key_siphash(key) % buckets);
}

std::string Digest::hex() const {
  std::array<char, 17> buf{};
  std::snprintf(buf.data(), buf.size(), "%016llx", static_cast<unsigned long long>(sum));
  return std::to_string(count) + ":" + buf.data();
}

void CanonicalRow::begin(std::string_view key, uint64_t version) {
  bytes_.clear();
  append_bytes(bytes_, key);
  append_le(bytes_, version, 8);
}

void CanonicalRow::add(std::string_view column, ColumnType type, const StoredCell& cell) {
  if (cell.kind == StoredCell::Kind::kNull) return;
  append_bytes(bytes_, column);
  const bool well_typed = cell.kind == stored_kind(type) &&
                          (type != ColumnType::kBool || cell.integer == 0 || cell.integer == 1);
  if (!well_typed) {
    bytes_.push_back('?');
    bytes_.push_back(static_cast<char>(cell.kind));
    append_payload(bytes_, cell);
    return;
  }
  bytes_.push_back(type_tag(type));
  if (type == ColumnType::kBool) {
    bytes_.push_back(static_cast<char>(cell.integer));
  } else {
    append_payload(bytes_, cell);
  }
}

uint64_t content_hash(std::string_view key, uint64_t version, const TypeSchema& schema, const Fields& fields) {
  CanonicalRow row;
  row.begin(key, version);
  for (const Column& c : sorted_columns(schema.columns)) {
    auto it = fields.find(c.name);
    if (it == fields.end()) continue;
    StoredCell cell = cell_of(it->second);
    // What a REAL column gives back for an integer it was handed.
    if (c.type == ColumnType::kReal && cell.kind == StoredCell::Kind::kInteger) {
      cell.kind = StoredCell::Kind::kReal;
      cell.real = static_cast<double>(cell.integer);
    }
    row.add(c.name, c.type, cell);
  }
  return row.hash();
}

Result<TableDigest> digest_table(Database& db, const DigestTableSpec& spec, const DigestOptions& options) {
  if (options.buckets > kMaxDigestBuckets) {
    return Status::invalid_argument("digest: at most " + std::to_string(kMaxDigestBuckets) + " buckets, asked for " +
                                    std::to_string(options.buckets));
  }
  std::set<uint32_t> listed_buckets;
  for (uint32_t b : options.list) {
    if (b >= options.buckets) {
      return Status::invalid_argument("digest: bucket " + std::to_string(b) + " listed, but there are " +
                                      std::to_string(options.buckets) + " buckets");
    }
    listed_buckets.insert(b);
  }
  const std::vector<Column> columns = sorted_columns(spec.columns);
  std::string sql = "SELECT " + spec.key_column + ", " + spec.version_column;
  for (const Column& c : columns) sql += ", " + quote_identifier(c.name);
  sql += " FROM " + spec.table;
  if (!spec.where.empty()) sql += " WHERE " + spec.where;
  DS_ASSIGN_OR_RETURN(Statement st, db.prepare(sql));
  for (size_t i = 0; i < spec.where_params.size(); ++i) st.bind(static_cast<int>(i + 1), spec.where_params[i]);

  TableDigest out;
  out.buckets.resize(options.buckets);
  CanonicalRow row;
  sqlite3_stmt* raw = st.raw();
  auto text_at = [raw](int col) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(raw, col));
    return std::string_view(p == nullptr ? "" : p, static_cast<size_t>(sqlite3_column_bytes(raw, col)));
  };
  for (;;) {
    DS_ASSIGN_OR_RETURN(bool has_row, st.step());
    if (!has_row) break;
    const std::string_view key = text_at(0);
    const auto version = static_cast<uint64_t>(sqlite3_column_int64(raw, 1));
    out.keys.add(key, version);
    row.begin(key, version);
    for (size_t i = 0; i < columns.size(); ++i) {
      const int col = static_cast<int>(i + 2);
      StoredCell cell;
      cell.kind = static_cast<StoredCell::Kind>(sqlite3_column_type(raw, col));
      switch (cell.kind) {
        case StoredCell::Kind::kInteger: cell.integer = sqlite3_column_int64(raw, col); break;
        case StoredCell::Kind::kReal: cell.real = sqlite3_column_double(raw, col); break;
        case StoredCell::Kind::kText: cell.bytes = text_at(col); break;
        case StoredCell::Kind::kBlob: {
          const auto* p = static_cast<const char*>(sqlite3_column_blob(raw, col));
          cell.bytes = std::string_view(p == nullptr ? "" : p, static_cast<size_t>(sqlite3_column_bytes(raw, col)));
          break;
        }
        case StoredCell::Kind::kNull: break;
      }
      row.add(columns[i].name, columns[i].type, cell);
    }
    const uint64_t h = row.hash();
    out.content.add_hash(h);
    if (options.buckets > 0) {
      const uint32_t b = key_bucket(key, options.buckets);
      out.buckets[b].add_hash(h);
      if (listed_buckets.count(b) != 0) out.listed.push_back(RowHash{std::string(key), h});
    }
  }
  std::sort(out.listed.begin(), out.listed.end(), [](const RowHash& a, const RowHash& b) { return a.key < b.key; });
  size_t bytes = 0;
  for (size_t i = 0; i < out.listed.size(); ++i) {
    bytes += out.listed[i].key.size() + 8;
    if (bytes > options.list_max_bytes) {
      out.listed.resize(i);
      out.listed_truncated = true;
      break;
    }
  }
  return out;
}

}  // namespace ds
