// validate_ingest_records (hub/ingest_validation.h): the partition rules.
// The rest of validation is checked through both ingest paths
// (tests/integration/hub_ingest_test.cc) and fuzzed (tests/fuzz/).
#include "hub/ingest_validation.h"

#include <gtest/gtest.h>

#include "shared/codec.h"

namespace ds {
namespace {

TypeConfig stock_by_store() {
  TypeConfig t;
  t.name = "stock";
  t.schema.key = "sku";
  t.schema.partition = "store";
  t.schema.columns = {{"store", ColumnType::kInteger}, {"qty", ColumnType::kInteger}};
  return t;
}

IngestRecord record(Op op, std::optional<std::string> partition, Fields fields = {}) {
  IngestRecord r;
  r.key = "sku-1";
  r.op = op;
  r.partition = std::move(partition);
  r.fields = std::move(fields);
  return r;
}

std::optional<Rejection> validate(std::vector<IngestRecord>& records) {
  return validate_ingest_records(stock_by_store(), records, message_body_limit(kDefaultMaxPayload));
}

TEST(IngestValidationTest, IntegerPartitionFillsTheColumnAndAgreesWithIt) {
  std::vector<IngestRecord> records = {record(Op::kUpsert, "7"), record(Op::kUpsert, std::nullopt, {{"store", int64_t{7}}}),
                                       record(Op::kUpsert, "7", {{"store", int64_t{7}}})};
  ASSERT_FALSE(validate(records).has_value());
  for (const IngestRecord& r : records) {
    EXPECT_EQ(r.partition, "7");
    EXPECT_EQ(std::get<int64_t>(r.fields.at("store")), 7);
  }
  std::vector<IngestRecord> disagree = {record(Op::kUpsert, "8", {{"store", int64_t{7}}})};
  const auto rejected = validate(disagree);
  ASSERT_TRUE(rejected.has_value());
  EXPECT_EQ(rejected->status.message(), "records[0]: partition '8' disagrees with column 'store' = '7'");
}

// Found by a one-hour run of the ingest_json fuzz target: partition
// "0000000000000001" filled column store = 1 but stayed the record's
// partition, while a record that sets store = 1 is partitioned "1": one store
// in two partitions (and agents subscribed to "1" missed the first).
TEST(IngestValidationTest, IntegerPartitionWrittenOtherThanTheColumnsValueIsRefused) {
  for (const char* spelling : {"0000000000000001", "01", "-0"}) {
    for (Op op : {Op::kUpsert, Op::kDelete}) {
      std::vector<IngestRecord> records = {record(Op::kUpsert, "2"), record(op, spelling)};
      const auto rejected = validate(records);
      ASSERT_TRUE(rejected.has_value()) << spelling;
      EXPECT_EQ(rejected->index, 1u);
      EXPECT_EQ(rejected->status.code(), StatusCode::kInvalidArgument);
      const std::string value = std::string(spelling) == "-0" ? "0" : "1";
      EXPECT_EQ(rejected->status.message(), "records[1]: partition '" + std::string(spelling) + "' is the integer " +
                                                value + " of column 'store', whose partition is written '" + value +
                                                "'");
    }
  }
  std::vector<IngestRecord> negative = {record(Op::kUpsert, "-3")};
  EXPECT_FALSE(validate(negative).has_value()) << "a negative integer is written with its sign";
  std::vector<IngestRecord> text = {record(Op::kUpsert, "x1")};
  ASSERT_TRUE(validate(text).has_value());
  EXPECT_EQ(validate(text)->status.message(), "records[0]: partition 'x1' is not an integer, as column 'store' requires");
}

}  // namespace
}  // namespace ds
