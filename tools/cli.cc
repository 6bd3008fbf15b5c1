#include "tools/cli.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <set>
#include <thread>
#include <tuple>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "shared/log.h"
#include "shared/names.h"
#include "shared/nats.h"
#include "shared/version.h"
#include "tools/agents_table.h"
#include "tools/creds.h"
#include "tools/hub_client.h"
#include "tools/pusher.h"
#include "tools/record_reader.h"
#include "tools/sample_data.h"
#include "shared/codec.h"
#include "shared/nats_url.h"
#include "tools/table.h"

namespace ds {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

std::string env_or(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : std::move(fallback);
}

int fail(const Status& s) {
  fmt::print(stderr, "deltasync: {}\n", s.message());
  return s.code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
}

// A JSON value as a table cell (tools/table.h).
std::string text(const nlohmann::json& j) { return table_cell(j); }

// Options every hub-facing command shares.
struct HubOptions {
  std::string url = env_or("DELTASYNC_HUB", "http://127.0.0.1:8080");
  std::string token = env_or("DELTASYNC_TOKEN", "");
  std::string ca_file = env_or("DELTASYNC_CA_FILE", "");
  bool json = false;

  void add_to(CLI::App* cmd) {
    cmd->add_option("--hub", url, "hub HTTP API, http:// or https:// (env DELTASYNC_HUB)")->capture_default_str();
    cmd->add_option("--token", token, "bearer token of the hub API (env DELTASYNC_TOKEN)");
    cmd->add_option("--ca-file", ca_file,
                    "PEM CA bundle that verifies an https:// hub, default the system's CAs (env DELTASYNC_CA_FILE)");
    cmd->add_flag("--json", json, "print JSON for scripts instead of a table");
  }
  Result<HubClient> client() const { return HubClient::create(url, token, ca_file); }
};

int run_get_json(const HubOptions& hub, const std::string& path, nlohmann::json& out) {
  auto client = hub.client();
  if (!client) return fail(client.status());
  auto r = client->get_json(path);
  if (!r) return fail(r.status());
  out = std::move(*r);
  return kExitOk;
}

int cmd_types(const HubOptions& hub) {
  nlohmann::json j;
  if (int rc = run_get_json(hub, "/v1/types", j)) return rc;
  if (hub.json) {
    fmt::print("{}\n", j.dump(2));
    return kExitOk;
  }
  Table t({"TYPE", "KEY", "PARTITION", "VERSION", "PUBLISHED", "STREAM MSGS", "COLUMNS"});
  for (const auto& ty : j) {
    std::string columns;
    for (const auto& c : ty.value("columns", nlohmann::json::array())) {
      if (!columns.empty()) columns += ",";
      columns += text(c.value("name", nlohmann::json())) + ":" + text(c.value("type", nlohmann::json()));
    }
    t.add({text(ty.value("name", nlohmann::json())), text(ty.value("key", nlohmann::json())),
           text(ty.value("partition", nlohmann::json())), text(ty.value("version", nlohmann::json())),
           text(ty.value("published_version", nlohmann::json())),
           text(ty.value("stream", nlohmann::json::object()).value("messages", nlohmann::json())), columns});
  }
  t.print();
  return kExitOk;
}

struct VerifyArgs {
  bool quiet = false;
  bool repair = false;
  double timeout_s = 1800;  // the whole verify (and repair); each request has its own 10 s
  // Polls start at 50 ms (a small fleet is verified in less) and double up
  // to this.
  double poll_s = 0.5;
  std::vector<std::string> agents;  // --agent: only these (empty: every agent)
};

void print_verify_rows(const nlohmann::json& rows) {
  Table t({"AGENT", "STATE", "TYPE", "PARTITION", "HUB VERSION", "AGENT VERSION", "HUB ROWS", "AGENT ROWS",
           "DIGEST", "LAG (business ms)"});
  for (const auto& r : rows) {
    std::string digest = r.value("match", false) ? "match" : "DIFFERS";
    if (r.contains("error")) digest = "ERROR: " + text(r["error"]);
    if (r.value("match", false) && !r.value("content_checked", true)) digest = "match (keys only: old agent)";
    t.add({text(r.value("agent", nlohmann::json())), text(r.value("state", nlohmann::json())),
           text(r.value("type", nlohmann::json())), text(r.value("partition", nlohmann::json())),
           text(r.value("hub_version", nlohmann::json())), text(r.value("agent_version", nlohmann::json())),
           text(r.value("hub_rows", nlohmann::json())), text(r.value("agent_rows", nlohmann::json())), digest,
           text(r.value("lag_ms", nlohmann::json()))});
  }
  t.print();
  // The keys behind each DIFFERS.
  for (const auto& r : rows) {
    const std::string where = text(r.value("agent", nlohmann::json())) + " " + text(r.value("type", nlohmann::json()));
    for (const auto& d : r.value("differences", nlohmann::json::array())) {
      fmt::print("{}: key '{}': {}\n", where, text(d.value("key", nlohmann::json())),
                 text(d.value("problem", nlohmann::json())));
    }
    if (r.value("differences_truncated", false)) {
      fmt::print("{}: {} differing rows found, not all named\n", where,
                 text(r.value("different_rows", nlohmann::json())));
    }
    if (r.contains("locate_error")) fmt::print("{}: keys not located: {}\n", where, text(r["locate_error"]));
  }
}

// POST /v1/verify starts a job on the hub; GET /v1/verify/<id> is polled
// (each request short, so no request timeout limits a long verify) until the
// job is done or --timeout passes. Progress goes to stderr.
int cmd_verify(const HubOptions& hub, const VerifyArgs& args) {
  auto client = hub.client();
  if (!client) return fail(client.status());
  std::string query;
  if (args.repair) query += "&repair=1";
  if (!args.agents.empty()) {
    std::string list;
    for (const std::string& a : args.agents) list += (list.empty() ? "" : ",") + a;
    query += "&agent=" + url_encode(list);
  }
  if (!query.empty()) query[0] = '?';
  auto started = client->request("POST", "/v1/verify" + query);
  if (!started) return fail(started.status());
  auto body = nlohmann::json::parse(started->body, nullptr, /*allow_exceptions=*/false);
  if (started->status != 202 && started->status != 200) {
    std::string message = "HTTP " + std::to_string(started->status);
    if (!body.is_discarded() && body.contains("error")) message += ": " + text(body["error"].value("message", nlohmann::json()));
    if (started->status == 401) message += " (check --token)";
    if (started->status == 404) message += " (a hub older than POST /v1/verify?)";
    fmt::print(stderr, "deltasync: verify: {}\n", message);
    return kExitFailure;
  }
  if (body.is_discarded() || !body.contains("id")) return fail(Status::unavailable("verify: the hub's answer has no job id"));
  const std::string id = text(body["id"]);
  const std::string path = "/v1/verify/" + url_encode(id);
  const auto t0 = std::chrono::steady_clock::now();
  const auto deadline = t0 + std::chrono::milliseconds(static_cast<int64_t>(args.timeout_s * 1000));
  const bool progress = !args.quiet && !hub.json;
  std::string last_progress;
  auto last_print = t0;
  nlohmann::json report = body;
  int64_t poll_ms = 50;
  while (report.value("state", "") == "running") {
    if (std::chrono::steady_clock::now() >= deadline) {
      fmt::print(stderr, "deltasync: verify job {} still running after {} s (--timeout); its report stays at {}{}\n",
                 id, args.timeout_s, hub.url, path);
      return kExitFailure;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
    poll_ms = std::min<int64_t>(poll_ms * 2, static_cast<int64_t>(args.poll_s * 1000));
    auto r = client->get_json(path);
    if (!r) return fail(r.status());
    report = std::move(*r);
    const std::string line = fmt::format("verify: {} / {} agents ({})", text(report.value("agents_done", nlohmann::json())),
                                         text(report.value("agents_total", nlohmann::json())),
                                         text(report.value("phase", nlohmann::json())));
    const auto now = std::chrono::steady_clock::now();
    if (progress && line != last_progress && now - last_print >= std::chrono::seconds(1)) {
      fmt::print(stderr, "{}\n", line);
      last_progress = line;
      last_print = now;
    }
  }
  if (report.value("state", "") != "done") {
    fmt::print(stderr, "deltasync: verify job {} failed: {}\n", id, text(report.value("error", nlohmann::json())));
    return kExitFailure;
  }
  const bool ok = report.value("ok", false);
  if (hub.json) {
    fmt::print("{}\n", report.dump(2));
  } else if (!args.quiet) {
    if (report.contains("before_repair")) {
      fmt::print("before repair:\n");
      print_verify_rows(report["before_repair"]);
      for (const auto& r : report.value("repairs", nlohmann::json::array())) {
        fmt::print("repair {} {}: {}\n", text(r.value("agent", nlohmann::json())), text(r.value("type", nlohmann::json())),
                   r.value("done", false) ? "snapshot reloaded"
                                          : (r.contains("error") ? "FAILED: " + text(r["error"]) : "not done"));
      }
      fmt::print("after repair:\n");
    }
    const nlohmann::json rows = report.value("rows", nlohmann::json::array());
    print_verify_rows(rows);
    std::set<std::string> agents;
    for (const auto& r : rows) agents.insert(text(r.value("agent", nlohmann::json())));
    fmt::print("{} ({} agents in {} ms)\n", ok ? "every agent converged" : "DIVERGENCE: some replicas differ from the hub",
               agents.size(), text(report.value("elapsed_ms", nlohmann::json())));
  }
  return ok ? kExitOk : kExitFailure;
}

int cmd_agents(const HubOptions& hub) {
  nlohmann::json j;
  if (int rc = run_get_json(hub, "/v1/agents", j)) return rc;
  if (hub.json) {
    fmt::print("{}\n", j.dump(2));
    return kExitOk;
  }
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  agents_table(j, now).print();
  return kExitOk;
}

void print_records(const nlohmann::json& records) {
  std::vector<std::string> header{"KEY", "VERSION"};
  std::vector<std::string> columns;
  for (const auto& r : records) {
    for (auto it = r.value("fields", nlohmann::json::object()).begin();
         it != r.value("fields", nlohmann::json::object()).end(); ++it) {
      if (std::find(columns.begin(), columns.end(), it.key()) == columns.end()) columns.push_back(it.key());
    }
  }
  for (const auto& c : columns) header.push_back(c);
  Table t(header);
  for (const auto& r : records) {
    std::vector<std::string> row{text(r.value("key", nlohmann::json())), text(r.value("version", nlohmann::json()))};
    const auto fields = r.value("fields", nlohmann::json::object());
    for (const auto& c : columns) row.push_back(fields.contains(c) ? text(fields[c]) : "-");
    t.add(std::move(row));
  }
  t.print();
}

// Progress on stderr for long pushes: records, rate and share of the input.
class Progress {
 public:
  Progress(uint64_t total_bytes, bool enabled) : total_(total_bytes), enabled_(enabled) {}
  void update(uint64_t records, uint64_t bytes_done) {
    if (!enabled_) return;
    auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    draw(records, bytes_done);
  }
  void finish(uint64_t records) {
    if (!enabled_) return;
    draw(records, total_);
    fmt::print(stderr, "\n");
  }

 private:
  void draw(uint64_t records, uint64_t bytes_done) {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    double share = total_ ? static_cast<double>(bytes_done) / static_cast<double>(total_) : 1.0;
    int filled = static_cast<int>(share * 30);
    fmt::print(stderr, "\r[{:<30}] {:5.1f}%  {} records  {:.0f} records/s", std::string(static_cast<size_t>(filled), '#'),
               share * 100, records, secs > 0 ? static_cast<double>(records) / secs : 0.0);
  }
  uint64_t total_;
  bool enabled_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_{};
};

struct PushArgs {
  std::string type;
  std::string file;
  std::string nats_url = env_or("DELTASYNC_NATS", "nats://127.0.0.1:4222");
  std::string user, password, creds_file, nkey_seed_file;
  std::string tls_ca_file, tls_cert_file, tls_key_file;
  std::string subject_prefix = "ds";
  std::string producer;
  uint64_t first_seq = 1;
  size_t batch = 1000;
  bool quiet = false;
};

// push-<host>-<pid>-<time>, with the host cut to the name rule
// ([A-Za-z0-9_-], 64 characters in all).
std::string unique_producer_name() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::string h;
  for (const char* c = host; *c != '\0' && h.size() < 24; ++c) {
    h += std::isalnum(static_cast<unsigned char>(*c)) || *c == '-' || *c == '_' ? *c : '-';
  }
  return fmt::format("push-{}-{}-{}", h, getpid(),
                     std::chrono::system_clock::now().time_since_epoch().count() % 1000000000000);
}

int cmd_push(const PushArgs& a, const HubOptions& hub) {
  if (auto s = validate_type_name(a.type); !s) return fail(s.with_context("--type"));
  if (auto servers = parse_nats_servers(a.nats_url); !servers) return fail(servers.status().with_context("--nats"));
  if (a.batch == 0 || a.batch > kMaxBatchRecords) {
    return fail(Status::invalid_argument(fmt::format("--batch must be 1..{}", kMaxBatchRecords)));
  }
  std::ifstream file;
  std::istream* in = &std::cin;
  uint64_t total_bytes = 0;
  if (a.file != "-") {
    file.open(a.file, std::ios::binary);
    if (!file) return fail(Status::invalid_argument(a.file + ": cannot open: " + std::strerror(errno)));
    file.seekg(0, std::ios::end);
    total_bytes = static_cast<uint64_t>(file.tellg());
    file.seekg(0);
    in = &file;
  }
  const InputFormat format = input_format_for(a.file);
  TypeSchema schema;
  if (format == InputFormat::kCsv) {  // CSV cells are typed by the type's schema, which the hub knows
    auto client = hub.client();
    if (!client) return fail(client.status());
    auto types = client->get_json("/v1/types");
    if (!types) return fail(types.status().with_context("reading the schema of '" + a.type + "' for CSV input"));
    bool found = false;
    for (const auto& ty : *types) {
      if (ty.value("name", "") != a.type) continue;
      schema.key = ty.value("key", "");
      if (ty.contains("partition") && ty["partition"].is_string()) schema.partition = ty["partition"].get<std::string>();
      for (const auto& c : ty.value("columns", nlohmann::json::array())) {
        auto ct = column_type_from_name(c.value("type", ""));
        if (!ct) return fail(ct.status());
        schema.columns.push_back({c.value("name", ""), *ct});
      }
      found = true;
    }
    if (!found) return fail(Status::not_found("the hub has no business type '" + a.type + "'"));
  }

  ConnectOptions opts;
  opts.config.url = a.nats_url;
  opts.config.user = a.user;
  opts.config.password = a.password;
  opts.config.creds_file = a.creds_file;
  opts.config.nkey_seed_file = a.nkey_seed_file;
  opts.config.tls_ca_file = a.tls_ca_file;
  opts.config.tls_cert_file = a.tls_cert_file;
  opts.config.tls_key_file = a.tls_key_file;
  opts.name = "deltasync push";
  std::string producer = a.producer.empty() ? unique_producer_name() : a.producer;
  if (auto s = validate_agent_id(producer); !s) {
    return fail(Status::invalid_argument("--producer: " + s.message() + " (the name is a subject token)"));
  }
  // The producer is the last token of the ingest subject, which the
  // producer's credentials bind; the hub replies only into its own inbox.
  opts.inbox_prefix = inbox_prefix(producer);
  auto nc = Connection::connect(opts);
  if (!nc) return fail(nc.status());
  Pusher pusher(**nc, Subjects(a.subject_prefix), a.type,
                PushOptions{.producer = producer, .first_seq = a.first_seq});
  RecordReader reader(*in, format, schema);
  Progress progress(total_bytes, !a.quiet && isatty(STDERR_FILENO) && total_bytes > 0);
  uint64_t records = 0, batches = 0, first_version = 0, last_version = 0;
  std::vector<IngestRecord> batch;
  while (true) {
    batch.clear();
    auto n = reader.read(a.batch, batch);
    if (!n) return fail(n.status().with_context(a.file));
    if (*n == 0) break;
    const uint64_t seq = pusher.next_seq();
    auto reply = pusher.push(std::move(batch));
    if (!reply) {
      progress.finish(records);
      fmt::print(stderr, "deltasync: {} (lines up to {}; {} records in {} earlier batches were stored; "
                 "resume with --producer {} --first-seq {})\n",
                 reply.status().message(), reader.line(), records, batches, producer, seq);
      return kExitFailure;
    }
    if (first_version == 0) first_version = reply->first_version;
    last_version = reply->last_version;
    records += *n;
    ++batches;
    progress.update(records, a.file == "-" ? 0 : static_cast<uint64_t>(file.tellg()));
  }
  progress.finish(records);
  if (hub.json) {
    fmt::print("{}\n", nlohmann::json{{"records", records}, {"batches", batches}, {"first_version", first_version},
                                      {"last_version", last_version}, {"producer", producer}}.dump());
  } else if (!a.quiet) {
    fmt::print("pushed {} records of '{}' in {} batches: versions {}..{}\n", records, a.type, batches,
               first_version, last_version);
  }
  return kExitOk;
}

int cmd_sample(const SampleSpec& spec) {
  auto records = sample_records(spec);
  if (!records) return fail(records.status());
  std::string line;
  for (const auto& r : *records) {
    line = fmt::format(R"({{"key":{},"op":"{}")", nlohmann::json(r.key).dump(),
                       r.op == Op::kUpsert ? "upsert" : "delete");
    if (!r.fields.empty()) line += ",\"fields\":" + fields_to_json(r.fields);
    if (r.ts) line += fmt::format(",\"ts\":{}", *r.ts);
    if (r.partition) line += ",\"partition\":" + nlohmann::json(*r.partition).dump();
    line += "}\n";
    std::fputs(line.c_str(), stdout);
  }
  return kExitOk;
}

// `deltasync creds` and its subcommands (tools/creds.h does the work).
struct CredsArgs {
  std::string dir;
  std::vector<std::string> hubs, agents, producers;  // init: repeatable; add: one of them, once
  std::string subject_prefix = "ds";
  bool force = false;
  std::string name;                 // grant, revoke, rotate
  std::vector<std::string> grants;  // grant: TYPE[:PARTITION]...
  std::string reload;               // PID or PIDFILE of nats-server
  bool json = false;                // list
  std::string legacy_out;           // the old `creds --out`, now `creds init --dir`
};

int cmd_creds_init(const CredsArgs& a) {
  CredsRequest request;
  request.out_dir = a.dir;
  request.subject_prefix = a.subject_prefix;
  request.force = a.force;
  for (auto [role, args, option] : {std::tuple{IdentityRole::kHub, &a.hubs, "--hub"},
                                    std::tuple{IdentityRole::kAgent, &a.agents, "--agent"},
                                    std::tuple{IdentityRole::kProducer, &a.producers, "--producer"}}) {
    for (const auto& arg : *args) {
      auto identity = parse_creds_identity(role, arg);
      if (!identity) return fail(identity.status().with_context(std::string(option) + " " + arg));
      request.identities.push_back(std::move(*identity));
    }
  }
  auto result = write_credentials(request);
  if (!result) return fail(result.status());
  Table t({"ROLE", "NAME", "TYPES", "SEED FILE (0600, secret)", "INBOX PREFIX", "PUBLIC KEY"});
  for (const auto& c : result->issued) {
    const std::string types = grants_text(c.identity);
    t.add({std::string(role_name(c.identity.role)), c.identity.name, types.empty() ? "-" : types, c.seed_file,
           c.identity.role == IdentityRole::kHub ? "-" : inbox_prefix(c.identity.name), c.identity.public_key});
    if (c.identity.role == IdentityRole::kHub) {
      t.add({"hub publisher", c.identity.name, "-", creds_publisher_seed_file(request.out_dir, c.identity.name),
             inbox_prefix(c.identity.name), c.identity.publisher_public_key});
    }
  }
  t.print();
  fmt::print("\nwrote {} and {} (public keys, permissions and grants only).\n"
             "Put it beside nats-server's config and add this line there (include paths are relative\n"
             "to the including file; nats-server does not take absolute ones):\n"
             "  include auth.conf\n"
             "Give each process its seed file ([nats] nkey_seed_file, or push --nkey-seed); the hub also\n"
             "needs its publisher's seed file beside its own (<hub>.publisher.nk); agents and\n"
             "producers must connect with their inbox prefix, or replies to them are refused.\n"
             "Point the hub at the registry ([auth] identities_file = \"{}\") so it authorizes each\n"
             "agent and producer by the grants above. Later changes: deltasync creds add|grant|revoke|rotate.\n",
             result->auth_conf, result->identities, result->identities);
  return kExitOk;
}

// Runs one incremental change. With --reload the nats-server process is
// checked before anything changes (a wrong PID changes nothing) and told to
// reload after; it is signalled even when nothing changed, so a re-run after
// a run that wrote auth.conf but died before signalling still applies it.
int run_creds_change(const CredsArgs& a, const std::function<Result<CredsChange>()>& change) {
  std::optional<pid_t> nats_server;
  if (!a.reload.empty()) {
    auto pid = find_nats_server(a.reload);
    if (!pid) return fail(pid.status().with_context("--reload"));
    nats_server = *pid;
  }
  auto result = change();
  if (!result) return fail(result.status());
  fmt::print("{}\n", result->summary);
  if (!result->seed_file.empty()) {
    fmt::print("seed file (0600, secret): {}  public key: {}\n", result->seed_file, result->identity.public_key);
    if (result->identity.role != IdentityRole::kHub) {
      fmt::print("copy it to the host of {} ([nats] nkey_seed_file); it connects with inbox prefix {}\n",
                 result->identity.name, inbox_prefix(result->identity.name));
    } else {
      fmt::print("delta publisher seed file (0600, secret): {}  public key: {}\n"
                 "keep it beside the hub's seed file; restart the hub to use the new keys\n",
                 creds_publisher_seed_file(a.dir, result->identity.name), result->identity.publisher_public_key);
    }
  }
  if (nats_server) {
    if (auto s = signal_nats_reload(*nats_server); !s) {
      fmt::print(stderr, "deltasync: {} is written, but nats-server was not told to reload: {}\n",
                 creds_auth_conf(a.dir), s.message());
      return kExitFailure;
    }
    fmt::print("nats-server (pid {}) told to reload {} (its log says \"Reloaded server configuration\")\n",
               *nats_server, creds_auth_conf(a.dir));
  } else if (result->auth_conf_changed) {
    fmt::print("{} changed: reload nats-server to apply it (--reload PID|PIDFILE, or nats-server --signal "
               "reload=PID)\n",
               creds_auth_conf(a.dir));
  }
  return kExitOk;
}

int cmd_creds_add(const CredsArgs& a) {
  const size_t given = a.hubs.size() + a.agents.size() + a.producers.size();
  if (given != 1) {
    return fail(Status::invalid_argument("add: give exactly one --agent ID:TYPES, --producer NAME:TYPES or --hub NAME"));
  }
  IdentityRole role = IdentityRole::kHub;
  std::string option = "--hub", arg;
  if (!a.hubs.empty()) arg = a.hubs.front();
  if (!a.agents.empty()) role = IdentityRole::kAgent, option = "--agent", arg = a.agents.front();
  if (!a.producers.empty()) role = IdentityRole::kProducer, option = "--producer", arg = a.producers.front();
  auto identity = parse_creds_identity(role, arg);
  if (!identity) return fail(identity.status().with_context(option + " " + arg));
  return run_creds_change(a, [&] { return add_identity(a.dir, *identity); });
}

int cmd_creds_grant(const CredsArgs& a) {
  std::vector<Grant> grants;
  for (const auto& g : a.grants) {
    auto grant = parse_grant(g);
    if (!grant) return fail(grant.status());
    grants.push_back(std::move(*grant));
  }
  return run_creds_change(a, [&] { return grant_types(a.dir, a.name, grants); });
}

int cmd_creds_list(const CredsArgs& a) {
  auto registry = read_creds_dir(a.dir);
  if (!registry) return fail(registry.status());
  std::vector<const Identity*> sorted;
  for (const Identity& id : registry->identities) sorted.push_back(&id);
  std::sort(sorted.begin(), sorted.end(), [](const Identity* x, const Identity* y) { return x->name < y->name; });
  if (a.json) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const Identity* id : sorted) {
      nlohmann::ordered_json grants = nlohmann::ordered_json::array();
      for (const Grant& g : id->grants) grants.push_back({{"type", g.type}, {"partition", g.partition}});
      list.push_back({{"name", id->name},
                      {"role", std::string(role_name(id->role))},
                      {"public_key", id->public_key},
                      {"grants", std::move(grants)},
                      {"seed_file", creds_seed_file(a.dir, id->name)},
                      {"seed", seed_file_state(a.dir, *id)}});
      if (id->role == IdentityRole::kHub) {
        list.back()["publisher_public_key"] = id->publisher_public_key;
        list.back()["publisher_seed_file"] = creds_publisher_seed_file(a.dir, id->name);
      }
    }
    nlohmann::ordered_json out;
    out["subject_prefix"] = registry->subject_prefix;
    out["identities"] = std::move(list);
    fmt::print("{}\n", out.dump(2));
    return kExitOk;
  }
  Table t({"ROLE", "NAME", "TYPES", "SEED FILE", "SEED", "PUBLIC KEY"});
  for (const Identity* id : sorted) {
    const std::string types = grants_text(*id);
    t.add({std::string(role_name(id->role)), id->name, types.empty() ? "-" : types, creds_seed_file(a.dir, id->name),
           seed_file_state(a.dir, *id), id->public_key});
  }
  t.print();
  return kExitOk;
}

