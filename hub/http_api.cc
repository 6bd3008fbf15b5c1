#include <restinio/all.hpp>

#include "hub/http_api.h"

#include <sodium.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>
#include <future>
#include <optional>
#include <thread>

#include "hub/query_store.h"
#include "shared/codec.h"
#include "shared/names.h"

namespace ds {
namespace {

using Router = restinio::router::express_router_t<>;
struct Traits : public restinio::default_single_thread_traits_t {
  using request_handler_t = Router;
};
using Server = restinio::http_server_t<Traits>;
using restinio::request_handle_t;
using restinio::request_handling_status_t;
using Params = restinio::router::route_params_t;

constexpr size_t kDefaultListLimit = 100;
constexpr size_t kMaxListLimit = 1000;

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

}  // namespace

struct HttpApi::Impl {
  const HubConfig& config;
  IngestWriter& writer;
  JetStream& js;
  HubMetrics& metrics;
  AgentHooks agents;
  std::unique_ptr<QueryStore> store;  // used on the io thread only

  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::unique_ptr<Server> server;
  std::thread thread;
  bool stopped = false;

  Impl(const HubConfig& c, IngestWriter& w, JetStream& j, HubMetrics& m, AgentHooks a)
      : config(c), writer(w), js(j), metrics(m), agents(std::move(a)) {}

  bool authorized(const request_handle_t& req) const {
    const std::string header = req->header().get_field_or(restinio::http_field::authorization, "");
    constexpr std::string_view kBearer = "Bearer ";
    if (header.size() != kBearer.size() + config.http_token.size() || header.rfind(kBearer, 0) != 0) return false;
    return sodium_memcmp(header.data() + kBearer.size(), config.http_token.data(), config.http_token.size()) == 0;
  }

