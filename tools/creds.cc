#include "tools/creds.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include <fmt/format.h>
#include <sodium.h>

#include "shared/names.h"
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

}  // namespace

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

Status validate_creds_request(const CredsRequest& request) {
  if (request.out_dir.empty()) return Status::invalid_argument("--out: an output directory is required");
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
      const std::vector<std::string> deny = {"$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.DELETE.>",
                                             "$JS.API.STREAM.MSG.DELETE.>"};
      return fmt::format("    {{ nkey: {}, permissions: {{ publish: {{ allow: \">\", deny: {} }}, subscribe: \">\" }} }}\n",
                         conf_string(public_key), conf_list(deny));
    }
    case IdentityRole::kAgent: {
      // No $JS.API.CONSUMER.CREATE, STREAM.MSG.GET or DIRECT.GET: subscribe
      // permissions do not guard what the JetStream API would hand out, so
      // the hub creates the agent's consumers and the agent only looks its
      // own up (INFO, needed to bind) and acks them.
      const std::vector<std::string> publish = {
          p + ".hub.*." + x,
          "$JS.API.CONSUMER.INFO.*." + consumer_name(x),
          "$JS.ACK.*." + consumer_name(x) + ".>",
      };
      std::vector<std::string> subscribe = {p + ".push." + x + ".>", p + ".agent." + x + ".>"};
      for (const Grant& g : identity.grants) subscribe.push_back(subjects.heartbeat(g.type));
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

std::string nats_authorization_block(const std::vector<IssuedCredential>& issued,
                                     std::string_view subject_prefix) {
  std::string out = fmt::format(
      "# Generated by `deltasync creds` for subject prefix \"{}\" (see deltasync docs/security.md).\n"
      "# Public keys only; each process keeps its seed in <name>.nk. Agents and\n"
      "# producers must connect with the inbox prefix _INBOX_<name>.\n"
      "# Use it from nats-server's config with:  include auth.conf\n"
      "authorization {{\n"
      "  users = [\n",
      subject_prefix);
  for (const auto& c : issued) {
    out += fmt::format("    # {} {}", role_name(c.identity.role), c.identity.name);
    if (!c.identity.grants.empty()) out += " (types: " + grants_text(c.identity) + ")";
    out += "\n" + nats_user_entry(c.identity, subject_prefix);
  }
  out += "  ]\n}\n";
  return out;
}

Result<CredsResult> write_credentials(const CredsRequest& request) {
  DS_RETURN_IF_ERROR(validate_creds_request(request));

  CredsResult result;
  result.auth_conf = path_in(request.out_dir, kAuthConfName);
  result.identities = path_in(request.out_dir, kIdentitiesName);
  for (const auto& identity : request.identities) {
    result.issued.push_back({identity, path_in(request.out_dir, identity.name + std::string(kSeedSuffix))});
  }

  // Refuse before writing anything, so a refused run leaves no mixture of
  // old and new keys behind.
  if (!request.force) {
    std::vector<std::string> existing;
    std::error_code ec;
    for (const auto& c : result.issued) {
      if (std::filesystem::exists(c.seed_file, ec)) existing.push_back(c.seed_file);
    }
    for (const std::string& f : {result.auth_conf, result.identities}) {
      if (std::filesystem::exists(f, ec)) existing.push_back(f);
    }
    if (!existing.empty()) {
      return Status::already_exists(fmt::format("{} already exist{}; use --force to replace (old keys stop working)",
                                                join(existing, ", "), existing.size() == 1 ? "s" : ""));
    }
  }

  DS_RETURN_IF_ERROR(ensure_directory(request.out_dir));
  for (auto& c : result.issued) {
    DS_ASSIGN_OR_RETURN(NkeyPair pair, generate_user_nkey());
    c.identity.public_key = pair.public_key;
    std::string content;
    content.reserve(pair.seed.size() + 1);
    content.append(pair.seed).append("\n");
    Status s = write_file_atomically(c.seed_file, content, 0600);
    sodium_memzero(content.data(), content.size());
    sodium_memzero(pair.seed.data(), pair.seed.size());
    DS_RETURN_IF_ERROR(s);
  }
  DS_RETURN_IF_ERROR(write_file_atomically(
      result.auth_conf, nats_authorization_block(result.issued, request.subject_prefix), 0644));
  IdentityRegistry registry{request.subject_prefix, {}};
  for (const auto& c : result.issued) registry.identities.push_back(c.identity);
  // Public keys and entitlements only, like auth.conf; the hub reads it.
  DS_RETURN_IF_ERROR(write_file_atomically(result.identities, registry_to_json(registry), 0644));
  DS_RETURN_IF_ERROR(sync_directory(request.out_dir));
  return result;
}

}  // namespace ds
