#include "shared/codec.h"
#include "shared/json_text.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "shared/logged_fields.h"
#include "shared/names.h"

namespace ds {
namespace {

// msgpack bytes of a JSON document: the easiest way to write hand-made (and
// deliberately wrong) messages that a test reader can still follow.
std::string mp(std::string_view json) {
  std::vector<std::uint8_t> bytes = nlohmann::json::to_msgpack(nlohmann::json::parse(json));
  return std::string(bytes.begin(), bytes.end());
}

std::string raw(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s += static_cast<char>(b);
  return s;
}

// mp(json) with the string "@@@" replaced by `bytes`: splices msgpack that
// JSON cannot express (bin, ext, float32, non-string keys) into a message.
std::string mp_with(std::string_view json, const std::string& bytes) {
  std::string out = mp(json);
  const std::string placeholder = raw({0xa3}) + "@@@";
  const size_t at = out.find(placeholder);
  EXPECT_NE(at, std::string::npos) << "no \"@@@\" in " << json;
  if (at != std::string::npos) out.replace(at, placeholder.size(), bytes);
  return out;
}

// Asserts an InvalidArgument whose message contains `needle` (the field path
// and the problem).
template <typename T>
void expect_rejected(const Result<T>& r, std::string_view needle) {
  ASSERT_FALSE(r.is_ok()) << "expected an error mentioning: " << needle;
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().to_string();
  EXPECT_NE(r.status().message().find(needle), std::string::npos)
      << "message: " << r.status().message() << "\nexpected to contain: " << needle;
}

Fields every_value_kind() {
  return Fields{{"nothing", Value{}},
                {"flag", true},
                {"off", false},
                {"count", int64_t{42}},
                {"negative", int64_t{-7}},
                {"min", std::numeric_limits<int64_t>::min()},
                {"max", std::numeric_limits<int64_t>::max()},
                {"price", 0.1},
                {"whole", 3.0},
                {"negative_zero", -0.0},
                {"huge", 1e300},
                {"name", std::string("Schraube M6 \xc3\xa4")},
                {"empty", std::string()},
                {"image", Blob{std::string("\x00\xff\x10", 3)}},
                {"meta", JsonText{R"({"a":[1,2.5,"x",null,true],"b":{"c":-1}})"}},
                {"list", JsonText{"[1,2,3]"}}};
}

IngestRequest full_ingest_request() {
  IngestRequest m;
  m.producer = "erp-1";
  m.seq = 99;
  IngestRecord upsert;
  upsert.key = "sku-1";
  upsert.op = Op::kUpsert;
  upsert.fields = every_value_kind();
  upsert.ts = 1700000000123;
  upsert.partition = "store-17";
  IngestRecord del;
  del.key = "sku-2";
  del.op = Op::kDelete;
  m.records = {upsert, del};
  return m;
}

RegisterRequest full_register_request() {
  RegisterRequest m;
  m.agent = "store-17";
  m.host = "pos17.example";
  m.version = "0.1.0";
  m.subscriptions = {{"prices", "*", 10, 11, 1700000000000, 500},
                     {"inventory", "store-17", 0, 0, -5, 0}};
  return m;
}

RegisterReply full_register_reply() {
  RegisterReply m;
  m.heartbeat_ms = 5000;
  Delivery d;
  d.type = "inventory";
  d.subject = "ds.push.store-17.inventory";
  d.resume = Resume::kSnapshot;
  d.schema.key = "sku";
  d.schema.partition = "store_id";
  d.schema.columns = {{"store_id", ColumnType::kText}, {"qty", ColumnType::kInteger},
                      {"price", ColumnType::kReal},    {"active", ColumnType::kBool},
                      {"image", ColumnType::kBlob},    {"meta", ColumnType::kJson}};
  d.schema_hash = "0123456789abcdef0123456789abcdef";
  Delivery unpartitioned;
  unpartitioned.type = "prices";
  unpartitioned.subject = "ds.push.store-17.prices";
  unpartitioned.resume = Resume::kStream;
  unpartitioned.schema.key = "id";
  unpartitioned.schema_hash = "ff";
  m.deliveries = {d, unpartitioned};
  return m;
}

HeartbeatReply full_heartbeat_reply() {
  HeartbeatReply m;
  m.agent = "store-17";
  m.ts = 1700000000999;
  m.status = AgentHealth::kDegraded;
  m.checkpoints = {{"prices", {10, 11, 1700000000000, "abc"}}, {"inventory", {0, 0, 0, ""}}};
  m.pending = 3;
  m.quarantined = 1;
  m.error = "hook for prices failed 3 times";
  return m;
}

DeltaBatch full_delta_batch() {
  DeltaBatch m;
  m.type = "prices";
  m.changes = {{1, "sku-1", Op::kUpsert, every_value_kind(), 1700000000000, 1700000000005},
               {std::numeric_limits<uint64_t>::max(), "sku-2", Op::kDelete, {}, -1, 0}};
  return m;
}

SnapshotReply full_snapshot_reply() {
  SnapshotReply m;
  m.records = {{5, "a", every_value_kind(), 1}, {6, "b", {}, 2}};
  m.high_version = 6;
  m.high_seq = 60;
  m.done = true;
  return m;
}

// ---- round trips ----

TEST(CodecRoundTripTest, IngestRequestWithEveryValueKind) {
  IngestRequest m = full_ingest_request();
  Result<IngestRequest> back = decode_ingest_request(encode(m));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, m);
}

TEST(CodecRoundTripTest, IngestRequestWithoutOptionalKeys) {
  IngestRequest m;
  m.records = {{"k", Op::kUpsert, {{"x", int64_t{1}}}, std::nullopt, std::nullopt}};
  const std::string bytes = encode(m);
  Result<IngestRequest> back = decode_ingest_request(bytes);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, m);
  nlohmann::json j = nlohmann::json::from_msgpack(bytes);
  EXPECT_FALSE(j.contains("producer"));
  EXPECT_FALSE(j.contains("seq"));
  EXPECT_FALSE(j["records"][0].contains("ts"));
  EXPECT_FALSE(j["records"][0].contains("partition"));
}

TEST(CodecRoundTripTest, EmptyIngestBatch) {
  IngestRequest m;
  Result<IngestRequest> back = decode_ingest_request(encode(m));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_TRUE(back->records.empty());
}

TEST(CodecRoundTripTest, IngestReplyOk) {
  IngestReply m;
  m.first_version = 100;
  m.last_version = std::numeric_limits<uint64_t>::max();
  Result<IngestReply> back = decode_ingest_reply(encode(m));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, m);
  EXPECT_TRUE(back->ok());
}

TEST(CodecRoundTripTest, IngestReplyError) {
  IngestReply m;
  m.error = WireError{StatusCode::kInvalidArgument, "records[3].fields.price: column 'price' expects real", 3};
  Result<IngestReply> back = decode_ingest_reply(encode(m));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, m);
  EXPECT_FALSE(back->ok());

  m.error = WireError{StatusCode::kUnavailable, "broker down", std::nullopt};
  Result<IngestReply> no_index = decode_ingest_reply(encode(m));
  ASSERT_TRUE(no_index.is_ok());
  EXPECT_EQ(*no_index, m);
}

TEST(CodecRoundTripTest, ErrorCodeTravelsByName) {
  IngestReply m;
  m.error = WireError{StatusCode::kPermissionDenied, "no", std::nullopt};
  nlohmann::json j = nlohmann::json::from_msgpack(encode(m));
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["error"]["code"], "permission_denied");
  EXPECT_EQ(j["error"]["message"], "no");
}

TEST(CodecRoundTripTest, RegisterRequest) {
  RegisterRequest m = full_register_request();
  Result<RegisterRequest> back = decode_register_request(encode(m));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, m);
}

TEST(CodecRoundTripTest, RegisterReplyOk) {
  RegisterReply m = full_register_reply();
  Result<RegisterReply> back = decode_register_reply(encode(m));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, m);
  nlohmann::json j = nlohmann::json::from_msgpack(encode(m));
  EXPECT_EQ(j["deliveries"][0]["resume"], "snapshot");
  EXPECT_EQ(j["deliveries"][0]["schema"]["columns"][1]["type"], "integer");
  EXPECT_FALSE(j["deliveries"][1]["schema"].contains("partition"));
}

