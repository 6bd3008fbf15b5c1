#include "tools/record_reader.h"

#include <sstream>

#include <gtest/gtest.h>

namespace ds {
namespace {

TypeSchema PricesSchema() {
  TypeSchema s;
  s.key = "sku";
  s.partition = "store_id";
  s.columns = {{"store_id", ColumnType::kText}, {"price", ColumnType::kReal},
               {"stock", ColumnType::kInteger}, {"active", ColumnType::kBool}};
  return s;
}

TEST(RecordReaderTest, CsvRowsAreTypedByTheSchema) {
  std::istringstream in("sku,store_id,price,stock,active,_op\n"
                        "A-1,store-1,9.5,3,true,\n"
                        "A-2,store-1,,,,delete\n");
  RecordReader reader(in, InputFormat::kCsv, PricesSchema());
  std::vector<IngestRecord> out;
  auto n = reader.read(10, out);
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  ASSERT_EQ(*n, 2u);
  EXPECT_EQ(out[0].key, "A-1");
  EXPECT_EQ(out[0].op, Op::kUpsert);
  EXPECT_EQ(std::get<double>(out[0].fields.at("price")), 9.5);
  EXPECT_EQ(std::get<int64_t>(out[0].fields.at("stock")), 3);
  EXPECT_EQ(std::get<bool>(out[0].fields.at("active")), true);
  EXPECT_EQ(out[1].op, Op::kDelete);
  EXPECT_TRUE(out[1].fields.empty());
}

TEST(RecordReaderTest, CsvQuotedCellsKeepCommasQuotesAndNewlines) {
  std::istringstream in("sku,store_id\n\"A,1\",\"say \"\"hi\"\"\nthere\"\n");
  TypeSchema s = PricesSchema();
  RecordReader reader(in, InputFormat::kCsv, s);
  std::vector<IngestRecord> out;
  auto n = reader.read(10, out);
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].key, "A,1");
  EXPECT_EQ(std::get<std::string>(out[0].fields.at("store_id")), "say \"hi\"\nthere");
  EXPECT_EQ(reader.line(), 3u);
}

TEST(RecordReaderTest, CsvBadCellNamesLineAndColumn) {
  std::istringstream in("sku,price\nA-1,1.0\nA-2,cheap\n");
  RecordReader reader(in, InputFormat::kCsv, PricesSchema());
  std::vector<IngestRecord> out;
  auto n = reader.read(10, out);
  ASSERT_FALSE(n.is_ok());
  EXPECT_EQ(n.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(n.status().message().find("line 3"), std::string::npos) << n.status().message();
  EXPECT_NE(n.status().message().find("price"), std::string::npos) << n.status().message();
}

TEST(RecordReaderTest, CsvHeaderWithoutKeyColumnIsRejected) {
  std::istringstream in("price\n1.0\n");
  RecordReader reader(in, InputFormat::kCsv, PricesSchema());
  std::vector<IngestRecord> out;
  auto n = reader.read(10, out);
  ASSERT_FALSE(n.is_ok());
  EXPECT_NE(n.status().message().find("key column 'sku'"), std::string::npos) << n.status().message();
}

TEST(RecordReaderTest, CsvUnknownColumnAndShortRowAreRejected) {
  {
    std::istringstream in("sku,colour\nA,red\n");
    RecordReader reader(in, InputFormat::kCsv, PricesSchema());
    std::vector<IngestRecord> out;
    auto n = reader.read(10, out);
    ASSERT_FALSE(n.is_ok());
    EXPECT_NE(n.status().message().find("colour"), std::string::npos);
  }
  {
    std::istringstream in("sku,price\nA\n");
    RecordReader reader(in, InputFormat::kCsv, PricesSchema());
    std::vector<IngestRecord> out;
    auto n = reader.read(10, out);
    ASSERT_FALSE(n.is_ok());
    EXPECT_NE(n.status().message().find("line 2"), std::string::npos) << n.status().message();
  }
}

TEST(RecordReaderTest, CsvUnterminatedQuoteIsRejected) {
  std::istringstream in("sku,price\n\"A,1.0\n");
  RecordReader reader(in, InputFormat::kCsv, PricesSchema());
  std::vector<IngestRecord> out;
  auto n = reader.read(10, out);
  ASSERT_FALSE(n.is_ok());
  EXPECT_NE(n.status().message().find("unterminated"), std::string::npos) << n.status().message();
}

TEST(RecordReaderTest, JsonLinesReadInBatchesAndSkipBlankLines) {
  std::istringstream in(R"({"key":"a","op":"upsert","fields":{"price":1.5}}

{"key":"b","op":"delete"}
{"key":"c","op":"upsert","fields":{"price":2}}
)");
  RecordReader reader(in, InputFormat::kJsonLines, TypeSchema{});
  std::vector<IngestRecord> out;
  auto n = reader.read(2, out);
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  EXPECT_EQ(*n, 2u);
  n = reader.read(2, out);
  ASSERT_TRUE(n.is_ok());
  EXPECT_EQ(*n, 1u);
  n = reader.read(2, out);
  ASSERT_TRUE(n.is_ok());
  EXPECT_EQ(*n, 0u);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[1].op, Op::kDelete);
  EXPECT_EQ(out[2].key, "c");
}

