#include "shared/digest.h"

#include <sodium.h>

#include <array>
#include <cstdio>
#include <string>

namespace ds {
namespace {

void append_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

}  // namespace

uint64_t row_hash(std::string_view key, uint64_t version) {
  // The all-zero key is deliberate: the digest is a checksum both sides must
  // reproduce, not a MAC.
  static const std::array<unsigned char, crypto_shorthash_KEYBYTES> kZeroKey{};
  std::string input;
  input.reserve(4 + key.size() + 8);
  append_le(input, static_cast<uint64_t>(key.size()), 4);
  input.append(key);
  append_le(input, version, 8);
  std::array<unsigned char, crypto_shorthash_BYTES> out{};
  crypto_shorthash(out.data(), reinterpret_cast<const unsigned char*>(input.data()), input.size(),
                   kZeroKey.data());
  uint64_t h = 0;
  for (size_t i = 0; i < out.size(); ++i) h |= static_cast<uint64_t>(out[i]) << (8 * i);
  return h;
}

std::string Digest::hex() const {
  std::array<char, 17> buf{};
  std::snprintf(buf.data(), buf.size(), "%016llx", static_cast<unsigned long long>(sum));
  return std::to_string(count) + ":" + buf.data();
}

}  // namespace ds
