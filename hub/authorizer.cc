#include "hub/authorizer.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "shared/names.h"

namespace ds {
namespace {

constexpr auto kRecheckInterval = std::chrono::seconds(1);

std::string quoted(std::string_view s) { return quoted_for_message(s); }

}  // namespace

Result<std::unique_ptr<Authorizer>> Authorizer::open(const HubConfig& config) {
  std::unique_ptr<Authorizer> a(new Authorizer(config.identities_file, config.nats.subject_prefix));
  if (a->open_mode()) return a;
  std::lock_guard<std::mutex> lock(a->mu_);
  struct stat st {};
  if (::stat(a->path_.c_str(), &st) != 0) {
    return Status::not_found(fmt::format("[auth] identities_file {}: {}", a->path_, std::strerror(errno)));
  }
  DS_RETURN_IF_ERROR(a->reload_locked(FileStamp{st.st_ino, st.st_size,
                                                static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 +
                                                    st.st_mtim.tv_nsec}));
  a->checked_ = std::chrono::steady_clock::now();
  return a;
}

Status Authorizer::reload_locked(const FileStamp& stamp) {
  DS_ASSIGN_OR_RETURN(IdentityRegistry loaded, load_identities(path_));
  if (loaded.subject_prefix != prefix_) {
    return Status::invalid_argument(fmt::format(
        "{}: written for subject prefix '{}', but the hub uses '{}' ([nats] subject_prefix); "
        "regenerate it with deltasync creds init --prefix {}",
        path_, loaded.subject_prefix, prefix_, prefix_));
  }
  registry_ = std::make_shared<const IdentityRegistry>(std::move(loaded));
  stamp_ = stamp;
  return Status::ok();
}

std::shared_ptr<const IdentityRegistry> Authorizer::registry() {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (now - checked_ < kRecheckInterval) return registry_;
  checked_ = now;
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return registry_;  // mid-rename or removed: keep what we have
  const FileStamp stamp{st.st_ino, st.st_size,
                        static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
  if (stamp == stamp_ || stamp == refused_) return registry_;
  if (Status s = reload_locked(stamp); !s.is_ok()) {
    refused_ = stamp;
    spdlog::error("auth: the changed identities file was not taken, the previous one stays in force: {}",
                  s.to_string());
  } else {
    spdlog::info("auth: identities file {} reloaded ({} identities)", path_, registry_->identities.size());
  }
  return registry_;
}

Status Authorizer::may_take(std::string_view agent, std::string_view type, std::string_view partition) {
  if (open_mode()) return Status::ok();
  const auto reg = registry();
  const Identity* id = reg->find(agent);
  if (id == nullptr || id->role != IdentityRole::kAgent) {
    return Status::permission_denied(fmt::format("{} is not an agent of the identities file", quoted(agent)));
  }
  const Grant* grant = id->grant(type);
  if (grant == nullptr) {
    return Status::permission_denied(
        fmt::format("agent {} may not take type {} (its credentials grant other types only)", quoted(agent),
                    quoted(type)));
  }
  if (grant->partition == kAnyPartition || grant->partition == partition) return Status::ok();
  return Status::permission_denied(fmt::format(
      "agent {} may take type {} only for partition {}, not {}", quoted(agent), quoted(type),
      quoted(grant->partition), partition == kAnyPartition ? std::string("every partition (\"*\")") : quoted(partition)));
}

Status Authorizer::may_ingest(std::string_view producer, std::string_view type) {
  if (open_mode()) return Status::ok();
  const auto reg = registry();
  const Identity* id = reg->find(producer);
  if (id == nullptr || id->role != IdentityRole::kProducer) {
    return Status::permission_denied(fmt::format("{} is not a producer of the identities file", quoted(producer)));
  }
  if (id->grant(type) == nullptr) {
    return Status::permission_denied(
        fmt::format("producer {} may not send type {}", quoted(producer), quoted(type)));
  }
  return Status::ok();
}

Status Authorizer::may_reply(std::string_view name, std::string_view reply_subject) const {
  const std::string own = inbox_prefix(name) + ".";
  if (reply_subject.size() > own.size() && reply_subject.substr(0, own.size()) == own) return Status::ok();
  constexpr std::string_view kDefaultInbox = "_INBOX.";
  if (open_mode() && reply_subject.size() > kDefaultInbox.size() &&
      reply_subject.substr(0, kDefaultInbox.size()) == kDefaultInbox) {
    return Status::ok();
  }
  return Status::permission_denied(fmt::format("reply subject {} is not in {}'s inbox {}*", quoted(reply_subject),
                                               quoted(name), own));
}

}  // namespace ds
