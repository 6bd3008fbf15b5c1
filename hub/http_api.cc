#include <restinio/all.hpp>
#include <restinio/tls.hpp>

#include "hub/http_api.h"

#include <sodium.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>
#include <future>
#include <map>
#include <optional>
#include <thread>

#include "hub/dashboard_assets.h"
#include "hub/fleet_view.h"
#include "hub/query_store.h"
#include "hub/rate_history.h"
#include "shared/clock.h"
#include "shared/codec.h"
#include "shared/names.h"

namespace ds {

// ---- the body gate --------------------------------------------------------
//
// RESTinio reads a whole request body into memory before any handler runs.
// The gate decides at the end of the headers, before one byte of the body is
// read, whether the body is read at all:
//   - a request with a body but without the right bearer token: the body is
//     skipped and the request is answered 401;
//   - a token holder's request whose Content-Length is above
//     [http] max_body_bytes: skipped and answered 413;
//   - a chunked body is read up to max_body_bytes; past that the connection
//     is closed (RESTinio's body limit; there is no status line to send in
//     the middle of a body).
// A skipped body is never read: the answer carries "Connection: close" and
// the connection is closed after it. The decision is carried to the handler
// in the header field kRefusalField, which the gate first removes from what
// the client sent, so a client cannot set it.
//
// RESTinio's parser callbacks are plain functions of the http_parser; they
// are replaced for our traits through their http_methods_mapper_t (an
// explicit specialization of restinio::impl::create_parser_settings below).
// They run on the API's io thread only, which finds its gate through a
// thread_local pointer set when that thread starts.

struct GatedHttpMethods : restinio::default_http_methods_t {};

namespace {

constexpr std::string_view kRefusalField = "Deltasync-Refused";

struct BodyGate {
  std::string token;
  uint64_t max_body_bytes = 0;

  bool authorized(const restinio::http_request_header_t& header) const {
    const std::string value = header.get_field_or(restinio::http_field::authorization, "");
    constexpr std::string_view kBearer = "Bearer ";
    if (token.empty() || value.size() != kBearer.size() + token.size() || value.rfind(kBearer, 0) != 0) return false;
    return sodium_memcmp(value.data() + kBearer.size(), token.data(), token.size()) == 0;
  }
};

thread_local const BodyGate* t_body_gate = nullptr;

int gated_headers_complete(http_parser* parser) {
  auto* ctx = static_cast<restinio::impl::http_parser_ctx_t*>(parser->data);
  ctx->m_header.remove_all_of(kRefusalField);
  const BodyGate* gate = t_body_gate;
  if (gate == nullptr) return restinio::impl::restinio_headers_complete_cb(parser);
  const bool chunked = (parser->flags & F_CHUNKED) != 0;
  const bool sized = parser->content_length != ULLONG_MAX && parser->content_length > 0;
  std::string_view refusal;
  if ((chunked || sized) && !gate->authorized(ctx->m_header)) {
    refusal = "401";
  } else if (sized && parser->content_length > gate->max_body_bytes) {
    refusal = "413";
  }
  if (refusal.empty()) return restinio::impl::restinio_headers_complete_cb(parser);
  ctx->m_leading_headers_completed = true;
  ctx->m_header.set_field(std::string(kRefusalField), std::string(refusal));
  return 1;  // http_parser: no body follows; the message is complete
}

}  // namespace
}  // namespace ds

template <>
inline http_parser_settings restinio::impl::create_parser_settings<ds::GatedHttpMethods>() noexcept {
  http_parser_settings settings = create_parser_settings<restinio::default_http_methods_t>();
  settings.on_headers_complete = [](http_parser* parser) -> int { return ds::gated_headers_complete(parser); };
  return settings;
}

