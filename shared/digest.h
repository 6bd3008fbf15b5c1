#pragma once
// The convergence digests shared by hub and agent (deltasync verify;
// docs/protocol.md "Digest" is the normative text). Both sides compute them
// with digest_table() below over their own SQLite table, so "the same rows"
// means the same bytes into the same code.
//
// Two digests, both order-independent sums over the live rows of one type
// (of one partition on the hub side):
//
//   keys digest (wire field `digest`, since 0.1): over (key, version) only.
//     row_hash(key, version) = SipHash-2-4, all-zero 16-byte key (libsodium
//     crypto_shorthash), over u32_le(len(key)) || key || u64_le(version),
//     read as a little-endian uint64.
//
//   content digest (wire field `content`): over (key, version, every
//     declared column's value). content_hash = SipHash-2-4 (zero key) over
//       u32_le(len(key)) || key || u64_le(version) ||
//       for each declared column whose value is not NULL, in ascending
//       byte order of the column names:
//         u32_le(len(name)) || name || tag || payload
//     with, by the column's declared type and the value's SQLite storage
//     class (what sqlite3_column_type reports):
//       text    TEXT     'T' u32_le(len) || bytes as stored
//       integer INTEGER  'I' 8 bytes, two's complement, little-endian
//       real    REAL     'R' IEEE-754 binary64 bits, little-endian; -0.0 is
//                        written as +0.0 and every NaN as 0x7ff8000000000000
//                        (SQLite itself stores -0.0 as 0.0 and NaN as NULL)
//       bool    INTEGER  'B' one byte 0x00 or 0x01 (other integers: foreign)
//       blob    BLOB     'X' u32_le(len) || bytes
//       json    TEXT     'J' u32_le(len) || the JSON text as stored (both
//                        sides store the compact text validate_fields and
//                        the msgpack decoder produce: no whitespace, object
//                        keys sorted)
//       any other combination (a business system wrote an integer into a
//       text column, 2 into a bool column, ...): '?' then one byte of the
//       storage class (1 integer, 2 real, 3 text, 4 blob) then that class's
//       payload as above (8 bytes integer, 8 bytes real bits, u32_le(len) ||
//       bytes) — deterministic, and never equal to a well-typed value.
//     A NULL column contributes nothing, exactly like a column the table
//     does not have (a column added to the type and not set yet).
//
// digest = (sum of the row hashes mod 2^64, number of rows); a sum, not an
// XOR, so two equal rows do not cancel out. hex() prints
// "<count>:<sum as 16 lower-case hex digits>".
//
// Buckets, to find which rows differ without listing them all: a row belongs
// to bucket key_bucket(key, n) = (SipHash-2-4 zero key over the key bytes,
// as little-endian uint64) mod n; a bucket's digest is the content digest of
// its rows. Comparing the n bucket digests narrows a difference down to a
// few buckets, whose (key, content_hash) lists are then compared.
//
// Thread-safety: plain functions and values; digest_table() uses the caller's
// Database on the caller's thread.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shared/schema.h"
#include "shared/sqlite.h"
#include "shared/status.h"

namespace ds {

// The keys digest's row hash.
uint64_t row_hash(std::string_view key, uint64_t version);

// SipHash-2-4 with the all-zero key, as a little-endian uint64. The zero key
// is deliberate: the digest is a checksum both sides must reproduce, not a MAC.
uint64_t zero_key_siphash(std::string_view bytes);

constexpr uint32_t kMaxDigestBuckets = 65536;
// The bucket of a key among `buckets` (1..kMaxDigestBuckets).
uint32_t key_bucket(std::string_view key, uint32_t buckets);

struct Digest {
  uint64_t sum = 0;
  uint64_t count = 0;

  void add(std::string_view key, uint64_t version) { add_hash(row_hash(key, version)); }
  void add_hash(uint64_t h) {
    sum += h;
    ++count;
  }
  // "<count>:<sum as 16 lower-case hex digits>"
  std::string hex() const;
  bool operator==(const Digest&) const = default;
};

// One stored value as SQLite reports it. Kinds are SQLite's storage classes
// (SQLITE_INTEGER = 1 ... SQLITE_NULL = 5).
struct StoredCell {
  enum class Kind : uint8_t { kInteger = 1, kReal = 2, kText = 3, kBlob = 4, kNull = 5 };
  Kind kind = Kind::kNull;
  int64_t integer = 0;
  double real = 0;
  std::string_view bytes;  // text or blob
};

// The canonical encoding (above), built one row at a time.
class CanonicalRow {
 public:
  void begin(std::string_view key, uint64_t version);
  // Columns must come in ascending byte order of their names.
  void add(std::string_view column, ColumnType type, const StoredCell& cell);
  uint64_t hash() const { return zero_key_siphash(bytes_); }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

// The content hash of a row given as Values (as validate_fields leaves them),
// for tests and fakes: the same bytes SQLite would give back.
uint64_t content_hash(std::string_view key, uint64_t version, const TypeSchema& schema, const Fields& fields);

// Which rows of which table digest_table() reads. The SQL pieces are
// inserted as they are (quote identifiers first).
struct DigestTableSpec {
  std::string table;                       // quoted table name
  std::string key_column;                  // quoted key column
  std::string version_column = "_version";
  std::vector<Column> columns;             // the declared columns, any order
  std::string where;                       // "" or an SQL condition using ?1..?n
  std::vector<std::string> where_params;   // bound as text to ?1..?n
};

struct DigestOptions {
  uint32_t buckets = 0;                    // 0: no bucket digests
  std::vector<uint32_t> list;              // buckets whose rows are listed (each < buckets)
  size_t list_max_bytes = 256 * 1024;      // listing stops (truncated) past this many key bytes
};

struct RowHash {
  std::string key;
  uint64_t hash = 0;                       // content hash
  bool operator==(const RowHash&) const = default;
};

struct TableDigest {
  Digest keys;                             // (key, version)
  Digest content;                          // (key, version, values)
  std::vector<Digest> buckets;             // content digest per bucket
  std::vector<RowHash> listed;             // rows of the listed buckets, ascending key
  bool listed_truncated = false;           // listed holds only the smallest keys of those buckets
};

// One pass over the rows of spec.table. InvalidArgument for bad options.
Result<TableDigest> digest_table(Database& db, const DigestTableSpec& spec, const DigestOptions& options = {});

}  // namespace ds