TEST(CodecRoundTripTest, TheLiveFeedKeysTravelOnlyWhenSet) {
  RegisterRequest req = full_register_request();
  RegisterReply reply = full_register_reply();
  HeartbeatReply beat = full_heartbeat_reply();
  // Unset: the messages older peers know, without the key.
  EXPECT_FALSE(nlohmann::json::from_msgpack(encode(req))["subscriptions"][0].contains("feed"));
  EXPECT_FALSE(nlohmann::json::from_msgpack(encode(reply))["deliveries"][0].contains("feed"));
  ASSERT_FALSE(beat.checkpoints.empty());
  const std::string type = beat.checkpoints.begin()->first;
  EXPECT_FALSE(nlohmann::json::from_msgpack(encode(beat))["checkpoints"][type].contains("feed"));
  req.subscriptions[0].feed = true;
  reply.deliveries[0].feed = true;
  beat.checkpoints.begin()->second.feed = true;
  auto req_back = decode_register_request(encode(req));
  ASSERT_TRUE(req_back.is_ok()) << req_back.status().to_string();
  EXPECT_EQ(*req_back, req);
  auto reply_back = decode_register_reply(encode(reply));
  ASSERT_TRUE(reply_back.is_ok()) << reply_back.status().to_string();
  EXPECT_EQ(*reply_back, reply);
  auto beat_back = decode_heartbeat_reply(encode(beat));
  ASSERT_TRUE(beat_back.is_ok()) << beat_back.status().to_string();
  EXPECT_EQ(*beat_back, beat);
  EXPECT_EQ(nlohmann::json::from_msgpack(encode(reply))["deliveries"][0]["feed"], true);
}

TEST(CodecMalformedTest, TheLiveFeedKeysMustBeBooleans) {
  nlohmann::json j = nlohmann::json::from_msgpack(encode(full_register_request()));
  j["subscriptions"][0]["feed"] = "yes";
  std::vector<uint8_t> bytes = nlohmann::json::to_msgpack(j);
  auto back = decode_register_request(std::string(bytes.begin(), bytes.end()));
  ASSERT_FALSE(back.is_ok());
  EXPECT_NE(back.status().message().find("subscriptions[0].feed"), std::string::npos) << back.status().to_string();
}

TEST(CodecRoundTripTest, RegisterReplyError) {
  RegisterReply m;
  m.error = WireError{StatusCode::kPermissionDenied, "agent store-17 is retired", std::nullopt};
  Result<RegisterReply> back = decode_register_reply(encode(m));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, m);
}

TEST(CodecRoundTripTest, HeartbeatRequest) {
  HeartbeatRequest m{"hub-a", 1700000000000, {"prices", "inventory"}};
  Result<HeartbeatRequest> back = decode_heartbeat_request(encode(m));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, m);
  EXPECT_FALSE(back->reregister);
}

TEST(CodecRoundTripTest, HeartbeatRequestOrderingRegistration) {
  HeartbeatRequest m{"hub-a", 1, {"prices"}, true};
  const std::string bytes = encode(m);
  Result<HeartbeatRequest> back = decode_heartbeat_request(bytes);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_TRUE(back->reregister);
  // The key is only sent when set, so older agents see the message they know.
  EXPECT_NE(bytes.find("register"), std::string::npos);
  EXPECT_EQ(encode(HeartbeatRequest{"hub-a", 1, {"prices"}}).find("register"), std::string::npos);
}

TEST(CodecRoundTripTest, HeartbeatReplyWithAndWithoutError) {
  HeartbeatReply m = full_heartbeat_reply();
  Result<HeartbeatReply> back = decode_heartbeat_reply(encode(m));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, m);

  m.error.reset();
  m.status = AgentHealth::kOk;
  m.checkpoints.clear();
  Result<HeartbeatReply> healthy = decode_heartbeat_reply(encode(m));
  ASSERT_TRUE(healthy.is_ok()) << healthy.status().to_string();
  EXPECT_EQ(*healthy, m);
}

// quarantined_types (added after the first release): a new agent's reply
// carries it, an older agent's reply lacks it and still decodes (the hub then
// knows the total only), and the bytes without it are exactly the old form.
TEST(CodecRoundTripTest, HeartbeatReplyWithAndWithoutQuarantinedTypes) {
  HeartbeatReply m = full_heartbeat_reply();
  m.quarantined = 5;
  m.quarantined_types = std::map<std::string, uint64_t>{{"prices", 4}, {"inventory", 1}};
  Result<HeartbeatReply> back = decode_heartbeat_reply(encode(m));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, m);
  EXPECT_NE(encode(m).find("quarantined_types"), std::string::npos);

  m.quarantined_types = std::map<std::string, uint64_t>{};  // a new agent with nothing quarantined
  back = decode_heartbeat_reply(encode(m));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  ASSERT_TRUE(back->quarantined_types.has_value()) << "empty is not the same as not reported";
  EXPECT_TRUE(back->quarantined_types->empty());

  m.quarantined_types.reset();  // an agent from before the key
  const std::string old_form = encode(m);
  EXPECT_EQ(old_form.find("quarantined_types"), std::string::npos);
  back = decode_heartbeat_reply(old_form);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_FALSE(back->quarantined_types.has_value());
  EXPECT_EQ(back->quarantined, 5u);
  // As an older agent writes it (and a nil value, as an absent key).
  for (const std::string& text :
       {std::string(R"({"agent":"a","ts":1,"status":"ok","checkpoints":{},"pending":0,"quarantined":2})"),
        std::string(R"({"agent":"a","ts":1,"status":"ok","checkpoints":{},"pending":0,"quarantined":2,)"
                    R"("quarantined_types":null})")}) {
    auto r = decode_heartbeat_reply(mp(text));
    ASSERT_TRUE(r.is_ok()) << text << ": " << r.status().to_string();
    EXPECT_EQ(r->quarantined, 2u);
    EXPECT_FALSE(r->quarantined_types.has_value()) << text;
  }
}

TEST(CodecMalformedTest, QuarantinedTypesMustBeCountsByTypeName) {
  const std::string head = R"({"agent":"a","ts":1,"status":"ok","checkpoints":{},"pending":0,"quarantined":2,)";
  expect_rejected(decode_heartbeat_reply(mp(head + R"("quarantined_types":[1]})")), "quarantined_types");
  expect_rejected(decode_heartbeat_reply(mp(head + R"("quarantined_types":{"Bad":1}})")),
                  "quarantined_types.Bad: invalid business type name 'Bad'");
  expect_rejected(decode_heartbeat_reply(mp(head + R"("quarantined_types":{"prices":-1}})")),
                  "quarantined_types.prices");
  expect_rejected(decode_heartbeat_reply(mp(head + R"("quarantined_types":{"prices":"x"}})")),
                  "quarantined_types.prices");
}

TEST(CodecRoundTripTest, DeltaBatchWithEveryValueKind) {
  DeltaBatch m = full_delta_batch();
  const std::string bytes = encode(m);
  Result<DeltaBatch> back = decode_delta_batch(bytes);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, m);
  nlohmann::json j = nlohmann::json::from_msgpack(bytes);
  EXPECT_EQ(j["changes"][0]["op"], "u");
  EXPECT_EQ(j["changes"][1]["op"], "d");
  EXPECT_FALSE(j["changes"][1].contains("f"));
}

TEST(CodecRoundTripTest, ValuesUseNativeMsgpackTypes) {
  DeltaBatch m = full_delta_batch();
  nlohmann::json j = nlohmann::json::from_msgpack(encode(m));
  const nlohmann::json& f = j["changes"][0]["f"];
  EXPECT_TRUE(f["nothing"].is_null());
  EXPECT_TRUE(f["flag"].is_boolean());
  EXPECT_TRUE(f["count"].is_number_integer());
  EXPECT_TRUE(f["price"].is_number_float());
  EXPECT_TRUE(f["whole"].is_number_float());
  ASSERT_TRUE(f["negative_zero"].is_number_float());
  EXPECT_TRUE(std::signbit(f["negative_zero"].get<double>()));
  EXPECT_TRUE(f["name"].is_string());
  EXPECT_TRUE(f["image"].is_binary());
  EXPECT_TRUE(f["meta"].is_object());  // a json value is nested msgpack, not text
  EXPECT_EQ(f["meta"]["b"]["c"], -1);
  EXPECT_TRUE(f["list"].is_array());
}

