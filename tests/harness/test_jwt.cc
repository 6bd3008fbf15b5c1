#include "tests/harness/test_jwt.h"

#include <sodium.h>

#include <ctime>
#include <stdexcept>
#include <vector>

#include "shared/nkeys.h"

namespace ds::testing {
namespace {

std::string base64url(const std::string& bytes) {
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(std::string(out.c_str()).size());  // drop the terminator libsodium writes
  return out;
}

}  // namespace

TestNkey make_test_nkey(uint8_t type) {
  if (sodium_init() < 0) throw std::runtime_error("libsodium initialisation failed");
  TestNkey k;
  k.type = type;
  NkeyBytes raw_seed{};
  randombytes_buf(raw_seed.data(), raw_seed.size());
  NkeyBytes pk{};
  crypto_sign_seed_keypair(pk.data(), k.secret_key.data(), raw_seed.data());
  k.public_key = encode_nkey_public(type, pk);
  if (type == kNkeyPrefixUser) k.seed = encode_nkey_seed(type, raw_seed);
  sodium_memzero(raw_seed.data(), raw_seed.size());
  return k;
}

std::string sign_test_jwt(const TestNkey& issuer, const std::string& subject_key, const std::string& name,
                          const std::string& kind, nlohmann::json nats, int64_t expires_at) {
  unsigned char id[32];
  randombytes_buf(id, sizeof id);
  nats["type"] = kind;
  nats["version"] = 2;
  nlohmann::json claims{{"jti", nkey_base32_encode(std::vector<uint8_t>(id, id + sizeof id))},
                        {"iat", static_cast<int64_t>(std::time(nullptr))},
                        {"iss", issuer.public_key},
                        {"name", name},
                        {"sub", subject_key},
                        {"nats", std::move(nats)}};
  if (expires_at != 0) claims["exp"] = expires_at;
  const std::string header = base64url(R"({"typ":"JWT","alg":"ed25519-nkey"})");
  const std::string signed_part = header + "." + base64url(claims.dump());
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size(),
                       issuer.secret_key.data());
  return signed_part + "." + base64url(std::string(reinterpret_cast<const char*>(sig), sizeof sig));
}

std::string TestTrustChain::server_config() const {
  return "operator: \"" + operator_jwt + "\"\nsystem_account: " + system_account.public_key +
         "\nresolver: MEMORY\nresolver_preload: {\n  " + account.public_key + ": \"" + account_jwt + "\"\n  " +
         system_account.public_key + ": \"" + system_account_jwt + "\"\n}\n";
}

TestNkey TestTrustChain::new_user(const std::string& name, std::string* jwt, int64_t expires_at) const {
  TestNkey u = make_test_nkey(kNkeyPrefixUser);
  // -1: no limit (0 would allow no subscriptions and no data).
  const nlohmann::json nats{{"pub", nlohmann::json::object()},
                            {"sub", nlohmann::json::object()},
                            {"subs", -1},
                            {"data", -1},
                            {"payload", -1}};
  *jwt = sign_test_jwt(account, u.public_key, name, "user", nats, expires_at);
  return u;
}

TestTrustChain make_test_trust_chain(const std::string& user_name) {
  TestTrustChain c;
  c.op = make_test_nkey(kNkeyPrefixOperator);
  c.account = make_test_nkey(kNkeyPrefixAccount);
  c.operator_jwt = sign_test_jwt(c.op, c.op.public_key, "test-operator", "operator", nlohmann::json::object());
  // -1: no limit; an account without limits would admit no connection.
  const nlohmann::json limits{{"subs", -1},    {"data", -1},         {"payload", -1}, {"imports", -1},
                              {"exports", -1}, {"wildcards", true},  {"conn", -1},    {"leaf", -1}};
  const nlohmann::json account_nats{
      {"limits", limits},
      {"default_permissions", {{"pub", nlohmann::json::object()}, {"sub", nlohmann::json::object()}}}};
  c.account_jwt = sign_test_jwt(c.op, c.account.public_key, "test-account", "account", account_nats);
  c.system_account = make_test_nkey(kNkeyPrefixAccount);
  c.system_account_jwt = sign_test_jwt(c.op, c.system_account.public_key, "SYS", "account", account_nats);
  c.user = c.new_user(user_name, &c.user_jwt);
  return c;
}

std::string creds_text(const std::string& jwt, const std::string& seed, bool crlf) {
  const std::string nl = crlf ? "\r\n" : "\n";
  return "-----BEGIN NATS USER JWT-----" + nl + jwt + nl + "------END NATS USER JWT------" + nl + nl +
         "************************* IMPORTANT *************************" + nl +
         "NKEY Seed printed below can be used to sign and prove identity." + nl +
         "NKEYs are sensitive and should be treated as secrets." + nl + nl + "-----BEGIN USER NKEY SEED-----" + nl +
         seed + nl + "------END USER NKEY SEED------" + nl + nl +
         "*************************************************************" + nl;
}

}  // namespace ds::testing