namespace ds {
namespace {

using Router = restinio::router::express_router_t<>;
struct Traits : public restinio::default_single_thread_traits_t {
  using request_handler_t = Router;
  using http_methods_mapper_t = GatedHttpMethods;
  static constexpr bool use_connection_count_limiter = true;
};
struct TlsTraits : public restinio::single_thread_tls_traits_t<restinio::asio_timer_manager_t,
                                                                restinio::null_logger_t, Router> {
  using http_methods_mapper_t = GatedHttpMethods;
  static constexpr bool use_connection_count_limiter = true;
};
using Server = restinio::http_server_t<Traits>;
using TlsServer = restinio::http_server_t<TlsTraits>;
using restinio::request_handle_t;
using restinio::request_handling_status_t;
using Params = restinio::router::route_params_t;

// Bounds on what any client, with or without a token, makes the hub hold:
// connections at once, and the request line and headers of each (a few
// MiB in all); bodies are bounded by [http] max_body_bytes and the gate.
constexpr size_t kMaxConnections = 256;
constexpr size_t kMaxUrlBytes = 16 * 1024;
constexpr size_t kMaxFieldNameBytes = 256;
constexpr size_t kMaxFieldValueBytes = 8 * 1024;
constexpr size_t kMaxFieldCount = 64;

constexpr size_t kDefaultListLimit = 100;

// The dashboard's rate charts: one point every 2 s, ten minutes of them.
constexpr int64_t kRatePeriodMs = 2000;
constexpr size_t kRatePoints = 300;

// The dashboard's static files: no inline script or style and no other
// origin, so a value that slipped through unescaped still cannot run.
constexpr std::string_view kDashboardPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

constexpr size_t kMaxListLimit = 1000;
// Requests answered off the io thread (Impl::answer_off_thread) waiting or
// running at once; more are refused with 503.
constexpr int kMaxSlowRequests = 8;

restinio::http_status_line_t http_status_for(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return restinio::status_ok();
    case StatusCode::kInvalidArgument: return restinio::status_bad_request();
    case StatusCode::kNotFound: return restinio::status_not_found();
    case StatusCode::kAlreadyExists: return restinio::status_conflict();
    case StatusCode::kPermissionDenied: return restinio::status_forbidden();
    case StatusCode::kUnavailable: return restinio::status_service_unavailable();
    case StatusCode::kDeadlineExceeded: return restinio::status_gateway_time_out();
    default: return restinio::status_internal_server_error();
  }
}

request_handling_status_t send(const request_handle_t& req, restinio::http_status_line_t status, std::string body,
                               std::string_view content_type = "application/json") {
  return req->create_response(std::move(status))
      .append_header(restinio::http_field::content_type, std::string(content_type))
      .set_body(std::move(body))
      .done();
}

std::string error_json(const Status& s, std::optional<uint32_t> index = std::nullopt) {
  IngestReply r;
  r.error = WireError::from(s, index);
  return ingest_reply_json(r);
}

request_handling_status_t send_error(const request_handle_t& req, const Status& s) {
  return send(req, http_status_for(s.code()), error_json(s));
}

request_handling_status_t send_unauthorized(const request_handle_t& req, bool close) {
  auto response = req->create_response(restinio::status_unauthorized());
  response.append_header(restinio::http_field::content_type, "application/json")
      .append_header(restinio::http_field::www_authenticate, "Bearer")
      .set_body(error_json(Status::permission_denied("missing or wrong bearer token")));
  if (close) response.connection_close();
  return response.done();
}

nlohmann::json parse_json_text(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? nlohmann::json(text) : j;
}

nlohmann::json record_json(const StoredRecord& r) {
  return nlohmann::json{{"key", r.key},
                        {"partition", r.partition},
                        {"version", r.version},
                        {"ts", r.ts},
                        {"hub_ts", r.hub_ts},
                        {"fields", parse_json_text(fields_to_json(r.fields))}};
}

std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

std::optional<uint64_t> parse_u64(std::string_view s) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// "host:port" (IPv6 as "[::1]:8080").
Result<std::pair<std::string, uint16_t>> parse_listen(const std::string& listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) return Status::invalid_argument("http listen '" + listen + "': expected host:port");
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  auto port = parse_u64(std::string_view(listen).substr(colon + 1));
  if (!port || *port > 65535) return Status::invalid_argument("http listen '" + listen + "': bad port");
  return std::make_pair(host, static_cast<uint16_t>(*port));
}

// The server side of HTTPS: TLS 1.2 or later, the certificate chain and key
// of [http] tls_cert_file / tls_key_file (PEM).
Result<asio::ssl::context> tls_server_context(const HubConfig& config) {
  try {
    asio::ssl::context context(asio::ssl::context::tls_server);
    context.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                        asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                        asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
    std::error_code ec;
    context.use_certificate_chain_file(config.http_tls_cert_file, ec);
    if (ec) {
      return Status::invalid_argument("[http] tls_cert_file '" + config.http_tls_cert_file +
                                      "': cannot load a PEM certificate chain: " + ec.message());
    }
    context.use_private_key_file(config.http_tls_key_file, asio::ssl::context::pem, ec);
    if (ec) {
      return Status::invalid_argument("[http] tls_key_file '" + config.http_tls_key_file +
                                      "': cannot load a PEM private key matching tls_cert_file: " + ec.message());
    }
    return context;
  } catch (const std::exception& e) {
    return Status::internal(std::string("http tls: ") + e.what());
  }
}

}  // namespace

