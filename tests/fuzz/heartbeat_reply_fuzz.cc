// Fuzz target: the hub's decoding of an agent's heartbeat answer
// (decode_heartbeat_reply).
// Checks: no crash or leak; errors are InvalidArgument; a decoded reply
// round-trips (equal value, equal bytes); its agent id and the type names of
// its checkpoints are valid.

#include <cstddef>
#include <cstdint>

#include "shared/names.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ds;
  auto decode = [](std::string_view b) { return decode_heartbeat_reply(b); };
  Result<HeartbeatReply> m = fuzz::check_decoder(fuzz::as_view(data, size), decode, /*compare_values=*/true);
  if (!m.is_ok()) return 0;
  FUZZ_CHECK(validate_agent_id(m->agent).is_ok(), "decoded an invalid agent id");
  for (const auto& [type, checkpoint] : m->checkpoints) {
    FUZZ_CHECK(validate_type_name(type).is_ok(), "decoded an invalid type name");
  }
  return 0;
}
