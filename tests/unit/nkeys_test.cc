// NATS nkey encoding (shared/nkeys.h): known vectors from the nats sources,
// round trips, and the checks that reject damaged keys. Also the pure parts
// of `deltasync creds` (tools/creds.h): argument parsing, validation, the
// authorization block text and the file rules. That the block really grants
// and denies what it says is tests/integration/security_test.cc.

#include "shared/nkeys.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "shared/nats.h"
#include "tools/creds.h"
#include "tools/local_host.h"
#include "tools/temp_dir.h"

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
  // shared/nats.cc decodes seeds on its own for natsOptions_SetNKeyFromSeed;
  // both must agree or generated credentials would not connect.
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

CredsIdentity identity(CredsRole role, std::string_view arg) {
  auto parsed = parse_creds_identity(role, arg);
  EXPECT_TRUE(parsed.is_ok()) << arg << ": " << parsed.status().to_string();
  return parsed.is_ok() ? *parsed : CredsIdentity{};
}

TEST(CredsTest, ParsesNamesAndTypes) {
  const CredsIdentity agent = identity(CredsRole::kAgent, "store-1:prices,products");
  EXPECT_EQ(agent.name, "store-1");
  EXPECT_EQ(agent.types, (std::vector<std::string>{"prices", "products"}));
  const CredsIdentity hub = identity(CredsRole::kHub, "hub");
  EXPECT_EQ(hub.name, "hub");
  EXPECT_TRUE(hub.types.empty());
}

TEST(CredsTest, BadIdentitiesAreRejectedWithTheReason) {
  struct Case {
    CredsRole role;
    std::string arg;
    std::string says;
  };
  const std::vector<Case> cases = {
      {CredsRole::kAgent, "store.1:prices", "invalid agent id"},   // a dot would split the subject token
      {CredsRole::kAgent, "store-1", "has no business types"},
      {CredsRole::kAgent, "store-1:", "invalid business type name"},
      {CredsRole::kAgent, "store-1:Prices", "invalid business type name"},
      {CredsRole::kAgent, "store-1:prices,,products", "invalid business type name"},
      {CredsRole::kAgent, "store-1:prices,prices", "listed twice"},
      {CredsRole::kAgent, ":prices", "invalid agent id"},
      {CredsRole::kProducer, "erp*:prices", "invalid producer name"},
      {CredsRole::kProducer, "erp", "has no business types"},
      {CredsRole::kHub, "hub:prices", "takes no types"},
      {CredsRole::kHub, "", "invalid hub name"},
  };
  for (const auto& c : cases) {
    auto parsed = parse_creds_identity(c.role, c.arg);
    ASSERT_FALSE(parsed.is_ok()) << c.arg;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument) << c.arg;
    EXPECT_NE(parsed.status().message().find(c.says), std::string::npos)
        << c.arg << ": " << parsed.status().message();
  }
}

TEST(CredsTest, RequestNeedsUniqueNamesAndAValidPrefix) {
  CredsRequest request;
  request.out_dir = "/tmp/unused";
  EXPECT_FALSE(validate_creds_request(request).is_ok());  // nothing to generate
  request.identities = {identity(CredsRole::kAgent, "erp:prices"), identity(CredsRole::kProducer, "erp:prices")};
  Status dup = validate_creds_request(request);
  EXPECT_NE(dup.message().find("used twice"), std::string::npos) << dup.to_string();
  request.identities.pop_back();
  EXPECT_TRUE(validate_creds_request(request).is_ok());
  request.subject_prefix = "ds.";
  EXPECT_FALSE(validate_creds_request(request).is_ok());
  request.subject_prefix = "ds";
  request.out_dir.clear();
  EXPECT_FALSE(validate_creds_request(request).is_ok());
}