struct HttpApi::Impl {
  const HubConfig& config;
  // Null in a standby's API (HttpApi::start_standby), whose `started` is
  // never true, so no handler that uses them runs.
  IngestWriter* writer;
  JetStream* js;
  HubMetrics& metrics;
  AgentHooks agents;
  ReadinessHooks readiness;
  std::unique_ptr<QueryStore> store;  // used on the io thread only

  BodyGate gate;                       // read by the io thread's parser callbacks

  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  RateHistory rates{kRatePeriodMs, kRatePoints};  // io thread only
  asio::steady_timer rate_timer{io};
  // Where answers that take long to make are made (answer_off_thread):
  // never on the io thread. Two threads, so that a request waiting on a
  // stalled broker does not hold a scrape of /metrics.
  asio::thread_pool slow_pool{2};
  int slow_requests = 0;      // waiting or running there; io thread only
  bool types_waiting = false;  // a GET /v1/types is there; io thread only
  std::unique_ptr<Server> server;      // plain HTTP, or
  std::unique_ptr<TlsServer> tls_server;  // HTTPS ([http] tls_cert_file)
  std::thread thread;
  bool stopped = false;

  Impl(const HubConfig& c, IngestWriter* w, JetStream* j, HubMetrics& m, AgentHooks a)
      : config(c), writer(w), js(j), metrics(m), agents(std::move(a)) {
    gate.token = c.http_token;
    gate.max_body_bytes = static_cast<uint64_t>(c.http_max_body_bytes);
  }

  // The answer to a request whose body the gate skipped (401 or 413, the
  // connection closed after it: the unread body is still on the wire).
  std::optional<request_handling_status_t> refused(const request_handle_t& req) {
    const std::string refusal = req->header().get_field_or(std::string(kRefusalField), "");
    if (refusal.empty()) return std::nullopt;
    if (refusal == "401") {
      ++metrics.http_unauthorized;
      return send_unauthorized(req, /*close=*/true);
    }
    return req->create_response(restinio::status_payload_too_large())
        .append_header(restinio::http_field::content_type, "application/json")
        .connection_close()
        .set_body(error_json(Status::invalid_argument(
            "request body of " + req->header().get_field_or(std::string_view("Content-Length"), "?") +
            " bytes is above the hub's limit of " + std::to_string(gate.max_body_bytes) +
            " bytes ([http] max_body_bytes); send smaller batches")))
        .done();
  }

  // Wraps a handler with the token check and exception containment.
  template <typename F>
  auto guarded(F f) {
    return [this, f = std::move(f)](request_handle_t req, Params params) -> request_handling_status_t {
      ++metrics.http_requests;
      if (auto r = refused(req)) return *r;
      if (!gate.authorized(req->header())) {
        ++metrics.http_unauthorized;
        return send_unauthorized(req, /*close=*/false);
      }
      if (readiness.started && !readiness.started()) {
        const std::string why = readiness.not_ready_reason ? readiness.not_ready_reason() : "starting";
        return send_error(req, Status::unavailable("hub not ready: " + why));
      }
      try {
        return f(req, params);
      } catch (const std::exception& e) {
        spdlog::warn("http {} {}: {}", req->header().method().c_str(), req->header().path(), e.what());
        return send_error(req, Status::invalid_argument(e.what()));
      }
    };
  }

