#include "tools/creds.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <sodium.h>

#include "shared/names.h"
#include "shared/nats.h"
#include "shared/nkeys.h"

namespace ds {
namespace {

constexpr std::string_view kAuthConfName = "auth.conf";
constexpr std::string_view kSeedSuffix = ".nk";
constexpr std::string_view kIdentitiesName = "identities.json";

// Quoted nats-server config string. Names and types are restricted to
// [A-Za-z0-9_-] and prefixes to dotted tokens, so no escaping is needed;
// quotes keep "$JS..." literal (no variable lookup) and ">" a plain string.
std::string conf_string(std::string_view s) { return fmt::format("\"{}\"", s); }

std::string conf_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ", ";
    out += conf_string(items[i]);
  }
  return out + "]";
}

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += sep;
    out += items[i];
  }
  return out;
}

}  // namespace

std::string grants_text(const Identity& identity) {
  std::vector<std::string> items;
  for (const Grant& g : identity.grants) items.push_back(g.partition == kAnyPartition ? g.type : g.type + ":" + g.partition);
  return join(items, ",");
}

namespace {

std::string errno_text(int err) { return std::strerror(err); }

// Owns a file descriptor.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }
  // Closes now, reporting the error close() may carry (deferred write errors).
  int close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

// Writes `text` to `path` with `mode` via a temporary file in the same
// directory and a rename, so `path` holds either its old or its new content.
Status write_file_atomically(const std::string& path, std::string_view text, mode_t mode) {
  const std::string tmp = fmt::format("{}.tmp-{}", path, ::getpid());
  FileDescriptor fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode));
  if (fd.get() < 0) return Status::internal(fmt::format("{}: cannot create: {}", tmp, errno_text(errno)));
  // The mode given to open() is filtered by the umask and ignored for an
  // existing file; fchmod makes it exact either way.
  Status s;
  if (::fchmod(fd.get(), mode) != 0) s = Status::internal(fmt::format("{}: chmod: {}", tmp, errno_text(errno)));
  size_t done = 0;
  while (s.is_ok() && done < text.size()) {
    const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) s = Status::internal(fmt::format("{}: write: {}", tmp, errno_text(errno)));
    else done += static_cast<size_t>(n);
  }
  if (s.is_ok() && ::fsync(fd.get()) != 0) s = Status::internal(fmt::format("{}: fsync: {}", tmp, errno_text(errno)));
  if (fd.close() != 0 && s.is_ok()) s = Status::internal(fmt::format("{}: close: {}", tmp, errno_text(errno)));
  if (s.is_ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    s = Status::internal(fmt::format("{}: rename into place: {}", path, errno_text(errno)));
  }
  if (!s.is_ok()) ::unlink(tmp.c_str());
  return s;
}

Status sync_directory(const std::string& dir) {
  FileDescriptor fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 || ::fsync(fd.get()) != 0) {
    return Status::internal(fmt::format("{}: fsync: {}", dir, errno_text(errno)));
  }
  return Status::ok();
}

Status ensure_directory(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return Status::invalid_argument(dir + ": exists and is not a directory");
    return Status::ok();
  }
  if (errno != ENOENT) return Status::internal(fmt::format("{}: {}", dir, errno_text(errno)));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::internal(fmt::format("{}: cannot create: {}", dir, ec.message()));
  // Only the new leaf is tightened; parents the operator chose stay as they are.
  if (::chmod(dir.c_str(), 0700) != 0) return Status::internal(fmt::format("{}: chmod: {}", dir, errno_text(errno)));
  return Status::ok();
}

std::string path_in(const std::string& dir, std::string_view name) {
  return (std::filesystem::path(dir) / std::string(name)).string();
}

