// agent/kernel_random.h: when the agent counts as using TLS, and that OpenSSL's
// RAND_bytes really goes to getrandom(2) once the method is installed. Under
// ctest each test is its own process; run directly, the tests after this one
// see the getrandom method, which is harmless.

#include "agent/kernel_random.h"

#include <gtest/gtest.h>

#include <array>

#include <openssl/rand.h>

namespace ds {
namespace {

TEST(AgentKernelRandom, PlainUrlWithoutTlsKeysIsNotTls) {
  NatsConfig c;
  c.url = "nats://127.0.0.1:4222, nats://10.0.0.2:4222";
  EXPECT_FALSE(nats_uses_tls(c));
}

TEST(AgentKernelRandom, AnyTlsKeyIsTls) {
  NatsConfig ca;
  ca.tls_ca_file = "ca.pem";
  EXPECT_TRUE(nats_uses_tls(ca));
  NatsConfig cert;
  cert.tls_cert_file = "c.pem";
  cert.tls_key_file = "k.pem";
  EXPECT_TRUE(nats_uses_tls(cert));
}

TEST(AgentKernelRandom, TlsSchemeInAnyUrlIsTls) {
  NatsConfig c;
  c.url = "nats://a:4222, TLS://b:4222";
  EXPECT_TRUE(nats_uses_tls(c));
  c.url = "tls://a:4222";
  EXPECT_TRUE(nats_uses_tls(c));
  c.url = "nats://tls:4222";
  EXPECT_FALSE(nats_uses_tls(c));
}

TEST(AgentKernelRandom, RandBytesUsesGetrandomAfterInstall) {
  ASSERT_TRUE(use_kernel_random_for_openssl().is_ok());
  EXPECT_TRUE(openssl_uses_kernel_random());
  std::array<unsigned char, 64> a{};
  std::array<unsigned char, 64> b{};
  ASSERT_EQ(RAND_bytes(a.data(), static_cast<int>(a.size())), 1);
  ASSERT_EQ(RAND_bytes(b.data(), static_cast<int>(b.size())), 1);
  EXPECT_NE(a, b);  // 2^-512 chance of a false failure
  std::array<unsigned char, 64> zero{};
  EXPECT_NE(a, zero);
  // Installing twice is harmless.
  EXPECT_TRUE(use_kernel_random_for_openssl().is_ok());
  EXPECT_TRUE(openssl_uses_kernel_random());
}

}  // namespace
}  // namespace ds
