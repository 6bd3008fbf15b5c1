#pragma once
// A small blocking HTTP/1.1 client for the hub's API (bearer token,
// `Connection: close`, JSON bodies). Used by the `deltasync` CLI.
// Not thread-safe; cheap to create per command.

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "shared/status.h"

namespace ds {

struct HttpResponse {
  int status = 0;
  std::string body;
};

class HubClient {
 public:
  // base_url: "http://host:port" (no TLS); token may be empty.
  static Result<HubClient> create(const std::string& base_url, std::string token, int64_t timeout_ms = 10000);

  Result<HttpResponse> request(const std::string& method, const std::string& path,
                               const std::string& body = {}) const;
  // GET/POST returning the JSON body of a 2xx answer; other answers become a
  // Status carrying the hub's error message (401 -> PermissionDenied,
  // 404 -> NotFound, 400 -> InvalidArgument, 5xx -> Unavailable).
  Result<nlohmann::json> get_json(const std::string& path) const;
  Result<nlohmann::json> post_json(const std::string& path, const nlohmann::json& body) const;

  const std::string& base_url() const { return base_url_; }

 private:
  HubClient(std::string base_url, std::string host, std::string port, std::string token, int64_t timeout_ms)
      : base_url_(std::move(base_url)), host_(std::move(host)), port_(std::move(port)),
        token_(std::move(token)), timeout_ms_(timeout_ms) {}
  Result<nlohmann::json> to_json(const Result<HttpResponse>& r) const;

  std::string base_url_;
  std::string host_;
  std::string port_;
  std::string token_;
  int64_t timeout_ms_;
};

// Percent-encodes a path segment or query value.
std::string url_encode(std::string_view s);

}  // namespace ds