TEST(CodecRoundTripTest, SnapshotRequestWithAndWithoutAfterKey) {
  SnapshotRequest m{"inventory", "store-17", std::string("sku-500"), 250};
  Result<SnapshotRequest> back = decode_snapshot_request(encode(m));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, m);

  SnapshotRequest first{"prices", "*", std::nullopt, 10000};
  Result<SnapshotRequest> first_back = decode_snapshot_request(encode(first));
  ASSERT_TRUE(first_back.is_ok()) << first_back.status().to_string();
  EXPECT_EQ(*first_back, first);
}

TEST(CodecRoundTripTest, SnapshotReplyOkAndError) {
  SnapshotReply m = full_snapshot_reply();
  Result<SnapshotReply> back = decode_snapshot_reply(encode(m));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, m);

  SnapshotReply failed;
  failed.error = WireError{StatusCode::kNotFound, "unknown type 'x'", std::nullopt};
  Result<SnapshotReply> failed_back = decode_snapshot_reply(encode(failed));
  ASSERT_TRUE(failed_back.is_ok()) << failed_back.status().to_string();
  EXPECT_EQ(*failed_back, failed);
}

TEST(CodecRoundTripTest, DigestRequestAndReply) {
  DigestRequest req{{"prices", "products"}};
  Result<DigestRequest> req_back = decode_digest_request(encode(req));
  ASSERT_TRUE(req_back.is_ok()) << req_back.status().to_string();
  EXPECT_EQ(*req_back, req);

  DigestReply m;
  m.agent = "store-1";
  m.types["prices"] = TypeDigest{"store-1", 42, 1700000000000, 3, "3:00000000deadbeef"};
  m.types["products"] = TypeDigest{"*", 7, 0, 0, "0:0000000000000000"};
  Result<DigestReply> back = decode_digest_reply(encode(m));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, m);

  DigestReply failed;
  failed.error = WireError{StatusCode::kUnavailable, "replica busy", std::nullopt};
  Result<DigestReply> failed_back = decode_digest_reply(encode(failed));
  ASSERT_TRUE(failed_back.is_ok()) << failed_back.status().to_string();
  EXPECT_EQ(*failed_back, failed);
}

TEST(CodecMalformedTest, DigestMessagesNameTheBadField) {
  DigestRequest bad_type{{"Not A Type"}};
  Result<DigestRequest> r = decode_digest_request(encode(bad_type));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("types[0]"), std::string::npos) << r.status().message();

  DigestReply bad_agent;
  bad_agent.agent = "no spaces allowed";
  Result<DigestReply> a = decode_digest_reply(encode(bad_agent));
  ASSERT_FALSE(a.is_ok());
  EXPECT_NE(a.status().message().find("agent"), std::string::npos) << a.status().message();

  DigestReply bad_partition;
  bad_partition.agent = "store-1";
  bad_partition.types["prices"] = TypeDigest{"a.b", 1, 0, 1, "1:0"};
  Result<DigestReply> p = decode_digest_reply(encode(bad_partition));
  ASSERT_FALSE(p.is_ok());
  EXPECT_NE(p.status().message().find("types.prices.partition"), std::string::npos) << p.status().message();

  const std::string full = encode(DigestRequest{{"prices"}});
  EXPECT_FALSE(decode_digest_request(std::string_view(full).substr(0, full.size() - 1)).is_ok());
}

TEST(CodecRoundTripTest, UnknownKeysAreIgnored) {
  Result<IngestRequest> r = decode_ingest_request(
      mp(R"({"future":[1,2],"records":[{"key":"k","op":"delete","later":{"x":1}}],"also":null})"));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r->records.size(), 1u);
  EXPECT_EQ(r->records[0].op, Op::kDelete);
}

TEST(CodecRoundTripTest, NilOptionalKeysReadAsAbsent) {
  Result<IngestRequest> r =
      decode_ingest_request(mp(R"({"producer":null,"seq":null,"records":[{"key":"k","op":"upsert",
                                   "fields":null,"ts":null,"partition":null}]})"));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->producer, "");
  EXPECT_FALSE(r->seq.has_value());
  EXPECT_TRUE(r->records[0].fields.empty());
  EXPECT_FALSE(r->records[0].ts.has_value());
  EXPECT_FALSE(r->records[0].partition.has_value());
}

TEST(CodecRoundTripTest, Float32DecodesAsDouble) {
  const std::string bytes = mp_with(R"({"records":[{"key":"k","op":"upsert","fields":{"x":"@@@"}}]})",
                                    raw({0xca, 0x3f, 0xc0, 0x00, 0x00}));  // float32 1.5
  Result<IngestRequest> r = decode_ingest_request(bytes);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->records[0].fields.at("x"), Value{1.5});
}

TEST(WireErrorTest, FromAndToStatus) {
  WireError e = WireError::from(Status::not_found("no type 'x'"), 4);
  EXPECT_EQ(e.code, StatusCode::kNotFound);
  EXPECT_EQ(e.message, "no type 'x'");
  EXPECT_EQ(e.index, std::optional<uint32_t>(4));
  Status s = e.to_status();
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "no type 'x'");
}

TEST(WireErrorTest, AnOkStatusNeverBecomesASuccessfulError) {
  WireError e = WireError::from(Status::ok());
  EXPECT_EQ(e.code, StatusCode::kInternal);
  WireError ok_code{StatusCode::kOk, "odd", std::nullopt};
  EXPECT_FALSE(ok_code.to_status().is_ok());
}

TEST(WireErrorTest, UnknownOrOkCodeOnTheWireIsInternal) {
  Result<IngestReply> r = decode_ingest_reply(mp(R"({"ok":false,"error":{"code":"exploded","message":"m"}})"));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->error->code, StatusCode::kInternal);
  Result<IngestReply> ok_code = decode_ingest_reply(mp(R"({"ok":false,"error":{"code":"ok","message":"m"}})"));
  ASSERT_TRUE(ok_code.is_ok());
  EXPECT_EQ(ok_code->error->code, StatusCode::kInternal);
}

TEST(CodecRoundTripTest, JsonValuesTravelAsTheirMsgpackValuesAndSurviveValidateFields) {
  TypeSchema schema;
  schema.key = "id";
  schema.columns = {{"meta", ColumnType::kJson}};
  // text -> the msgpack value on the wire (as nlohmann writes it)
  for (const char* text : {R"("hello")", R"("42")", "5", "-2.5", "2.0", "true", R"({"a":1})", "[]", R"(["x",1])"}) {
    DeltaBatch m{"prices", {{1, "k", Op::kUpsert, {{"meta", JsonText{text}}}, 0, 0}}};
    const std::string bytes = encode(m);
    // The wire form is the JSON value itself: "hello" is a str, 5 an int.
    const nlohmann::json wire = nlohmann::json::from_msgpack(bytes);
    EXPECT_EQ(wire["changes"][0]["f"]["meta"], nlohmann::json::parse(text)) << text;
    Result<DeltaBatch> back = decode_delta_batch(bytes);
    ASSERT_TRUE(back.is_ok()) << back.status().to_string();
    Fields f = back->changes[0].f;
    ASSERT_TRUE(validate_fields(schema, "k", f).is_ok()) << text;
    EXPECT_EQ(f.at("meta"), Value{JsonText{text}}) << text;
  }
}

TEST(CodecRoundTripTest, JsonTextThatIsNotEncodableTravelsAsText) {
  // Callers should have run validate_fields; if not, nothing is lost or crashes.
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  for (const std::string& text : {std::string("{not json"), deep}) {
    DeltaBatch m{"prices", {{1, "k", Op::kUpsert, {{"meta", JsonText{text}}}, 0, 0}}};
    Result<DeltaBatch> back = decode_delta_batch(encode(m));
    ASSERT_TRUE(back.is_ok()) << back.status().to_string();
    EXPECT_EQ(back->changes[0].f.at("meta"), Value{text});
  }
}

// ---- malformed input ----

