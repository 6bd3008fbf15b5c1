#include "hub/retry_key_header.h"

#include <charconv>
#include <cstdint>

#include "shared/names.h"

namespace ds {
namespace {

constexpr std::string_view kHex = "0123456789abcdef";
// Bytes of the largest uint64 in decimal.
constexpr size_t kMaxDigits = 20;
// Bytes of a digest in hex (BLAKE2b-128).
constexpr size_t kDigestHex = 32;

bool plain(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
         c == '-';
}

int hex_value(char c) {
  const size_t at = kHex.find(c);
  return at == std::string_view::npos ? -1 : static_cast<int>(at);
}

Result<std::string> unhex(std::string_view s, std::string_view what) {
  if (s.size() % 2 != 0) return Status::invalid_argument(std::string(what) + ": odd number of hex digits");
  std::string out;
  for (size_t i = 0; i < s.size(); i += 2) {
    const int hi = hex_value(s[i]);
    const int lo = hex_value(s[i + 1]);
    if (hi < 0 || lo < 0) return Status::invalid_argument(std::string(what) + ": not lowercase hex");
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

Result<std::string> unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      if (!plain(s[i])) return Status::invalid_argument("producer: unescaped byte");
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return Status::invalid_argument("producer: cut escape");
    DS_ASSIGN_OR_RETURN(std::string byte, unhex(s.substr(i + 1, 2), "producer escape"));
    out += byte;
    i += 2;
  }
  if (out.empty()) return Status::invalid_argument("producer: empty");
  return out;
}

Result<uint64_t> number(std::string_view s, std::string_view what) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) {
    return Status::invalid_argument(std::string(what) + ": not a number");
  }
  return v;
}

Result<ProducerRetryKey> decode_one(std::string_view entry) {
  std::vector<std::string_view> parts;
  size_t from = 0;
  for (;;) {
    const size_t slash = entry.find('/', from);
    parts.push_back(entry.substr(from, slash == std::string_view::npos ? std::string_view::npos : slash - from));
    if (slash == std::string_view::npos) break;
    from = slash + 1;
  }
  if (parts.size() != 5) return Status::invalid_argument("expected producer/seq/first/last/digest");
  ProducerRetryKey k;
  DS_ASSIGN_OR_RETURN(k.producer, unescape(parts[0]));
  DS_ASSIGN_OR_RETURN(k.seq, number(parts[1], "seq"));
  DS_ASSIGN_OR_RETURN(k.range.first_version, number(parts[2], "first version"));
  DS_ASSIGN_OR_RETURN(k.range.last_version, number(parts[3], "last version"));
  if (k.range.first_version == 0 || k.range.first_version > k.range.last_version) {
    return Status::invalid_argument("versions: first must be 1..last");
  }
  if (parts[4] != "-") {
    if (parts[4].size() != kDigestHex) return Status::invalid_argument("digest: expected 32 lowercase hex digits");
    DS_ASSIGN_OR_RETURN(std::string digest, unhex(parts[4], "digest"));
    k.range.digest = std::move(digest);
  }
  return k;
}

}  // namespace

std::string encode_retry_keys(const std::vector<ProducerRetryKey>& keys) {
  std::string out;
  for (const ProducerRetryKey& k : keys) {
    if (!out.empty()) out.push_back(' ');
    for (char c : k.producer) {
      if (plain(c)) {
        out.push_back(c);
      } else {
        const auto b = static_cast<unsigned char>(c);
        out += {'%', kHex[b >> 4], kHex[b & 0xf]};
      }
    }
    out += '/' + std::to_string(k.seq) + '/' + std::to_string(k.range.first_version) + '/' +
           std::to_string(k.range.last_version) + '/';
    if (!k.range.digest) {
      out.push_back('-');
    } else {
      for (char c : *k.range.digest) {
        const auto b = static_cast<unsigned char>(c);
        out += {kHex[b >> 4], kHex[b & 0xf]};
      }
    }
  }
  return out;
}

Result<std::vector<ProducerRetryKey>> decode_retry_keys(std::string_view value) {
  std::vector<ProducerRetryKey> out;
  size_t from = 0;
  while (from <= value.size() && !value.empty()) {
    const size_t space = value.find(' ', from);
    const std::string_view entry =
        value.substr(from, space == std::string_view::npos ? std::string_view::npos : space - from);
    auto key = decode_one(entry);
    if (!key.is_ok()) {
      return key.status().with_context(std::string(kRetryKeysHeader) + " entry " + std::to_string(out.size() + 1) +
                                       " " + quoted_for_message(entry));
    }
    out.push_back(std::move(*key));
    if (space == std::string_view::npos) break;
    from = space + 1;
  }
  return out;
}

size_t retry_key_header_bound(std::string_view producer) {
  // The escaped producer, three numbers, a digest, four slashes and a space.
  return 3 * producer.size() + 3 * kMaxDigits + kDigestHex + 5;
}

}  // namespace ds
