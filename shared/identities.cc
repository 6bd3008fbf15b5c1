#include "shared/identities.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "shared/names.h"

namespace ds {
namespace {

constexpr int kFormat = 1;

Status validate_name(IdentityRole role, std::string_view name) {
  Status s = validate_agent_id(name);
  if (s.is_ok() || role == IdentityRole::kAgent) return s;
  // Same rule for every identity (the name is a subject token and a file
  // name), but the message should not call a producer an agent.
  std::string msg = s.message();
  const std::string_view agent_word = "agent id";
  if (auto at = msg.find(agent_word); at != std::string::npos) {
    msg.replace(at, agent_word.size(), std::string(role_name(role)) + " name");
  }
  return Status::invalid_argument(std::move(msg));
}

Result<IdentityRole> role_from_name(std::string_view name) {
  for (IdentityRole r : {IdentityRole::kHub, IdentityRole::kAgent, IdentityRole::kProducer}) {
    if (role_name(r) == name) return r;
  }
  return Status::invalid_argument(fmt::format("role: unknown role {} (expected hub, agent or producer)",
                                              quoted_for_message(name)));
}

// Reads a JSON object's keys, refusing any not in `allowed`.
Status only_keys(const nlohmann::json& j, std::initializer_list<std::string_view> allowed, std::string_view where) {
  if (!j.is_object()) return Status::invalid_argument(fmt::format("{}: expected an object", where));
  for (const auto& [key, value] : j.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return Status::invalid_argument(fmt::format("{}: unknown key {}", where, quoted_for_message(key)));
    }
  }
  return Status::ok();
}

Result<std::string> string_at(const nlohmann::json& j, const char* key, std::string_view where, bool required) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (required) return Status::invalid_argument(fmt::format("{}.{}: missing", where, key));
    return std::string();
  }
  if (!it->is_string()) return Status::invalid_argument(fmt::format("{}.{}: expected a string", where, key));
  return it->get<std::string>();
}

Result<Identity> identity_from_json(const nlohmann::json& j, const std::string& where) {
  DS_RETURN_IF_ERROR(only_keys(j, {"name", "role", "public_key", "publisher_public_key", "grants"}, where));
  Identity id;
  DS_ASSIGN_OR_RETURN(id.name, string_at(j, "name", where, true));
  DS_ASSIGN_OR_RETURN(std::string role, string_at(j, "role", where, true));
  DS_ASSIGN_OR_RETURN(id.role, role_from_name(role));
  DS_ASSIGN_OR_RETURN(id.public_key, string_at(j, "public_key", where, false));
  DS_ASSIGN_OR_RETURN(id.publisher_public_key, string_at(j, "publisher_public_key", where, false));
  if (auto g = j.find("grants"); g != j.end()) {
    if (!g->is_array()) return Status::invalid_argument(where + ".grants: expected an array");
    for (size_t i = 0; i < g->size(); ++i) {
      const std::string gw = fmt::format("{}.grants[{}]", where, i);
      DS_RETURN_IF_ERROR(only_keys((*g)[i], {"type", "partition"}, gw));
      Grant grant;
      DS_ASSIGN_OR_RETURN(grant.type, string_at((*g)[i], "type", gw, true));
      DS_ASSIGN_OR_RETURN(std::string partition, string_at((*g)[i], "partition", gw, false));
      if (!partition.empty()) grant.partition = std::move(partition);
      id.grants.push_back(std::move(grant));
    }
  }
  return id;
}

}  // namespace

std::string_view role_name(IdentityRole role) {
  switch (role) {
    case IdentityRole::kHub: return "hub";
    case IdentityRole::kAgent: return "agent";
    case IdentityRole::kProducer: return "producer";
  }
  return "identity";
}

const Grant* Identity::grant(std::string_view type) const {
  for (const Grant& g : grants) {
    if (g.type == type) return &g;
  }
  return nullptr;
}

