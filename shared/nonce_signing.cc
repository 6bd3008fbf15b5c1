#include "shared/nonce_signing.h"

#include <nats/nats.h>
#include <sodium.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>

#include "shared/creds_file.h"
#include "shared/nats_internal.h"
#include "shared/nkeys.h"

namespace ds {

using nats_detail::make_status;

Result<std::string> nkey_public_key_from_seed(std::string_view seed) {
  DS_ASSIGN_OR_RETURN(NkeyPair pair, user_nkey_from_seed(seed));
  return std::move(pair.public_key);
}

namespace {

// The first user seed ("SU...") in the file.
Result<std::string> read_user_seed(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::not_found("nkey seed file " + path + ": cannot open");
  std::string token;
  while (in >> token) {
    if (token.size() >= 2 && token[0] == 'S' && token[1] == 'U') return token;
  }
  return Status::invalid_argument("nkey seed file " + path + ": no user seed (SU...) in it");
}

}  // namespace

Result<std::string> nkey_public_key_from_seed_file(const std::string& path) {
  DS_ASSIGN_OR_RETURN(std::string seed, read_user_seed(path));
  auto pub = nkey_public_key_from_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  if (!pub.is_ok()) return pub.status().with_context(path);
  return pub;
}

namespace {

// The ed25519 signature of `nonce` by the encoded user seed `seed`.
// Signed here rather than by natsOptions_SetNKeyFromSeed: cnats 3.4's own
// seed decoding failed about once in a few thousand attempts ("invalid
// seed") for seeds that decode fine every other time, which made
// connections fail at random.
Result<std::vector<unsigned char>> sign_nonce_with_seed(std::string_view seed, const char* nonce) {
  auto decoded = decode_nkey(seed);
  if (!decoded.is_ok()) return decoded.status();
  unsigned char pk[crypto_sign_PUBLICKEYBYTES];
  unsigned char sk[crypto_sign_SECRETKEYBYTES];
  crypto_sign_seed_keypair(pk, sk, decoded->key.data());
  sodium_memzero(decoded->key.data(), decoded->key.size());
  std::vector<unsigned char> sig(crypto_sign_BYTES);
  crypto_sign_detached(sig.data(), nullptr, reinterpret_cast<const unsigned char*>(nonce), std::strlen(nonce), sk);
  sodium_memzero(sk, sizeof sk);
  return sig;
}

// The signature of `nonce` by the user seed in the seed file `path`, read at
// each (re)connect as cnats would.
Result<std::vector<unsigned char>> sign_nonce(const std::string& path, const char* nonce) {
  DS_ASSIGN_OR_RETURN(std::string seed, read_user_seed(path));
  auto sig = sign_nonce_with_seed(seed, nonce);
  sodium_memzero(seed.data(), seed.size());
  if (!sig.is_ok()) return sig.status().with_context(path);
  return sig;
}

// cnats' user JWT callback (creds_file): the JWT of the file as it is now.
natsStatus user_jwt_cb(char** user_jwt, char** custom_error, void* closure) {
  auto jwt = static_cast<NonceSigner*>(closure)->user_jwt();
  if (!jwt.is_ok()) {
    *custom_error = ::strdup(jwt.status().message().c_str());
    return NATS_ERR;
  }
  *user_jwt = ::strdup(jwt->c_str());  // cnats frees it with free()
  return *user_jwt != nullptr ? NATS_OK : NATS_NO_MEMORY;
}

// cnats' signature callback, for seed files and creds files alike.
natsStatus sign_nonce_cb(char** custom_error, unsigned char** signature, int* length, const char* nonce,
                         void* closure) {
  auto sig = static_cast<NonceSigner*>(closure)->sign(nonce);
  if (!sig.is_ok()) {
    *custom_error = ::strdup(sig.status().message().c_str());
    return NATS_ERR;
  }
  // cnats frees the signature with free().
  *signature = static_cast<unsigned char*>(std::malloc(sig->size()));
  if (*signature == nullptr) return NATS_NO_MEMORY;
  std::memcpy(*signature, sig->data(), sig->size());
  *length = static_cast<int>(sig->size());
  sodium_memzero(sig->data(), sig->size());
  return NATS_OK;
}

}  // namespace

Result<std::unique_ptr<NonceSigner>> NonceSigner::from_config(const NatsConfig& cfg) {
  if (cfg.creds_file.empty() && cfg.nkey_seed_file.empty()) return std::unique_ptr<NonceSigner>();
  std::unique_ptr<NonceSigner> signer(new NonceSigner());
  if (!cfg.creds_file.empty()) {
    // Read here once to refuse a bad file at once, naming it; the callbacks
    // read it again at every (re)connect, as cnats' own reading would.
    DS_ASSIGN_OR_RETURN(UserCreds creds, read_creds_file(cfg.creds_file));
    if (creds.expires_at != 0 && creds.expires_at <= static_cast<int64_t>(std::time(nullptr))) {
      return Status::permission_denied("creds file " + cfg.creds_file + ": the user JWT" +
                                       (creds.name.empty() ? "" : " '" + creds.name + "'") + " expired at " +
                                       std::to_string(creds.expires_at) +
                                       " (Unix time); nats-server refuses it: issue a new one");
    }
    signer->creds_file_ = cfg.creds_file;
  }
  if (!cfg.nkey_seed_file.empty()) {
    DS_ASSIGN_OR_RETURN(signer->nkey_public_key_, nkey_public_key_from_seed_file(cfg.nkey_seed_file));
    signer->nkey_seed_file_ = cfg.nkey_seed_file;
  }
  return signer;
}

Status NonceSigner::install(natsOptions* opts) {
  if (!creds_file_.empty()) {
    DS_RETURN_IF_ERROR(make_status(natsOptions_SetUserCredentialsCallbacks(opts, user_jwt_cb, this, sign_nonce_cb,
                                                                           this),
                                   0, "creds file"));
  }
  if (!nkey_seed_file_.empty()) {
    DS_RETURN_IF_ERROR(
        make_status(natsOptions_SetNKey(opts, nkey_public_key_.c_str(), sign_nonce_cb, this), 0, "nkey seed file"));
  }
  return Status::ok();
}

Result<std::string> NonceSigner::user_jwt() {
  DS_ASSIGN_OR_RETURN(UserCreds creds, read_creds_file(creds_file_));
  {
    std::lock_guard<std::mutex> lock(creds_mu_);
    creds_public_key_ = creds.public_key;
  }
  return std::move(creds.jwt);
}

// The seed's signature of the nonce: from the seed file, or from the creds
// file whose JWT the JWT callback handed cnats for this attempt.
// Unavailable (a new attempt fixes it) when the creds file now holds another
// key than that JWT's.
Result<std::vector<unsigned char>> NonceSigner::sign_for_attempt(const char* nonce) {
  if (creds_file_.empty()) return sign_nonce(nkey_seed_file_, nonce);
  DS_ASSIGN_OR_RETURN(UserCreds creds, read_creds_file(creds_file_));
  {
    std::lock_guard<std::mutex> lock(creds_mu_);
    if (creds.public_key != creds_public_key_) {
      return Status::unavailable("creds file " + creds_file_ +
                                 " changed between reading its JWT and signing; the next attempt reads it again");
    }
  }
  auto sig = sign_nonce_with_seed(creds.seed, nonce);
  if (!sig.is_ok()) return sig.status().with_context("creds file " + creds_file_);
  return sig;
}

Result<std::vector<unsigned char>> NonceSigner::sign(const char* nonce) {
  // A server without authorization sends no nonce, and cnats still asks for
  // a signature: sign the empty nonce (the server ignores it).
  auto sig = sign_for_attempt(nonce != nullptr ? nonce : "");
  if (!sig.is_ok()) {
    if (sig.status().code() == StatusCode::kUnavailable) dropped_attempts_.fetch_add(1);
    return sig.status();
  }
  if ((*sig)[0] == 0) {
    // cnats 3.4.1 would send this signature empty (its base64 encoder stops
    // at a leading zero byte) and the server would refuse it. Failing here
    // ends the attempt before CONNECT goes out; the next attempt is a new
    // connection with a new nonce. Not an auth error to cnats, so it never
    // counts towards its "same auth error twice" abort.
    dropped_attempts_.fetch_add(1);
    sodium_memzero(sig->data(), sig->size());
    spdlog::debug("nats: the nonce's signature begins with a zero byte; retrying with a new nonce");
    return Status::unavailable("nkey signature begins with a zero byte, which cnats 3.4 would send empty; "
                               "this attempt is dropped and the next one signs a new nonce");
  }
  return sig;
}

}  // namespace ds