  request_handling_status_t post_records(const request_handle_t& req, const Params& params) {
    const std::string type = restinio::utils::unescape_percent_encoding(params["type"]);
    const auto received = std::chrono::steady_clock::now();
    std::optional<uint32_t> bad_record;  // the record a decode error is in
    auto records = decode_ingest_records_json(req->body(), &bad_record);
    auto refuse = [&](const Status& s, std::optional<uint32_t> index) {
      IngestReply r;
      r.error = WireError::from(s, index);
      metrics.record_ingest_reply(IngestTransport::kHttp, r, received);
      return send(req, http_status_for(s.code()), ingest_reply_json(r));
    };
    if (!records.is_ok()) {
      spdlog::info("ingest {} (http): request rejected: {}", type, records.status().message());
      return refuse(records.status(), bad_record);
    }
    IngestRequest request;
    request.records = std::move(records).value();
    const auto query = restinio::parse_query(req->header().query());
    if (auto p = query.get_param("producer")) {
      request.producer = std::string(*p);
    } else {
      request.producer = req->header().get_field_or("Deltasync-Producer", "");
    }
    std::string seq_text;
    if (auto s = query.get_param("seq")) {
      seq_text = std::string(*s);
    } else {
      seq_text = req->header().get_field_or("Deltasync-Seq", "");
    }
    if (!seq_text.empty()) {
      auto seq = parse_u64(seq_text);
      if (!seq) return refuse(Status::invalid_argument("seq: '" + seq_text + "' is not an unsigned integer"), {});
      request.seq = *seq;
    }
    asio::io_context& ioc = io;
    HubMetrics& m = metrics;
    writer->submit(type, std::move(request), [req, &ioc, &m, received](const IngestReply& reply) {
      m.record_ingest_reply(IngestTransport::kHttp, reply, received);
      asio::post(ioc, [req, reply] {
        const auto status = reply.ok() ? restinio::status_ok() : http_status_for(reply.error->code);
        send(req, status, ingest_reply_json(reply));
      });
    });
    return restinio::request_accepted();
  }

  // An answer that takes long to make: JetStream round trips (a stalled
  // broker holds each for the JetStream timeout), or text whose size grows
  // with the fleet. `make` runs on slow_pool; the io thread sends its answer.
  struct SlowAnswer {
    restinio::http_status_line_t status = restinio::status_ok();
    std::string body;
    std::string content_type = "application/json";
  };
  request_handling_status_t answer_off_thread(const request_handle_t& req, std::function<SlowAnswer()> make) {
    if (slow_requests >= kMaxSlowRequests) {
      return send_error(req, Status::unavailable(std::to_string(slow_requests) +
                                                 " slow requests (/metrics, /v1/types, /v1/agents) are being "
                                                 "answered already; retry later"));
    }
    ++slow_requests;
    asio::post(slow_pool, [this, req, make = std::move(make)]() mutable {
      // An exception must not leave the pool's thread (asio would end the
      // process) nor leave the request unanswered and counted.
      SlowAnswer answer;
      try {
        answer = make();
      } catch (const std::exception& e) {
        spdlog::error("http: {}: {}", req->header().path(), e.what());
        answer = SlowAnswer{restinio::status_internal_server_error(), error_json(Status::internal(e.what()))};
      }
      // The request handle goes back with the answer: its last copy must
      // be dropped on the io thread (restinio's connections are not
      // thread-safe).
      asio::post(io, [this, req = std::move(req), answer = std::move(answer)]() mutable {
        --slow_requests;
        send(req, std::move(answer.status), std::move(answer.body), answer.content_type);
      });
    });
    return restinio::request_accepted();
  }

  // The store is read here (the API's store is the io thread's); the
  // streams' states are JetStream requests, made off the io thread.
  // One at a time: a stalled broker holds it for the JetStream timeout per
  // type, and the other slow-answer thread stays free for /metrics.
  request_handling_status_t get_types(const request_handle_t& req) {
    if (types_waiting) {
      return send_error(req, Status::unavailable("a GET /v1/types is waiting on JetStream already; retry later"));
    }
    auto states = store->type_states();
    if (!states.is_ok()) return send_error(req, states.status());
    types_waiting = true;
    return answer_off_thread(req, [this, states = std::move(*states)]() mutable {
      struct Done {  // also when something below throws
        Impl* im;
        ~Done() {
          asio::post(im->io, [im = im] { im->types_waiting = false; });
        }
      } done{this};
      std::map<std::string, Result<StreamState>> streams;
      for (const TypeConfig& t : config.types) streams.emplace(t.name, js->stream_state(stream_name(t.name)));
      return SlowAnswer{restinio::status_ok(), dump(types_json(states, streams))};
    });
  }