Status validate_identity(const Identity& identity) {
  const std::string_view role = role_name(identity.role);
  DS_RETURN_IF_ERROR(validate_name(identity.role, identity.name));
  if (identity.role != IdentityRole::kHub && !identity.publisher_public_key.empty()) {
    return Status::invalid_argument(fmt::format("{} '{}': only a hub has a publisher key", role, identity.name));
  }
  if (identity.role == IdentityRole::kHub) {
    if (!identity.grants.empty()) {
      return Status::invalid_argument(fmt::format("hub '{}': a hub takes no types (it may use every subject)",
                                                  identity.name));
    }
    return Status::ok();
  }
  if (identity.grants.empty()) {
    return Status::invalid_argument(fmt::format("{} '{}' has no business types: write {}:type1,type2", role,
                                                identity.name, identity.name));
  }
  std::set<std::string_view> seen;
  for (const Grant& g : identity.grants) {
    const std::string where = fmt::format("{} '{}'", role, identity.name);
    DS_RETURN_IF_ERROR(validate_type_name(g.type).with_context(where));
    if (!seen.insert(g.type).second) {
      return Status::invalid_argument(fmt::format("{}: type '{}' is listed twice", where, g.type));
    }
    if (g.partition == kAnyPartition) continue;
    if (identity.role != IdentityRole::kAgent) {
      return Status::invalid_argument(fmt::format("{}: type '{}': only agents are bound to a partition", where,
                                                  g.type));
    }
    DS_RETURN_IF_ERROR(validate_partition(g.partition).with_context(where + ": type '" + g.type + "': partition"));
  }
  return Status::ok();
}

const Identity* IdentityRegistry::find(std::string_view name) const {
  for (const Identity& id : identities) {
    if (id.name == name) return &id;
  }
  return nullptr;
}

Status validate_registry(const IdentityRegistry& registry) {
  DS_RETURN_IF_ERROR(validate_subject_prefix(registry.subject_prefix).with_context("subject_prefix"));
  std::set<std::string_view> names;
  for (const Identity& identity : registry.identities) {
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

std::string publisher_seed_file_for(std::string_view service_seed_file) {
  std::string_view stem = service_seed_file;
  if (stem.size() > 3 && stem.substr(stem.size() - 3) == ".nk") stem.remove_suffix(3);
  return std::string(stem) + ".publisher.nk";
}

std::string registry_to_json(const IdentityRegistry& registry) {
  std::vector<const Identity*> sorted;
  for (const Identity& id : registry.identities) sorted.push_back(&id);
  std::sort(sorted.begin(), sorted.end(), [](const Identity* a, const Identity* b) { return a->name < b->name; });
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const Identity* id : sorted) {
    nlohmann::ordered_json j;
    j["name"] = id->name;
    j["role"] = std::string(role_name(id->role));
    j["public_key"] = id->public_key;
    if (!id->publisher_public_key.empty()) j["publisher_public_key"] = id->publisher_public_key;
    if (id->role != IdentityRole::kHub) {
      nlohmann::ordered_json grants = nlohmann::ordered_json::array();
      for (const Grant& g : id->grants) {
        nlohmann::ordered_json gj;
        gj["type"] = g.type;
        if (id->role == IdentityRole::kAgent) gj["partition"] = g.partition;
        grants.push_back(std::move(gj));
      }
      j["grants"] = std::move(grants);
    }
    list.push_back(std::move(j));
  }
  nlohmann::ordered_json out;
  out["format"] = kFormat;
  out["subject_prefix"] = registry.subject_prefix;
  out["identities"] = std::move(list);
  return out.dump(2) + "\n";
}

Result<IdentityRegistry> parse_registry_json(std::string_view text, std::string_view source) {
  const std::string where(source);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::invalid_argument(where + ": not valid JSON");
  auto in_source = [&](const Status& s) { return s.with_context(where); };
  if (Status s = only_keys(j, {"format", "subject_prefix", "identities"}, "identities file"); !s.is_ok()) {
    return in_source(s);
  }
  auto format = j.find("format");
  if (format == j.end() || !format->is_number_integer() || format->get<int>() != kFormat) {
    return Status::invalid_argument(
        fmt::format("{}: format: expected {} (written by this version's `deltasync creds`)", where, kFormat));
  }
  IdentityRegistry registry;
  auto prefix = string_at(j, "subject_prefix", "identities file", true);
  if (!prefix.is_ok()) return in_source(prefix.status());
  registry.subject_prefix = *prefix;
  auto list = j.find("identities");
  if (list == j.end() || !list->is_array()) return Status::invalid_argument(where + ": identities: expected an array");
  for (size_t i = 0; i < list->size(); ++i) {
    auto id = identity_from_json((*list)[i], fmt::format("identities[{}]", i));
    if (!id.is_ok()) return in_source(id.status());
    registry.identities.push_back(std::move(id).value());
  }
  if (Status s = validate_registry(registry); !s.is_ok()) return in_source(s);
  return registry;
}

Result<IdentityRegistry> load_identities(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::not_found(path + ": cannot open the identities file");
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::internal(path + ": read failed");
  return parse_registry_json(text.str(), path);
}

}  // namespace ds
