// Reading .creds files (shared/creds_file.h): what nsc writes is read, and
// every malformed file is refused with an error naming the file and what is
// wrong with it, never quoting the seed.

#include <gtest/gtest.h>

#include "shared/creds_file.h"
#include "shared/nkeys.h"
#include "testing/temp_dir.h"
#include "tests/harness/test_jwt.h"

namespace ds::testing {
namespace {

class CredsFileTest : public ::testing::Test {
 protected:
  // The error of parsing `text`, which must fail; checks the common rules.
  std::string error_of(const std::string& text) {
    const std::string path = dir_.write_file("user.creds", text);
    auto c = read_creds_file(path);
    EXPECT_FALSE(c.is_ok());
    if (c.is_ok()) return {};
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << c.status().to_string();
    EXPECT_NE(c.status().message().find(path), std::string::npos) << c.status().message();
    EXPECT_EQ(c.status().message().find(chain_.user.seed), std::string::npos) << "the seed is quoted";
    return c.status().message();
  }

  TestTrustChain chain_ = make_test_trust_chain("store-1");
  TempDir dir_{"deltasync-creds-file"};
};

TEST_F(CredsFileTest, ReadsTheFileNscWrites) {
  for (bool crlf : {false, true}) {
    auto c = read_creds_file(dir_.write_file("user.creds", creds_text(chain_.user_jwt, chain_.user.seed, crlf)));
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    EXPECT_EQ(c->jwt, chain_.user_jwt);
    EXPECT_EQ(c->seed, chain_.user.seed);
    EXPECT_EQ(c->public_key, chain_.user.public_key);
    EXPECT_EQ(c->name, "store-1");
    EXPECT_EQ(c->expires_at, 0);
  }
}

TEST_F(CredsFileTest, ReadsTheExpiryOfTheJwt) {
  std::string jwt;
  const TestNkey user = chain_.new_user("short-lived", &jwt, 1700000000);
  auto c = parse_creds(creds_text(jwt, user.seed), "x.creds");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->expires_at, 1700000000);
}

TEST_F(CredsFileTest, AFileWithoutBlocksIsRefused) {
  EXPECT_NE(error_of("").find("no user JWT"), std::string::npos);
  EXPECT_NE(error_of(chain_.user_jwt + "\n" + chain_.user.seed + "\n").find("no user JWT"), std::string::npos);
}

TEST_F(CredsFileTest, AFileWithoutASeedIsRefused) {
  const std::string jwt_only =
      "-----BEGIN NATS USER JWT-----\n" + chain_.user_jwt + "\n------END NATS USER JWT------\n";
  EXPECT_NE(error_of(jwt_only).find("no user nkey seed"), std::string::npos);
}

TEST_F(CredsFileTest, ASeedThatIsNoUserSeedIsRefused) {
  EXPECT_NE(error_of(creds_text(chain_.user_jwt, chain_.user.public_key)).find("does not hold a user nkey seed"),
            std::string::npos);
  std::string broken = chain_.user.seed;
  broken[10] = broken[10] == 'A' ? 'B' : 'A';  // the checksum no longer matches
  EXPECT_NE(error_of(creds_text(chain_.user_jwt, broken)).find("checksum"), std::string::npos);
}

TEST_F(CredsFileTest, AJwtThatIsNoJwtIsRefused) {
  EXPECT_NE(error_of(creds_text("abc.def", chain_.user.seed)).find("does not hold a JWT"), std::string::npos);
  EXPECT_NE(error_of(creds_text("abc.def.ghi", chain_.user.seed)).find("not base64url-encoded JSON"),
            std::string::npos);
}

TEST_F(CredsFileTest, AnAccountJwtIsRefused) {
  EXPECT_NE(error_of(creds_text(chain_.account_jwt, chain_.user.seed)).find("an 'account' JWT, not a user JWT"),
            std::string::npos);
}

TEST_F(CredsFileTest, AJwtOfAnotherUserIsRefused) {
  std::string other_jwt;
  const TestNkey other = chain_.new_user("other", &other_jwt);
  const std::string message = error_of(creds_text(other_jwt, chain_.user.seed));
  EXPECT_NE(message.find("do not belong together"), std::string::npos) << message;
  EXPECT_NE(message.find(other.public_key), std::string::npos) << message;
  EXPECT_NE(message.find(chain_.user.public_key), std::string::npos) << message;
}

TEST_F(CredsFileTest, AMissingFileIsNotFoundNamingIt) {
  auto c = read_creds_file(dir_.file("absent.creds"));
  ASSERT_FALSE(c.is_ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_NE(c.status().message().find(dir_.file("absent.creds")), std::string::npos) << c.status().message();
}

}  // namespace
}  // namespace ds::testing