  nlohmann::json types_json(std::map<std::string, TypeState>& states,
                            const std::map<std::string, Result<StreamState>>& streams) const {
    nlohmann::json out = nlohmann::json::array();
    for (const TypeConfig& t : config.types) {
      nlohmann::json columns = nlohmann::json::array();
      for (const Column& c : t.schema.columns) columns.push_back({{"name", c.name}, {"type", column_type_name(c.type)}});
      const TypeState st = states[t.name];
      nlohmann::json j{{"name", t.name},
                       {"key", t.schema.key},
                       {"partition", t.schema.partition ? nlohmann::json(*t.schema.partition) : nlohmann::json()},
                       {"columns", columns},
                       {"schema_hash", schema_hash(t.schema)},
                       {"version", st.version},
                       {"published_version", st.published_version},
                       {"published_batch", st.published_batch},
                       {"published_seq", st.published_seq}};
      const Result<StreamState>& stream = streams.at(t.name);
      if (stream.is_ok()) {
        j["stream"] = {{"name", stream_name(t.name)},
                       {"messages", stream->messages},
                       {"bytes", stream->bytes},
                       {"first_seq", stream->first_seq},
                       {"last_seq", stream->last_seq}};
      } else {
        j["stream"] = {{"name", stream_name(t.name)}, {"error", stream.status().to_string()}};
      }
      out.push_back(std::move(j));
    }
    return out;
  }

  request_handling_status_t get_record(const request_handle_t& req, const Params& params) {
    const std::string type = restinio::utils::unescape_percent_encoding(params["type"]);
    const std::string key = restinio::utils::unescape_percent_encoding(params["key"]);
    auto rec = store->get(type, key);
    if (!rec.is_ok()) return send_error(req, rec.status());
    if (rec->deleted) {
      return send_error(req, Status::not_found("type '" + type + "': record '" + key + "' was deleted at version " +
                                               std::to_string(rec->version)));
    }
    return send(req, restinio::status_ok(), dump(record_json(*rec)));
  }

  request_handling_status_t list_records(const request_handle_t& req, const Params& params) {
    const std::string type = restinio::utils::unescape_percent_encoding(params["type"]);
    const auto query = restinio::parse_query(req->header().query());
    std::optional<std::string> partition;
    std::optional<std::string> after;
    size_t limit = kDefaultListLimit;
    if (auto p = query.get_param("partition"); p && !p->empty()) partition = std::string(*p);
    if (auto a = query.get_param("after"); a && !a->empty()) after = std::string(*a);
    if (auto l = query.get_param("limit")) {
      auto v = parse_u64(*l);
      if (!v || *v == 0) return send_error(req, Status::invalid_argument("limit: expected a positive integer"));
      limit = std::min<size_t>(*v, kMaxListLimit);
    }
    auto rows = store->list(type, partition, after, limit);
    if (!rows.is_ok()) return send_error(req, rows.status());
    nlohmann::json records = nlohmann::json::array();
    for (const StoredRecord& r : *rows) records.push_back(record_json(r));
    nlohmann::json out{{"records", records}};
    out["next_after"] = rows->size() == limit ? nlohmann::json(rows->back().key) : nlohmann::json();
    return send(req, restinio::status_ok(), dump(out));
  }

  // One sample of the rate charts now, the next one a period later.
  void sample_rates() {
    rates.sample(real_clock().now_steady_ms(),
                 RateHistory::Counters{metrics.ingest_records.load(), metrics.ingest_batches.load(),
                                       metrics.published_changes.load(), metrics.published_batches.load()});
    rate_timer.expires_after(std::chrono::milliseconds(kRatePeriodMs));
    rate_timer.async_wait([this](const std::error_code& ec) {
      if (!ec) sample_rates();
    });
  }

  // GET /, /dashboard.js, /dashboard.css: no token (the page asks for it;
  // every data endpoint it calls needs it).
  request_handling_status_t dashboard(const request_handle_t& req, std::string_view file,
                                      std::string_view content_type) {
    ++metrics.http_requests;
    if (auto r = refused(req)) return *r;
    auto body = dashboard_file(file);
    if (!body) return send_error(req, Status::not_found("dashboard file " + std::string(file) + " not built in"));
    return req->create_response(restinio::status_ok())
        .append_header(restinio::http_field::content_type, std::string(content_type))
        .append_header(restinio::http_field::cache_control, "no-cache")
        .append_header("Content-Security-Policy", std::string(kDashboardPolicy))
        .append_header("X-Content-Type-Options", "nosniff")
        .append_header("Referrer-Policy", "no-referrer")
        .set_body(std::string(*body))
        .done();
  }