template <typename Decode>
void expect_every_prefix_rejected(const std::string& bytes, Decode decode) {
  ASSERT_TRUE(decode(bytes).is_ok());
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto r = decode(std::string_view(bytes.data(), n));
    ASSERT_FALSE(r.is_ok()) << "prefix of " << n << " of " << bytes.size() << " bytes was accepted";
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(CodecMalformedTest, TruncatedBytesAreRejected) {
  expect_every_prefix_rejected(encode(full_ingest_request()), [](std::string_view b) { return decode_ingest_request(b); });
  IngestReply ingest_reply;
  ingest_reply.first_version = 1;
  ingest_reply.last_version = 2;
  expect_every_prefix_rejected(encode(ingest_reply), decode_ingest_reply);
  expect_every_prefix_rejected(encode(full_register_request()), decode_register_request);
  expect_every_prefix_rejected(encode(full_register_reply()), decode_register_reply);
  expect_every_prefix_rejected(encode(HeartbeatRequest{"hub", 1, {"prices"}}), decode_heartbeat_request);
  expect_every_prefix_rejected(encode(full_heartbeat_reply()), decode_heartbeat_reply);
  expect_every_prefix_rejected(encode(full_delta_batch()), decode_delta_batch);
  expect_every_prefix_rejected(encode(SnapshotRequest{"prices", "*", "k", 5}), decode_snapshot_request);
  expect_every_prefix_rejected(encode(full_snapshot_reply()), decode_snapshot_reply);
}

TEST(CodecMalformedTest, TruncationIsReportedAsSuch) {
  const std::string bytes = encode(full_delta_batch());
  expect_rejected(decode_delta_batch(std::string_view(bytes.data(), bytes.size() / 2)), "truncated");
  expect_rejected(decode_delta_batch(""), "empty message");
}

TEST(CodecMalformedTest, CorruptedBytesNeverCrashAndFailCleanly) {
  const std::string original = encode(full_delta_batch());
  for (size_t i = 0; i < original.size(); ++i) {
    for (int b : {0x00, 0x7f, 0xc1, 0xdc, 0xdd, 0xde, 0xdf, 0xff}) {
      std::string bytes = original;
      bytes[i] = static_cast<char>(b);
      Result<DeltaBatch> r = decode_delta_batch(bytes);
      if (!r.is_ok()) {
        EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().to_string();
      }
    }
  }
}

TEST(CodecMalformedTest, TrailingBytesAreRejected) {
  expect_rejected(decode_ingest_request(encode(full_ingest_request()) + '\x01'), "trailing bytes after message");
  expect_rejected(decode_heartbeat_request(encode(HeartbeatRequest{"h", 1, {}}) + encode(HeartbeatRequest{})),
                  "trailing bytes after message");
}

TEST(CodecMalformedTest, NonMapTopLevelIsRejected) {
  expect_rejected(decode_ingest_request(mp("[1,2]")), "message: expected map, got array");
  expect_rejected(decode_delta_batch(mp("\"hello\"")), "message: expected map, got str");
  expect_rejected(decode_snapshot_reply(mp("5")), "message: expected map, got integer");
}

TEST(CodecMalformedTest, InvalidMsgpackByteIsRejected) {
  expect_rejected(decode_ingest_request(raw({0xc1})), "malformed msgpack");
}

TEST(CodecMalformedTest, RecordsAsMapIsRejected) {
  expect_rejected(decode_ingest_request(mp(R"({"records":{"key":"k"}})")), "records: expected array, got map");
}

TEST(CodecMalformedTest, VersionAsStringIsRejected) {
  expect_rejected(
      decode_delta_batch(mp(R"({"type":"prices","changes":[{"v":"1","key":"k","op":"u","ts":1,"hts":1}]})")),
      "changes[0].v: expected integer, got str");
}

TEST(CodecMalformedTest, NegativeVersionIsRejected) {
  expect_rejected(
      decode_delta_batch(mp(R"({"type":"prices","changes":[{"v":-1,"key":"k","op":"u","ts":1,"hts":1}]})")),
      "changes[0].v: expected a non-negative integer, got -1");
}

TEST(CodecMalformedTest, FieldsAsArrayIsRejected) {
  expect_rejected(decode_ingest_request(mp(R"({"records":[{"key":"k","op":"upsert","fields":[1]}]})")),
                  "records[0].fields: expected map, got array");
}

TEST(CodecMalformedTest, MissingRequiredKeysAreNamed) {
  expect_rejected(decode_ingest_request(mp(R"({"records":[{"op":"upsert"}]})")),
                  "records[0].key: missing required key");
  expect_rejected(decode_ingest_request(mp(R"({"records":[{"key":"a","op":"delete"},{"key":"b"}]})")),
                  "records[1].op: missing required key");
  expect_rejected(decode_ingest_request(mp(R"({"producer":"p"})")), "records: missing required key");
  expect_rejected(decode_delta_batch(mp(R"({"type":"prices","changes":[{"v":1,"key":"k","op":"u","ts":1}]})")),
                  "changes[0].hts: missing required key");
  expect_rejected(decode_ingest_reply(mp(R"({"first_version":1,"last_version":2})")), "ok: missing required key");
  expect_rejected(decode_ingest_reply(mp(R"({"ok":true,"first_version":1})")),
                  "last_version: missing required key");
  expect_rejected(decode_ingest_reply(mp(R"({"ok":false})")), "error: missing required key");
  expect_rejected(decode_ingest_reply(mp(R"({"ok":false,"error":{"code":"internal"}})")),
                  "error.message: missing required key");
  expect_rejected(decode_snapshot_reply(mp(R"({"records":[{"v":1,"key":"k","ts":1}],"high_version":1,
                                             "high_seq":1,"done":true})")),
                  "records[0].f: missing required key");
  expect_rejected(decode_register_reply(mp(R"({"ok":true,"heartbeat_ms":5000,"deliveries":[{"type":"prices",
                     "subject":"s","resume":"stream","schema":{"columns":[]},"schema_hash":"h"}]})")),
                  "deliveries[0].schema.key: missing required key");
}

TEST(CodecMalformedTest, UnknownOpIsRejected) {
  Result<IngestRequest> r = decode_ingest_request(mp(R"({"records":[{"key":"a","op":"upsert"},
      {"key":"b","op":"delete"},{"key":"c","op":"delete"},{"key":"d","op":"upsrt"}]})"));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "records[3].op: unknown op 'upsrt' (expected upsert or delete)");
  expect_rejected(
      decode_delta_batch(mp(R"({"type":"prices","changes":[{"v":1,"key":"k","op":"upsert","ts":1,"hts":1}]})")),
      "changes[0].op: unknown op 'upsert' (expected u or d)");
}

TEST(CodecMalformedTest, UnknownEnumValuesAreRejected) {
  expect_rejected(decode_heartbeat_reply(mp(R"({"agent":"a","ts":1,"status":"dead","checkpoints":{},
                                             "pending":0,"quarantined":0})")),
                  "status: unknown status 'dead' (expected ok or degraded)");
  expect_rejected(decode_register_reply(mp(R"({"ok":true,"heartbeat_ms":1,"deliveries":[{"type":"prices",
                     "subject":"s","resume":"rewind","schema":{"key":"k","columns":[]},"schema_hash":"h"}]})")),
                  "deliveries[0].resume: unknown resume mode 'rewind'");
  expect_rejected(decode_register_reply(mp(R"({"ok":true,"heartbeat_ms":1,"deliveries":[{"type":"prices",
                     "subject":"s","resume":"stream","schema":{"key":"k","columns":[{"name":"c","type":"varchar"}]},
                     "schema_hash":"h"}]})")),
                  "deliveries[0].schema.columns[0].type: unknown column type 'varchar'");
}

TEST(CodecMalformedTest, OversizeIngestBatchIsRejected) {
  IngestRequest m;
  m.records.resize(kMaxBatchRecords + 1, IngestRecord{"k", Op::kDelete, {}, std::nullopt, std::nullopt});
  Result<IngestRequest> r = decode_ingest_request(encode(m));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "records: batch of 10001 records exceeds the limit of 10000");

  m.records.resize(kMaxBatchRecords);
  EXPECT_TRUE(decode_ingest_request(encode(m)).is_ok());
}

TEST(CodecMalformedTest, OversizeDeltaBatchIsRejected) {
  DeltaBatch m;
  m.type = "prices";
  m.changes.resize(kMaxBatchRecords + 1, Change{1, "k", Op::kDelete, {}, 0, 0});
  expect_rejected(decode_delta_batch(encode(m)), "changes: batch of 10001 changes exceeds the limit of 10000");
}

TEST(CodecMalformedTest, OversizeSnapshotPageIsRejected) {
  SnapshotReply m;
  m.records.resize(kMaxSnapshotPage + 1, SnapshotRecord{1, "k", {}, 0});
  expect_rejected(decode_snapshot_reply(encode(m)), "records: batch of 10001 records exceeds the limit of 10000");
}

