#pragma once
// NATS nkeys for `deltasync creds`: ed25519 user key pairs (libsodium) in
// the text encoding nats-server and the clients use.
//
// Encoding (nats-io/nkeys strkey.go): base32 (RFC 4648 alphabet, no padding)
// of [prefix | 32 key bytes | CRC-16/XMODEM of everything before, little-endian].
//   public key: one prefix byte, the key type (user = 20 << 3, prints 'U').
//   seed:       two prefix bytes, the seed marker (18 << 3, prints 'S') with
//               the key type's top 3 bits, then the type's low 5 bits << 3;
//               a user seed therefore prints "SU...".
// Public keys are 56 characters, seeds 58.
//
// All functions are pure or use only libsodium's thread-safe randomness, so
// they may be called from any thread.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shared/status.h"

namespace ds {

inline constexpr uint8_t kNkeyPrefixSeed = 18 << 3;  // 'S'
inline constexpr uint8_t kNkeyPrefixUser = 20 << 3;  // 'U'
// Operator and account keys sign JWTs in operator mode (nats-server's
// trusted operators); deltasync only encodes their public keys, in tests.
inline constexpr uint8_t kNkeyPrefixOperator = 14 << 3;  // 'O'
inline constexpr uint8_t kNkeyPrefixAccount = 0;         // 'A'

using NkeyBytes = std::array<uint8_t, 32>;

// A user key pair in its encoded forms. `seed` is the secret: whoever holds
// it can connect as this user.
struct NkeyPair {
  std::string seed;        // "SU..." (58 characters)
  std::string public_key;  // "U..."  (56 characters)
};

// What an encoded key carries.
struct DecodedNkey {
  bool is_seed = false;
  uint8_t type = 0;  // kNkeyPrefixUser for a user key or seed
  NkeyBytes key{};   // raw public key, or raw 32-byte ed25519 seed
};

// CRC-16/XMODEM (poly 0x1021, init 0), the checksum nkeys appends.
uint16_t nkey_crc16(const uint8_t* data, size_t size);

// RFC 4648 base32 without padding, as nkeys uses it.
std::string nkey_base32_encode(const std::vector<uint8_t>& data);
// InvalidArgument on characters outside the alphabet (upper case only, as
// nkeys writes them) or non-zero trailing bits.
Result<std::vector<uint8_t>> nkey_base32_decode(std::string_view text);

// Encodes a raw public key / raw seed of the given type (kNkeyPrefixUser).
std::string encode_nkey_public(uint8_t type, const NkeyBytes& public_key);
std::string encode_nkey_seed(uint8_t type, const NkeyBytes& raw_seed);

// Decodes a public key or a seed, checking length, CRC and prefix.
// InvalidArgument with the reason on any mismatch.
Result<DecodedNkey> decode_nkey(std::string_view encoded);

// The user key pair of a raw 32-byte ed25519 seed (deterministic).
Result<NkeyPair> user_nkey_from_raw_seed(const NkeyBytes& raw_seed);
// The key pair of an encoded user seed ("SU..."); InvalidArgument otherwise.
Result<NkeyPair> user_nkey_from_seed(std::string_view seed);
// A fresh user key pair from libsodium's CSPRNG.
Result<NkeyPair> generate_user_nkey();

}  // namespace ds