  // GET /v1/fleet/agents: one filtered, sorted page of the agent service's
  // latest snapshot (hub/fleet_view.h); the view itself is never built here.
  request_handling_status_t fleet_agents(const request_handle_t& req) {
    std::vector<std::pair<std::string, std::string>> params;
    try {
      // Relaxed: ',' and the like may come unescaped (state=dead,suspect).
      for (const auto& [name, value] : restinio::parse_query<restinio::parse_query_traits::relaxed>(
               req->header().query())) {
        params.emplace_back(std::string(name), std::string(value));
      }
    } catch (const std::exception& e) {
      return send_error(req, Status::invalid_argument(std::string("query string: ") + e.what() +
                                                      " (percent-encode the values)"));
    }
    auto query = parse_fleet_query(params);
    if (!query.is_ok()) return send_error(req, query.status());
    if (!agents.fleet) return send_error(req, Status::unavailable("no agent service"));
    return send(req, restinio::status_ok(), fleet_page(*agents.fleet(), *query, config.types));
  }

  // deltasync verify: a job on the verify service's threads (never here).
  request_handling_status_t start_verify(const request_handle_t& req) {
    if (agents.verify == nullptr) return send_error(req, Status::unavailable("no verify service"));
    VerifyOptions options;
    const auto query = restinio::parse_query(req->header().query());
    if (auto r = query.get_param("repair")) options.repair = *r == "1" || *r == "true";
    // ?agent=a,b limits the job to these agents (deltasync verify --agent).
    if (auto a = query.get_param("agent")) {
      const std::string list(*a);
      size_t begin = 0;
      while (begin <= list.size()) {
        const size_t end = std::min(list.find(',', begin), list.size());
        const std::string id = list.substr(begin, end - begin);
        if (Status s = validate_agent_id(id); !s.is_ok()) {
          return send_error(req, Status::invalid_argument("agent: " + s.message()));
        }
        options.agents.insert(id);
        begin = end + 1;
      }
    }
    auto id = agents.verify->start(options);
    if (!id.is_ok()) return send_error(req, id.status());
    auto report = agents.verify->report(*id);
    if (!report.is_ok()) return send_error(req, report.status());
    return send(req, restinio::status_accepted(), dump(*report));
  }

  request_handling_status_t verify_report(const request_handle_t& req, const Params& params) {
    if (agents.verify == nullptr) return send_error(req, Status::unavailable("no verify service"));
    auto report = agents.verify->report(restinio::utils::unescape_percent_encoding(params["id"]));
    if (!report.is_ok()) return send_error(req, report.status());
    return send(req, restinio::status_ok(), dump(*report));
  }

  // Older CLIs: the answer is written when the job ends, posted back here.
  request_handling_status_t verify_and_wait(const request_handle_t& req) {
    if (agents.verify == nullptr) return send_error(req, Status::unavailable("no verify service"));
    asio::io_context& ioc = io;
    auto id = agents.verify->start(VerifyOptions{}, [req, &ioc](const nlohmann::json& report) {
      asio::post(ioc, [req, body = dump(report)] { send(req, restinio::status_ok(), body); });
    });
    if (!id.is_ok()) return send_error(req, id.status());
    return restinio::request_accepted();
  }

