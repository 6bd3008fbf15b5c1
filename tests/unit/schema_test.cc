#include "shared/schema.h"

#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace ds {
namespace {

TypeSchema products() {
  TypeSchema s;
  s.key = "sku";
  s.partition = "store_id";
  s.columns = {{"name", ColumnType::kText},  {"qty", ColumnType::kInteger}, {"price", ColumnType::kReal},
               {"active", ColumnType::kBool}, {"image", ColumnType::kBlob},   {"meta", ColumnType::kJson},
               {"store_id", ColumnType::kText}};
  return s;
}

TEST(SchemaTest, ColumnTypeNamesRoundTrip) {
  for (ColumnType t : {ColumnType::kText, ColumnType::kInteger, ColumnType::kReal, ColumnType::kBool,
                       ColumnType::kBlob, ColumnType::kJson}) {
    Result<ColumnType> back = column_type_from_name(column_type_name(t));
    ASSERT_TRUE(back.is_ok());
    EXPECT_EQ(*back, t);
  }
  EXPECT_EQ(column_type_name(ColumnType::kInteger), "integer");
}

TEST(SchemaTest, UnknownColumnTypeListsTheAllowedNames) {
  Result<ColumnType> r = column_type_from_name("varchar");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "unknown column type 'varchar' (expected text, integer, real, bool, blob or json)");
}

TEST(SchemaTest, ValueKindNames) {
  EXPECT_EQ(value_kind_name(Value{}), "null");
  EXPECT_EQ(value_kind_name(Value{true}), "bool");
  EXPECT_EQ(value_kind_name(Value{int64_t{1}}), "integer");
  EXPECT_EQ(value_kind_name(Value{1.5}), "real");
  EXPECT_EQ(value_kind_name(Value{std::string("x")}), "text");
  EXPECT_EQ(value_kind_name(Value{Blob{"x"}}), "blob");
  EXPECT_EQ(value_kind_name(Value{JsonText{"{}"}}), "json");
}

TEST(SchemaTest, FindColumn) {
  TypeSchema s = products();
  ASSERT_NE(s.find_column("price"), nullptr);
  EXPECT_EQ(s.find_column("price")->type, ColumnType::kReal);
  EXPECT_EQ(s.find_column("colour"), nullptr);
  EXPECT_EQ(s.find_column("sku"), nullptr);  // the key is not a column
}

TEST(SchemaTest, SchemaHashIsStableHex) {
  const std::string h = schema_hash(products());
  EXPECT_EQ(h.size(), 32u);
  EXPECT_EQ(h.find_first_not_of("0123456789abcdef"), std::string::npos) << h;
  EXPECT_EQ(schema_hash(products()), h);
}

TEST(SchemaTest, SchemaHashChangesWithEveryPart) {
  const std::string base = schema_hash(products());
  TypeSchema s = products();
  s.key = "id";
  EXPECT_NE(schema_hash(s), base);
  s = products();
  s.partition.reset();
  EXPECT_NE(schema_hash(s), base);
  s = products();
  s.columns[1].type = ColumnType::kReal;
  EXPECT_NE(schema_hash(s), base);
  s = products();
  s.columns[0].name = "title";
  EXPECT_NE(schema_hash(s), base);
  s = products();
  std::swap(s.columns[0], s.columns[1]);
  EXPECT_NE(schema_hash(s), base);
  s = products();
  s.columns.push_back({"extra", ColumnType::kText});
  EXPECT_NE(schema_hash(s), base);
}

TEST(SchemaTest, SchemaHashDoesNotConfuseNameBoundaries) {
  TypeSchema a;
  a.key = "k";
  a.columns = {{"ab", ColumnType::kText}, {"c", ColumnType::kText}};
  TypeSchema b = a;
  b.columns = {{"a", ColumnType::kText}, {"bc", ColumnType::kText}};
  EXPECT_NE(schema_hash(a), schema_hash(b));
  TypeSchema empty_partition = a;
  empty_partition.partition = "";
  EXPECT_NE(schema_hash(a), schema_hash(empty_partition));
}

TEST(ValidateFieldsTest, AcceptsMatchingValuesAndNulls) {
  Fields f{{"name", std::string("widget")},
           {"qty", int64_t{3}},
           {"price", 9.5},
           {"active", true},
           {"image", Blob{std::string("\x00\x01", 2)}},
           {"meta", JsonText{"{\"a\":1}"}},
           {"store_id", Value{}}};
  const Fields before = f;
  ASSERT_TRUE(validate_fields(products(), "sku-1", f).is_ok());
  EXPECT_EQ(f, before);
}

TEST(ValidateFieldsTest, IntegerIsWidenedForRealColumn) {
  Fields f{{"price", int64_t{7}}};
  ASSERT_TRUE(validate_fields(products(), "k", f).is_ok());
  ASSERT_TRUE(std::holds_alternative<double>(f["price"]));
  EXPECT_EQ(std::get<double>(f["price"]), 7.0);
}

