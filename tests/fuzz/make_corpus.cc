// Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/)
// from the real encoders, so every target starts from valid inputs:
//
//   fuzz_make_corpus <corpus dir>      e.g. build-fuzz/tests/fuzz/fuzz_make_corpus tests/fuzz/corpus
//
// Each target's directory is emptied and rewritten; the output is the same on
// every run (no clocks, no randomness). The config seeds are the example
// files of deploy/ plus small ones made here.

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "shared/codec.h"
#include "shared/messages.h"

namespace {

using namespace ds;
namespace fs = std::filesystem;

struct Seeds {
  fs::path dir;
  int written = 0;

  Seeds(const fs::path& root, const std::string& target) : dir(root / target) {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void add(const std::string& name, const std::string& bytes) {
    std::ofstream out(dir / name, std::ios::binary);
    out << bytes;
    if (!out) throw std::runtime_error("cannot write " + (dir / name).string());
    ++written;
  }
};

Fields every_value_type() {
  return Fields{{"region", Value{std::string("north")}},
                {"name", Value{std::string("widget \"deluxe\"")}},
                {"count", Value{int64_t{-42}}},
                {"price", Value{9.5}},
                {"active", Value{true}},
                {"photo", Value{Blob{std::string("\x00\x01\xff", 3)}}},
                {"doc", Value{JsonText{R"({"a":[1,2.5,"x",null,true],"b":{"c":{}}})", true}}}};
}

IngestRecord record(std::string key, Op op, Fields f = {}) {
  IngestRecord r;
  r.key = std::move(key);
  r.op = op;
  r.fields = std::move(f);
  return r;
}

std::vector<IngestRequest> ingest_requests() {
  std::vector<IngestRequest> out;
  IngestRequest full;
  full.producer = "erp-1";
  full.seq = 7;
  full.records.push_back(record("thing-1", Op::kUpsert, every_value_type()));
  IngestRecord partial = record("thing-2", Op::kUpsert, {{"count", Value{int64_t{3}}}, {"doc", Value{}}});
  partial.partition = "south";
  partial.ts = 1700000000000;
  full.records.push_back(partial);
  IngestRecord del = record("thing-3", Op::kDelete);
  del.partition = "_all";
  full.records.push_back(del);
  out.push_back(full);

  IngestRequest stock;
  stock.records.push_back(record("sku-9", Op::kUpsert,
                                 {{"store", Value{int64_t{12}}}, {"qty", Value{int64_t{5}}},
                                  {"note", Value{std::string("ünïcode")}}, {"extra", Value{JsonText{"[[[]]]", true}}}}));
  stock.records.push_back(record("sku-10", Op::kUpsert, {{"qty", Value{1.25}}}));
  out.push_back(stock);

  IngestRequest plain;
  plain.records.push_back(record("k", Op::kUpsert, {{"id", Value{std::string("k")}}, {"photo", Value{std::string("AAH/")}}}));
  out.push_back(plain);
  return out;
}

// The JSON form producers send: records as objects, fields by fields_to_json.
std::string record_json(const IngestRecord& r) {
  std::string s = "{\"key\":" + value_to_json(Value{r.key}) + ",\"op\":\"" +
                  (r.op == Op::kUpsert ? "upsert" : "delete") + "\"";
  if (!r.fields.empty()) s += ",\"fields\":" + fields_to_json(r.fields);
  if (r.ts) s += ",\"ts\":" + std::to_string(*r.ts);
  if (r.partition) s += ",\"partition\":" + value_to_json(Value{*r.partition});
  return s + "}";
}

std::string records_json(const std::vector<IngestRecord>& records) {
  std::string s = "[";
  for (size_t i = 0; i < records.size(); ++i) s += (i > 0 ? "," : "") + record_json(records[i]);
  return s + "]";
}

std::string request_json(const IngestRequest& m) {
  std::string s = "{";
  if (!m.producer.empty()) s += "\"producer\":" + value_to_json(Value{m.producer}) + ",";
  if (m.seq) s += "\"seq\":" + std::to_string(*m.seq) + ",";
  return s + "\"records\":" + records_json(m.records) + "}";
}

std::string read_source(const std::string& relative) {
  std::ifstream in(fs::path(DELTASYNC_SOURCE_DIR) / relative, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  if (!in) throw std::runtime_error("cannot read " + relative);
  return s.str();
}

void write_all(const fs::path& root) {
  {
    Seeds s(root, "ingest_msgpack");
    int i = 0;
    for (const IngestRequest& m : ingest_requests()) s.add("request-" + std::to_string(++i), encode(m));
  }
  {
    Seeds s(root, "ingest_json");
    int i = 0;
    for (const IngestRequest& m : ingest_requests()) {
      ++i;
      s.add("request-" + std::to_string(i), request_json(m));
      s.add("http-records-" + std::to_string(i), records_json(m.records));
    }
  }
  {
    Seeds s(root, "register_request");
    RegisterRequest m;
    m.agent = "store-1";
    m.host = "till-3.example";
    m.version = "0.1.0";
    s.add("no-subscriptions", encode(m));
    m.subscriptions.push_back({"prices", "store-1", 120, 118, 1700000000000, 4000});
    m.subscriptions.push_back({"products", "*", 0, 0, 0, 0});
    s.add("two-subscriptions", encode(m));
  }
  {
    Seeds s(root, "heartbeat_reply");
    HeartbeatReply m;
    m.agent = "store-1";
    m.ts = 1700000000123;
    s.add("no-checkpoints", encode(m));
    m.status = AgentHealth::kDegraded;
    m.checkpoints["prices"] = Checkpoint{120, 118, 1700000000000, "0123456789abcdef0123456789abcdef"};
    m.checkpoints["products"] = Checkpoint{};
    m.pending = 3;
    m.quarantined = 1;
    m.error = "hook for prices failed";
    s.add("degraded", encode(m));
  }
  {
    Seeds s(root, "delta_batch");
    DeltaBatch m;
    m.type = "things";
    Change c;
    c.v = 1;
    c.key = "thing-1";
    c.f = every_value_type();
    c.ts = 1700000000000;
    c.hts = 1700000000005;
    m.changes.push_back(c);
    Change d;
    d.v = 2;
    d.key = "thing-2";
    d.op = Op::kDelete;
    d.ts = -1;
    d.hts = 1700000000006;
    m.changes.push_back(d);
    s.add("upsert-and-delete", encode(m));
    m.changes.clear();
    s.add("empty", encode(m));
  }
  {
    Seeds s(root, "snapshot_reply");
    SnapshotReply m;
    m.records.push_back(SnapshotRecord{5, "thing-1", every_value_type(), 1700000000000});
    m.records.push_back(SnapshotRecord{9, "thing-9", {{"count", Value{int64_t{1}}}}, 0});
    m.high_version = 9;
    m.high_seq = 12;
    s.add("page", encode(m));
    m.records.clear();
    m.done = true;
    s.add("last-page", encode(m));
    SnapshotReply e;
    e.error = WireError{StatusCode::kNotFound, "no such type 'x'", std::nullopt};
    s.add("error", encode(e));
  }
  {
    Seeds s(root, "digest_request");
    s.add("every-type", encode(DigestRequest{}));
    s.add("buckets", encode(DigestRequest{{"things", "stock"}, 16, {}}));
    s.add("listed", encode(DigestRequest{{"things"}, 8, {1, 3, 7}}));
  }
  {
    Seeds s(root, "digest_reply");
    DigestReply m;
    m.agent = "store-1";
    TypeDigest d;
    d.partition = "store-1";
    d.version = 120;
    d.ts = 1700000000000;
    d.rows = 2;
    d.digest = "2:00000000000000ff";
    d.content = "2:0000000000001234";
    m.types["prices"] = d;
    s.add("plain", encode(m));
    d.buckets = {{1, 0x1234}, {1, 0}, {0, 0}};
    d.listed = {{"a", 1}, {"b", 2}};
    d.listed_truncated = true;
    m.types["prices"] = d;
    s.add("buckets-listed", encode(m));
    DigestReply e;
    e.error = WireError{StatusCode::kUnavailable, "replica busy", std::nullopt};
    s.add("error", encode(e));
  }
  {
    Seeds s(root, "other_messages");
    IngestReply ok;
    ok.first_version = 10;
    ok.last_version = 12;
    s.add("ingest-reply", std::string(1, '\0') + encode(ok));
    IngestReply refused;
    refused.error = WireError{StatusCode::kInvalidArgument, "records[1].op: unknown op", 1};
    s.add("ingest-reply-error", std::string(1, '\0') + encode(refused));
    RegisterReply reg;
    reg.heartbeat_ms = 5000;
    Delivery dl;
    dl.type = "things";
    dl.subject = "ds.push.store-1.things";
    dl.resume = Resume::kSnapshot;
    dl.schema.key = "id";
    dl.schema.partition = "region";
    dl.schema.columns = {{"region", ColumnType::kText}, {"doc", ColumnType::kJson}};
    dl.schema_hash = schema_hash(dl.schema);
    reg.deliveries.push_back(dl);
    s.add("register-reply", std::string(1, '\1') + encode(reg));
    HeartbeatRequest hb;
    hb.hub = "hub";
    hb.ts = 1700000000000;
    hb.types = {"things", "stock"};
    hb.reregister = true;
    s.add("heartbeat-request", std::string(1, '\2') + encode(hb));
    SnapshotRequest sr;
    sr.type = "things";
    sr.partition = "north";
    sr.after_key = "thing-1";
    sr.limit = 500;
    s.add("snapshot-request", std::string(1, '\3') + encode(sr));
  }
  {
    Seeds s(root, "config");
    s.add("hub-example", read_source("deploy/hub.example.toml"));
    s.add("agent-example", read_source("deploy/agent.example.toml"));
    s.add("hub-minimal",
          "[[types]]\nname = \"things\"\nkey = \"id\"\npartition = \"region\"\n"
          "columns = [{name = \"region\", type = \"text\"}, {name = \"doc\", type = \"json\"}]\n");
    s.add("agent-minimal", "[agent]\nid = \"a1\"\n[[subscriptions]]\ntype = \"things\"\n");
  }
  {
    Seeds s(root, "record_reader");
    std::string lines;
    for (const IngestRequest& m : ingest_requests()) {
      for (const IngestRecord& r : m.records) lines += record_json(r) + "\n";
    }
    s.add("jsonl-things", std::string(1, '\0') + lines);
    s.add("csv-things", std::string(1, '\1') +
                            "id,region,name,count,price,active,photo,doc,_op,_ts\n"
                            "t1,north,\"a, \"\"quoted\"\"\nname\",3,9.5,true,AAH/,\"{\"\"a\"\":1}\",,1700000000000\n"
                            "t2,south,,,,,,,delete,\r\n\n");
    s.add("csv-stock", std::string(1, '\3') + "sku,store,qty,note,extra\ns1,12,5,hello,[1]\ns2,13,,,\"\"\"x\"\"\"\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || std::string(argv[1]) == "--help") {
    std::cerr << "usage: fuzz_make_corpus <corpus dir>\n"
                 "Rewrites <corpus dir>/<target>/ for every fuzz target from the real encoders.\n";
    return argc == 2 ? 0 : 2;
  }
  try {
    write_all(argv[1]);
  } catch (const std::exception& e) {
    std::cerr << "fuzz_make_corpus: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