TEST(CodecMalformedTest, EmptyAndOversizeKeysAreRejected) {
  expect_rejected(decode_ingest_request(mp(R"({"records":[{"key":"","op":"delete"}]})")),
                  "records[0].key: must not be empty");
  IngestRequest m;
  m.records = {{std::string(kMaxKeyBytes + 1, 'k'), Op::kDelete, {}, std::nullopt, std::nullopt}};
  expect_rejected(decode_ingest_request(encode(m)), "records[0].key: key of 513 bytes exceeds the limit of 512");
  m.records[0].key.resize(kMaxKeyBytes);
  EXPECT_TRUE(decode_ingest_request(encode(m)).is_ok());
}

TEST(CodecMalformedTest, RegistrationOrderMustBeABoolean) {
  expect_rejected(decode_heartbeat_request(mp(R"({"hub":"h","ts":1,"types":[],"register":"yes"})")), "register");
}

TEST(CodecMalformedTest, InvalidTypeNamesAreRejectedWhereverATypeAppears) {
  DeltaBatch batch{"Bad Name", {}};
  expect_rejected(decode_delta_batch(encode(batch)), "type: invalid business type name 'Bad Name': ");
  expect_rejected(decode_heartbeat_request(encode(HeartbeatRequest{"hub", 1, {"prices", "Prices"}})),
                  "types[1]: invalid business type name 'Prices'");
  expect_rejected(decode_snapshot_request(encode(SnapshotRequest{"9lives", "*", std::nullopt, 1})),
                  "type: invalid business type name '9lives'");
  RegisterRequest reg = full_register_request();
  reg.subscriptions[1].type = "in-ventory";
  expect_rejected(decode_register_request(encode(reg)), "subscriptions[1].type: invalid business type name");
  RegisterReply reply = full_register_reply();
  reply.deliveries[0].type = "";
  expect_rejected(decode_register_reply(encode(reply)), "deliveries[0].type: invalid business type name ''");
  HeartbeatReply hb = full_heartbeat_reply();
  hb.checkpoints["Bad"] = Checkpoint{};
  expect_rejected(decode_heartbeat_reply(encode(hb)), "checkpoints.Bad: invalid business type name 'Bad'");
}

TEST(CodecMalformedTest, InvalidAgentIdsAreRejected) {
  RegisterRequest reg = full_register_request();
  reg.agent = "store 17";
  Result<RegisterRequest> r = decode_register_request(encode(reg));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "agent: invalid agent id 'store 17': use 1-64 characters from A-Z a-z 0-9 _ -");
  HeartbeatReply hb = full_heartbeat_reply();
  hb.agent = "a.b";
  expect_rejected(decode_heartbeat_reply(encode(hb)), "agent: invalid agent id 'a.b'");
}

TEST(CodecMalformedTest, BadPartitionsAreRejected) {
  IngestRequest m = full_ingest_request();
  m.records[0].partition = "store 17";
  expect_rejected(decode_ingest_request(encode(m)), "records[0].partition: invalid partition 'store 17'");
  m.records[0].partition = "*";  // "*" means "every partition" only in subscriptions
  expect_rejected(decode_ingest_request(encode(m)), "records[0].partition: invalid partition '*'");
  m.records[0].partition = std::string(kAllPartitions);  // "no partition": the ingest handler decides
  EXPECT_TRUE(decode_ingest_request(encode(m)).is_ok());

  RegisterRequest reg = full_register_request();
  reg.subscriptions[0].partition = "a.b";
  expect_rejected(decode_register_request(encode(reg)), "subscriptions[0].partition: invalid partition 'a.b'");
  expect_rejected(decode_snapshot_request(encode(SnapshotRequest{"prices", "", std::nullopt, 1})),
                  "partition: invalid partition ''");
}

TEST(CodecMalformedTest, SnapshotLimitOutsideBoundsIsRejected) {
  expect_rejected(decode_snapshot_request(encode(SnapshotRequest{"prices", "*", std::nullopt, 0})),
                  "limit: page size 0 is outside 1..10000");
  expect_rejected(decode_snapshot_request(encode(SnapshotRequest{"prices", "*", std::nullopt, 10001})),
                  "limit: page size 10001 is outside 1..10000");
  expect_rejected(decode_snapshot_request(mp(R"({"type":"prices","partition":"*","limit":4294967296})")),
                  "limit: integer 4294967296 is out of range");
}

TEST(CodecMalformedTest, IntegerBeyondInt64IsRejected) {
  // 18446744073709551615 = UINT64_MAX, carried by msgpack as uint64.
  expect_rejected(
      decode_ingest_request(mp(R"({"records":[{"key":"k","op":"upsert","fields":{"n":18446744073709551615}}]})")),
      "records[0].fields.n: integer 18446744073709551615 is out of range (maximum 9223372036854775807)");
  expect_rejected(decode_ingest_request(mp(R"({"records":[{"key":"k","op":"upsert","ts":9223372036854775808}]})")),
                  "records[0].ts: integer 9223372036854775808 is out of range");
}

TEST(CodecMalformedTest, DuplicateKeysAreRejected) {
  // {"records": [], "records": []}: nlohmann cannot build duplicate keys, so by hand.
  std::string bytes = raw({0x82, 0xa7}) + "records" + raw({0x90, 0xa7}) + "records" + raw({0x90});
  expect_rejected(decode_ingest_request(bytes), "records: duplicate key");
  // {"records":[{"key":"k","op":"upsert","fields":{"a":1,"a":2}}]}
  std::string dup_field = mp(R"({"records":[{"key":"k","op":"upsert","fields":{"a":1,"b":2}}]})");
  const size_t b = dup_field.rfind('b');
  ASSERT_NE(b, std::string::npos);
  dup_field[b] = 'a';
  expect_rejected(decode_ingest_request(dup_field), "records[0].fields.a: duplicate key");
}

TEST(CodecMalformedTest, NonStringColumnNamesAreRejected) {
  const std::string bytes =
      mp_with(R"({"records":[{"key":"k","op":"upsert","fields":"@@@"}]})", raw({0x81, 0x01, 0x02}));  // {1: 2}
  expect_rejected(decode_ingest_request(bytes), "records[0].fields: expected str column names, got integer");
}

TEST(CodecMalformedTest, ExtValuesAreRejected) {
  const std::string bytes = mp_with(R"({"records":[{"key":"k","op":"upsert","fields":{"x":"@@@"}}]})",
                                    raw({0xd4, 0x01, 0x00}));  // fixext1, type 1, data 0
  expect_rejected(decode_ingest_request(bytes), "records[0].fields.x: msgpack ext values are not supported");
}

TEST(CodecMalformedTest, BinaryInsideJsonValueIsRejected) {
  const std::string bytes = mp_with(R"({"records":[{"key":"k","op":"upsert","fields":{"x":["@@@"]}}]})",
                                    raw({0xc4, 0x01, 0x41}));  // bin8 of one byte
  expect_rejected(decode_ingest_request(bytes), "records[0].fields.x[0]: a json value cannot hold msgpack bin");
}

TEST(CodecMalformedTest, HugeDeclaredArrayInTinyBufferFailsCleanly) {
  // array32 claiming 4294967295 elements, with nothing after it.
  Result<IngestRequest> r = decode_ingest_request(raw({0xdd, 0xff, 0xff, 0xff, 0xff}));
  expect_rejected(r, "msgpack array longer than 100000 entries");
  // The same bomb where the records array should be.
  std::string nested = raw({0x81, 0xa7}) + "records" + raw({0xdd, 0xff, 0xff, 0xff, 0xff});
  expect_rejected(decode_ingest_request(nested), "msgpack array longer than 100000 entries");
}

TEST(CodecMalformedTest, HugeDeclaredMapStrAndBinFailCleanly) {
  expect_rejected(decode_ingest_request(raw({0xdf, 0xff, 0xff, 0xff, 0xff})),
                  "msgpack map larger than 10000 entries");
  // msgpack-c waits for a str/bin body before it checks its length, so a
  // declared 4 GiB body that is not there is reported as truncated.
  expect_rejected(decode_ingest_request(raw({0xdb, 0xff, 0xff, 0xff, 0xff})), "truncated");
  expect_rejected(decode_ingest_request(raw({0xc6, 0xff, 0xff, 0xff, 0xff})), "truncated");
  // A plausible array length that the buffer does not hold is merely truncated.
  expect_rejected(decode_ingest_request(raw({0xdd, 0x00, 0x00, 0x10, 0x00})), "truncated");
}

