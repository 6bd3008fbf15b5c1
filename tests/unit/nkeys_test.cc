// NATS nkey encoding (shared/nkeys.h): known vectors from the nats sources,
// round trips, and the checks that reject damaged keys.

#include "shared/nkeys.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "shared/nats.h"
#include "testing/local_host.h"
#include "testing/temp_dir.h"

namespace ds {
namespace {

// nats-io/nats.rs tests/auth_nkey.rs: the server config lists the public key,
// the client signs with the seed.
constexpr std::string_view kRsSeed = "SUANQDPB2RUOE4ETUA26CNX7FUKE5ZZKFCQIIW63OX225F2CO7UEXTM7ZY";
constexpr std::string_view kRsPublic = "UAMMBNV2EYR65NYZZ7IAK5SIR5ODNTTERJOBOF4KJLMWI45YOXOSWULM";
// The user seed of nats.c's and nats.go's trust tests, with the public key a
// third-party client's tests pair it with.
constexpr std::string_view kCSeed = "SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY";
constexpr std::string_view kCPublic = "UAT6BWCSCWLUKJT6K6MBJJOEOTXZ5AJDOYKNEVRFC7VNO6OA43N4TRNO";

TEST(NkeysTest, KnownSeedsGiveTheirPublishedPublicKeys) {
  for (auto [seed, expected] : {std::pair{kRsSeed, kRsPublic}, std::pair{kCSeed, kCPublic}}) {
    auto pair = user_nkey_from_seed(seed);
    ASSERT_TRUE(pair.is_ok()) << pair.status().to_string();
    EXPECT_EQ(pair->public_key, expected);
    EXPECT_EQ(pair->seed, seed);  // re-encoding the decoded seed is exact
  }
}

TEST(NkeysTest, Crc16IsTheXmodemVariant) {
  // The standard check value of CRC-16/XMODEM.
  const std::string check = "123456789";
  EXPECT_EQ(nkey_crc16(reinterpret_cast<const uint8_t*>(check.data()), check.size()), 0x31C3);
}

TEST(NkeysTest, Base32MatchesRfc4648WithoutPadding) {
  // RFC 4648 section 10 vectors, padding removed.
  const std::vector<std::pair<std::string, std::string>> vectors = {
      {"f", "MY"}, {"fo", "MZXQ"}, {"foo", "MZXW6"}, {"foob", "MZXW6YQ"}, {"fooba", "MZXW6YTB"},
      {"foobar", "MZXW6YTBOI"}};
  for (const auto& [plain, encoded] : vectors) {
    const std::vector<uint8_t> bytes(plain.begin(), plain.end());
    EXPECT_EQ(nkey_base32_encode(bytes), encoded);
    auto back = nkey_base32_decode(encoded);
    ASSERT_TRUE(back.is_ok()) << back.status().to_string();
    EXPECT_EQ(*back, bytes);
  }
}

TEST(NkeysTest, GeneratedKeyRoundTripsAndHasUserPrefixes) {
  auto pair = generate_user_nkey();
  ASSERT_TRUE(pair.is_ok()) << pair.status().to_string();
  EXPECT_EQ(pair->seed.size(), 58u);
  EXPECT_EQ(pair->public_key.size(), 56u);
  EXPECT_EQ(pair->seed.substr(0, 2), "SU");
  EXPECT_EQ(pair->public_key[0], 'U');

  auto seed = decode_nkey(pair->seed);
  ASSERT_TRUE(seed.is_ok()) << seed.status().to_string();
  EXPECT_TRUE(seed->is_seed);
  EXPECT_EQ(seed->type, kNkeyPrefixUser);
  EXPECT_EQ(encode_nkey_seed(kNkeyPrefixUser, seed->key), pair->seed);

  auto pub = decode_nkey(pair->public_key);
  ASSERT_TRUE(pub.is_ok()) << pub.status().to_string();
  EXPECT_FALSE(pub->is_seed);
  EXPECT_EQ(pub->type, kNkeyPrefixUser);
  EXPECT_EQ(encode_nkey_public(kNkeyPrefixUser, pub->key), pair->public_key);

  auto again = user_nkey_from_seed(pair->seed);
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_EQ(again->public_key, pair->public_key);
}

TEST(NkeysTest, SharedWrapperDerivesTheSamePublicKey) {
  // A connection derives the public key it announces (natsOptions_SetNKey)
  // from the seed file itself (shared/nonce_signing.h) and signs the nonce
  // with that seed; it must agree with the key `deltasync creds` wrote into
  // the server's authorization, or generated credentials would not connect.
  auto pair = generate_user_nkey();
  ASSERT_TRUE(pair.is_ok()) << pair.status().to_string();
  auto pub = nkey_public_key_from_seed(pair->seed);
  ASSERT_TRUE(pub.is_ok()) << pub.status().to_string();
  EXPECT_EQ(*pub, pair->public_key);
}

TEST(NkeysTest, GeneratedKeysDiffer) {
  std::set<std::string> seeds;
  for (int i = 0; i < 16; ++i) {
    auto pair = generate_user_nkey();
    ASSERT_TRUE(pair.is_ok()) << pair.status().to_string();
    seeds.insert(pair->seed);
  }
  EXPECT_EQ(seeds.size(), 16u);
}

TEST(NkeysTest, ChecksumCatchesEveryFlippedCharacter) {
  for (std::string_view key : {kRsSeed, kRsPublic}) {
    for (size_t i = 0; i < key.size(); ++i) {
      std::string damaged(key);
      damaged[i] = damaged[i] == 'A' ? 'B' : 'A';
      auto decoded = decode_nkey(damaged);
      EXPECT_FALSE(decoded.is_ok()) << "character " << i << " of " << key;
      if (!decoded.is_ok()) {
        EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);
      }
    }
  }
}

TEST(NkeysTest, ChecksumMismatchIsNamed) {
  // Swapping two different characters keeps the alphabet and the length.
  std::string damaged(kRsPublic);
  std::swap(damaged[10], damaged[11]);
  ASSERT_NE(damaged, kRsPublic);
  auto decoded = decode_nkey(damaged);
  ASSERT_FALSE(decoded.is_ok());
  EXPECT_NE(decoded.status().message().find("checksum"), std::string::npos) << decoded.status().to_string();
}

TEST(NkeysTest, MalformedTextIsRejected) {
  EXPECT_FALSE(decode_nkey("").is_ok());
  EXPECT_FALSE(decode_nkey(std::string(kRsSeed).substr(0, 57)).is_ok());  // truncated
  EXPECT_FALSE(decode_nkey(std::string(kRsSeed) + "A").is_ok());           // too long
  std::string lower(kRsPublic);
  lower[5] = 'a';
  EXPECT_FALSE(decode_nkey(lower).is_ok());  // nkeys are upper case only
  std::string padded(kRsPublic);
  padded.back() = '=';
  EXPECT_FALSE(decode_nkey(padded).is_ok());
}

TEST(NkeysTest, NonUserKeysAreRejected) {
  // An operator seed ("SO...", nats.go's trust tests) is well formed but not
  // a user's: creds only ever issues user keys.
  auto op = decode_nkey("SOAL7GTNI66CTVVNXBNQMG6V2HTDRWC3HGEP7D2OUTWNWSNYZDXWFOX4SU");
  ASSERT_FALSE(op.is_ok());
  EXPECT_NE(op.status().message().find("not a user key"), std::string::npos) << op.status().to_string();
  // A public key where a seed is expected.
  auto from_public = user_nkey_from_seed(kRsPublic);
  ASSERT_FALSE(from_public.is_ok());
  EXPECT_EQ(from_public.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ds
