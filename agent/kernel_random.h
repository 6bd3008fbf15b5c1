#pragma once
// Makes OpenSSL's RAND_bytes read the kernel's random generator (getrandom(2))
// in an agent that does not use TLS.
//
// Why: cnats calls RAND_bytes once in nats_Open, for the random prefix of its
// NUIDs (inbox names, request ids). That first call makes OpenSSL 3 activate
// its default provider, build the provider's method store and instantiate the
// CTR-DRBG chain: about 1.8 MB of libcrypto code and 0.26 MB of heap become
// resident for 8 random bytes (/proc/<pid>/smaps of an idle agent, Debian 12,
// OpenSSL 3.0.19: libcrypto 3.4 -> 1.6 MB, heap 444 -> 188 kB). Loading or not
// loading openssl.cnf makes no difference; the DRBG set-up is the cost.
// Without TLS that is the agent's only use of OpenSSL, and the kernel
// generator is what the DRBG would seed itself from.
//
// With TLS configured the agent leaves OpenSSL's own generator in place.
// RAND_set_rand_method is deprecated in OpenSSL 3 (still built on Debian 12):
// if a later OpenSSL drops it, remove this file and the one call in main.

#include <string_view>

#include "shared/config.h"
#include "shared/status.h"

namespace ds {

// True when the connection will use TLS: a tls_* key is set or a server URL
// has the tls:// scheme.
bool nats_uses_tls(const NatsConfig& config);

// Installs the getrandom(2) method as OpenSSL's process-wide RAND method.
// Call before nats_Open (NatsLibrary) and before any thread exists; calling it
// again is harmless.
Status use_kernel_random_for_openssl();

// True when OpenSSL's RAND method is the one installed above.
bool openssl_uses_kernel_random();

}  // namespace ds
