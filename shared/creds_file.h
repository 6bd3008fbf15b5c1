#pragma once
// NATS user credentials files (`.creds`, `[nats] creds_file`): the decorated
// user JWT and the user's nkey seed, as nsc and the nats tooling write them.
// deltasync reads them itself, at every connect and reconnect, so that the
// nonce is signed by its own signing callback (shared/nonce_signing.h,
// NonceSigner), the same one as for nkey seed files: cnats 3.4.1's internal
// signing of a creds file (natsOptions_SetUserCredentialsFromFiles) sends a
// signature that begins with a zero byte empty (nats.c PR #705).
//
// Format (nats-io/jwt creds_utils, and cnats' reading of it): blocks of
// three lines, a header line of at least three dashes at each end
// ("-----BEGIN NATS USER JWT-----"), one content line, a closing line of
// dashes ("------END NATS USER JWT------"); blank lines and other text
// (nsc's "*** IMPORTANT ***" notice) between blocks are ignored. The first
// block is the JWT, the second the seed. Line ends may be "\n" or "\r\n".
//
// Checks: the JWT is three base64url parts whose claims (JSON) are a user's
// ("nats": {"type": "user"}, or a version 1 "type": "user"); the seed is a
// user seed ("SU..."); the JWT's subject is the seed's public key. The JWT's
// signature is not checked (nats-server does: deltasync does not know the
// account's key).
//
// The seed is a secret: read_creds_file wipes its copy of the file's bytes,
// and UserCreds wipes the seed when destroyed. Pure functions apart from
// read_creds_file's one read; any thread.

#include <cstdint>
#include <string>
#include <string_view>

#include "shared/status.h"

namespace ds {

struct UserCreds {
  std::string jwt;         // the user JWT, as the file holds it
  std::string public_key;  // "U...": the JWT's subject and the seed's public key
  std::string name;        // the JWT's "name" claim ("" when none), for messages
  int64_t expires_at = 0;  // the JWT's "exp" (Unix seconds); 0 = never
  std::string seed;        // "SU...": the secret; wiped by the destructor

  UserCreds() = default;
  ~UserCreds();
  UserCreds(UserCreds&&) noexcept = default;
  UserCreds& operator=(UserCreds&&) noexcept = default;
  UserCreds(const UserCreds&) = delete;
  UserCreds& operator=(const UserCreds&) = delete;
};

// Parses a creds file's text; `source` (the file's path) starts every error
// message. InvalidArgument saying what is missing or wrong.
Result<UserCreds> parse_creds(std::string_view text, std::string_view source);

// Reads and parses `path`: NotFound when it cannot be opened (with the
// system's reason), else as parse_creds.
Result<UserCreds> read_creds_file(const std::string& path);

}  // namespace ds