  std::unique_ptr<Router> make_router() {
    auto router = std::make_unique<Router>();
    router->http_get("/healthz", [this](const request_handle_t& req, const Params&) {
      ++metrics.http_requests;
      if (auto r = refused(req)) return *r;
      return send(req, restinio::status_ok(), R"({"ok":true})");
    });
    router->http_get("/readyz", [this](const request_handle_t& req, const Params&) {
      ++metrics.http_requests;
      const std::string why = readiness.not_ready_reason ? readiness.not_ready_reason() : "";
      if (why.empty()) return send(req, restinio::status_ok(), R"({"ready":true})");
      return send(req, restinio::status_service_unavailable(), dump(nlohmann::json{{"ready", false}, {"reason", why}}));
    });
    router->http_post(R"(/v1/types/:type/records)",
                      guarded([this](const request_handle_t& req, const Params& p) { return post_records(req, p); }));
    router->http_get("/v1/types", guarded([this](const request_handle_t& req, const Params&) { return get_types(req); }));
    router->http_get(R"(/v1/types/:type/records/:key)",
                     guarded([this](const request_handle_t& req, const Params& p) { return get_record(req, p); }));
    router->http_get(R"(/v1/types/:type/records)",
                     guarded([this](const request_handle_t& req, const Params& p) { return list_records(req, p); }));
    router->http_get("/v1/agents", guarded([this](const request_handle_t& req, const Params&) {
                       if (!agents.fleet) return send_error(req, Status::unavailable("no agent service"));
                       return answer_off_thread(req, [this] {
                         return SlowAnswer{restinio::status_ok(), fleet_agents_text(*agents.fleet())};
                       });
                     }));
    router->http_get("/", [this](const request_handle_t& req, const Params&) {
      return dashboard(req, "index.html", "text/html; charset=utf-8");
    });
    router->http_get("/dashboard.js", [this](const request_handle_t& req, const Params&) {
      return dashboard(req, "dashboard.js", "text/javascript; charset=utf-8");
    });
    router->http_get("/dashboard.css", [this](const request_handle_t& req, const Params&) {
      return dashboard(req, "dashboard.css", "text/css; charset=utf-8");
    });
    router->http_get("/v1/fleet/agents",
                     guarded([this](const request_handle_t& req, const Params&) { return fleet_agents(req); }));
    router->http_get("/v1/fleet/rates", guarded([this](const request_handle_t& req, const Params&) {
                       if (!req->header().query().empty()) {
                         return send_error(req, Status::invalid_argument("GET /v1/fleet/rates takes no parameters"));
                       }
                       return send(req, restinio::status_ok(), dump(rates.to_json(real_clock().now_steady_ms())));
                     }));
    router->http_post(R"(/v1/agents/:id/retire)", guarded([this](const request_handle_t& req, const Params& p) {
                        const std::string id = restinio::utils::unescape_percent_encoding(p["id"]);
                        if (!agents.retire) return send_error(req, Status::unavailable("no agent service"));
                        // The agent service's thread may be busy with consumer
                        // operations: its answer is sent when it comes (restinio
                        // closes a request unanswered after 60 s). The handle is
                        // moved back so that its last copy goes on the io thread.
                        asio::io_context& ioc = io;
                        agents.retire(id, [req, &ioc, id](Status s) mutable {
                          asio::post(ioc, [req = std::move(req), id, s = std::move(s)] {
                            if (!s.is_ok()) {
                              send_error(req, s);
                              return;
                            }
                            spdlog::info("http: agent '{}' retired by an operator", id);
                            send(req, restinio::status_ok(), dump(nlohmann::json{{"ok", true}, {"agent", id}}));
                          });
                        });
                        return restinio::request_accepted();
                      }));
    router->http_post("/v1/verify",
                      guarded([this](const request_handle_t& req, const Params&) { return start_verify(req); }));
    router->http_get("/v1/verify",
                     guarded([this](const request_handle_t& req, const Params&) { return verify_and_wait(req); }));
    router->http_get(R"(/v1/verify/:id)",
                     guarded([this](const request_handle_t& req, const Params& p) { return verify_report(req, p); }));
    router->http_get("/metrics", guarded([this](const request_handle_t& req, const Params&) {
                       if (!agents.metrics_text) return send_error(req, Status::unavailable("no metrics"));
                       return answer_off_thread(req, [this] {
                         return SlowAnswer{restinio::status_ok(), agents.metrics_text(),
                                           "text/plain; version=0.0.4; charset=utf-8"};
                       });
                     }));
    router->non_matched_request_handler([this](const request_handle_t& req) {
      ++metrics.http_requests;
      if (auto r = refused(req)) return *r;
      return send_error(req, Status::not_found("no such endpoint: " + std::string(req->header().method().c_str()) +
                                                   " " + std::string(req->header().path())));
    });
    return router;
  }
};

