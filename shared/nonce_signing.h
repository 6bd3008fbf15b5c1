#pragma once
// Nonce signing: how a connection proves it holds the user nkey of
// [nats] nkey_seed_file or [nats] creds_file (shared/creds_file.h).
//
// What it owns: reading the seed (or the creds file's JWT and seed) at every
// connect and reconnect, as cnats' own reading would, and signing the
// server's nonce with libsodium (ed25519), through cnats' user-credentials
// callbacks (natsOptions_SetNKey for a seed file, natsOptions_SetUserCredentialsCallbacks
// for a creds file). cnats only base64-encodes the signature into CONNECT.
// deltasync does not hand cnats the seed (natsOptions_SetNKeyFromSeed,
// natsOptions_SetUserCredentialsFromFiles): cnats 3.4's own seed decoding
// failed about once in a few thousand attempts ("invalid seed") for seeds
// that decode fine every other time, and its signing of a creds file sends
// a signature that begins with a zero byte empty (below).
//
// The rule it keeps (the cnats 3.4.1 zero-byte trap): cnats 3.4.1's base64
// encoder yields nothing when the first input byte is zero (nats.c PR #705,
// fixed in a later release), so a signature beginning with 0x00 (1 nonce in
// 256; ed25519 is deterministic, so it is the nonce that decides) would go
// out empty and nats-server 2.9 answers "Authorization Violation". Two such
// refusals in a row while reconnecting make cnats 3.4 close the connection
// for good (it aborts on the same auth error twice, and 3.4 has no option to
// turn that off). So the signing callback never hands cnats such a
// signature: it fails that attempt locally, before CONNECT is sent, which
// cnats treats as an ordinary failed attempt (not an auth error), and counts
// it (dropped_attempts). A new attempt is a new TCP connection with a new
// nonce: Connection::connect() retries at once (at most
// kMaxSignatureAttempts), the reconnect loop after its usual delay.
//
// Threads: cnats calls the callbacks on the thread making the attempt
// (connect()'s caller, then cnats' reconnect thread); the signer is
// thread-safe. It must outlive every connection made with the options it
// was installed on.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "shared/config.h"
#include "shared/status.h"

typedef struct __natsOptions natsOptions;

namespace ds {

// The public key ("U...") of an encoded user nkey seed ("SU..."), which
// natsOptions_SetNKey needs next to the signing callback.
Result<std::string> nkey_public_key_from_seed(std::string_view seed);
// Same for a seed file (the first "SU..." token in it).
Result<std::string> nkey_public_key_from_seed_file(const std::string& path);

// connect() makes this many attempts when attempts fail only because the
// nonce's signature begins with a zero byte: each one has a 1 in 256
// chance, so 8 in a row happen once in 2^64.
inline constexpr int kMaxSignatureAttempts = 8;

class NonceSigner {
 public:
  // The signer `cfg` asks for: its creds_file or nkey_seed_file (nullptr
  // when it names neither). The file is read here once to refuse a bad one
  // at once, naming it: a creds file that does not parse, or whose JWT has
  // expired (PermissionDenied); a seed file without a user seed.
  static Result<std::unique_ptr<NonceSigner>> from_config(const NatsConfig& cfg);

  // Installs the callbacks on `opts`.
  Status install(natsOptions* opts);

  // Attempts dropped before CONNECT because a new attempt fixes them: the
  // signature began with a zero byte, or the creds file changed between
  // reading its JWT and signing.
  uint64_t dropped_attempts() const { return dropped_attempts_.load(); }

  // The cnats callbacks' bodies (public for the C trampolines in
  // nonce_signing.cc; not for other callers).
  Result<std::string> user_jwt();
  Result<std::vector<unsigned char>> sign(const char* nonce);

 private:
  NonceSigner() = default;
  Result<std::vector<unsigned char>> sign_for_attempt(const char* nonce);

  std::string nkey_seed_file_;  // a seed file ("" = none)
  std::string creds_file_;      // a .creds file: its JWT goes into CONNECT, its seed signs ("" = none)
  std::string nkey_public_key_;  // of nkey_seed_file_, for natsOptions_SetNKey
  // The public key of the JWT the JWT callback handed cnats for the attempt
  // under way (JWT callback and signing run one after the other on the
  // thread making the attempt; the mutex covers the reconnect thread taking
  // over from connect()).
  std::mutex creds_mu_;
  std::string creds_public_key_;  // guarded by creds_mu_
  std::atomic<uint64_t> dropped_attempts_{0};
};

}  // namespace ds
