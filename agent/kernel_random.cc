#include "agent/kernel_random.h"

#include <sys/random.h>

#include <cerrno>
#include <cstddef>

// RAND_METHOD and RAND_set_rand_method are deprecated in OpenSSL 3; see the
// header for why the agent still uses them.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/rand.h>

namespace ds {
namespace {

// getrandom returns at most 32 MiB per call and may be interrupted for
// requests above 256 bytes: a few rounds always suffice.
constexpr int kMaxRounds = 64;

int kernel_bytes(unsigned char* buf, int num) {
  if (num < 0) return 0;
  size_t done = 0;
  const size_t want = static_cast<size_t>(num);
  for (int round = 0; round < kMaxRounds && done < want; ++round) {
    const ssize_t n = getrandom(buf + done, want - done, 0);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n < 0 && errno != EINTR) {
      return 0;
    }
  }
  return done == want ? 1 : 0;
}

// The kernel pool needs no seeding from the process.
int kernel_seed(const void*, int) { return 1; }
int kernel_add(const void*, int, double) { return 1; }
int kernel_status() { return 1; }

const RAND_METHOD kKernelRandom = {
    kernel_seed, kernel_bytes, nullptr, kernel_add, kernel_bytes, kernel_status,
};

bool starts_with_tls_scheme(std::string_view url) {
  while (!url.empty() && (url.front() == ' ' || url.front() == '\t')) url.remove_prefix(1);
  constexpr std::string_view kScheme = "tls://";
  if (url.size() < kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    const char c = url[i];
    const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    if (lower != kScheme[i]) return false;
  }
  return true;
}

}  // namespace

bool nats_uses_tls(const NatsConfig& config) {
  if (!config.tls_ca_file.empty() || !config.tls_cert_file.empty() || !config.tls_key_file.empty()) return true;
  std::string_view urls = config.url;
  while (true) {
    const size_t comma = urls.find(',');
    if (starts_with_tls_scheme(urls.substr(0, comma))) return true;
    if (comma == std::string_view::npos) return false;
    urls.remove_prefix(comma + 1);
  }
}

Status use_kernel_random_for_openssl() {
  if (RAND_set_rand_method(&kKernelRandom) != 1) {
    return Status::internal("OpenSSL refused the getrandom(2) random method");
  }
  return Status::ok();
}

bool openssl_uses_kernel_random() { return RAND_get_rand_method() == &kKernelRandom; }

}  // namespace ds
