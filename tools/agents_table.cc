#include "tools/agents_table.h"

#include <string>

#include <fmt/format.h>

namespace ds {
namespace {

// "ok 0.0s / 5s", "BREACH 12.4s / 5s (breached 2x)"; "-" from a hub without freshness.
std::string freshness_cell(const nlohmann::json& s) {
  if (!s.contains("staleness_ms") || !s["staleness_ms"].is_number()) return "-";
  const bool breach = s.value("freshness_breach", false);
  std::string out = fmt::format("{} {:.1f}s / {}s", breach ? "BREACH" : "ok",
                                static_cast<double>(s["staleness_ms"].get<int64_t>()) / 1000.0,
                                s.value("freshness_objective_ms", int64_t{0}) / 1000);
  const uint64_t times = s.value("freshness_breaches", uint64_t{0});
  if (times > 0) out += fmt::format(" (breached {}x)", times);
  return out;
}

// Why the agent gets this type's deltas, or why not.
std::string delivery_cell(const nlohmann::json& s) {
  const std::string note = s.value("note", std::string());
  if (s.value("held_back", false)) return "held back (" + (note.empty() ? std::string("schema differs") : note) + ")";
  if (s.value("awaiting_snapshot", false)) return "awaiting snapshot";
  if (s.value("consumer", false)) return "streaming";
  if (s.value("live_feed", false)) return note.empty() ? std::string("live feed") : "live feed (" + note + ")";
  return note.empty() ? "-" : note;
}

}  // namespace

Table agents_table(const nlohmann::json& agents_or_page, int64_t now_ms) {
  Table t({"AGENT", "STATE", "HOST", "LAST BEAT (ms ago)", "TYPE", "PARTITION", "VERSION", "LAG (versions)",
           "LAG (business ms)", "FRESHNESS (staleness / objective)", "DELIVERY", "QUARANTINED"});
  const nlohmann::json agents =
      agents_or_page.is_array() ? agents_or_page : agents_or_page.value("agents", nlohmann::json::array());
  for (const auto& a : agents) {
    std::string ago = "-";
    if (a.contains("last_beat") && a["last_beat"].is_number() && a["last_beat"].get<int64_t>() > 0) {
      ago = std::to_string(now_ms - a["last_beat"].get<int64_t>());
    }
    const std::string id = table_cell(a.value("id", nlohmann::json()));
    const std::string state = table_cell(a.value("state", nlohmann::json()));
    const std::string host = table_cell(a.value("host", nlohmann::json()));
    const auto types = a.value("types", nlohmann::json::object());
    if (types.empty()) t.add({id, state, host, ago, "-", "-", "-", "-", "-", "-", "-", "-"});
    for (auto it = types.begin(); it != types.end(); ++it) {
      const auto& s = it.value();
      t.add({id, state, host, ago, it.key(), table_cell(s.value("partition", nlohmann::json())),
             table_cell(s.value("version", nlohmann::json())), table_cell(s.value("lag_versions", nlohmann::json())),
             table_cell(s.value("lag_ms", nlohmann::json())), freshness_cell(s), delivery_cell(s),
             table_cell(s.value("quarantined", nlohmann::json()))});
    }
  }
  return t;
}

}  // namespace ds
