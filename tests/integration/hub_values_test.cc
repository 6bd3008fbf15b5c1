// Value rules through the real hub and the real agent against a real
// nats-server (docs/protocol.md "Values", "Error codes"), each from msgpack
// and from JSON ingest: a json column takes any JSON value as given (a string
// is a JSON string, never JSON text to parse) and the replica holds the same;
// NaN and infinity are refused with the record's index and the column; a
// decode error inside a record (unknown op, wrong field type) names its index.

#include <gtest/gtest.h>

#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "hub/hub.h"
#include "shared/sqlite.h"
#include "tests/harness/test_agent.h"
#include "tests/integration/hub_test_util.h"

namespace ds::testing {
namespace {

class HubValuesTest : public InProcessHubTest {
 protected:
  void SetUp() override {
    InProcessHubTest::SetUp();
    if (HasFatalFailure()) return;
    TypeConfig docs;
    docs.name = "docs";
    docs.schema.key = "id";
    docs.schema.columns = {{"meta", ColumnType::kJson}, {"amount", ColumnType::kReal}};
    config_.types.push_back(docs);
    start_hub();
  }

  // The replica's meta text of `id`, "" when the row is not there (yet).
  std::string replica_meta(const std::string& id) {
    OpenOptions ro;
    ro.read_only = true;
    auto db = Database::open(dir_.file("shop.db"), ro);
    if (!db.is_ok()) return "";
    auto st = (*db)->prepare("SELECT meta FROM docs WHERE id = ?");
    if (!st.is_ok()) return "";
    st->bind(1, id);
    auto row = st->step();
    return row.is_ok() && *row ? st->column_text(0) : "";
  }

  // A JSON ingest request; the reply as parsed JSON.
  nlohmann::json ingest_json(const std::string& type, const std::string& body) {
    auto reply = nc_->request(Subjects().ingest(type, "test"), body, 10000, {{"Content-Type", "application/json"}});
    EXPECT_TRUE(reply.is_ok()) << reply.status().to_string();
    if (!reply.is_ok()) return nlohmann::json();
    return nlohmann::json::parse(reply->data());
  }

  // A msgpack ingest request written as JSON (so it can hold what the
  // structs cannot: an unknown op, a field of the wrong type).
  Result<IngestReply> ingest_msgpack(const std::string& type, const std::string& json) {
    const std::vector<std::uint8_t> bytes = nlohmann::json::to_msgpack(nlohmann::json::parse(json));
    DS_ASSIGN_OR_RETURN(Message reply,
                        nc_->request(Subjects().ingest(type, "test"), std::string(bytes.begin(), bytes.end()), 10000));
    return decode_ingest_reply(reply.data());
  }

  Value stored_meta(const std::string& id) {
    auto rec = open_reader(config_)->get("docs", id);
    EXPECT_TRUE(rec.is_ok()) << id << ": " << rec.status().to_string();
    return rec.is_ok() ? rec->fields.at("meta") : Value{};
  }

};

TEST_F(HubValuesTest, AJsonColumnTakesAnyJsonValueAsGivenFromMsgpackAndJsonAndTheReplicaHoldsTheSame) {
  start_agent("shop", "[[subscriptions]]\ntype = \"docs\"\n");
  // From msgpack: a str is a JSON string, not JSON text.
  IngestRequest req;
  auto doc = [](std::string id, Value meta) {
    IngestRecord r;
    r.key = std::move(id);
    r.fields = {{"meta", std::move(meta)}};
    return r;
  };
  req.records = {doc("m-str42", std::string("42")), doc("m-int42", int64_t{42}), doc("m-hello", std::string("hello")),
                 doc("m-obj", JsonText{R"({"x": [1, "y"]})"}), doc("m-real", 2.5), doc("m-bool", true)};
  auto reply = ingest(*nc_, "docs", req);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  ASSERT_TRUE(reply->ok()) << reply->error->message;
  // From JSON: the JSON value as given.
  const nlohmann::json jr = ingest_json(
      "docs", R"({"records":[{"key":"j-str42","op":"upsert","fields":{"meta":"42"}},
                             {"key":"j-int42","op":"upsert","fields":{"meta":42}},
                             {"key":"j-hello","op":"upsert","fields":{"meta":"hello"}},
                             {"key":"j-obj","op":"upsert","fields":{"meta":{"x":[1,"y"]}}},
                             {"key":"j-real","op":"upsert","fields":{"meta":2.5}},
                             {"key":"j-bool","op":"upsert","fields":{"meta":true}}]})");
  ASSERT_EQ(jr["ok"], true) << jr.dump();