TEST(CodecMalformedTest, DeepNestingFailsCleanly) {
  std::string bytes(1000, static_cast<char>(0x91));  // [[[[...]]]]
  bytes += static_cast<char>(0xc0);
  expect_rejected(decode_delta_batch(bytes), "msgpack nesting deeper than");
}

TEST(CodecMalformedTest, WrongScalarTypesAreNamed) {
  expect_rejected(decode_ingest_request(mp(R"({"producer":5,"records":[]})")), "producer: expected str, got integer");
  expect_rejected(decode_ingest_request(mp(R"({"seq":1.5,"records":[]})")), "seq: expected integer, got float");
  expect_rejected(decode_snapshot_reply(mp(R"({"records":[],"high_version":1,"high_seq":1,"done":"yes"})")),
                  "done: expected bool, got str");
  expect_rejected(decode_heartbeat_request(mp(R"({"hub":"h","ts":1,"types":[1]})")),
                  "types[0]: expected str, got integer");
  expect_rejected(decode_heartbeat_reply(mp(R"({"agent":"a","ts":1,"status":"ok","checkpoints":[],
                                             "pending":0,"quarantined":0})")),
                  "checkpoints: expected map, got array");
  expect_rejected(decode_register_request(mp(R"({"agent":"a","host":"h","version":"v",
                                              "subscriptions":[{"type":"prices","partition":"*","version":1,
                                              "seq":1,"ts":"now","rows":0}]})")),
                  "subscriptions[0].ts: expected integer, got str");
}

TEST(CodecMalformedTest, NestedMapsAndArraysDecodeAsJsonText) {
  Result<IngestRequest> r = decode_ingest_request(
      mp(R"({"records":[{"key":"k","op":"upsert","fields":{"m":{"z":1,"a":[true,null,"s",-2,0.5]}}}]})"));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->records[0].fields.at("m"), Value{JsonText{R"({"a":[true,null,"s",-2,0.5],"z":1})"}});
  // Compact text made by the decoder: validation need not parse it again.
  EXPECT_TRUE(std::get<JsonText>(r->records[0].fields.at("m")).canonical);
}

// A json value's strings and keys must be UTF-8 (protocol.md, "Values"):
// replaced by U+FFFD instead, {"\xe4":1,"\x80":2} would become one key and
// the stored value would differ from what was sent (found by the
// ingest_msgpack fuzz target).
TEST(CodecMalformedTest, JsonStringsAndKeysThatAreNotUtf8AreRejectedNotReplaced) {
  auto with = [](const std::string& json_value) {
    return mp_with(R"({"records":[{"key":"k","op":"upsert","fields":{"m":"@@@"}}]})", json_value);
  };
  expect_rejected(decode_ingest_request(with(raw({0x82, 0xa1, 0xe4, 0x01, 0xa1, 0x80, 0x02}))),
                  "records[0].fields.m: a json object key must be valid UTF-8");
  expect_rejected(decode_ingest_request(with(raw({0x91, 0xa2, 0xc3, 0x28}))),
                  "records[0].fields.m[0]: a json string must be valid UTF-8");
  // {"é":"€"}: well-formed multi-byte UTF-8 is kept as it is.
  Result<IngestRequest> ok =
      decode_ingest_request(with(raw({0x81, 0xa2, 0xc3, 0xa9, 0xa3, 0xe2, 0x82, 0xac})));
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(ok->records[0].fields.at("m"), Value{JsonText{"{\"\xc3\xa9\":\"\xe2\x82\xac\"}"}});
}

TEST(Utf8Test, WellFormedUtf8IsToldFromEverythingElse) {
  for (const char* good : {"", "abc", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf",
                           "\xed\x9f\xbf"}) {
    EXPECT_TRUE(is_valid_utf8(good)) << good;
  }
  for (const char* bad : {"\x80", "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf0\x80\x80\xaf",
                          "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xe2\x82", "a\xff", "\xc3"}) {
    EXPECT_FALSE(is_valid_utf8(bad)) << bad;
  }
}

TEST(CodecMalformedTest, JsonValueNestedDeeperThanValidationAllowsIsRejected) {
  auto nested = [](int levels) {
    return mp_with(R"({"records":[{"key":"k","op":"upsert","fields":{"m":"@@@"}}]})",
                   std::string(static_cast<size_t>(levels), static_cast<char>(0x91)) + raw({0xc0}));
  };
  expect_rejected(decode_ingest_request(nested(33)), "records[0].fields.m");
  expect_rejected(decode_ingest_request(nested(33)), "json nests deeper than 32 levels");
  // 32 levels is what validate_fields accepts as JSON text too.
  Result<IngestRequest> ok = decode_ingest_request(nested(32));
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  TypeSchema schema;
  schema.key = "id";
  schema.columns = {{"m", ColumnType::kJson}};
  Fields as_text{{"m", JsonText{std::get<JsonText>(ok->records[0].fields.at("m")).text}}};
  EXPECT_TRUE(validate_fields(schema, "k", as_text).is_ok());
}

TEST(CodecMalformedTest, NonStringKeysInsideJsonValueAreRejected) {
  const std::string bytes = mp_with(R"({"records":[{"key":"k","op":"upsert","fields":{"m":"@@@"}}]})",
                                    raw({0x81, 0x05, 0x06}));  // {5: 6}
  expect_rejected(decode_ingest_request(bytes), "records[0].fields.m: expected str keys in a json object, got integer");
}

// ---- JSON ingest ----

TEST(JsonIngestTest, DecodesTheSameShapeAsMsgpack) {
  Result<IngestRequest> r = decode_ingest_request_json(R"({
    "producer": "erp", "seq": 7,
    "records": [
      {"key": "sku-1", "op": "upsert", "ts": 1700000000000, "partition": "store-1",
       "fields": {"name": "Widget", "qty": 3, "neg": -3, "price": 9.5, "whole": 2.0, "on": true, "gone": null,
                  "meta": {"b": [1, 2], "a": "x"}, "tags": ["x", "y"], "image": "AAE="}},
      {"key": "sku-2", "op": "delete"}
    ]})");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->producer, "erp");
  EXPECT_EQ(r->seq, std::optional<uint64_t>(7));
  ASSERT_EQ(r->records.size(), 2u);
  const IngestRecord& u = r->records[0];
  EXPECT_EQ(u.ts, std::optional<int64_t>(1700000000000));
  EXPECT_EQ(u.partition, std::optional<std::string>("store-1"));
  EXPECT_EQ(u.fields.at("name"), Value{std::string("Widget")});
  EXPECT_EQ(u.fields.at("qty"), Value{int64_t{3}});
  EXPECT_EQ(u.fields.at("neg"), Value{int64_t{-3}});
  EXPECT_EQ(u.fields.at("price"), Value{9.5});
  EXPECT_EQ(u.fields.at("whole"), Value{2.0});
  EXPECT_EQ(u.fields.at("on"), Value{true});
  EXPECT_EQ(u.fields.at("gone"), Value{});
  EXPECT_EQ(u.fields.at("meta"), Value{JsonText{R"({"a":"x","b":[1,2]})"}});
  EXPECT_EQ(u.fields.at("tags"), Value{JsonText{R"(["x","y"])"}});
  // Blobs stay text until validate_fields knows the column is a blob.
  EXPECT_EQ(u.fields.at("image"), Value{std::string("AAE=")});
  EXPECT_EQ(r->records[1].op, Op::kDelete);
}

TEST(JsonIngestTest, InvalidJsonIsRejected) {
  expect_rejected(decode_ingest_request_json(R"({"records": [)"), "invalid JSON");
  expect_rejected(decode_ingest_request_json(""), "invalid JSON");
  expect_rejected(decode_ingest_request_json("{\"records\": [], \"x\": \"\xff\"}"), "invalid JSON");
}

