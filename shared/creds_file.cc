#include "shared/creds_file.h"

#include <sodium.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <nlohmann/json.hpp>

#include "shared/nkeys.h"

namespace ds {
namespace {

std::string_view trim(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
  while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
  return line;
}

// "-----BEGIN NATS USER JWT-----": at least three dashes at each end.
bool is_fence(std::string_view line) {
  if (line.size() < 6) return false;
  return line.substr(0, 3) == "---" && line.substr(line.size() - 3) == "---";
}

// What a block may hold: base64url, the dots of a JWT, base32 of a seed.
bool is_content(std::string_view line) {
  if (line.empty()) return false;
  for (char c : line) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || c == '.' || c == '=';
    if (!ok) return false;
  }
  return true;
}

// The content lines of the file's blocks, in order (views into `text`).
std::vector<std::string_view> blocks(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = trim(text.substr(start, end - start));
    if (!line.empty()) lines.push_back(line);  // blank lines never matter
    start = end + 1;
  }
  std::vector<std::string_view> out;
  for (size_t i = 0; i + 2 < lines.size();) {
    if (is_fence(lines[i]) && is_content(lines[i + 1]) && is_fence(lines[i + 2])) {
      out.push_back(lines[i + 1]);
      i += 3;
    } else {
      ++i;
    }
  }
  return out;
}

Result<std::string> base64url_decode(std::string_view text) {
  std::string out(text.size(), '\0');
  size_t size = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(), text.size(), nullptr,
                        &size, nullptr, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
    return Status::invalid_argument("not base64url");
  }
  out.resize(size);
  return out;
}

// Wipes a string holding a secret on every return path.
class Wipe {
 public:
  explicit Wipe(std::string& s) : s_(s) {}
  ~Wipe() { sodium_memzero(s_.data(), s_.size()); }
  Wipe(const Wipe&) = delete;
  Wipe& operator=(const Wipe&) = delete;

 private:
  std::string& s_;
};

}  // namespace

UserCreds::~UserCreds() { sodium_memzero(seed.data(), seed.size()); }

Result<UserCreds> parse_creds(std::string_view text, std::string_view source) {
  const std::string src(source);
  const std::vector<std::string_view> found = blocks(text);
  if (found.empty()) {
    return Status::invalid_argument(src + ": no user JWT: a creds file holds a '-----BEGIN NATS USER JWT-----' "
                                          "block, then a '-----BEGIN USER NKEY SEED-----' block (as nsc writes it)");
  }
  if (found.size() < 2) {
    return Status::invalid_argument(src + ": no user nkey seed: expected a second block "
                                          "('-----BEGIN USER NKEY SEED-----', holding SU...) after the JWT's");
  }
  UserCreds out;
  out.jwt = std::string(found[0]);
  out.seed = std::string(found[1]);

  auto pair = user_nkey_from_seed(out.seed);
  if (!pair.is_ok()) {
    return Status::invalid_argument(src + ": the second block does not hold a user nkey seed (SU...): " +
                                    pair.status().message());
  }
  Wipe wipe_pair_seed(pair->seed);
  out.public_key = pair->public_key;

  // header.claims.signature
  const size_t dot1 = out.jwt.find('.');
  const size_t dot2 = dot1 == std::string::npos ? std::string::npos : out.jwt.find('.', dot1 + 1);
  if (dot1 == std::string::npos || dot2 == std::string::npos || out.jwt.find('.', dot2 + 1) != std::string::npos ||
      dot1 == 0 || dot2 == dot1 + 1 || dot2 + 1 == out.jwt.size()) {
    return Status::invalid_argument(src + ": the first block does not hold a JWT (three base64url parts joined by "
                                          "dots)");
  }
  auto claims_text = base64url_decode(std::string_view(out.jwt).substr(dot1 + 1, dot2 - dot1 - 1));
  const nlohmann::json claims = claims_text.is_ok() ? nlohmann::json::parse(*claims_text, nullptr, false)
                                                    : nlohmann::json(nlohmann::json::value_t::discarded);
  if (claims.is_discarded() || !claims.is_object()) {
    return Status::invalid_argument(src + ": the JWT's claims are not base64url-encoded JSON");
  }
  // Version 2 JWTs carry the kind in "nats": {"type": ...}, version 1 at the top.
  std::string kind;
  if (auto nats = claims.find("nats"); nats != claims.end() && nats->is_object()) {
    if (auto t = nats->find("type"); t != nats->end() && t->is_string()) kind = t->get<std::string>();
  }
  if (auto t = claims.find("type"); kind.empty() && t != claims.end() && t->is_string()) kind = t->get<std::string>();
  if (kind != "user") {
    return Status::invalid_argument(src + ": the JWT is " +
                                    (kind.empty() ? std::string("of no type") : "an '" + kind + "' JWT") +
                                    ", not a user JWT");
  }
  const auto sub = claims.find("sub");
  const std::string subject = sub != claims.end() && sub->is_string() ? sub->get<std::string>() : "";
  if (subject != out.public_key) {
    return Status::invalid_argument(src + ": the JWT is for user '" + subject + "', but the seed is the key of '" +
                                    out.public_key + "': the JWT and the seed do not belong together");
  }
  if (auto name = claims.find("name"); name != claims.end() && name->is_string()) out.name = name->get<std::string>();
  if (auto exp = claims.find("exp"); exp != claims.end() && exp->is_number_integer()) {
    out.expires_at = exp->get<int64_t>();
  }
  return out;
}

Result<UserCreds> read_creds_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::not_found("creds file " + path + ": cannot open: " + std::strerror(errno));
  std::string text;
  Wipe wipe_text(text);
  char chunk[4096];
  Status error;
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = Status::invalid_argument("creds file " + path + ": cannot read: " + std::strerror(errno));
      break;
    }
    if (n == 0) break;
    if (text.size() + static_cast<size_t>(n) > (1u << 20)) {
      error = Status::invalid_argument("creds file " + path + ": larger than 1 MiB: not a creds file");
      break;
    }
    // Grow by copying through a wiped buffer, so no freed block keeps a copy.
    std::string grown;
    grown.reserve(text.size() + static_cast<size_t>(n));
    grown.append(text).append(chunk, static_cast<size_t>(n));
    sodium_memzero(text.data(), text.size());
    text.swap(grown);
  }
  sodium_memzero(chunk, sizeof chunk);
  ::close(fd);
  if (!error.is_ok()) return error;
  return parse_creds(text, "creds file " + path);
}

}  // namespace ds
