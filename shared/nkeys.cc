#include "shared/nkeys.h"

#include <sodium.h>

#include <fmt/format.h>

namespace ds {
namespace {

constexpr std::string_view kBase32Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
constexpr size_t kKeySize = 32;
constexpr size_t kCrcSize = 2;

static_assert(crypto_sign_SEEDBYTES == kKeySize);
static_assert(crypto_sign_PUBLICKEYBYTES == kKeySize);

// Wipes a secret buffer when it goes out of scope, on every return path.
class SecretWiper {
 public:
  SecretWiper(void* data, size_t size) : data_(data), size_(size) {}
  ~SecretWiper() { sodium_memzero(data_, size_); }
  SecretWiper(const SecretWiper&) = delete;
  SecretWiper& operator=(const SecretWiper&) = delete;

 private:
  void* data_;
  size_t size_;
};

Status init_sodium() {
  // sodium_init is idempotent and thread-safe; < 0 means no usable RNG.
  if (sodium_init() < 0) return Status::internal("libsodium initialisation failed");
  return Status::ok();
}

std::string encode_with_crc(std::vector<uint8_t> raw) {
  const uint16_t crc = nkey_crc16(raw.data(), raw.size());
  raw.push_back(static_cast<uint8_t>(crc & 0xff));
  raw.push_back(static_cast<uint8_t>(crc >> 8));
  std::string out = nkey_base32_encode(raw);
  sodium_memzero(raw.data(), raw.size());
  return out;
}

}  // namespace

uint16_t nkey_crc16(const uint8_t* data, size_t size) {
  uint16_t crc = 0;
  for (size_t i = 0; i < size; ++i) {
    crc = static_cast<uint16_t>(crc ^ static_cast<uint16_t>(data[i] << 8));
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) != 0 ? static_cast<uint16_t>((crc << 1) ^ 0x1021) : static_cast<uint16_t>(crc << 1);
    }
  }
  return crc;
}

std::string nkey_base32_encode(const std::vector<uint8_t>& data) {
  std::string out;
  out.reserve((data.size() * 8 + 4) / 5);
  uint32_t buffer = 0;
  int bits = 0;
  for (uint8_t byte : data) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out.push_back(kBase32Alphabet[(buffer >> bits) & 31]);
    }
  }
  if (bits > 0) out.push_back(kBase32Alphabet[(buffer << (5 - bits)) & 31]);
  return out;
}

Result<std::vector<uint8_t>> nkey_base32_decode(std::string_view text) {
  std::vector<uint8_t> out;
  out.reserve(text.size() * 5 / 8);
  uint32_t buffer = 0;
  int bits = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const size_t value = kBase32Alphabet.find(text[i]);
    if (value == std::string_view::npos) {
      return Status::invalid_argument(fmt::format("character {} is not base32", i + 1));
    }
    buffer = ((buffer << 5) | static_cast<uint32_t>(value)) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>((buffer >> bits) & 0xff));
    }
  }
  // A canonical encoding leaves fewer than 5 bits over, all zero.
  if (bits >= 5 || (buffer & ((1u << bits) - 1)) != 0) {
    return Status::invalid_argument("base32 text has a truncated or non-canonical end");
  }
  return out;
}

std::string encode_nkey_public(uint8_t type, const NkeyBytes& public_key) {
  std::vector<uint8_t> raw;
  raw.reserve(1 + kKeySize + kCrcSize);
  raw.push_back(type);
  raw.insert(raw.end(), public_key.begin(), public_key.end());
  return encode_with_crc(std::move(raw));
}

std::string encode_nkey_seed(uint8_t type, const NkeyBytes& raw_seed) {
  // The type's 8 bits are spread over the two prefix bytes so that both the
  // 'S' and the type letter print as base32 characters of their own.
  std::vector<uint8_t> raw;
  raw.reserve(2 + kKeySize + kCrcSize);
  raw.push_back(static_cast<uint8_t>(kNkeyPrefixSeed | (type >> 5)));
  raw.push_back(static_cast<uint8_t>((type & 31) << 3));
  raw.insert(raw.end(), raw_seed.begin(), raw_seed.end());
  return encode_with_crc(std::move(raw));
}

Result<DecodedNkey> decode_nkey(std::string_view encoded) {
  auto decoded = nkey_base32_decode(encoded);
  if (!decoded) return decoded.status().with_context("nkey");
  std::vector<uint8_t>& raw = *decoded;
  SecretWiper wipe(raw.data(), raw.size());
  if (raw.size() != 1 + kKeySize + kCrcSize && raw.size() != 2 + kKeySize + kCrcSize) {
    return Status::invalid_argument(fmt::format("nkey: {} characters is not the length of a key or seed",
                                                encoded.size()));
  }
  const size_t body = raw.size() - kCrcSize;
  const uint16_t want = static_cast<uint16_t>(raw[body] | (raw[body + 1] << 8));
  if (nkey_crc16(raw.data(), body) != want) return Status::invalid_argument("nkey: checksum mismatch");

  DecodedNkey out;
  size_t key_at = 1;
  if (raw.size() == 2 + kKeySize + kCrcSize) {
    if ((raw[0] & 0xf8) != kNkeyPrefixSeed) return Status::invalid_argument("nkey: 58 characters but not a seed");
    out.is_seed = true;
    out.type = static_cast<uint8_t>(((raw[0] & 0x07) << 5) | ((raw[1] & 0xf8) >> 3));
    key_at = 2;
  } else {
    out.type = raw[0];
  }
  if (out.type != kNkeyPrefixUser) {
    return Status::invalid_argument(fmt::format("nkey: key type byte {} is not a user key", out.type));
  }
  std::copy(raw.begin() + static_cast<std::ptrdiff_t>(key_at),
            raw.begin() + static_cast<std::ptrdiff_t>(key_at + kKeySize), out.key.begin());
  return out;
}

Result<NkeyPair> user_nkey_from_raw_seed(const NkeyBytes& raw_seed) {
  DS_RETURN_IF_ERROR(init_sodium());
  NkeyBytes public_key{};
  unsigned char secret_key[crypto_sign_SECRETKEYBYTES];
  SecretWiper wipe(secret_key, sizeof secret_key);
  if (crypto_sign_seed_keypair(public_key.data(), secret_key, raw_seed.data()) != 0) {
    return Status::internal("ed25519 key derivation failed");
  }
  return NkeyPair{encode_nkey_seed(kNkeyPrefixUser, raw_seed), encode_nkey_public(kNkeyPrefixUser, public_key)};
}

Result<NkeyPair> user_nkey_from_seed(std::string_view seed) {
  DS_ASSIGN_OR_RETURN(DecodedNkey decoded, decode_nkey(seed));
  SecretWiper wipe(decoded.key.data(), decoded.key.size());
  if (!decoded.is_seed) return Status::invalid_argument("nkey: a public key, not a seed");
  return user_nkey_from_raw_seed(decoded.key);
}

Result<NkeyPair> generate_user_nkey() {
  DS_RETURN_IF_ERROR(init_sodium());
  NkeyBytes raw_seed{};
  SecretWiper wipe(raw_seed.data(), raw_seed.size());
  randombytes_buf(raw_seed.data(), raw_seed.size());
  return user_nkey_from_raw_seed(raw_seed);
}

}  // namespace ds