TEST(JsonIngestTest, WrongTypesNameTheField) {
  expect_rejected(decode_ingest_request_json(R"({"records": "many"})"), "records: expected array, got str");
  expect_rejected(decode_ingest_request_json(R"({"records": [{"key": 5, "op": "upsert"}]})"),
                  "records[0].key: expected str, got integer");
  expect_rejected(decode_ingest_request_json(R"({"records": [{"key": "k", "op": "upsert", "ts": 1.5}]})"),
                  "records[0].ts: expected integer, got float");
  expect_rejected(decode_ingest_request_json(R"({"records": [{"key": "k", "op": "merge"}]})"),
                  "records[0].op: unknown op 'merge' (expected upsert or delete)");
  expect_rejected(decode_ingest_request_json(R"([1])"), "message: expected map, got array");
  expect_rejected(
      decode_ingest_request_json(R"({"records": [{"key": "k", "op": "upsert", "fields": {"n": 18446744073709551615}}]})"),
      "records[0].fields.n: integer 18446744073709551615 is out of range");
}

TEST(JsonIngestTest, DeepNestingIsRejected) {
  std::string deep = R"({"records":[{"key":"k","op":"upsert","fields":{"x":)" + std::string(100000, '[') +
                     std::string(100000, ']') + "}}]}";
  expect_rejected(decode_ingest_request_json(deep), "nesting deeper than");
}

TEST(JsonIngestTest, BareArrayOfRecords) {
  Result<std::vector<IngestRecord>> r =
      decode_ingest_records_json(R"([{"key":"a","op":"upsert","fields":{"x":1}},{"key":"b","op":"delete"}])");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].fields.at("x"), Value{int64_t{1}});
  EXPECT_EQ((*r)[1].key, "b");
}

TEST(JsonIngestTest, BareArrayErrorsNameTheRecord) {
  expect_rejected(decode_ingest_records_json(R"({"records":[]})"), "records: expected a JSON array of records, got object");
  expect_rejected(decode_ingest_records_json(R"([{"key":"a","op":"upsert"},{"op":"upsert"}])"),
                  "records[1].key: missing required key");
  expect_rejected(decode_ingest_records_json("[{]"), "invalid JSON");
}

TEST(JsonIngestTest, OversizeBareArrayIsRejected) {
  std::string json = "[";
  for (size_t i = 0; i <= kMaxBatchRecords; ++i) {
    if (i > 0) json += ',';
    json += R"({"key":"k","op":"delete"})";
  }
  json += "]";
  expect_rejected(decode_ingest_records_json(json), "records: batch of 10001 records exceeds the limit of 10000");
}

// ---- JSON output ----

TEST(JsonOutputTest, ValueToJsonForEveryKind) {
  EXPECT_EQ(value_to_json(Value{}), "null");
  EXPECT_EQ(value_to_json(Value{true}), "true");
  EXPECT_EQ(value_to_json(Value{false}), "false");
  EXPECT_EQ(value_to_json(Value{std::numeric_limits<int64_t>::min()}), "-9223372036854775808");
  EXPECT_EQ(value_to_json(Value{1.5}), "1.5");
  EXPECT_EQ(value_to_json(Value{std::string("a\"b\\c\n")}), R"("a\"b\\c\n")");
  EXPECT_EQ(value_to_json(Value{Blob{std::string("\x00\x01\x02\xff", 4)}}), R"("AAEC/w==")");
  EXPECT_EQ(value_to_json(Value{Blob{}}), R"("")");
  EXPECT_EQ(value_to_json(Value{JsonText{R"({"a": [1]})"}}), R"({"a": [1]})");
}

TEST(JsonOutputTest, DoublesRoundTripExactly) {
  for (double d : {0.1, 1.0 / 3.0, -2.5e-300, 1e300, 123456789.123456789, 3.0}) {
    const std::string text = value_to_json(Value{d});
    nlohmann::json back = nlohmann::json::parse(text);
    ASSERT_TRUE(back.is_number_float()) << text;
    EXPECT_EQ(back.get<double>(), d) << text;
  }
}

TEST(JsonOutputTest, FieldsToJsonIsAnObject) {
  Fields f{{"b", int64_t{2}}, {"a \"q\"", std::string("x")}, {"j", JsonText{"[1,2]"}}, {"n", Value{}}};
  const std::string text = fields_to_json(f);
  EXPECT_EQ(text, R"({"a \"q\"":"x","b":2,"j":[1,2],"n":null})");
  EXPECT_TRUE(nlohmann::json::accept(text));
  EXPECT_EQ(fields_to_json({}), "{}");
}

// ---- json columns: one rule from msgpack and from JSON (protocol.md "Values") ----

TypeSchema json_schema() {
  TypeSchema schema;
  schema.key = "id";
  schema.columns = {{"meta", ColumnType::kJson}, {"amount", ColumnType::kReal}};
  return schema;
}

// The value of `meta` of the only record, after decoding and validation.
Result<Value> validated_meta(const Result<IngestRequest>& r) {
  if (!r.is_ok()) return r.status();
  Fields f = r->records.at(0).fields;
  DS_RETURN_IF_ERROR(validate_fields(json_schema(), "k", f));
  return f.at("meta");
}

TEST(JsonColumnTest, AStringIsAJsonStringFromMsgpackAndFromJson) {
  for (const char* s : {"42", "hello", "{\"a\":1}", "true"}) {
    nlohmann::json request = {{"records", {{{"key", "k"}, {"op", "upsert"}, {"fields", {{"meta", s}}}}}}};
    const Value expected = JsonText{nlohmann::json(s).dump()};
    Result<Value> from_msgpack = validated_meta(decode_ingest_request(mp(request.dump())));
    ASSERT_TRUE(from_msgpack.is_ok()) << from_msgpack.status().to_string();
    EXPECT_EQ(*from_msgpack, expected) << s;
    Result<Value> from_json = validated_meta(decode_ingest_request_json(request.dump()));
    ASSERT_TRUE(from_json.is_ok()) << from_json.status().to_string();
    EXPECT_EQ(*from_json, expected) << s;
  }
}

TEST(JsonColumnTest, EveryJsonValueIsTakenAsGivenFromMsgpackAndFromJson) {
  for (const char* text : {"42", "-1.5", "true", "false", R"("x")", R"({"b":[1,"2",null]})", "[]"}) {
    const std::string request =
        std::string(R"({"records":[{"key":"k","op":"upsert","fields":{"meta":)") + text + "}}]}";
    const Value expected = JsonText{nlohmann::json::parse(text).dump()};
    Result<Value> from_msgpack = validated_meta(decode_ingest_request(mp(request)));
    ASSERT_TRUE(from_msgpack.is_ok()) << from_msgpack.status().to_string();
    EXPECT_EQ(*from_msgpack, expected) << text;
    Result<Value> from_json = validated_meta(decode_ingest_request_json(request));
    ASSERT_TRUE(from_json.is_ok()) << from_json.status().to_string();
    EXPECT_EQ(*from_json, expected) << text;
  }
  // null is the column's NULL, from both.
  const std::string null_request = R"({"records":[{"key":"k","op":"upsert","fields":{"meta":null}}]})";
  EXPECT_EQ(*validated_meta(decode_ingest_request(mp(null_request))), Value{});
  EXPECT_EQ(*validated_meta(decode_ingest_request_json(null_request)), Value{});
}

TEST(NonFiniteTest, NaNAndInfinityAreRefusedFromMsgpackAndFromJson) {
  // msgpack carries them as float64.
  for (double d : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                   -std::numeric_limits<double>::infinity()}) {
    IngestRequest m;
    IngestRecord r;
    r.key = "k";
    r.fields = {{"amount", d}};
    m.records = {r};
    Result<IngestRequest> decoded = decode_ingest_request(encode(m));
    ASSERT_TRUE(decoded.is_ok()) << decoded.status().to_string();
    Fields f = decoded->records[0].fields;
    Status s = validate_fields(json_schema(), "k", f);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("column 'amount' expects real, got "), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("only finite numbers"), std::string::npos) << s.message();
    r.fields = {{"meta", d}};
    m.records = {r};
    Fields j = decode_ingest_request(encode(m))->records[0].fields;
    EXPECT_NE(validate_fields(json_schema(), "k", j).message().find("column 'meta' expects json, got "),
              std::string::npos);
  }
  // JSON cannot carry them at all: NaN is not JSON, and a number too large
  // for a double is refused as the JSON parser reads it.
  expect_rejected(decode_ingest_request_json(R"({"records":[{"key":"k","op":"upsert","fields":{"amount":NaN}}]})"),
                  "invalid JSON");
  for (const char* big : {"1e999", "-1e999"}) {
    expect_rejected(decode_ingest_request_json(std::string(R"({"records":[{"key":"k","op":"upsert","fields":{"amount":)") +
                                               big + "}}]}"),
                    "number overflow");
  }
}

