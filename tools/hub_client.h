#pragma once
// A small blocking HTTP(S) client for the hub's API (bearer token, JSON
// bodies), on libcurl. Used by the `deltasync` CLI.
//
// https:// hubs are verified as any TLS client should: the certificate
// chain against the system's CA store or, with `ca_file`, against that PEM
// bundle only (a private CA), and the host name against the certificate.
// There is no option to skip verification.
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
  // base_url: "http://host:port" or "https://host[:port]", no path; token
  // may be empty; ca_file: a PEM CA bundle that verifies an https:// hub
  // ("" = the system's CAs; an error with http://). InvalidArgument for a
  // malformed URL or an unreadable ca_file.
  static Result<HubClient> create(const std::string& base_url, std::string token, std::string ca_file = {},
                                  int64_t timeout_ms = 10000);

  // Unavailable when the hub cannot be reached or its certificate is not
  // trusted (the message says which and what to do), DeadlineExceeded after
  // the timeout (which covers the whole exchange).
  Result<HttpResponse> request(const std::string& method, const std::string& path,
                               const std::string& body = {}) const;
  // GET/POST returning the JSON body of a 2xx answer; other answers become a
  // Status carrying the hub's error message (401 -> PermissionDenied,
  // 404 -> NotFound, 400 -> InvalidArgument, 5xx -> Unavailable).
  Result<nlohmann::json> get_json(const std::string& path) const;
  Result<nlohmann::json> post_json(const std::string& path, const nlohmann::json& body) const;

  const std::string& base_url() const { return base_url_; }

 private:
  HubClient(std::string base_url, std::string token, std::string ca_file, int64_t timeout_ms)
      : base_url_(std::move(base_url)), token_(std::move(token)), ca_file_(std::move(ca_file)),
        timeout_ms_(timeout_ms) {}
  Result<nlohmann::json> to_json(const Result<HttpResponse>& r) const;

  std::string base_url_;
  std::string token_;
  std::string ca_file_;
  int64_t timeout_ms_;
};

// Percent-encodes a path segment or query value.
std::string url_encode(std::string_view s);

}  // namespace ds
