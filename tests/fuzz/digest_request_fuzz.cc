// Fuzz target: the agent's decoding of a digest request for `deltasync
// verify` (decode_digest_request), then what the agent computes from it:
// digest_table (shared/digest.h) over a fixed table of rows with every
// column type and some foreign storage classes, with the request's buckets
// and listed buckets, answered as a DigestReply.
// Checks: no crash or leak; errors are InvalidArgument; a decoded request
// round-trips (equal value, equal bytes); a request the decoder accepts is
// one digest_table accepts; the bucket digests add up to the content digest;
// listed rows are in listed buckets, ascending, complete unless truncated;
// the reply decodes to what was sent.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>

#include "shared/digest.h"
#include "shared/sqlite.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using namespace ds;

TypeSchema table_schema() {
  TypeSchema s;
  s.key = "id";
  s.columns = {{"name", ColumnType::kText}, {"n", ColumnType::kInteger}, {"r", ColumnType::kReal},
               {"b", ColumnType::kBool},    {"x", ColumnType::kBlob},    {"j", ColumnType::kJson}};
  return s;
}

// An in-memory replica table, made once and only read afterwards.
Database& table() {
  static const std::unique_ptr<Database> db = [] {
    auto opened = Database::open(":memory:");
    if (!opened.is_ok()) fuzz::fail("open", __FILE__, __LINE__, fuzz::status_text(opened.status()));
    std::unique_ptr<Database> d = std::move(opened).value();
    Status s = d->exec(
        "CREATE TABLE \"t\"(\"id\" TEXT PRIMARY KEY, \"_version\" INTEGER, \"name\" TEXT, \"n\" INTEGER,"
        " \"r\" REAL, \"b\" INTEGER, \"x\" BLOB, \"j\" TEXT);"
        "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 60)"
        " INSERT INTO \"t\" SELECT 'key-' || i, i * 7, CASE WHEN i % 5 = 0 THEN 42 ELSE 'name ' || i END,"
        " CASE WHEN i % 7 = 0 THEN NULL ELSE i * 1000 END, i / 3.0, CASE WHEN i % 11 = 0 THEN 2 ELSE i % 2 END,"
        " CASE WHEN i % 3 = 0 THEN randomblob(0) ELSE zeroblob(i % 4) END, '{\"i\":' || i || '}' FROM k;");
    if (!s.is_ok()) fuzz::fail("create table", __FILE__, __LINE__, fuzz::status_text(s));
    return d;
  }();
  return *db;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto decode = [](std::string_view b) { return decode_digest_request(b); };
  Result<DigestRequest> request = fuzz::check_decoder(fuzz::as_view(data, size), decode, /*compare_values=*/true);
  if (!request.is_ok()) return 0;

  DigestTableSpec spec;
  spec.table = quote_identifier("t");
  spec.key_column = quote_identifier("id");
  spec.columns = table_schema().columns;
  DigestOptions options;
  options.buckets = request->buckets;
  options.list = request->list;
  options.list_max_bytes = 300;  // small, so truncation is reached
  Result<TableDigest> digest = digest_table(table(), spec, options);
  FUZZ_CHECK(digest.is_ok(), "digest_table refused a request the decoder accepted: " + fuzz::status_text(digest.status()));

  FUZZ_CHECK(digest->keys.count == digest->content.count, "keys and content digests count different rows");
  FUZZ_CHECK(digest->buckets.size() == request->buckets, "wrong number of bucket digests");
  const std::set<uint32_t> listed(request->list.begin(), request->list.end());
  if (request->buckets > 0) {
    Digest sum;
    uint64_t listed_rows = 0;
    for (uint32_t b = 0; b < digest->buckets.size(); ++b) {
      sum.sum += digest->buckets[b].sum;
      sum.count += digest->buckets[b].count;
      if (listed.count(b) != 0) listed_rows += digest->buckets[b].count;
    }
    FUZZ_CHECK(sum == digest->content, "the bucket digests do not add up to the content digest");
    FUZZ_CHECK(digest->listed_truncated ? digest->listed.size() < listed_rows : digest->listed.size() == listed_rows,
               "listed rows do not match the listed buckets' counts");
  }
  for (size_t i = 0; i < digest->listed.size(); ++i) {
    FUZZ_CHECK(listed.count(key_bucket(digest->listed[i].key, request->buckets)) != 0, "a row of an unlisted bucket");
    if (i > 0) FUZZ_CHECK(digest->listed[i - 1].key < digest->listed[i].key, "listed rows not ascending");
  }

  // The answer, as the agent sends it, reads back on the hub.
  DigestReply reply;
  reply.agent = "fuzz-agent";
  TypeDigest d;
  d.rows = digest->keys.count;
  d.digest = digest->keys.hex();
  d.content = digest->content.hex();
  for (const Digest& b : digest->buckets) d.buckets.emplace_back(b.count, b.sum);
  for (const RowHash& r : digest->listed) d.listed.emplace_back(r.key, r.hash);
  d.listed_truncated = digest->listed_truncated;
  reply.types.emplace("t", std::move(d));
  Result<DigestReply> read_back = decode_digest_reply(encode(reply));
  FUZZ_CHECK(read_back.is_ok(), "a digest reply does not decode: " + fuzz::status_text(read_back.status()));
  FUZZ_CHECK(*read_back == reply, "a digest reply changes over the wire");
  return 0;
}