void add_creds_commands(CLI::App& app, CredsArgs& args, std::function<int()>& action) {
  auto* creds = app.add_subcommand(
      "creds",
      "keep a credentials directory: a NATS nkey per hub/agent/producer, nats-server's auth.conf and the hub's "
      "identities.json, changed one identity at a time");
  creds->require_subcommand(0, 1);
  // The old one-shot form `creds --out DIR --hub ...` answers with its new
  // spelling (its other options are taken as extras, not parsed; see the
  // allow_extras below).
  creds->add_option("--out", args.legacy_out, "replaced by `creds init --dir`")->group("");
  // Runs after the subcommand's callback, so it may override its action.
  creds->callback([creds, &args, &action] {
    if (!args.legacy_out.empty()) {
      action = [] {
        return fail(Status::invalid_argument(
            "`creds --out DIR` is now `creds init --dir DIR` (same options); later changes: creds "
            "add|grant|revoke|rotate|list (see deltasync creds --help)"));
      };
      return;
    }
    if (const auto extras = creds->remaining(); !extras.empty()) {
      std::string list;
      for (const auto& e : extras) list += (list.empty() ? "" : " ") + e;
      action = [list] { return fail(Status::invalid_argument("creds: unexpected arguments: " + list)); };
      return;
    }
    if (creds->get_subcommands().empty()) {
      action = [creds] {
        fmt::print(stderr, "deltasync creds: name a subcommand\n{}", creds->help());
        return kExitUsage;
      };
    }
  });
  auto dir_option = [&args](CLI::App* cmd) {
    cmd->add_option("--dir", args.dir, "the credentials directory (seed files, auth.conf, identities.json)")
        ->required();
  };
  auto reload_option = [&args](CLI::App* cmd) {
    cmd->add_option("--reload", args.reload,
                    "nats-server's PID or pid file: checked before any change, sent SIGHUP (reload) after");
  };
  const std::string agent_help =
      "agent as ID:TYPE,TYPE...; TYPE:PARTITION binds a type to one partition, e.g. store-1:prices:store-1,products";

  auto* init = creds->add_subcommand(
      "init", "first generation: a key per listed identity; refuses an existing directory's files unless --force");
  dir_option(init);
  init->add_option("--hub", args.hubs, "hub name (repeatable): may use every subject");
  init->add_option("--agent", args.agents, agent_help + " (repeatable)");
  init->add_option("--producer", args.producers, "producer as NAME:TYPE,TYPE... (repeatable)");
  init->add_option("--prefix", args.subject_prefix, "subject prefix ([nats] subject_prefix)")->capture_default_str();
  init->add_flag("--force", args.force,
                 "replace existing files: every listed identity gets a new key, unlisted ones leave auth.conf");
  init->callback([&] { action = [&] { return cmd_creds_init(args); }; });

  auto* add = creds->add_subcommand(
      "add", "add one identity with a new key; no other key changes. Re-adding the same identity and types is a no-op");
  dir_option(add);
  add->add_option("--agent", args.agents, agent_help)->expected(1);
  add->add_option("--producer", args.producers, "producer as NAME:TYPE,TYPE...")->expected(1);
  add->add_option("--hub", args.hubs, "hub NAME")->expected(1);
  reload_option(add);
  add->callback([&] { action = [&] { return cmd_creds_add(args); }; });

  auto* grant = creds->add_subcommand("grant", "add types to an existing agent or producer (same key)");
  dir_option(grant);
  grant->add_option("name", args.name, "agent or producer name")->required();
  grant->add_option("grants", args.grants, "TYPE or TYPE:PARTITION (partitions for agents only)")->required();
  reload_option(grant);
  grant->callback([&] { action = [&] { return cmd_creds_grant(args); }; });

  auto* revoke = creds->add_subcommand("revoke", "remove an identity: its key leaves auth.conf, its seed file is deleted");
  dir_option(revoke);
  revoke->add_option("name", args.name, "hub, agent or producer name")->required();
  reload_option(revoke);
  revoke->callback([&] {
    action = [&] { return run_creds_change(args, [&] { return revoke_identity(args.dir, args.name); }); };
  });

  auto* rotate = creds->add_subcommand("rotate", "a new key for one identity: its seed file is replaced, others untouched");
  dir_option(rotate);
  rotate->add_option("name", args.name, "hub, agent or producer name")->required();
  reload_option(rotate);
  rotate->callback([&] {
    action = [&] { return run_creds_change(args, [&] { return rotate_identity(args.dir, args.name); }); };
  });

  auto* list = creds->add_subcommand("list", "the identities, their types and whether each seed file matches its key");
  dir_option(list);
  list->add_flag("--json", args.json, "print JSON for scripts instead of a table");
  list->callback([&] { action = [&] { return cmd_creds_list(args); }; });
  // Set last: subcommands inherit it when added, and they must not.
  creds->allow_extras();
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{"deltasync: operator and producer command line for a deltasync hub.\n"
               "Talks to the hub's HTTP API (--hub, --token) and, for push, to NATS."};
  app.set_version_flag("--version", std::string("deltasync ") + kVersion);
  app.require_subcommand(1);
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off")->capture_default_str();

  HubOptions hub;
  std::function<int()> action;

  auto* types = app.add_subcommand("types", "list business types with their versions and streams");
  hub.add_to(types);
  types->callback([&] { action = [&] { return cmd_types(hub); }; });

  auto* agents = app.add_subcommand("agents", "list agents: state, last beat, per-type checkpoint and lag");
  hub.add_to(agents);
  agents->callback([&] { action = [&] { return cmd_agents(hub); }; });

  std::string type, key, partition, after;
  size_t limit = 100;
  auto* get = app.add_subcommand("get", "show one record by type and key");
  hub.add_to(get);
  get->add_option("type", type, "business type")->required();
  get->add_option("key", key, "record key")->required();
  get->callback([&] {
    action = [&] {
      nlohmann::json j;
      if (int rc = run_get_json(hub, "/v1/types/" + url_encode(type) + "/records/" + url_encode(key), j)) return rc;
      if (hub.json) fmt::print("{}\n", j.dump(2));
      else print_records(nlohmann::json::array({j}));
      return kExitOk;
    };
  });

  auto* list = app.add_subcommand("list", "list records of a type, paged by key");
  hub.add_to(list);
  list->add_option("type", type, "business type")->required();
  list->add_option("--partition", partition, "only this partition");
  list->add_option("--after", after, "start after this key (paging)");
  list->add_option("--limit", limit, "records per page")->capture_default_str()->check(CLI::Range(1, 10000));
  list->callback([&] {
    action = [&] {
      std::string path = "/v1/types/" + url_encode(type) + "/records?limit=" + std::to_string(limit);
      if (!partition.empty()) path += "&partition=" + url_encode(partition);
      if (!after.empty()) path += "&after=" + url_encode(after);
      nlohmann::json j;
      if (int rc = run_get_json(hub, path, j)) return rc;
      if (hub.json) {
        fmt::print("{}\n", j.dump(2));
        return kExitOk;
      }
      print_records(j.value("records", nlohmann::json::array()));
      if (j.contains("next_after") && j["next_after"].is_string()) {
        fmt::print("more: --after {}\n", j["next_after"].get<std::string>());
      }
      return kExitOk;
    };
  });

  VerifyArgs verify_args;
  auto* verify = app.add_subcommand(
      "verify",
      "compare every agent's replica with the hub (rows and values, by digest, per type; the differing keys are "
      "named); exit 1 on divergence");
  hub.add_to(verify);
  verify->add_flag("-q,--quiet", verify_args.quiet, "print nothing; the exit code tells");
  verify->add_flag("--repair", verify_args.repair,
                   "order a snapshot for each differing agent and type, wait for it, verify again; exit 0 when all "
                   "then match");
  verify->add_option("--agent", verify_args.agents,
                     "verify only this agent (repeatable); an agent the hub does not know fails the verify")
      ->check([](const std::string& id) {
        const Status s = validate_agent_id(id);
        return s.is_ok() ? std::string() : s.message();
      });
  verify->add_option("--timeout", verify_args.timeout_s, "give up waiting for the hub's verify job after this many seconds")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  verify->callback([&] { action = [&] { return cmd_verify(hub, verify_args); }; });

  std::string agent;
  auto* retire = app.add_subcommand("retire", "retire an agent: remove its consumers, stop expecting heartbeats");
  hub.add_to(retire);
  retire->add_option("agent", agent, "agent id")->required();
  retire->callback([&] {
    action = [&] {
      if (auto s = validate_agent_id(agent); !s) return fail(s);
      auto client = hub.client();
      if (!client) return fail(client.status());
      auto r = client->post_json("/v1/agents/" + url_encode(agent) + "/retire", nlohmann::json::object());
      if (!r) return fail(r.status());
      if (hub.json) fmt::print("{}\n", r->dump());
      else fmt::print("agent {} retired\n", agent);
      return kExitOk;
    };
  });

  PushArgs push_args;
  auto* push = app.add_subcommand("push", "send records to the hub over NATS (JSON lines, or CSV by extension)");
  hub.add_to(push);
  push->add_option("--type", push_args.type, "business type")->required();
  push->add_option("file", push_args.file, "input file: .csv, or JSON lines (one record per line); - for stdin")
      ->required();
  push->add_option("--nats", push_args.nats_url, "NATS server URL; several servers of one cluster comma-separated (env DELTASYNC_NATS)")->capture_default_str();
  push->add_option("--user", push_args.user, "NATS user");
  push->add_option("--password", push_args.password, "NATS password");
  push->add_option("--creds", push_args.creds_file, "NATS credentials file");
  push->add_option("--nkey-seed", push_args.nkey_seed_file, "NATS nkey seed file");
  push->add_option("--tls-ca", push_args.tls_ca_file, "PEM CA that verifies the NATS server (TLS; like tls_ca_file)");
  auto* tls_cert = push->add_option("--tls-cert", push_args.tls_cert_file, "client certificate for NATS mutual TLS");
  auto* tls_key = push->add_option("--tls-key", push_args.tls_key_file, "its private key");
  tls_cert->needs(tls_key);
  tls_key->needs(tls_cert);
  push->add_option("--subject-prefix", push_args.subject_prefix, "subject prefix")->capture_default_str();
  push->add_option("--producer", push_args.producer,
                   "producer name: the identity of the credentials (deltasync creds --producer NAME:...), "
                   "the ingest subject's last token and the key of idempotent retries; replies come to "
                   "_INBOX_<producer> (default: unique per run, for an open server)");
  push->add_option("--first-seq", push_args.first_seq, "sequence number of the first batch (to resume a push)")
      ->capture_default_str();
  push->add_option("--batch", push_args.batch, "records per batch")->capture_default_str();
  push->add_flag("-q,--quiet", push_args.quiet, "no progress bar or summary");
  push->callback([&] { action = [&] { return cmd_push(push_args, hub); }; });

  SampleSpec sample_spec;
  auto* sample = app.add_subcommand("sample", "print retail-chain sample records as JSON lines (for push)");
  sample->add_option("type", sample_spec.type, "products, prices or inventory")->required();
  sample->add_option("--articles", sample_spec.articles, "distinct articles (SKUs)")->capture_default_str();
  sample->add_option("--stores", sample_spec.stores, "stores (prices, inventory)")->capture_default_str();
  sample->add_option("--round", sample_spec.round, "update round: later rounds change values")->capture_default_str();
  sample->add_option("--delete-every", sample_spec.delete_every, "in rounds > 0, delete every Nth record")
      ->capture_default_str();
  sample->add_option("--seed", sample_spec.seed, "random seed")->capture_default_str();
  sample->callback([&] { action = [&] { return cmd_sample(sample_spec); }; });

  CredsArgs creds_args;
  add_creds_commands(app, creds_args, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  if (auto s = validate_log_level(log_level); !s) return fail(s.with_context("--log-level"));
  init_logging("deltasync", log_level);
  NatsLibrary nats_library;
  return action ? action() : kExitUsage;
}

}  // namespace ds
