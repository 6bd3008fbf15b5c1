#include "shared/nats_url.h"

#include <algorithm>
#include <charconv>
#include <system_error>

namespace ds {
namespace {

std::string single_quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

}  // namespace

Result<std::vector<std::string>> parse_nats_servers(std::string_view urls) {
  constexpr std::string_view kExpected = " (expected nats://host:port or tls://host:port, comma-separated)";
  std::vector<std::string> out;
  std::string_view rest = urls;
  for (size_t index = 1;; ++index) {
    const size_t comma = rest.find(',');
    std::string_view entry = rest.substr(0, comma);
    while (!entry.empty() && (entry.front() == ' ' || entry.front() == '\t')) entry.remove_prefix(1);
    while (!entry.empty() && (entry.back() == ' ' || entry.back() == '\t')) entry.remove_suffix(1);
    const std::string where = "server " + std::to_string(index) + " ";
    if (entry.empty()) return Status::invalid_argument(where + "is empty" + std::string(kExpected));
    if (entry.find('@') != std::string_view::npos) {
      // Not echoed, with or without a scheme: the entry holds a secret.
      return Status::invalid_argument(where + "carries credentials (user@ or user:password@), which are not accepted "
                                      "in a URL: authenticate with the identity's nkey seed (nkey_seed_file) or "
                                      "creds file (creds_file)");
    }
    std::string_view hostport;
    for (std::string_view scheme : {"nats://", "tls://"}) {
      if (entry.size() > scheme.size() && entry.substr(0, scheme.size()) == scheme) {
        hostport = entry.substr(scheme.size());
      }
    }
    auto invalid = [&](std::string_view why) {
      return Status::invalid_argument("invalid server URL " + single_quoted(entry) + ": " + std::string(why) +
                                      std::string(kExpected));
    };
    if (hostport.empty()) return invalid("no nats:// or tls:// scheme");
    // An IPv6 host is bracketed: [::1]:4222.
    const size_t host_end = hostport.front() == '[' ? hostport.find(']') : hostport.find(':');
    if (hostport.front() == '[' && host_end == std::string_view::npos) return invalid("unclosed '['");
    const size_t colon = hostport.front() == '[' ? hostport.find(':', host_end) : host_end;
    const std::string_view host = hostport.substr(0, colon);
    if (host.empty() || host == "[]") return invalid("no host");
    if (host.find_first_of("/?#@ ") != std::string_view::npos) return invalid("not a host name");
    if (colon != std::string_view::npos) {
      const std::string_view port = hostport.substr(colon + 1);
      unsigned value = 0;
      auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
      if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value < 1 || value > 65535) {
        return invalid("the port must be a number from 1 to 65535");
      }
    }
    std::string server(entry);
    if (std::find(out.begin(), out.end(), server) != out.end()) {
      return Status::invalid_argument("server URL " + single_quoted(entry) + " is listed twice");
    }
    out.push_back(std::move(server));
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace ds