// ---- the record a decode error is in ----

TEST(IngestDecodeIndexTest, AnErrorInARecordNamesItsIndexFromMsgpackAndFromJson) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"records":[{"key":"a","op":"upsert"},{"key":"b","op":"upsrt"}]})", "records[1].op: unknown op"},
      {R"({"records":[{"key":"a","op":"upsert"},{"key":"b","op":"upsert","ts":"x"}]})", "records[1].ts"},
      {R"({"records":[{"key":"a","op":"upsert"},{"key":"b","op":"upsert"},{"op":"upsert"}]})",
       "records[2].key: missing required key"},
      {R"({"records":[{"key":"a","op":"upsert","fields":[1]}]})", "records[0].fields"},
  };
  for (const auto& [request, needle] : cases) {
    const uint32_t expected = static_cast<uint32_t>(needle[8] - '0');
    std::optional<uint32_t> index;
    expect_rejected(decode_ingest_request(mp(request), &index), needle);
    EXPECT_EQ(index, std::optional<uint32_t>(expected)) << request;
    index.reset();
    expect_rejected(decode_ingest_request_json(request, &index), needle);
    EXPECT_EQ(index, std::optional<uint32_t>(expected)) << request;
    index.reset();
    const std::string records = nlohmann::json::parse(request)["records"].dump();
    expect_rejected(decode_ingest_records_json(records, &index), needle);
    EXPECT_EQ(index, std::optional<uint32_t>(expected)) << request;
  }
  // An error outside the records names none.
  std::optional<uint32_t> index = 7;
  expect_rejected(decode_ingest_request(mp(R"({"seq":"x","records":[]})"), &index), "seq");
  EXPECT_EQ(index, std::nullopt);
  index = 7;
  expect_rejected(decode_ingest_request_json("{", &index), "invalid JSON");
  EXPECT_EQ(index, std::nullopt);
}

// ---- sizes ----

std::vector<Change> changes_of_every_size() {
  std::vector<Change> out;
  uint64_t v = 0;
  for (uint64_t version : {uint64_t{1}, uint64_t{200}, uint64_t{70000}, uint64_t{1} << 40,
                           std::numeric_limits<uint64_t>::max()}) {
    for (int64_t ts : {int64_t{0}, int64_t{-1}, int64_t{-100}, int64_t{-40000}, int64_t{-3000000000},
                       std::numeric_limits<int64_t>::min(), int64_t{1700000000000}}) {
      Change c;
      c.v = version;
      c.key = std::string(static_cast<size_t>(1 + (v++ % 300)), 'k');
      c.ts = ts;
      c.hts = -ts / 2;
      out.push_back(c);
    }
  }
  Change all;
  all.v = 7;
  all.key = "all";
  all.f = every_value_kind();
  out.push_back(all);
  for (size_t n : {size_t{31}, size_t{32}, size_t{255}, size_t{256}, size_t{65535}, size_t{65536}, size_t{100000}}) {
    Change big;
    big.v = 9;
    big.key = "big";
    big.f = {{"text", std::string(n, 'x')}, {"image", Blob{std::string(n, 'y')}},
             {"meta", JsonText{"[" + std::to_string(n) + ",-" + std::to_string(n) + ",\"" + std::string(n, 'z') +
                               "\",1.5,{\"k\":[true,null]}]"}},
             {"scalar", JsonText{"\"" + std::string(n, 's') + "\""}}};
    out.push_back(big);
    Change del;
    del.v = n;
    del.key = std::string(n % 512 + 1, 'd');
    del.op = Op::kDelete;
    out.push_back(del);
  }
  return out;
}

TEST(EncodedSizeTest, AChangeCountsExactlyTheBytesItAddsToADeltaBatch) {
  for (const Change& c : changes_of_every_size()) {
    const size_t empty = encode(DeltaBatch{"prices", {}}).size();
    // One change in a batch: the fixarray header stays one byte.
    EXPECT_EQ(encode(DeltaBatch{"prices", {c}}).size(), empty + encoded_size(c)) << c.key.size();
  }
}

TEST(EncodedSizeTest, TheBatchBoundHoldsForAnyNumberOfChanges) {
  const std::vector<Change> all = changes_of_every_size();
  for (size_t n : {size_t{0}, size_t{1}, size_t{15}, size_t{16}, all.size()}) {
    DeltaBatch batch{"a_type_name", {}};
    size_t bound = delta_batch_overhead(batch.type);
    for (size_t i = 0; i < n; ++i) {
      batch.changes.push_back(all[i % all.size()]);
      bound += encoded_size(batch.changes.back());
    }
    const size_t actual = encode(batch).size();
    EXPECT_LE(actual, bound) << n;
    EXPECT_GE(actual + 4, bound) << n;  // only the array header may be narrower than the bound counts
  }
}

TEST(EncodedSizeTest, ASnapshotRecordAndItsReplyBoundHold) {
  SnapshotReply reply;
  reply.high_version = std::numeric_limits<uint64_t>::max();
  reply.high_seq = 12;
  size_t bound = snapshot_reply_overhead();
  for (const Change& c : changes_of_every_size()) {
    SnapshotRecord r{c.v, c.key, c.f, c.ts};
    const size_t before = encode(SnapshotReply{std::nullopt, {r}, 0, 0, false}).size();
    const size_t empty = encode(SnapshotReply{std::nullopt, {}, 0, 0, false}).size();
    EXPECT_EQ(before, empty + encoded_size(r));
    reply.records.push_back(r);
    bound += encoded_size(r);
  }
  EXPECT_LE(encode(reply).size(), bound);
}

TEST(MessageBodyLimitTest, LeavesHeadroomUnderTheServersMaxPayload) {
  EXPECT_EQ(message_body_limit(1048576), 1048576u - 4096u);
  EXPECT_EQ(message_body_limit(65536), 65536u - 4096u);
  EXPECT_EQ(message_body_limit(8000), 6000u);  // a quarter when that is less than the headroom
  EXPECT_EQ(message_body_limit(0), 1048576u - 4096u);  // not known yet: nats-server's default
  EXPECT_EQ(message_body_limit(-1), 1048576u - 4096u);
}

// ---- the change log's fields (encode_logged_fields) ----

TypeSchema logged_schema() {
  TypeSchema s;
  s.key = "id";
  s.columns = {{"amount", ColumnType::kReal}, {"n", ColumnType::kInteger}, {"name", ColumnType::kText},
               {"attrs", ColumnType::kJson}, {"image", ColumnType::kBlob}, {"on", ColumnType::kBool}};
  return s;
}

TEST(LoggedFieldsTest, EveryValueKindRoundTripsAndRealsStayReal) {
  Fields f{{"amount", -0.0},
           {"n", int64_t{-7}},
           {"name", std::string("x")},
           {"attrs", JsonText{R"({"a":[1,2]})"}},
           {"image", Blob{std::string("\x00\xff", 2)}},
           {"on", true}};
  std::string bytes = "left over";
  encode_logged_fields(f, bytes);
  auto back = decode_logged_fields(bytes, logged_schema());
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, f);
  // -0.0 keeps its sign and 3.0 stays a float64 (0xcb), not an integer.
  EXPECT_TRUE(std::signbit(std::get<double>(back->at("amount"))));
  encode_logged_fields({{"amount", 3.0}}, bytes);
  EXPECT_NE(bytes.find('\xcb'), std::string::npos);
  EXPECT_EQ(decode_logged_fields(bytes, logged_schema())->at("amount"), Value(3.0));
}

TEST(LoggedFieldsTest, AnIntegralRealOfAnOlderLogReadsAsReal) {
  // What msgpack-c's pack_double wrote for 2.0 and -5.0: integers.
  auto back = decode_logged_fields(mp(R"({"amount": 2, "n": 2})"), logged_schema());
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back->at("amount"), Value(2.0));
  EXPECT_EQ(back->at("n"), Value(int64_t{2}));
  back = decode_logged_fields(mp(R"({"amount": -5})"), logged_schema());
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(back->at("amount"), Value(-5.0));
}

TEST(LoggedFieldsTest, ABlobThatIsNotAFieldsMapIsDataLoss) {
  EXPECT_EQ(decode_logged_fields(mp("[1]"), logged_schema()).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(decode_logged_fields(mp(R"({"a": {"b": 1}})"), logged_schema()).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(decode_logged_fields(raw({0x81}), logged_schema()).status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace ds
