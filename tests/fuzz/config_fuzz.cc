// Fuzz target: the TOML configuration loader, both files: every input is
// parsed as a hub configuration (parse_hub_config) and as an agent
// configuration (parse_agent_config), from text, as load_*_config does after
// reading the file.
// Checks: no crash or leak (toml++ reports syntax errors by throwing: none
// may escape); errors are InvalidArgument and name the file; an accepted hub
// file has valid, distinct type names and schemas whose partition is a
// declared column; an accepted agent file has a valid agent id and valid
// subscription types.

#include <cstddef>
#include <cstdint>
#include <set>

#include "shared/names.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

constexpr const char* kName = "fuzz.toml";

void check_error(const ds::Status& s) {
  FUZZ_CHECK(s.code() == ds::StatusCode::kInvalidArgument, "a config error that is not InvalidArgument: " +
                                                               ds::fuzz::status_text(s));
  FUZZ_CHECK(s.message().find(kName) != std::string::npos, "a config error that does not name the file: " +
                                                               ds::fuzz::status_text(s));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ds;
  const std::string_view text = fuzz::as_view(data, size);

  Result<HubConfig> hub = parse_hub_config(text, kName);
  if (!hub.is_ok()) {
    check_error(hub.status());
  } else {
    std::set<std::string> names;
    for (const TypeConfig& t : hub->types) {
      FUZZ_CHECK(validate_type_name(t.name).is_ok(), "accepted an invalid type name");
      FUZZ_CHECK(names.insert(t.name).second, "accepted a type twice");
      FUZZ_CHECK(!t.schema.partition || t.schema.find_column(*t.schema.partition) != nullptr,
                 "accepted a partition that is not a column");
    }
  }

  Result<AgentConfig> agent = parse_agent_config(text, kName);
  if (!agent.is_ok()) {
    check_error(agent.status());
  } else {
    FUZZ_CHECK(validate_agent_id(agent->id).is_ok(), "accepted an invalid agent id");
    for (const SubscriptionConfig& s : agent->subscriptions) {
      FUZZ_CHECK(validate_type_name(s.type).is_ok(), "accepted an invalid subscription type");
    }
  }
  return 0;
}