// The whole content of `path`; nullopt when it does not exist.
Result<std::optional<std::string>> read_if_exists(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return std::optional<std::string>();
    return Status::internal(fmt::format("{}: cannot open: {}", path, errno_text(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::internal(path + ": read failed");
  return std::optional<std::string>(text.str());
}

// Writes `text` (as write_file_atomically) unless `path` already holds
// exactly it; true when it wrote.
Result<bool> write_if_changed(const std::string& path, std::string_view text, mode_t mode) {
  DS_ASSIGN_OR_RETURN(std::optional<std::string> current, read_if_exists(path));
  if (current && *current == text) return false;
  DS_RETURN_IF_ERROR(write_file_atomically(path, text, mode));
  return true;
}

// An exclusive flock on the directory itself (flock works on a directory's
// descriptor), held for the object's life. Every `creds` change takes it, so
// two concurrent changes run one after the other, each on the registry the
// other left. Waits up to kCredsLockWaitMs.
class DirectoryLock {
 public:
  static Result<DirectoryLock> acquire(const std::string& dir) {
    DirectoryLock lock(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (lock.fd_ < 0) return Status::internal(fmt::format("{}: cannot open to lock: {}", dir, errno_text(errno)));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kCredsLockWaitMs);
    while (::flock(lock.fd_, LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK && errno != EINTR) {
        return Status::internal(fmt::format("{}: flock: {}", dir, errno_text(errno)));
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        return Status::unavailable(fmt::format("{}: another `deltasync creds` has held this directory for {} s; "
                                               "try again when it is done",
                                               dir, kCredsLockWaitMs / 1000));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return lock;
  }
  DirectoryLock(DirectoryLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  DirectoryLock& operator=(DirectoryLock&&) = delete;
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;
  ~DirectoryLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the flock
  }

 private:
  explicit DirectoryLock(int fd) : fd_(fd) {}
  int fd_;
};

// A fresh key; its seed written to `seed_file` (0600). Returns the public key.
Result<std::string> issue_seed(const std::string& seed_file) {
  DS_ASSIGN_OR_RETURN(NkeyPair pair, generate_user_nkey());
  std::string content;
  content.reserve(pair.seed.size() + 1);
  content.append(pair.seed).append("\n");
  Status s = write_file_atomically(seed_file, content, 0600);
  sodium_memzero(content.data(), content.size());
  sodium_memzero(pair.seed.data(), pair.seed.size());
  DS_RETURN_IF_ERROR(s);
  return pair.public_key;
}

// Writes identities.json, then auth.conf, each only when its bytes change;
// true when auth.conf changed.
Result<bool> write_registry(const std::string& dir, const IdentityRegistry& registry) {
  DS_RETURN_IF_ERROR(validate_registry(registry));
  DS_ASSIGN_OR_RETURN(std::string auth, nats_authorization_block(registry));
  // Public keys and entitlements only, like auth.conf; the hub reads it.
  DS_ASSIGN_OR_RETURN(bool wrote_registry,
                      write_if_changed(creds_identities_file(dir), registry_to_json(registry), 0644));
  DS_ASSIGN_OR_RETURN(bool wrote_auth, write_if_changed(creds_auth_conf(dir), auth, 0644));
  if (wrote_registry || wrote_auth) DS_RETURN_IF_ERROR(sync_directory(dir));
  return wrote_auth;
}

Identity* find_mutable(IdentityRegistry& registry, std::string_view name) {
  for (Identity& id : registry.identities) {
    if (id.name == name) return &id;
  }
  return nullptr;
}

Status unknown_identity(const std::string& dir, std::string_view name, const IdentityRegistry& registry) {
  std::vector<std::string> names;
  for (const Identity& id : registry.identities) names.push_back(id.name);
  std::sort(names.begin(), names.end());
  return Status::not_found(fmt::format("{}: no identity named {} (known: {})", dir, quoted_for_message(name),
                                       join(names, ", ")));
}

std::vector<Grant> sorted_grants(std::vector<Grant> grants) {
  std::sort(grants.begin(), grants.end(), [](const Grant& a, const Grant& b) { return a.type < b.type; });
  return grants;
}

std::string describe(const Identity& identity) {
  std::string out = fmt::format("{} {}", role_name(identity.role), identity.name);
  if (!identity.grants.empty()) out += " (" + grants_text(identity) + ")";
  return out;
}

// The directory must exist before it can be locked.
Status require_directory(const std::string& dir) {
  if (dir.empty()) return Status::invalid_argument("--dir: a credentials directory is required");
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return Status::not_found(fmt::format("{}: no such directory (create one with `deltasync creds init --dir {}`)",
                                           dir, dir));
    }
    return Status::internal(fmt::format("{}: {}", dir, errno_text(errno)));
  }
  if (!S_ISDIR(st.st_mode)) return Status::invalid_argument(dir + ": not a directory");
  return Status::ok();
}

Result<IdentityRegistry> read_registry_locked(const std::string& dir) {
  const std::string path = creds_identities_file(dir);
  DS_ASSIGN_OR_RETURN(std::optional<std::string> text, read_if_exists(path));
  if (!text) {
    return Status::not_found(fmt::format(
        "{}: not a credentials directory (no identities.json); create one with `deltasync creds init --dir {}`",
        dir, dir));
  }
  return parse_registry_json(*text, path);
}

}  // namespace

std::string creds_seed_file(const std::string& dir, std::string_view name) {
  return path_in(dir, std::string(name) + std::string(kSeedSuffix));
}
std::string creds_publisher_seed_file(const std::string& dir, std::string_view name) {
  return publisher_seed_file_for(creds_seed_file(dir, name));
}
std::string creds_auth_conf(const std::string& dir) { return path_in(dir, kAuthConfName); }
std::string creds_identities_file(const std::string& dir) { return path_in(dir, kIdentitiesName); }

Result<Identity> parse_creds_identity(IdentityRole role, std::string_view arg) {
  Identity identity;
  identity.role = role;
  const size_t colon = arg.find(':');
  identity.name = std::string(arg.substr(0, colon));
  if (colon != std::string_view::npos) {
    std::string_view rest = arg.substr(colon + 1);
    while (true) {
      const size_t comma = rest.find(',');
      const std::string_view item = rest.substr(0, comma);
      const size_t at = item.find(':');
      Grant grant{std::string(item.substr(0, at))};
      if (at != std::string_view::npos) grant.partition = std::string(item.substr(at + 1));
      identity.grants.push_back(std::move(grant));
      if (comma == std::string_view::npos) break;
      rest = rest.substr(comma + 1);
    }
  }
  DS_RETURN_IF_ERROR(validate_identity(identity));
  return identity;
}

Result<Grant> parse_grant(std::string_view arg) {
  const size_t at = arg.find(':');
  Grant grant{std::string(arg.substr(0, at))};
  const std::string where = fmt::format("grant {}", quoted_for_message(arg));
  DS_RETURN_IF_ERROR(validate_type_name(grant.type).with_context(where));
  if (at != std::string_view::npos) {
    grant.partition = std::string(arg.substr(at + 1));
    DS_RETURN_IF_ERROR(validate_partition(grant.partition).with_context(where + ": partition"));
  }
  return grant;
}

Status validate_creds_request(const CredsRequest& request) {
  if (request.out_dir.empty()) return Status::invalid_argument("--dir: a credentials directory is required");
  DS_RETURN_IF_ERROR(validate_subject_prefix(request.subject_prefix).with_context("--prefix"));
  if (request.identities.empty()) {
    return Status::invalid_argument("nothing to generate: give at least one --hub, --agent or --producer");
  }
  return validate_registry(IdentityRegistry{request.subject_prefix, request.identities});
}

std::string nats_user_entry(const Identity& identity, std::string_view subject_prefix) {
  const std::string& public_key = identity.public_key;
  const Subjects subjects{std::string(subject_prefix)};
  const std::string& p = subjects.prefix();
  const std::string& x = identity.name;
  switch (identity.role) {
    case IdentityRole::kHub: {
      // Everything its job needs, but nothing that destroys a stream's
      // history: the hub never purges or deletes streams or stream messages,
      // so a reply it were tricked into sending there is refused by the server.
      // Nor does it publish on the live feed, which only the broker's
      // republish of what a stream stored may write (agents trust it).
      std::vector<std::string> deny = {"$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.DELETE.>",
                                       "$JS.API.STREAM.MSG.DELETE.>", p + ".feed.>"};
      if (identity.publisher_public_key.empty()) {
        // A registry from before publisher keys: the hub publishes deltas on
        // this connection (`creds rotate` issues a publisher key).
        return fmt::format(
            "    {{ nkey: {}, permissions: {{ publish: {{ allow: \">\", deny: {} }}, subscribe: \">\" }} }}\n",
            conf_string(public_key), conf_list(deny));
      }
      // Only the publisher key writes into the delta streams: a request can
      // never make the service connection publish there.
      deny.push_back(p + ".delta.>");
      std::string out = fmt::format(
          "    {{ nkey: {}, permissions: {{ publish: {{ allow: \">\", deny: {} }}, subscribe: \">\" }} }}\n",
          conf_string(public_key), conf_list(deny));
      const std::vector<std::string> publish = {
          p + ".delta.>",
          "$JS.API.STREAM.CREATE.*",
          "$JS.API.STREAM.UPDATE.*",
          "$JS.API.STREAM.INFO.*",
          "$JS.API.STREAM.MSG.GET.*",
      };
      out += fmt::format("    # hub {} delta publisher\n", x);
      out += fmt::format(
          "    {{ nkey: {}, permissions: {{\n"
          "        publish:   {{ allow: {} }}\n"
          "        subscribe: {{ allow: {} }} }} }}\n",
          conf_string(identity.publisher_public_key), conf_list(publish), conf_list({inbox_prefix(x) + ".>"}));
      return out;
    }
    case IdentityRole::kAgent: {
      // No JetStream API right at all: subscribe permissions do not guard
      // what the API would hand out (a consumer with any filter, a message
      // by sequence), so the hub creates the agent's consumers and the agent
      // only takes their pushes with plain subscriptions and acks them.
      const std::vector<std::string> publish = {
          p + ".hub.*." + x,
          "$JS.ACK.*." + consumer_name(x) + ".>",
      };
      std::vector<std::string> subscribe = {p + ".push." + x + ".>", p + ".agent." + x + ".>"};
      for (const Grant& g : identity.grants) {
        subscribe.push_back(subjects.heartbeat(g.type));
        // The live feed of its grant: one partition, or every one ("*").
        subscribe.push_back(g.partition == kAnyPartition ? subjects.feed_filter(g.type) : subjects.feed(g.type, g.partition));
      }
      subscribe.push_back(inbox_prefix(x) + ".>");
      return fmt::format(
          "    {{ nkey: {}, permissions: {{\n"
          "        publish:   {{ allow: {} }}\n"
          "        subscribe: {{ allow: {} }}\n"
          "        allow_responses: true }} }}\n",
          conf_string(public_key), conf_list(publish), conf_list(subscribe));
    }
    case IdentityRole::kProducer: {
      std::vector<std::string> publish;
      for (const Grant& g : identity.grants) publish.push_back(subjects.ingest(g.type, x));
      return fmt::format(
          "    {{ nkey: {}, permissions: {{\n"
          "        publish:   {{ allow: {} }}\n"
          "        subscribe: {{ allow: {} }} }} }}\n",
          conf_string(public_key), conf_list(publish), conf_list({inbox_prefix(x) + ".>"}));
    }
  }
  return {};
}

Result<std::string> nats_authorization_block(const IdentityRegistry& registry) {
  if (registry.identities.empty()) {
    return Status::invalid_argument(
        "no identity left: nats-server reads an authorization block without users as no authorization at all "
        "(an open server)");
  }
  std::vector<const Identity*> sorted;
  for (const Identity& id : registry.identities) sorted.push_back(&id);
  std::sort(sorted.begin(), sorted.end(), [](const Identity* a, const Identity* b) { return a->name < b->name; });
  std::string out = fmt::format(
      "# Generated by `deltasync creds` for subject prefix \"{}\" (see deltasync docs/security.md).\n"
      "# Do not edit: `deltasync creds` rewrites it from identities.json at every change.\n"
      "# Public keys only; each process keeps its seed in <name>.nk. Agents and\n"
      "# producers must connect with the inbox prefix _INBOX_<name>.\n"
      "# Use it from nats-server's config with:  include auth.conf\n"
      "authorization {{\n"
      "  users = [\n",
      registry.subject_prefix);
  for (const Identity* id : sorted) {
    out += fmt::format("    # {} {}", role_name(id->role), id->name);
    if (!id->grants.empty()) out += " (types: " + grants_text(*id) + ")";
    out += "\n" + nats_user_entry(*id, registry.subject_prefix);
  }
  out += "  ]\n}\n";
  return out;
}

Result<CredsResult> write_credentials(const CredsRequest& request) {
  DS_RETURN_IF_ERROR(validate_creds_request(request));
  DS_RETURN_IF_ERROR(ensure_directory(request.out_dir));
  DS_ASSIGN_OR_RETURN(DirectoryLock lock, DirectoryLock::acquire(request.out_dir));

  CredsResult result;
  result.auth_conf = creds_auth_conf(request.out_dir);
  result.identities = creds_identities_file(request.out_dir);
  for (const auto& identity : request.identities) {
    result.issued.push_back({identity, creds_seed_file(request.out_dir, identity.name)});
  }

  // Refuse before writing anything, so a refused run leaves no mixture of
  // old and new keys behind.
  if (!request.force) {
    std::vector<std::string> existing;
    std::error_code ec;
    for (const auto& c : result.issued) {
      if (std::filesystem::exists(c.seed_file, ec)) existing.push_back(c.seed_file);
      if (c.identity.role == IdentityRole::kHub &&
          std::filesystem::exists(creds_publisher_seed_file(request.out_dir, c.identity.name), ec)) {
        existing.push_back(creds_publisher_seed_file(request.out_dir, c.identity.name));
      }
    }
    for (const std::string& f : {result.auth_conf, result.identities}) {
      if (std::filesystem::exists(f, ec)) existing.push_back(f);
    }
    if (!existing.empty()) {
      return Status::already_exists(fmt::format(
          "{} already exist{}: to change one identity use `deltasync creds add|grant|revoke|rotate`; "
          "--force regenerates every key (old keys stop working)",
          join(existing, ", "), existing.size() == 1 ? "s" : ""));
    }
  }

  IdentityRegistry registry{request.subject_prefix, {}};
  for (auto& c : result.issued) {
    DS_ASSIGN_OR_RETURN(c.identity.public_key, issue_seed(c.seed_file));
    if (c.identity.role == IdentityRole::kHub) {
      DS_ASSIGN_OR_RETURN(c.identity.publisher_public_key,
                          issue_seed(creds_publisher_seed_file(request.out_dir, c.identity.name)));
    }
    registry.identities.push_back(c.identity);
  }
  DS_RETURN_IF_ERROR(write_registry(request.out_dir, registry).status());
  DS_RETURN_IF_ERROR(sync_directory(request.out_dir));
  return result;
}

Result<IdentityRegistry> read_creds_dir(const std::string& dir) {
  DS_RETURN_IF_ERROR(require_directory(dir));
  return read_registry_locked(dir);
}

Result<CredsChange> add_identity(const std::string& dir, const Identity& identity) {
  DS_RETURN_IF_ERROR(validate_identity(identity));
  DS_RETURN_IF_ERROR(require_directory(dir));
  DS_ASSIGN_OR_RETURN(DirectoryLock lock, DirectoryLock::acquire(dir));
  DS_ASSIGN_OR_RETURN(IdentityRegistry registry, read_registry_locked(dir));
  CredsChange change;
  if (const Identity* existing = registry.find(identity.name)) {
    if (existing->role != identity.role) {
      return Status::already_exists(fmt::format("{}: '{}' is already {} {}; names are unique across hubs, agents "
                                                "and producers",
                                                dir, identity.name,
                                                existing->role == IdentityRole::kAgent ? "an" : "a",
                                                role_name(existing->role)));
    }
    if (sorted_grants(existing->grants) != sorted_grants(identity.grants)) {
      return Status::already_exists(fmt::format(
          "{}: {} already exists with other types ({}); add types with `deltasync creds grant --dir {} {} TYPE...` "
          "(grant only adds; to take types away revoke and add it again)",
          dir, describe(*existing), existing->grants.empty() ? "none" : grants_text(*existing), dir, identity.name));
    }
    // A re-run: the identity is there with its key; only a stale auth.conf
    // (an interrupted earlier run) is put right.
    DS_ASSIGN_OR_RETURN(change.auth_conf_changed, write_registry(dir, registry));
    change.identity = *existing;
    change.summary = fmt::format("{} already exists with these types: nothing to do (no new key)", describe(*existing));
    return change;
  }
  Identity added = identity;
  change.seed_file = creds_seed_file(dir, added.name);
  DS_ASSIGN_OR_RETURN(added.public_key, issue_seed(change.seed_file));
  if (added.role == IdentityRole::kHub) {
    DS_ASSIGN_OR_RETURN(added.publisher_public_key, issue_seed(creds_publisher_seed_file(dir, added.name)));
  }
  registry.identities.push_back(added);
  DS_ASSIGN_OR_RETURN(change.auth_conf_changed, write_registry(dir, registry));
  change.changed = true;
  change.identity = added;
  change.summary = "added " + describe(added);
  return change;
}

Result<CredsChange> grant_types(const std::string& dir, std::string_view name, const std::vector<Grant>& grants) {
  if (grants.empty()) return Status::invalid_argument("grant: name at least one TYPE[:PARTITION]");
  DS_RETURN_IF_ERROR(require_directory(dir));
  DS_ASSIGN_OR_RETURN(DirectoryLock lock, DirectoryLock::acquire(dir));
  DS_ASSIGN_OR_RETURN(IdentityRegistry registry, read_registry_locked(dir));
  Identity* identity = find_mutable(registry, name);
  if (identity == nullptr) return unknown_identity(dir, name, registry);
  if (identity->role == IdentityRole::kHub) {
    return Status::invalid_argument(fmt::format("hub '{}' takes no types: it may use every subject already", name));
  }
  std::vector<std::string> added;
  for (const Grant& g : grants) {
    if (const Grant* held = identity->grant(g.type)) {
      if (held->partition == g.partition) continue;
      return Status::already_exists(fmt::format(
          "{} already holds type '{}' for partition {}; grant only adds types (to change the partition revoke "
          "and add it again)",
          describe(*identity), g.type, held->partition == kAnyPartition ? "* (every partition)" : held->partition));
    }
    identity->grants.push_back(g);
    added.push_back(g.partition == kAnyPartition ? g.type : g.type + ":" + g.partition);
  }
  // validate_identity names the identity and the grant its role cannot hold
  // (a partition for a producer).
  DS_RETURN_IF_ERROR(validate_identity(*identity));
  CredsChange change;
  DS_ASSIGN_OR_RETURN(change.auth_conf_changed, write_registry(dir, registry));
  change.changed = !added.empty();
  change.identity = *identity;
  change.summary = added.empty()
                       ? fmt::format("{} already holds these types: nothing to do", describe(*identity))
                       : fmt::format("granted {} to {} {} (same key); it now holds {}", join(added, ","),
                                     role_name(identity->role), identity->name, grants_text(*identity));
  return change;
}

Result<CredsChange> revoke_identity(const std::string& dir, std::string_view name) {
  DS_RETURN_IF_ERROR(require_directory(dir));
  DS_ASSIGN_OR_RETURN(DirectoryLock lock, DirectoryLock::acquire(dir));
  DS_ASSIGN_OR_RETURN(IdentityRegistry registry, read_registry_locked(dir));
  auto it = std::find_if(registry.identities.begin(), registry.identities.end(),
                         [&](const Identity& id) { return id.name == name; });
  if (it == registry.identities.end()) return unknown_identity(dir, name, registry);
  if (registry.identities.size() == 1) {
    return Status::invalid_argument(fmt::format(
        "{} is the last identity of {}: without users nats-server would accept anyone; add its successor first",
        describe(*it), dir));
  }
  CredsChange change;
  change.identity = *it;
  registry.identities.erase(it);
  DS_ASSIGN_OR_RETURN(change.auth_conf_changed, write_registry(dir, registry));
  // Last: the key is already out of auth.conf, so the file opens nothing.
  for (const std::string& seed : {creds_seed_file(dir, name), creds_publisher_seed_file(dir, name)}) {
    if (::unlink(seed.c_str()) != 0 && errno != ENOENT) {
      return Status::internal(fmt::format("{} revoked, but its seed file {} could not be deleted: {}; delete it",
                                          describe(change.identity), seed, errno_text(errno)));
    }
  }
  DS_RETURN_IF_ERROR(sync_directory(dir));
  change.changed = true;
  change.summary = fmt::format("revoked {}; its seed file is deleted", describe(change.identity));
  return change;
}

Result<CredsChange> rotate_identity(const std::string& dir, std::string_view name) {
  DS_RETURN_IF_ERROR(require_directory(dir));
  DS_ASSIGN_OR_RETURN(DirectoryLock lock, DirectoryLock::acquire(dir));
  DS_ASSIGN_OR_RETURN(IdentityRegistry registry, read_registry_locked(dir));
  Identity* identity = find_mutable(registry, name);
  if (identity == nullptr) return unknown_identity(dir, name, registry);
  CredsChange change;
  change.seed_file = creds_seed_file(dir, name);
  DS_ASSIGN_OR_RETURN(identity->public_key, issue_seed(change.seed_file));
  // A hub's two keys are rotated together (its publisher's seed file sits
  // beside its own); this also issues the publisher key to a hub of a
  // registry written before publisher keys existed.
  const bool hub = identity->role == IdentityRole::kHub;
  if (hub) {
    DS_ASSIGN_OR_RETURN(identity->publisher_public_key, issue_seed(creds_publisher_seed_file(dir, name)));
  }
  DS_ASSIGN_OR_RETURN(change.auth_conf_changed, write_registry(dir, registry));
  change.changed = true;
  change.identity = *identity;
  change.summary = fmt::format("new key{} for {}; the old one{} stop{} working when nats-server reloads",
                               hub ? "s (service and delta publisher)" : "", describe(*identity), hub ? "s" : "",
                               hub ? "" : "s");
  return change;
}

namespace {

std::string one_seed_file_state(const std::string& path, const std::string& public_key) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return ec ? "unreadable: " + ec.message() : "absent";
  auto key = nkey_public_key_from_seed_file(path);
  if (!key.is_ok()) return "unreadable: " + key.status().message();
  return *key == public_key ? "ok" : "MISMATCH";
}

}  // namespace

std::string seed_file_state(const std::string& dir, const Identity& identity) {
  const std::string state = one_seed_file_state(creds_seed_file(dir, identity.name), identity.public_key);
  if (identity.role != IdentityRole::kHub) return state;
  // A hub's two seed files travel together: both must match.
  const std::string publisher =
      identity.publisher_public_key.empty()
          ? "none (run `deltasync creds rotate` for it)"
          : one_seed_file_state(creds_publisher_seed_file(dir, identity.name), identity.publisher_public_key);
  if (state == "ok" && publisher == "ok") return "ok";
  return state + ", publisher " + publisher;
}

Result<pid_t> find_nats_server(std::string_view pid_or_file) {
  auto all_digits = [](std::string_view s) {
    return !s.empty() && s.size() <= 10 &&
           std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
  };
  std::string text(pid_or_file);
  std::string source = "process id " + text;
  if (!all_digits(text)) {
    const std::string file = text;
    auto content = read_if_exists(file);
    if (!content.is_ok() || !*content) {
      return Status::invalid_argument(fmt::format(
          "{}: neither a process id nor a readable pid file", quoted_for_message(pid_or_file)));
    }
    text = **content;
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
    if (!all_digits(text)) return Status::invalid_argument(file + ": does not hold a process id");
    source = fmt::format("process id {} (from {})", text, file);
  }
  const long long value = std::stoll(text);
  if (value <= 1 || value > std::numeric_limits<pid_t>::max()) {
    return Status::invalid_argument(source + ": not a process id nats-server could have");
  }
  const auto pid = static_cast<pid_t>(value);
  auto comm = read_if_exists(fmt::format("/proc/{}/comm", pid));
  if (!comm.is_ok() || !*comm) {
    return Status::not_found(source + ": no such process (is nats-server running? a stale pid file?)");
  }
  std::string program = **comm;
  while (!program.empty() && std::isspace(static_cast<unsigned char>(program.back()))) program.pop_back();
  if (program != "nats-server") {
    return Status::invalid_argument(
        fmt::format("{} is {}, not nats-server: not signalled", source, quoted_for_message(program)));
  }
  return pid;
}

Status signal_nats_reload(pid_t pid) {
  if (::kill(pid, SIGHUP) != 0) {
    if (errno == EPERM) {
      return Status::permission_denied(fmt::format(
          "cannot signal nats-server (pid {}): {} (run as nats-server's user or root)", pid, errno_text(errno)));
    }
    return Status::internal(fmt::format("cannot signal nats-server (pid {}): {}", pid, errno_text(errno)));
  }
  return Status::ok();
}

}  // namespace ds