TEST(ValidateFieldsTest, WrongTypeNamesColumnAndBothTypes) {
  Fields f{{"price", std::string("cheap")}};
  Status s = validate_fields(products(), "k", f);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "column 'price' expects real, got text");
}

TEST(ValidateFieldsTest, DoubleIsRejectedForIntegerColumn) {
  Fields f{{"qty", 3.0}};
  EXPECT_EQ(validate_fields(products(), "k", f).message(), "column 'qty' expects integer, got real");
}

TEST(ValidateFieldsTest, TextColumnRejectsJsonAndNumbers) {
  Fields json{{"name", JsonText{"{}"}}};
  EXPECT_EQ(validate_fields(products(), "k", json).message(), "column 'name' expects text, got json");
  Fields number{{"name", int64_t{5}}};
  EXPECT_EQ(validate_fields(products(), "k", number).message(), "column 'name' expects text, got integer");
}

TEST(ValidateFieldsTest, BoolColumnRejectsInteger) {
  Fields f{{"active", int64_t{1}}};
  EXPECT_EQ(validate_fields(products(), "k", f).message(), "column 'active' expects bool, got integer");
}

TEST(ValidateFieldsTest, UnknownColumnListsTheColumns) {
  Fields f{{"colour", std::string("red")}};
  Status s = validate_fields(products(), "k", f);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "unknown column 'colour' (the type has key 'sku' and columns: name, qty, price, active, image, meta, "
            "store_id)");
}

TEST(ValidateFieldsTest, RedundantKeyColumnIsDropped) {
  Fields f{{"sku", std::string("sku-1")}, {"qty", int64_t{1}}};
  ASSERT_TRUE(validate_fields(products(), "sku-1", f).is_ok());
  EXPECT_EQ(f.count("sku"), 0u);
  EXPECT_EQ(f.size(), 1u);
}

TEST(ValidateFieldsTest, KeyColumnThatDisagreesWithTheKeyIsRejected) {
  Fields f{{"sku", std::string("other")}};
  Status s = validate_fields(products(), "sku-1", f);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("column 'sku'"), std::string::npos) << s.message();
  Fields wrong_type{{"sku", int64_t{1}}};
  EXPECT_FALSE(validate_fields(products(), "1", wrong_type).is_ok());
}

TEST(ValidateFieldsTest, Base64TextBecomesBlob) {
  Fields f{{"image", std::string("AAEC/w==")}};
  ASSERT_TRUE(validate_fields(products(), "k", f).is_ok());
  ASSERT_TRUE(std::holds_alternative<Blob>(f["image"]));
  EXPECT_EQ(std::get<Blob>(f["image"]).bytes, std::string("\x00\x01\x02\xff", 4));
}

TEST(ValidateFieldsTest, InvalidBase64IsRejectedForBlobColumn) {
  for (const char* bad : {"not base64!", "AAEC/w=", "AAEC/w==x"}) {
    Fields f{{"image", std::string(bad)}};
    Status s = validate_fields(products(), "k", f);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(s.message(), "column 'image' expects blob, got text that is not valid base64") << bad;
  }
}

TEST(ValidateFieldsTest, JsonColumnMakesJsonTextCompact) {
  Fields f{{"meta", JsonText{"{ \"b\" : [1, 2], \"a\" : null }"}}};
  ASSERT_TRUE(validate_fields(products(), "k", f).is_ok());
  EXPECT_EQ(f["meta"], Value{JsonText{"{\"a\":null,\"b\":[1,2]}"}});
}