TEST(CredsTest, AgentEntryGrantsExactlyDesignSection7) {
  const std::string entry = nats_user_entry(identity(CredsRole::kAgent, "store-1:prices,products"), "UKEY", "acme.ds");
  EXPECT_EQ(entry,
            "    { nkey: \"UKEY\", permissions: {\n"
            "        publish:   { allow: [\"acme.ds.hub.*.store-1\", \"$JS.API.CONSUMER.INFO.*.ag_store-1\", "
            "\"$JS.ACK.*.ag_store-1.>\"] }\n"
            "        subscribe: { allow: [\"acme.ds.push.store-1.>\", \"acme.ds.agent.store-1.>\", "
            "\"acme.ds.hb.prices\", \"acme.ds.hb.products\", \"_INBOX_store-1.>\"] }\n"
            "        allow_responses: true } }\n");
  EXPECT_EQ(entry.find("CONSUMER.CREATE"), std::string::npos);
  EXPECT_EQ(entry.find("MSG.GET"), std::string::npos);
}

TEST(CredsTest, ProducerAndHubEntries) {
  EXPECT_EQ(nats_user_entry(identity(CredsRole::kProducer, "erp:prices,products"), "UKEY", "ds"),
            "    { nkey: \"UKEY\", permissions: {\n"
            "        publish:   { allow: [\"ds.ingest.prices\", \"ds.ingest.products\"] }\n"
            "        subscribe: { allow: [\"_INBOX_erp.>\"] } } }\n");
  EXPECT_EQ(nats_user_entry(identity(CredsRole::kHub, "hub"), "UKEY", "ds"),
            "    { nkey: \"UKEY\", permissions: { publish: \">\", subscribe: \">\" } }\n");
}

TEST(CredsTest, WritesOwnerOnlySeedsMatchingTheAuthBlock) {
  TempDir dir("deltasync-creds-unit");
  CredsRequest request;
  request.out_dir = dir.file("new/creds");  // created, with its parent
  request.identities = {identity(CredsRole::kHub, "hub"), identity(CredsRole::kAgent, "store-1:prices")};
  auto result = write_credentials(request);
  ASSERT_TRUE(result.is_ok()) << result.status().to_string();
  ASSERT_EQ(result->issued.size(), 2u);

  struct stat st {};
  ASSERT_EQ(::stat(request.out_dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  const std::string conf = read_text_file(result->auth_conf);
  for (const auto& c : result->issued) {
    ASSERT_EQ(::stat(c.seed_file.c_str(), &st), 0) << c.seed_file;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << c.seed_file;
    const std::string text = read_text_file(c.seed_file);
    ASSERT_EQ(text.size(), 59u) << "one seed line: " << c.seed_file;
    EXPECT_EQ(text.back(), '\n');
    auto pub = nkey_public_key_from_seed_file(c.seed_file);  // how connections read it
    ASSERT_TRUE(pub.is_ok()) << pub.status().to_string();
    EXPECT_EQ(*pub, c.public_key);
    EXPECT_NE(conf.find("nkey: \"" + c.public_key + "\""), std::string::npos);
    EXPECT_EQ(conf.find(text.substr(0, 58)), std::string::npos) << "a seed leaked into auth.conf";
  }
  EXPECT_EQ(conf, nats_authorization_block(result->issued, "ds"));
}

TEST(CredsTest, RefusesToOverwriteWithoutForce) {
  TempDir dir("deltasync-creds-unit");
  CredsRequest request;
  request.out_dir = dir.path();
  request.identities = {identity(CredsRole::kAgent, "store-1:prices"), identity(CredsRole::kAgent, "store-2:prices")};
  auto first = write_credentials(request);
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  const std::string seed1 = read_text_file(dir.file("store-1.nk"));

  // Adding store-3 alone must not silently replace auth.conf (store-1 and 2 would lose access).
  request.identities.push_back(identity(CredsRole::kAgent, "store-3:prices"));
  auto again = write_credentials(request);
  ASSERT_FALSE(again.is_ok());
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(again.status().message().find("--force"), std::string::npos) << again.status().to_string();
  EXPECT_FALSE(std::filesystem::exists(dir.file("store-3.nk"))) << "nothing is written when refusing";
  EXPECT_EQ(read_text_file(dir.file("store-1.nk")), seed1);

  request.force = true;
  auto forced = write_credentials(request);
  ASSERT_TRUE(forced.is_ok()) << forced.status().to_string();
  EXPECT_NE(read_text_file(dir.file("store-1.nk")), seed1);
  EXPECT_TRUE(std::filesystem::exists(dir.file("store-3.nk")));
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().string().find(".tmp-"), std::string::npos) << "leftover " << entry.path();
  }
}

}  // namespace
}  // namespace ds