  const std::vector<std::pair<std::string, std::string>> expected = {
      {"str42", R"("42")"}, {"int42", "42"}, {"hello", R"("hello")"},
      {"obj", R"({"x":[1,"y"]})"}, {"real", "2.5"}, {"bool", "true"}};
  for (const auto& [name, text] : expected) {
    for (const std::string prefix : {"m-", "j-"}) {
      EXPECT_EQ(stored_meta(prefix + name), Value{JsonText{text}}) << prefix + name;
      EXPECT_TRUE(eventually([&] { return replica_meta(prefix + name) == text; }))
          << prefix + name << ": replica holds '" << replica_meta(prefix + name) << "', expected " << text;
    }
  }
  // On the wire a string is a str, a number a number.
  std::vector<Change> changes;
  auto js = nc_->jetstream();
  ASSERT_TRUE(js.is_ok());
  for (const StoredMessage& m : stream_messages(**js, "DS_DOCS")) {
    auto batch = decode_delta_batch(m.data);
    ASSERT_TRUE(batch.is_ok());
    changes.insert(changes.end(), batch->changes.begin(), batch->changes.end());
  }
  ASSERT_EQ(changes.size(), 12u);
  EXPECT_EQ(changes[0].f.at("meta"), Value{std::string("42")});
  EXPECT_EQ(changes[1].f.at("meta"), Value{int64_t{42}});
}

TEST_F(HubValuesTest, NaNAndInfinityAreRefusedWithTheRecordsIndexAndColumn) {
  for (const double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                           -std::numeric_limits<double>::infinity()}) {
    for (const char* column : {"amount", "meta"}) {
      IngestRequest req;
      IngestRecord fine;
      fine.key = "fine";
      fine.fields = {{"amount", 1.0}};
      IngestRecord r;
      r.key = "bad";
      r.fields = {{column, bad}};
      req.records = {fine, r};
      auto reply = ingest(*nc_, "docs", req);
      ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
      ASSERT_FALSE(reply->ok()) << column << " " << bad;
      EXPECT_EQ(reply->error->code, StatusCode::kInvalidArgument);
      EXPECT_EQ(reply->error->index, std::optional<uint32_t>(1));
      EXPECT_NE(reply->error->message.find(std::string("records[1]: column '") + column + "'"), std::string::npos)
          << reply->error->message;
      EXPECT_NE(reply->error->message.find("only finite numbers are accepted"), std::string::npos)
          << reply->error->message;
    }
  }
  // JSON cannot carry them: refused as invalid JSON.
  for (const char* number : {"NaN", "1e999", "-1e999"}) {
    const nlohmann::json j = ingest_json(
        "docs", std::string(R"({"records":[{"key":"bad","op":"upsert","fields":{"amount":)") + number + "}}]}");
    EXPECT_EQ(j["ok"], false) << number;
    EXPECT_EQ(j["error"]["code"], "invalid_argument") << j.dump();
  }
  EXPECT_EQ(open_reader(config_)->type_state("docs")->version, 0u);  // nothing stored
}

TEST_F(HubValuesTest, ADecodeErrorInARecordNamesItsIndexFromMsgpackAndJson) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"records":[{"key":"a","op":"upsert"},{"key":"b","op":"upsrt"}]})", "records[1].op: unknown op 'upsrt'"},
      {R"({"records":[{"key":"a","op":"upsert"},{"key":"b","op":"upsert","ts":"yesterday"}]})",
       "records[1].ts: expected integer, got str"},
  };
  for (const auto& [request, message] : cases) {
    auto reply = ingest_msgpack("docs", request);
    ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
    ASSERT_FALSE(reply->ok());
    EXPECT_EQ(reply->error->index, std::optional<uint32_t>(1)) << request;
    EXPECT_NE(reply->error->message.find(message), std::string::npos) << reply->error->message;

    const nlohmann::json j = ingest_json("docs", request);
    EXPECT_EQ(j["ok"], false);
    EXPECT_EQ(j["error"]["index"], 1) << j.dump();
    EXPECT_NE(j["error"]["message"].get<std::string>().find(message), std::string::npos) << j.dump();
  }
  EXPECT_EQ(open_reader(config_)->type_state("docs")->version, 0u);
}

}  // namespace
}  // namespace ds::testing
