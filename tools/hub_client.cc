#include "tools/hub_client.h"

#include <asio.hpp>
#include <chrono>

namespace ds {

std::string url_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Result<HubClient> HubClient::create(const std::string& base_url, std::string token, int64_t timeout_ms) {
  constexpr std::string_view kScheme = "http://";
  if (base_url.rfind(kScheme, 0) != 0) {
    return Status::invalid_argument("hub URL '" + base_url + "' must start with http://");
  }
  std::string rest = base_url.substr(kScheme.size());
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.find('/') != std::string::npos) {
    return Status::invalid_argument("hub URL '" + base_url + "' must be http://host:port with no path");
  }
  auto colon = rest.rfind(':');
  std::string host = colon == std::string::npos ? rest : rest.substr(0, colon);
  std::string port = colon == std::string::npos ? "80" : rest.substr(colon + 1);
  if (host.empty() || port.empty()) return Status::invalid_argument("hub URL '" + base_url + "' lacks a host or port");
  return HubClient("http://" + rest, std::move(host), std::move(port), std::move(token), timeout_ms);
}

Result<HttpResponse> HubClient::request(const std::string& method, const std::string& path,
                                        const std::string& body) const {
  // One io_context per request keeps the client free of shared state; the
  // deadline covers resolve, connect, write and read together.
  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  asio::ip::tcp::resolver resolver(io);
  asio::steady_timer deadline(io, std::chrono::milliseconds(timeout_ms_));
  bool timed_out = false;
  deadline.async_wait([&](std::error_code ec) {
    if (!ec) {
      timed_out = true;
      std::error_code ignored;
      resolver.cancel();
      socket.close(ignored);
    }
  });

  std::string request = method + " " + path + " HTTP/1.1\r\nHost: " + host_ + ":" + port_ +
                        "\r\nConnection: close\r\nAccept: application/json\r\n";
  if (!token_.empty()) request += "Authorization: Bearer " + token_ + "\r\n";
  if (!body.empty() || method == "POST") {
    request += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  request += "\r\n" + body;

  std::string response;
  std::error_code failure;
  std::array<char, 16384> buf{};
  std::function<void(std::error_code, size_t)> on_read = [&](std::error_code ec, size_t n) {
    response.append(buf.data(), n);
    if (ec) {
      if (ec != asio::error::eof) failure = ec;
      deadline.cancel();
      return;
    }
    socket.async_read_some(asio::buffer(buf), on_read);
  };
  resolver.async_resolve(host_, port_, [&](std::error_code ec, asio::ip::tcp::resolver::results_type results) {
    if (ec) {
      failure = ec;
      deadline.cancel();
      return;
    }
    asio::async_connect(socket, results, [&](std::error_code cec, const asio::ip::tcp::endpoint&) {
      if (cec) {
        failure = cec;
        deadline.cancel();
        return;
      }
      asio::async_write(socket, asio::buffer(request), [&](std::error_code wec, size_t) {
        if (wec) {
          failure = wec;
          deadline.cancel();
          return;
        }
        socket.async_read_some(asio::buffer(buf), on_read);
      });
    });
  });
  io.run();

  const std::string where = "hub at " + base_url_;
  if (timed_out) return Status::deadline_exceeded(where + ": no answer within " + std::to_string(timeout_ms_) + " ms");
  if (failure) return Status::unavailable(where + " is unreachable: " + failure.message());

  auto header_end = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.", 0) != 0 || header_end == std::string::npos) {
    return Status::unavailable(where + ": malformed HTTP answer");
  }
  HttpResponse r;
  r.status = std::atoi(response.c_str() + response.find(' ') + 1);
  r.body = response.substr(header_end + 4);
  return r;
}

Result<nlohmann::json> HubClient::to_json(const Result<HttpResponse>& r) const {
  if (!r) return r.status();
  auto json = nlohmann::json::parse(r->body, nullptr, /*allow_exceptions=*/false);
  if (r->status >= 200 && r->status < 300) {
    if (json.is_discarded()) return Status::unavailable("hub answered with a body that is not JSON");
    return json;
  }
  std::string message = "HTTP " + std::to_string(r->status);
  if (!json.is_discarded() && json.contains("error") && json["error"].contains("message")) {
    message += ": " + json["error"]["message"].get<std::string>();
    if (json["error"].contains("index")) message += " (record " + json["error"]["index"].dump() + ")";
  } else if (!r->body.empty()) {
    message += ": " + r->body;
  }
  if (r->status == 401 || r->status == 403) return Status::permission_denied(message + " (check --token)");
  if (r->status == 404) return Status::not_found(message);
  if (r->status >= 400 && r->status < 500) return Status::invalid_argument(message);
  return Status::unavailable(message);
}

Result<nlohmann::json> HubClient::get_json(const std::string& path) const {
  return to_json(request("GET", path));
}

Result<nlohmann::json> HubClient::post_json(const std::string& path, const nlohmann::json& body) const {
  return to_json(request("POST", path, body.dump()));
}

}  // namespace ds