  // Wraps a handler with the token check and exception containment.
  template <typename F>
  auto guarded(F f) {
    return [this, f = std::move(f)](request_handle_t req, Params params) -> request_handling_status_t {
      ++metrics.http_requests;
      if (!authorized(req)) {
        ++metrics.http_unauthorized;
        return req->create_response(restinio::status_unauthorized())
            .append_header(restinio::http_field::content_type, "application/json")
            .append_header(restinio::http_field::www_authenticate, "Bearer")
            .set_body(error_json(Status::permission_denied("missing or wrong bearer token")))
            .done();
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
    auto records = decode_ingest_records_json(req->body());
    if (!records.is_ok()) {
      ++metrics.ingest_rejected;
      spdlog::info("ingest {} (http): request rejected: {}", type, records.status().message());
      return send_error(req, records.status());
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
      if (!seq) return send_error(req, Status::invalid_argument("seq: '" + seq_text + "' is not an unsigned integer"));
      request.seq = *seq;
    }
    asio::io_context& ioc = io;
    writer.submit(type, std::move(request), [req, &ioc](const IngestReply& reply) {
      asio::post(ioc, [req, reply] {
        const auto status = reply.ok() ? restinio::status_ok() : http_status_for(reply.error->code);
        send(req, status, ingest_reply_json(reply));
      });
    });
    return restinio::request_accepted();
  }

  request_handling_status_t get_types(const request_handle_t& req) {
    auto states = store->type_states();
    if (!states.is_ok()) return send_error(req, states.status());
    nlohmann::json out = nlohmann::json::array();
    for (const TypeConfig& t : config.types) {
      nlohmann::json columns = nlohmann::json::array();
      for (const Column& c : t.schema.columns) columns.push_back({{"name", c.name}, {"type", column_type_name(c.type)}});
      const TypeState st = (*states)[t.name];
      nlohmann::json j{{"name", t.name},
                       {"key", t.schema.key},
                       {"partition", t.schema.partition ? nlohmann::json(*t.schema.partition) : nlohmann::json()},
                       {"columns", columns},
                       {"schema_hash", schema_hash(t.schema)},
                       {"version", st.version},
                       {"published_version", st.published_version},
                       {"published_batch", st.published_batch},
                       {"published_seq", st.published_seq}};
      auto stream = js.stream_state(stream_name(t.name));
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
    return send(req, restinio::status_ok(), dump(out));
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

  // deltasync verify: a job on the verify service's threads (never here).
  request_handling_status_t start_verify(const request_handle_t& req) {
    if (agents.verify == nullptr) return send_error(req, Status::unavailable("no verify service"));
    VerifyOptions options;
    const auto query = restinio::parse_query(req->header().query());
    if (auto r = query.get_param("repair")) options.repair = *r == "1" || *r == "true";
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
      return send(req, restinio::status_ok(), R"({"ok":true})");
    });
    router->http_post(R"(/v1/types/:type/records)",
                      guarded([this](const request_handle_t& req, const Params& p) { return post_records(req, p); }));
    router->http_get("/v1/types", guarded([this](const request_handle_t& req, const Params&) { return get_types(req); }));
    router->http_get(R"(/v1/types/:type/records/:key)",
                     guarded([this](const request_handle_t& req, const Params& p) { return get_record(req, p); }));
    router->http_get(R"(/v1/types/:type/records)",
                     guarded([this](const request_handle_t& req, const Params& p) { return list_records(req, p); }));
    router->http_get("/v1/agents", guarded([this](const request_handle_t& req, const Params&) {
                       if (!agents.agents_json) return send_error(req, Status::unavailable("no agent service"));
                       return send(req, restinio::status_ok(), dump(agents.agents_json()));
                     }));
    router->http_post(R"(/v1/agents/:id/retire)", guarded([this](const request_handle_t& req, const Params& p) {
                        const std::string id = restinio::utils::unescape_percent_encoding(p["id"]);
                        if (!agents.retire) return send_error(req, Status::unavailable("no agent service"));
                        Status s = agents.retire(id);
                        if (!s.is_ok()) return send_error(req, s);
                        spdlog::info("http: agent '{}' retired by an operator", id);
                        return send(req, restinio::status_ok(), dump(nlohmann::json{{"ok", true}, {"agent", id}}));
                      }));
    router->http_post("/v1/verify",
                      guarded([this](const request_handle_t& req, const Params&) { return start_verify(req); }));
    router->http_get("/v1/verify",
                     guarded([this](const request_handle_t& req, const Params&) { return verify_and_wait(req); }));
    router->http_get(R"(/v1/verify/:id)",
                     guarded([this](const request_handle_t& req, const Params& p) { return verify_report(req, p); }));
    router->http_get("/metrics", guarded([this](const request_handle_t& req, const Params&) {
                       return send(req, restinio::status_ok(), metrics.prometheus_text(),
                                   "text/plain; version=0.0.4");
                     }));
    router->non_matched_request_handler([this](const request_handle_t& req) {
      ++metrics.http_requests;
      return send_error(req, Status::not_found("no such endpoint: " + std::string(req->header().method().c_str()) +
                                                   " " + std::string(req->header().path())));
    });
    return router;
  }
};

HttpApi::HttpApi(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpApi::~HttpApi() { stop(); }

Result<std::unique_ptr<HttpApi>> HttpApi::start(const HubConfig& config, IngestWriter& writer, JetStream& js,
                                                HubMetrics& metrics, AgentHooks agents) {
  if (config.http_token.empty()) return Status::invalid_argument("[http] token: required when the API listens");
  DS_ASSIGN_OR_RETURN(auto listen, parse_listen(config.http_listen));
  auto impl = std::make_unique<Impl>(config, writer, js, metrics, std::move(agents));
  QueryStoreOptions options;
  options.read_only = true;
  DS_ASSIGN_OR_RETURN(impl->store, QueryStore::open(config.store_path, config.types, options));

  Impl* im = impl.get();
  im->server = std::make_unique<Server>(
      restinio::external_io_context(im->io),
      restinio::server_settings_t<Traits>{}
          .address(listen.first)
          .port(listen.second)
          // Ingest replies wait for the SQLite commit and the JetStream acks.
          .handle_request_timeout(std::chrono::seconds(60))
          .read_next_http_message_timelimit(std::chrono::seconds(60))
          .request_handler(im->make_router()));
  im->work.emplace(asio::make_work_guard(im->io));
  im->thread = std::thread([im] {
    try {
      im->io.run();
    } catch (const std::exception& e) {
      spdlog::critical("http: io thread stopped by an exception: {}", e.what());
    }
  });
  // Shared: the callbacks run on the io thread and may outlive this frame.
  auto opened = std::make_shared<std::promise<Status>>();
  im->server->open_async([opened] { opened->set_value(Status::ok()); },
                         [opened](std::exception_ptr ex) {
                           try {
                             std::rethrow_exception(ex);
                           } catch (const std::exception& e) {
                             opened->set_value(Status::unavailable(std::string("http listen: ") + e.what()));
                           }
                         });
  Status s = opened->get_future().get();
  std::unique_ptr<HttpApi> api(new HttpApi(std::move(impl)));
  if (!s.is_ok()) return s.with_context(config.http_listen);
  spdlog::info("http: listening on {}", config.http_listen);
  return api;
}

void HttpApi::stop() {
  Impl& im = *impl_;
  if (im.stopped) return;
  im.stopped = true;
  if (im.server) {
    auto closed = std::make_shared<std::promise<void>>();
    auto done = closed->get_future();
    im.server->close_async([closed] { closed->set_value(); }, [closed](std::exception_ptr) { closed->set_value(); });
    done.wait_for(std::chrono::seconds(5));
  }
  // Keep-alive connections would keep run() busy; they are abandoned here
  // (every ingest they carried was answered before: the hub stops the writer
  // first).
  im.work.reset();
  im.io.stop();
  if (im.thread.joinable()) im.thread.join();
  spdlog::info("http: stopped");
}

}  // namespace ds