HttpApi::HttpApi(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpApi::~HttpApi() { stop(); }

Result<std::unique_ptr<HttpApi>> HttpApi::start(const HubConfig& config, IngestWriter& writer, JetStream& js,
                                                HubMetrics& metrics, AgentHooks agents,
                                                ReadinessHooks readiness) {
  return open(config, &writer, &js, metrics, std::move(agents), std::move(readiness));
}

Result<std::unique_ptr<HttpApi>> HttpApi::start_standby(const HubConfig& config, HubMetrics& metrics,
                                                        std::function<std::string()> standing_by) {
  ReadinessHooks readiness;
  readiness.not_ready_reason = [standing_by = std::move(standing_by)] { return "standby: " + standing_by(); };
  readiness.started = [] { return false; };
  return open(config, nullptr, nullptr, metrics, AgentHooks{}, std::move(readiness));
}

Result<std::unique_ptr<HttpApi>> HttpApi::open(const HubConfig& config, IngestWriter* writer, JetStream* js,
                                               HubMetrics& metrics, AgentHooks agents, ReadinessHooks readiness) {
  if (config.http_token.empty()) return Status::invalid_argument("[http] token: required when the API listens");
  DS_ASSIGN_OR_RETURN(auto listen, parse_listen(config.http_listen));
  auto impl = std::make_unique<Impl>(config, writer, js, metrics, std::move(agents));
  impl->readiness = std::move(readiness);
  QueryStoreOptions options;
  options.read_only = true;
  DS_ASSIGN_OR_RETURN(impl->store, QueryStore::open(config.store_path, config.types, options));

  Impl* im = impl.get();
  const bool tls = !config.http_tls_cert_file.empty();
  auto settings = [&](auto server_settings) {
    return std::move(server_settings)
        .address(listen.first)
        .port(listen.second)
        // Ingest replies wait for the SQLite commit and the JetStream acks.
        .handle_request_timeout(std::chrono::seconds(60))
        .read_next_http_message_timelimit(std::chrono::seconds(60))
        .max_parallel_connections(kMaxConnections)
        .incoming_http_msg_limits(restinio::incoming_http_msg_limits_t{}
                                      .max_body_size(static_cast<uint64_t>(config.http_max_body_bytes))
                                      .max_url_size(kMaxUrlBytes)
                                      .max_field_name_size(kMaxFieldNameBytes)
                                      .max_field_value_size(kMaxFieldValueBytes)
                                      .max_field_count(kMaxFieldCount))
        .request_handler(im->make_router());
  };
  if (tls) {
    DS_ASSIGN_OR_RETURN(auto context, tls_server_context(config));
    im->tls_server = std::make_unique<TlsServer>(
        restinio::external_io_context(im->io),
        settings(restinio::server_settings_t<TlsTraits>{}).tls_context(std::move(context)));
  } else {
    im->server =
        std::make_unique<Server>(restinio::external_io_context(im->io), settings(restinio::server_settings_t<Traits>{}));
  }
  im->work.emplace(asio::make_work_guard(im->io));
  asio::post(im->io, [im] { im->sample_rates(); });
  im->thread = std::thread([im] {
    t_body_gate = &im->gate;
    try {
      im->io.run();
    } catch (const std::exception& e) {
      spdlog::critical("http: io thread stopped by an exception: {}", e.what());
    }
  });
  // Shared: the callbacks run on the io thread and may outlive this frame.
  auto opened = std::make_shared<std::promise<Status>>();
  auto on_opened = [opened] { opened->set_value(Status::ok()); };
  auto on_failed = [opened](std::exception_ptr ex) {
    try {
      std::rethrow_exception(ex);
    } catch (const std::exception& e) {
      opened->set_value(Status::unavailable(std::string("http listen: ") + e.what()));
    }
  };
  if (im->tls_server) {
    im->tls_server->open_async(on_opened, on_failed);
  } else {
    im->server->open_async(on_opened, on_failed);
  }
  Status s = opened->get_future().get();
  std::unique_ptr<HttpApi> api(new HttpApi(std::move(impl)));
  if (!s.is_ok()) return s.with_context(config.http_listen);
  spdlog::info("http: listening on {} ({}, request bodies up to {} bytes)", config.http_listen,
               tls ? "https" : "plain http", config.http_max_body_bytes);
  return api;
}

void HttpApi::stop() {
  Impl& im = *impl_;
  if (im.stopped) return;
  im.stopped = true;
  if (im.server || im.tls_server) {
    auto closed = std::make_shared<std::promise<void>>();
    auto done = closed->get_future();
    auto on_closed = [closed] { closed->set_value(); };
    auto on_failed = [closed](std::exception_ptr) { closed->set_value(); };
    if (im.tls_server) {
      im.tls_server->close_async(on_closed, on_failed);
    } else {
      im.server->close_async(on_closed, on_failed);
    }
    done.wait_for(std::chrono::seconds(5));
  }
  // Keep-alive connections would keep run() busy; they are abandoned here
  // (every ingest they carried was answered before: the hub stops the writer
  // first).
  im.work.reset();
  im.io.stop();
  if (im.thread.joinable()) im.thread.join();
  // An answer being made is finished (bounded by the JetStream timeout) and
  // dropped: it is posted to the stopped io context.
  im.slow_pool.stop();
  im.slow_pool.join();
  spdlog::info("http: stopped");
}

}  // namespace ds
