#include "tools/hub_client.h"

#include <curl/curl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

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

namespace {

// Answers above this are refused rather than held (the largest real answer,
// a verify report or a 1000-record page, is far smaller).
constexpr size_t kMaxResponseBytes = 256u << 20;

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using CurlHandle = std::unique_ptr<CURL, CurlDeleter>;
using CurlHeaders = std::unique_ptr<curl_slist, SlistDeleter>;

// libcurl's global state, set up once per process before the first handle.
Status curl_ready() {
  static const CURLcode code = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (code != CURLE_OK) return Status::internal(std::string("libcurl: ") + curl_easy_strerror(code));
  return Status::ok();
}

struct Body {
  std::string text;
  bool too_large = false;
};

size_t append_body(char* data, size_t size, size_t n, void* user) {
  auto* body = static_cast<Body*>(user);
  const size_t bytes = size * n;
  if (body->text.size() + bytes > kMaxResponseBytes) {
    body->too_large = true;
    return 0;  // libcurl: abort the transfer
  }
  body->text.append(data, bytes);
  return bytes;
}

bool is_tls_failure(CURLcode code) {
  switch (code) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
      return true;
    default:
      return false;
  }
}

}  // namespace

Result<HubClient> HubClient::create(const std::string& base_url, std::string token, std::string ca_file,
                                    int64_t timeout_ms) {
  std::string scheme;
  for (std::string_view s : {"http://", "https://"}) {
    if (base_url.rfind(s, 0) == 0) scheme = s;
  }
  if (scheme.empty()) {
    return Status::invalid_argument("hub URL '" + base_url + "' must start with http:// or https://");
  }
  std::string rest = base_url.substr(scheme.size());
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.empty() || rest.find('/') != std::string::npos || rest.front() == ':' || rest.back() == ':') {
    return Status::invalid_argument("hub URL '" + base_url + "' must be " + scheme + "host[:port] with no path");
  }
  if (!ca_file.empty()) {
    if (scheme != "https://") {
      return Status::invalid_argument("--ca-file '" + ca_file + "' verifies an https:// hub; the hub URL '" +
                                      base_url + "' is plain HTTP");
    }
    if (::access(ca_file.c_str(), R_OK) != 0) {
      return Status::invalid_argument("--ca-file '" + ca_file + "': cannot read: " + std::strerror(errno));
    }
  }
  DS_RETURN_IF_ERROR(curl_ready());
  return HubClient(scheme + rest, std::move(token), std::move(ca_file), timeout_ms);
}

Result<HttpResponse> HubClient::request(const std::string& method, const std::string& path,
                                        const std::string& body) const {
  CurlHandle curl(curl_easy_init());
  if (!curl) return Status::internal("libcurl: cannot create a handle");
  CURL* c = curl.get();
  const std::string url = base_url_ + path;
  const std::string authorization = "Authorization: Bearer " + token_;
  CurlHeaders headers;
  auto add_header = [&](const std::string& h) { headers.reset(curl_slist_append(headers.release(), h.c_str())); };
  add_header("Accept: application/json");
  if (!token_.empty()) add_header(authorization);
  if (method == "POST") add_header("Content-Type: application/json");
  Body answer;
  char error[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms_));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &append_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!ca_file_.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, ca_file_.c_str());
  if (method == "POST") {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  } else if (method != "GET") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  }

  const CURLcode code = curl_easy_perform(c);
  const std::string where = "hub at " + base_url_;
  const std::string detail = error[0] != '\0' ? std::string(error) : std::string(curl_easy_strerror(code));
  if (answer.too_large) {
    return Status::unavailable(where + ": answer larger than " + std::to_string(kMaxResponseBytes) + " bytes");
  }
  if (code == CURLE_OPERATION_TIMEDOUT) {
    return Status::deadline_exceeded(where + ": no answer within " + std::to_string(timeout_ms_) + " ms");
  }
  if (is_tls_failure(code)) {
    const std::string hint = ca_file_.empty()
                                 ? "if the hub's certificate comes from a private CA, give that CA with "
                                   "--ca-file (or DELTASYNC_CA_FILE)"
                                 : "check that --ca-file '" + ca_file_ +
                                       "' holds the CA that signed the hub's certificate and that the "
                                       "certificate names the host of the URL";
    return Status::unavailable(where + ": TLS: the hub's certificate is not trusted or the handshake failed: " +
                               detail + " (" + hint + ")");
  }
  if (code != CURLE_OK) return Status::unavailable(where + " is unreachable: " + detail);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  HttpResponse r;
  r.status = static_cast<int>(status);
  r.body = std::move(answer.text);
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
