#include <restinio/all.hpp>

#include "shared/metrics_server.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <future>
#include <optional>
#include <thread>

namespace ds {
namespace {

using Server = restinio::http_server_t<restinio::default_single_thread_traits_t>;

Result<std::pair<std::string, uint16_t>> split_listen(const std::string& listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) return Status::invalid_argument("metrics listen '" + listen + "': expected host:port");
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port_text = listen.substr(colon + 1);
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || ptr != port_text.data() + port_text.size() || port > 65535) {
    return Status::invalid_argument("metrics listen '" + listen + "': bad port");
  }
  return std::make_pair(host, static_cast<uint16_t>(port));
}

}  // namespace

struct MetricsServer::Impl {
  std::string listen;
  Render render;
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::unique_ptr<Server> server;
  std::thread thread;
  bool stopped = false;

  restinio::request_handling_status_t handle(const restinio::request_handle_t& req) {
    const auto& h = req->header();
    if (h.path() != "/metrics") {
      return req->create_response(restinio::status_not_found())
          .append_header(restinio::http_field::content_type, "text/plain")
          .set_body("only /metrics is served here\n")
          .done();
    }
    if (h.method() != restinio::http_method_get() && h.method() != restinio::http_method_head()) {
      return req->create_response(restinio::status_method_not_allowed())
          .append_header(restinio::http_field::allow, "GET, HEAD")
          .connection_close()
          .done();
    }
    std::string body;
    try {
      body = render();
    } catch (const std::exception& e) {
      spdlog::error("metrics: rendering failed: {}", e.what());
      return req->create_response(restinio::status_internal_server_error()).set_body("error\n").done();
    }
    return req->create_response()
        .append_header(restinio::http_field::content_type, "text/plain; version=0.0.4; charset=utf-8")
        .set_body(std::move(body))
        .done();
  }
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsServer::~MetricsServer() { stop(); }

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(const std::string& listen, Render render) {
  DS_ASSIGN_OR_RETURN(auto address, split_listen(listen));
  auto impl = std::make_unique<Impl>();
  impl->listen = listen;
  impl->render = std::move(render);
  Impl* im = impl.get();
  im->server = std::make_unique<Server>(
      restinio::external_io_context(im->io),
      restinio::server_settings_t<restinio::default_single_thread_traits_t>{}
          .address(address.first)
          .port(address.second)
          .handle_request_timeout(std::chrono::seconds(30))
          .read_next_http_message_timelimit(std::chrono::seconds(60))
          .max_pipelined_requests(1)
          // No body is ever wanted: anything larger than a few bytes is refused unread.
          .incoming_http_msg_limits(restinio::incoming_http_msg_limits_t{}
                                        .max_body_size(1024)
                                        .max_url_size(4096)
                                        .max_field_count(64)
                                        .max_field_value_size(8192))
          .request_handler([im](const restinio::request_handle_t& req) { return im->handle(req); }));
  im->work.emplace(asio::make_work_guard(im->io));
  im->thread = std::thread([im] {
    try {
      im->io.run();
    } catch (const std::exception& e) {
      spdlog::critical("metrics: io thread stopped by an exception: {}", e.what());
    }
  });
  auto opened = std::make_shared<std::promise<Status>>();
  im->server->open_async([opened] { opened->set_value(Status::ok()); },
                         [opened](std::exception_ptr ex) {
                           try {
                             std::rethrow_exception(ex);
                           } catch (const std::exception& e) {
                             opened->set_value(Status::unavailable(std::string("metrics listen: ") + e.what()));
                           }
                         });
  Status s = opened->get_future().get();
  std::unique_ptr<MetricsServer> server(new MetricsServer(std::move(impl)));
  if (!s.is_ok()) return s.with_context(listen);
  spdlog::info("metrics: serving GET /metrics on {} (plain http, no token)", listen);
  return server;
}

void MetricsServer::stop() {
  Impl& im = *impl_;
  if (im.stopped) return;
  im.stopped = true;
  if (im.server) {
    auto closed = std::make_shared<std::promise<void>>();
    auto done = closed->get_future();
    im.server->close_async([closed] { closed->set_value(); }, [closed](std::exception_ptr) { closed->set_value(); });
    done.wait_for(std::chrono::seconds(5));
  }
  im.work.reset();
  im.io.stop();
  if (im.thread.joinable()) im.thread.join();
}

}  // namespace ds
