#include "hub/fleet_view.h"

#include <algorithm>
#include <charconv>
#include <optional>

namespace ds {
namespace {

constexpr std::string_view kStates[] = {"live", "suspect", "dead", "retired"};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::optional<uint64_t> parse_u64(std::string_view s) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

struct SortKeyName {
  std::string_view name;
  FleetSortKey key;
};
constexpr SortKeyName kSortKeys[] = {
    {"id", FleetSortKey::kId},           {"host", FleetSortKey::kHost},
    {"state", FleetSortKey::kState},     {"last_beat", FleetSortKey::kLastBeat},
    {"lag", FleetSortKey::kLag},         {"staleness", FleetSortKey::kStaleness},
    {"quarantined", FleetSortKey::kQuarantined},
};

std::string_view sort_key_name(FleetSortKey key) {
  for (const auto& k : kSortKeys) {
    if (k.key == key) return k.name;
  }
  return "id";
}

// Worst first when ascending: the order an operator scans a fleet in.
int state_rank(const std::string& state) {
  if (state == "dead") return 0;
  if (state == "suspect") return 1;
  if (state == "live") return 2;
  return 3;  // retired
}

int64_t number_or(const nlohmann::json& j, int64_t fallback) {
  return j.is_number() ? j.get<int64_t>() : fallback;
}

// The largest value of `field` over the agent's types; -1 when none has one
// (no change of the type yet), so such agents sort before any lag.
int64_t max_over_types(const nlohmann::json& agent, const char* field) {
  int64_t best = -1;
  for (const auto& [type, t] : agent["types"].items()) best = std::max(best, number_or(t[field], -1));
  return best;
}

bool needs_attention(const nlohmann::json& agent) {
  const std::string state = agent.value("state", "");
  if (state == "retired") return false;
  if (state != "live" || agent.value("health", "ok") != "ok" || agent.value("quarantined", uint64_t{0}) > 0) {
    return true;
  }
  for (const auto& [type, t] : agent["types"].items()) {
    if (t.value("freshness_breach", false) || t.value("held_back", false) || t.value("awaiting_snapshot", false)) {
      return true;
    }
  }
  return false;
}

}  // namespace

Result<FleetQuery> parse_fleet_query(const std::vector<std::pair<std::string, std::string>>& params) {
  FleetQuery q;
  std::set<std::string> seen;
  for (const auto& [name, value] : params) {
    if (!seen.insert(name).second) return Status::invalid_argument(name + ": given more than once");
    if (name == "q") {
      q.text = lower(value);
    } else if (name == "state") {
      size_t begin = 0;
      while (begin <= value.size()) {
        const size_t end = std::min(value.find(',', begin), value.size());
        const std::string s = value.substr(begin, end - begin);
        if (std::find(std::begin(kStates), std::end(kStates), s) == std::end(kStates)) {
          return Status::invalid_argument("state: '" + s + "' is not a state; expected live, suspect, dead or retired " +
                                          "(several separated by commas)");
        }
        q.states.insert(s);
        begin = end + 1;
      }
    } else if (name == "problems") {
      if (value != "0" && value != "1") return Status::invalid_argument("problems: expected 0 or 1, got '" + value + "'");
      q.problems_only = value == "1";
    } else if (name == "sort") {
      auto it = std::find_if(std::begin(kSortKeys), std::end(kSortKeys), [&](const auto& k) { return k.name == value; });
      if (it == std::end(kSortKeys)) {
        return Status::invalid_argument("sort: unknown key '" + value +
                                        "'; expected id, host, state, last_beat, lag, staleness or quarantined");
      }
      q.sort = it->key;
    } else if (name == "order") {
      if (value != "asc" && value != "desc") {
        return Status::invalid_argument("order: expected asc or desc, got '" + value + "'");
      }
      q.descending = value == "desc";
    } else if (name == "offset") {
      auto v = parse_u64(value);
      if (!v) return Status::invalid_argument("offset: expected a non-negative integer, got '" + value + "'");
      q.offset = *v;
    } else if (name == "limit") {
      auto v = parse_u64(value);
      if (!v || *v == 0 || *v > kMaxFleetPageSize) {
        return Status::invalid_argument("limit: expected an integer from 1 to " + std::to_string(kMaxFleetPageSize) +
                                        ", got '" + value + "'");
      }
      q.limit = static_cast<size_t>(*v);
    } else {
      return Status::invalid_argument("unknown parameter '" + name +
                                      "'; expected q, state, problems, sort, order, offset or limit");
    }
  }
  return q;
}

nlohmann::json fleet_page(const nlohmann::json& agents, const FleetQuery& query,
                          const std::vector<TypeConfig>& types, int64_t now_ms) {
  nlohmann::json counts = nlohmann::json::object();
  for (std::string_view s : kStates) counts[std::string(s)] = 0;
  uint64_t problems = 0;
  uint64_t breaches = 0;

  // Match, and compute each match's sort key once.
  struct Row {
    const nlohmann::json* agent;
    int64_t number;     // numeric keys
    std::string text;   // id or host
    const std::string* id;
  };
  std::vector<Row> rows;
  for (const nlohmann::json& a : agents) {
    const std::string state = a.value("state", "");
    if (counts.contains(state)) counts[state] = counts[state].get<uint64_t>() + 1;
    const bool attention = needs_attention(a);
    problems += attention ? 1 : 0;
    for (const auto& [type, t] : a["types"].items()) breaches += t.value("freshness_breach", false) ? 1 : 0;

    if (!query.states.empty() && query.states.count(state) == 0) continue;
    if (query.problems_only && !attention) continue;
    const std::string& id = a["id"].get_ref<const std::string&>();
    const std::string& host = a["host"].get_ref<const std::string&>();
    if (!query.text.empty() && lower(id).find(query.text) == std::string::npos &&
        lower(host).find(query.text) == std::string::npos) {
      continue;
    }
    Row row{&a, 0, {}, &id};
    switch (query.sort) {
      case FleetSortKey::kId: break;
      case FleetSortKey::kHost: row.text = host; break;
      case FleetSortKey::kState: row.number = state_rank(state); break;
      case FleetSortKey::kLastBeat: row.number = number_or(a["last_beat"], 0); break;
      case FleetSortKey::kLag: row.number = max_over_types(a, "lag_versions"); break;
      case FleetSortKey::kStaleness: row.number = max_over_types(a, "staleness_ms"); break;
      case FleetSortKey::kQuarantined: row.number = number_or(a["quarantined"], 0); break;
    }
    rows.push_back(std::move(row));
  }

  // Keys compare in the requested order; the id breaks ties ascending.
  auto primary = [&](const Row& x, const Row& y) -> int {
    if (query.sort == FleetSortKey::kId) return x.id->compare(*y.id);
    if (query.sort == FleetSortKey::kHost) return x.text.compare(y.text);
    return x.number < y.number ? -1 : (x.number > y.number ? 1 : 0);
  };
  const size_t matched = rows.size();
  const size_t begin = static_cast<size_t>(std::min<uint64_t>(query.offset, matched));
  const size_t end = std::min(matched, begin + query.limit);
  auto less = [&](const Row& x, const Row& y) {
    const int c = primary(x, y);
    if (c != 0) return query.descending ? c > 0 : c < 0;
    return *x.id < *y.id;
  };
  // Only the rows up to the page's end need their order.
  std::partial_sort(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(end), rows.end(), less);

  nlohmann::json page = nlohmann::json::array();
  for (size_t i = begin; i < end; ++i) page.push_back(*rows[i].agent);
  nlohmann::json type_list = nlohmann::json::array();
  for (const TypeConfig& t : types) {
    type_list.push_back({{"name", t.name}, {"freshness_objective_ms", t.freshness_objective_s * 1000}});
  }
  return nlohmann::json{{"now", now_ms},
                        {"total", agents.size()},
                        {"matched", matched},
                        {"offset", query.offset},
                        {"limit", query.limit},
                        {"sort", sort_key_name(query.sort)},
                        {"order", query.descending ? "desc" : "asc"},
                        {"counts", std::move(counts)},
                        {"problems", problems},
                        {"breaches", breaches},
                        {"types", std::move(type_list)},
                        {"agents", std::move(page)}};
}

}  // namespace ds