TEST(RecordReaderTest, JsonLinesBadLineIsNamed) {
  std::istringstream in("{\"key\":\"a\",\"op\":\"upsert\"}\n{\"key\":\"b\",\"op\":\"upsrt\"}\n");
  RecordReader reader(in, InputFormat::kJsonLines, TypeSchema{});
  std::vector<IngestRecord> out;
  auto n = reader.read(10, out);
  ASSERT_FALSE(n.is_ok());
  EXPECT_EQ(n.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(n.status().message().find("line 2"), std::string::npos) << n.status().message();
  EXPECT_NE(n.status().message().find("upsrt"), std::string::npos) << n.status().message();
}

// Found by the record_reader fuzz target: a line the JSON reader ends early
// (at a NUL) held no record and was read past the end of an empty list; a
// line with two objects was read as its first alone.
TEST(RecordReaderTest, JsonLineWithoutExactlyOneRecordIsRefused) {
  const std::string lines[] = {std::string(1, '\0') + "]" + std::string(1, '\0') + R"({"key":"a","op":"upsert"})",
                               R"({"key":"a","op":"upsert"},{"key":"b","op":"upsert"})"};
  for (const std::string& line : lines) {
    std::istringstream in(R"({"key":"x","op":"upsert"})" "\n" + line + "\n");
    RecordReader reader(in, InputFormat::kJsonLines, TypeSchema{});
    std::vector<IngestRecord> out;
    auto n = reader.read(10, out);
    ASSERT_FALSE(n.is_ok()) << "line accepted: " << line;
    EXPECT_EQ(n.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(n.status().message().find("line 2"), std::string::npos) << n.status().message();
  }
}

TEST(RecordReaderTest, FormatFollowsTheExtension) {
  EXPECT_EQ(input_format_for("prices.CSV"), InputFormat::kCsv);
  EXPECT_EQ(input_format_for("prices.jsonl"), InputFormat::kJsonLines);
  EXPECT_EQ(input_format_for("-"), InputFormat::kJsonLines);
}

TEST(ParseCellTest, RejectsWhatTheColumnCannotHold) {
  EXPECT_FALSE(parse_cell("1.5", ColumnType::kInteger).is_ok());
  EXPECT_FALSE(parse_cell("12abc", ColumnType::kInteger).is_ok());
  EXPECT_FALSE(parse_cell("nan", ColumnType::kReal).is_ok());
  EXPECT_FALSE(parse_cell("maybe", ColumnType::kBool).is_ok());
  EXPECT_TRUE(std::holds_alternative<std::monostate>(*parse_cell("", ColumnType::kInteger)));
  EXPECT_EQ(std::get<int64_t>(*parse_cell("-42", ColumnType::kInteger)), -42);
}

}  // namespace
}  // namespace ds
