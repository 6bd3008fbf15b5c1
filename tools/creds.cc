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

Status validate_name(CredsRole role, std::string_view name) {
  Status s = validate_agent_id(name);
  if (s.is_ok() || role == CredsRole::kAgent) return s;
  // Same rule for every identity (the name is a subject token and a file
  // name), but the message should not call a producer an agent.
  std::string msg = s.message();
  const std::string_view agent_word = "agent id";
  if (auto at = msg.find(agent_word); at != std::string::npos) {
    msg.replace(at, agent_word.size(), std::string(creds_role_name(role)) + " name");
  }
  return Status::invalid_argument(std::move(msg));
}

Status validate_identity(const CredsIdentity& identity) {
  const std::string_view role = creds_role_name(identity.role);
  DS_RETURN_IF_ERROR(validate_name(identity.role, identity.name));
  if (identity.role == CredsRole::kHub) {
    if (!identity.types.empty()) {
      return Status::invalid_argument(fmt::format("hub '{}': a hub takes no types (it may use every subject)",
                                                  identity.name));
    }
    return Status::ok();
  }
  if (identity.types.empty()) {
    return Status::invalid_argument(fmt::format("{} '{}' has no business types: write {}:type1,type2", role,
                                                identity.name, identity.name));
  }
  std::set<std::string_view> seen;
  for (const auto& type : identity.types) {
    DS_RETURN_IF_ERROR(validate_type_name(type).with_context(fmt::format("{} '{}'", role, identity.name)));
    if (!seen.insert(type).second) {
      return Status::invalid_argument(fmt::format("{} '{}': type '{}' is listed twice", role, identity.name, type));
    }
  }
  return Status::ok();
}

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

std::string_view creds_role_name(CredsRole role) {
  switch (role) {
    case CredsRole::kHub: return "hub";
    case CredsRole::kAgent: return "agent";
    case CredsRole::kProducer: return "producer";
  }
  return "identity";
}

Result<CredsIdentity> parse_creds_identity(CredsRole role, std::string_view arg) {
  CredsIdentity identity;
  identity.role = role;
  const size_t colon = arg.find(':');
  identity.name = std::string(arg.substr(0, colon));
  if (colon != std::string_view::npos) {
    std::string_view rest = arg.substr(colon + 1);
    while (true) {
      const size_t comma = rest.find(',');
      identity.types.emplace_back(rest.substr(0, comma));
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
  std::set<std::string_view> names;
  for (const auto& identity : request.identities) {
    DS_RETURN_IF_ERROR(validate_identity(identity));
    if (!names.insert(identity.name).second) {
      return Status::invalid_argument(fmt::format(
          "name '{}' is used twice: every hub, agent and producer needs its own name "
          "(it names the seed file and the inbox prefix)",
          identity.name));
    }
  }
  return Status::ok();
}

std::string nats_user_entry(const CredsIdentity& identity, std::string_view public_key,
                            std::string_view subject_prefix) {
  const Subjects subjects{std::string(subject_prefix)};
  const std::string& p = subjects.prefix();
  const std::string& x = identity.name;
  switch (identity.role) {
    case CredsRole::kHub:
      return fmt::format("    {{ nkey: {}, permissions: {{ publish: \">\", subscribe: \">\" }} }}\n",
                         conf_string(public_key));
    case CredsRole::kAgent: {
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
      for (const auto& type : identity.types) subscribe.push_back(subjects.heartbeat(type));
      subscribe.push_back(inbox_prefix(x) + ".>");
      return fmt::format(
          "    {{ nkey: {}, permissions: {{\n"
          "        publish:   {{ allow: {} }}\n"
          "        subscribe: {{ allow: {} }}\n"
          "        allow_responses: true }} }}\n",
          conf_string(public_key), conf_list(publish), conf_list(subscribe));
    }
    case CredsRole::kProducer: {
      std::vector<std::string> publish;
      for (const auto& type : identity.types) publish.push_back(subjects.ingest(type));
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
      "# Generated by `deltasync creds` for subject prefix \"{}\" (DESIGN.md section 7).\n"
      "# Public keys only; each process keeps its seed in <name>.nk. Agents and\n"
      "# producers must connect with the inbox prefix _INBOX_<name>.\n"
      "# Use it from nats-server's config with:  include auth.conf\n"
      "authorization {{\n"
      "  users = [\n",
      subject_prefix);
  for (const auto& c : issued) {
    out += fmt::format("    # {} {}", creds_role_name(c.identity.role), c.identity.name);
    if (!c.identity.types.empty()) out += " (types: " + join(c.identity.types, ", ") + ")";
    out += "\n" + nats_user_entry(c.identity, c.public_key, subject_prefix);
  }
  out += "  ]\n}\n";
  return out;
}

Result<CredsResult> write_credentials(const CredsRequest& request) {
  DS_RETURN_IF_ERROR(validate_creds_request(request));

  CredsResult result;
  result.auth_conf = path_in(request.out_dir, kAuthConfName);
  for (const auto& identity : request.identities) {
    result.issued.push_back({identity, "", path_in(request.out_dir, identity.name + std::string(kSeedSuffix))});
  }

  // Refuse before writing anything, so a refused run leaves no mixture of
  // old and new keys behind.
  if (!request.force) {
    std::vector<std::string> existing;
    std::error_code ec;
    for (const auto& c : result.issued) {
      if (std::filesystem::exists(c.seed_file, ec)) existing.push_back(c.seed_file);
    }
    if (std::filesystem::exists(result.auth_conf, ec)) existing.push_back(result.auth_conf);
    if (!existing.empty()) {
      return Status::already_exists(fmt::format("{} already exist{}; use --force to replace (old keys stop working)",
                                                join(existing, ", "), existing.size() == 1 ? "s" : ""));
    }
  }

  DS_RETURN_IF_ERROR(ensure_directory(request.out_dir));
  for (auto& c : result.issued) {
    DS_ASSIGN_OR_RETURN(NkeyPair pair, generate_user_nkey());
    c.public_key = pair.public_key;
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
  DS_RETURN_IF_ERROR(sync_directory(request.out_dir));
  return result;
}

}  // namespace ds