TEST(ValidateFieldsTest, JsonColumnTakesPlainValuesAsTheJsonValuesTheyAre) {
  // One rule whatever the encoding: a string is a JSON string, never JSON
  // text to parse ("42" stays a string), a number a number, a bool a bool.
  const std::vector<std::pair<Value, std::string>> cases = {
      {std::string("42"), R"("42")"},
      {std::string("hello"), R"("hello")"},
      {std::string(R"({"a":1})"), R"("{\"a\":1}")"},
      {std::string(""), R"("")"},
      {int64_t{5}, "5"},
      {-2.5, "-2.5"},
      {2.0, "2.0"},
      {true, "true"},
  };
  for (const auto& [value, text] : cases) {
    Fields f{{"meta", value}};
    ASSERT_TRUE(validate_fields(products(), "k", f).is_ok()) << text;
    EXPECT_EQ(f["meta"], Value{JsonText{text}}) << text;
    EXPECT_TRUE(std::get<JsonText>(f["meta"]).canonical);
  }
}

TEST(ValidateFieldsTest, JsonNullInAJsonColumnIsNull) {
  Fields f{{"meta", JsonText{" null "}}};
  ASSERT_TRUE(validate_fields(products(), "k", f).is_ok());
  EXPECT_EQ(f["meta"], Value{});
}

TEST(ValidateFieldsTest, JsonColumnRejectsInvalidJsonTextAndOtherKinds) {
  Fields j{{"meta", JsonText{"[1,"}}};
  EXPECT_EQ(validate_fields(products(), "k", j).message(),
            "column 'meta' expects json, got json that is not valid JSON");
  Fields blob{{"meta", Blob{"x"}}};
  EXPECT_EQ(validate_fields(products(), "k", blob).message(), "column 'meta' expects json, got blob");
  Fields bad_utf8{{"meta", std::string("\xff")}};
  EXPECT_EQ(validate_fields(products(), "k", bad_utf8).message(),
            "column 'meta' expects json, got text that is not valid UTF-8 (a JSON string must be)");
}

TEST(ValidateFieldsTest, NaNAndInfinityAreRefusedInRealAndJsonColumns) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (const char* column : {"price", "meta"}) {
    const std::string expects = std::string("column '") + column + "' expects " + (column[0] == 'p' ? "real" : "json");
    Fields n{{column, nan}};
    Status s = validate_fields(products(), "k", n);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(s.message(), expects + ", got NaN (only finite numbers are accepted)");
    Fields p{{column, inf}};
    EXPECT_EQ(validate_fields(products(), "k", p).message(),
              expects + ", got infinity (only finite numbers are accepted)");
    Fields m{{column, -inf}};
    EXPECT_EQ(validate_fields(products(), "k", m).message(),
              expects + ", got -infinity (only finite numbers are accepted)");
    EXPECT_FALSE(fields_in_stored_form(products(), "k", n).is_ok());
  }
  Fields finite{{"price", std::numeric_limits<double>::max()}};
  EXPECT_TRUE(validate_fields(products(), "k", finite).is_ok());
}

TEST(ValidateFieldsTest, JsonTextIsLeftCompactAndMarkedCanonical) {
  Fields f{{"meta", JsonText{R"({ "b": 1, "a": [true, 2.5] })"}}};
  ASSERT_TRUE(validate_fields(products(), "k", f).is_ok());
  const auto& j = std::get<JsonText>(f.at("meta"));
  EXPECT_EQ(j.text, R"({"a":[true,2.5],"b":1})");
  EXPECT_TRUE(j.canonical);
}

TEST(FieldsInStoredFormTest, TellsWhetherValidationWouldChangeAnything) {
  const TypeSchema s = products();
  auto stored = [&](Fields f) { return fields_in_stored_form(s, "k", f); };
  EXPECT_TRUE(*stored({{"name", std::string("n")}, {"qty", int64_t{1}}, {"price", 1.5}, {"active", true},
                       {"image", Blob{"x"}}, {"meta", JsonText{"[1]", /*canonical=*/true}}, {"store_id", Value{}}}));
  EXPECT_FALSE(*stored({{"price", int64_t{2}}}));                    // widened to real
  EXPECT_FALSE(*stored({{"image", std::string("eA==")}}));           // base64 decoded
  EXPECT_FALSE(*stored({{"meta", JsonText{"[1]"}}}));                // not known to be compact
  EXPECT_FALSE(*stored({{"meta", std::string("[1]")}}));             // a JSON string made of it
  EXPECT_FALSE(*stored({{"sku", std::string("k")}}));                // key column dropped
  // What validate_fields refuses without looking inside a value, it refuses
  // with the same message.
  for (const Fields& bad : {Fields{{"colour", std::string("red")}}, Fields{{"qty", std::string("7")}},
                            Fields{{"sku", std::string("other")}}, Fields{{"meta", Blob{"x"}}}}) {
    Fields copy = bad;
    EXPECT_EQ(stored(bad).status().message(), validate_fields(s, "k", copy).message());
    EXPECT_FALSE(stored(bad).is_ok());
  }
}

TEST(ValidateFieldsTest, DeeplyNestedJsonIsRejected) {
  Fields f{{"meta", JsonText{std::string(100000, '[') + std::string(100000, ']')}}};
  EXPECT_EQ(validate_fields(products(), "k", f).message(),
            "column 'meta' expects json, got json that nests deeper than 32 levels");
  Fields ok{{"meta", JsonText{std::string(31, '[') + std::string(31, ']')}}};
  EXPECT_TRUE(validate_fields(products(), "k", ok).is_ok());
}

TEST(ValidateFieldsTest, RejectedFieldsAreLeftUntouched) {
  Fields f{{"price", int64_t{1}}, {"qty", std::string("many")}, {"sku", std::string("k")}};
  const Fields before = f;
  EXPECT_FALSE(validate_fields(products(), "k", f).is_ok());
  EXPECT_EQ(f, before);
}

TEST(ValidateFieldsTest, EmptyFieldsAreValid) {
  Fields f;
  EXPECT_TRUE(validate_fields(products(), "k", f).is_ok());
}

}  // namespace
}  // namespace ds
