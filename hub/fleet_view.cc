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

// Invalid UTF-8 from an agent's report is replaced, not thrown on.
std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

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

std::shared_ptr<FleetSnapshot> FleetSnapshot::build(nlohmann::json agents, int64_t now_ms) {
  auto snapshot = std::make_shared<FleetSnapshot>();
  FleetSnapshot& f = *snapshot;
  f.agents = agents.is_array() ? std::move(agents) : nlohmann::json::array();
  f.now_ms = now_ms;
  f.rows.reserve(f.agents.size());
  for (size_t i = 0; i < f.agents.size(); ++i) {
    const nlohmann::json& a = f.agents[i];
    Row row;
    row.index = i;
    row.id = a.value("id", "");
    row.host = a.value("host", "");
    row.id_lower = lower(row.id);
    row.host_lower = lower(row.host);
    row.state = a.value("state", "");
    row.state_rank = state_rank(row.state);
    row.last_beat = number_or(a["last_beat"], 0);
    row.max_lag = max_over_types(a, "lag_versions");
    row.max_staleness = max_over_types(a, "staleness_ms");
    row.quarantined = number_or(a["quarantined"], 0);
    row.attention = needs_attention(a);
    if (row.state == "live") ++f.live;
    if (row.state == "suspect") ++f.suspect;
    if (row.state == "dead") ++f.dead;
    if (row.state == "retired") ++f.retired;
    f.problems += row.attention ? 1 : 0;
    for (const auto& [type, t] : a["types"].items()) f.breaches += t.value("freshness_breach", false) ? 1 : 0;
    f.rows.push_back(std::move(row));
  }
  return snapshot;
}

std::string fleet_page(const FleetSnapshot& fleet, const FleetQuery& query, const std::vector<TypeConfig>& types) {
  using Row = FleetSnapshot::Row;
  std::vector<const Row*> rows;
  rows.reserve(query.states.empty() && !query.problems_only && query.text.empty() ? fleet.rows.size() : 0);
  for (const Row& r : fleet.rows) {
    if (!query.states.empty() && query.states.count(r.state) == 0) continue;
    if (query.problems_only && !r.attention) continue;
    if (!query.text.empty() && r.id_lower.find(query.text) == std::string::npos &&
        r.host_lower.find(query.text) == std::string::npos) {
      continue;
    }
    rows.push_back(&r);
  }

  // Keys compare in the requested order; the id breaks ties ascending.
  auto primary = [&](const Row& x, const Row& y) -> int {
    auto cmp = [](int64_t a, int64_t b) { return a < b ? -1 : (a > b ? 1 : 0); };
    switch (query.sort) {
      case FleetSortKey::kId: return x.id.compare(y.id);
      case FleetSortKey::kHost: return x.host.compare(y.host);
      case FleetSortKey::kState: return cmp(x.state_rank, y.state_rank);
      case FleetSortKey::kLastBeat: return cmp(x.last_beat, y.last_beat);
      case FleetSortKey::kLag: return cmp(x.max_lag, y.max_lag);
      case FleetSortKey::kStaleness: return cmp(x.max_staleness, y.max_staleness);
      case FleetSortKey::kQuarantined: return cmp(x.quarantined, y.quarantined);
    }
    return 0;
  };
  const size_t matched = rows.size();
  const size_t begin = static_cast<size_t>(std::min<uint64_t>(query.offset, matched));
  const size_t end = std::min(matched, begin + query.limit);
  auto less = [&](const Row* x, const Row* y) {
    const int c = primary(*x, *y);
    if (c != 0) return query.descending ? c > 0 : c < 0;
    return x->id < y->id;
  };
  // Only the rows up to the page's end need their order.
  std::partial_sort(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(end), rows.end(), less);

  nlohmann::json type_list = nlohmann::json::array();
  for (const TypeConfig& t : types) {
    type_list.push_back({{"name", t.name}, {"freshness_objective_ms", t.freshness_objective_s * 1000}});
  }
  const nlohmann::json head{{"now", fleet.now_ms},
                            {"built_ms", fleet.build_ms},
                            {"total", fleet.rows.size()},
                            {"matched", matched},
                            {"offset", query.offset},
                            {"limit", query.limit},
                            {"sort", sort_key_name(query.sort)},
                            {"order", query.descending ? "desc" : "asc"},
                            {"counts",
                             {{"live", fleet.live}, {"suspect", fleet.suspect}, {"dead", fleet.dead},
                              {"retired", fleet.retired}}},
                            {"problems", fleet.problems},
                            {"breaches", fleet.breaches},
                            {"types", std::move(type_list)}};
  // The head's object, then the page's agents serialized one by one (no
  // copy of them into a page object).
  std::string out = dump(head);
  out.pop_back();  // its closing brace
  out += ",\"agents\":[";
  for (size_t i = begin; i < end; ++i) {
    if (i > begin) out += ',';
    out += dump(fleet.agents[rows[i]->index]);
  }
  out += "]}";
  return out;
}

std::string fleet_agents_text(const FleetSnapshot& fleet) { return dump(fleet.agents); }

}  // namespace ds
