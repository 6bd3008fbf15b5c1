#pragma once
// NATS operator-mode credentials for tests: an operator, an account and
// users, each an ed25519 key (libsodium) in the nkeys encoding, with the
// JWTs nats-server 2.9.10 (nats-io/jwt v2.3.0) accepts, and the user .creds
// files nsc would write. Built here from the documented formats, so tests
// need no nsc.
//
// JWT (v2): base64url-without-padding of the header
// {"typ":"JWT","alg":"ed25519-nkey"}, a dot, the same of the claims
// ({"jti","iat","iss","name","sub","nats":{...,"type","version":2}}), a dot,
// and the issuer's ed25519 signature of those two parts. The operator signs
// itself and the account, the account its users. "jti" is a random id here
// (nsc hashes the claims; nats-server does not check it).
//
//   TestTrustChain chain = make_test_trust_chain();
//   NatsServer server(chain.server_config());        // operator, MEMORY resolver
//   write_file(dir + "/user.creds", chain.creds_text(chain.user, chain.user_jwt));
//
// Not thread-safe per object; any number of objects on any threads.

#include <array>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace ds::testing {

struct TestNkey {
  uint8_t type = 0;                  // kNkeyPrefixOperator / Account / User (shared/nkeys.h)
  std::string public_key;            // "O..." / "A..." / "U..."
  std::string seed;                  // the encoded seed; users only ("SU...")
  std::array<unsigned char, 64> secret_key{};  // libsodium's ed25519 secret key
};

TestNkey make_test_nkey(uint8_t type);

// A v2 JWT for `subject_key` signed by `issuer`; `nats` holds the
// kind-specific claims (its "type" and "version" are set here). `expires_at`
// (Unix seconds) 0 = never.
std::string sign_test_jwt(const TestNkey& issuer, const std::string& subject_key, const std::string& name,
                          const std::string& kind, nlohmann::json nats, int64_t expires_at = 0);

struct TestTrustChain {
  TestNkey op;
  TestNkey account;
  TestNkey system_account;  // nats-server's JetStream needs one in operator mode
  TestNkey user;
  std::string operator_jwt;
  std::string account_jwt;
  std::string system_account_jwt;
  std::string user_jwt;  // `user`, issued by `account`, no limits

  // nats-server config: `operator` (the JWT inline), `system_account`,
  // `resolver: MEMORY` and `resolver_preload` with both accounts.
  std::string server_config() const;
  // Another user of the account: its key, and its JWT through `jwt`.
  TestNkey new_user(const std::string& name, std::string* jwt, int64_t expires_at = 0) const;
};

TestTrustChain make_test_trust_chain(const std::string& user_name = "test-user");

// A .creds file's text as nsc writes it: the JWT block, nsc's notice, the
// seed block, with "\n" (or "\r\n" when `crlf`) line ends.
std::string creds_text(const std::string& jwt, const std::string& seed, bool crlf = false);

}  // namespace ds::testing
