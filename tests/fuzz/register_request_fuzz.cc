// Fuzz target: the hub's decoding of an agent's registration
// (ds.hub.register.<agent>, decode_register_request).
// Checks: no crash or leak; errors are InvalidArgument; a decoded request
// round-trips (equal value, equal bytes); its agent id and type names are
// valid (the decoder promises it).

#include <cstddef>
#include <cstdint>

#include "shared/names.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ds;
  auto decode = [](std::string_view b) { return decode_register_request(b); };
  Result<RegisterRequest> m = fuzz::check_decoder(fuzz::as_view(data, size), decode, /*compare_values=*/true);
  if (!m.is_ok()) return 0;
  FUZZ_CHECK(validate_agent_id(m->agent).is_ok(), "decoded an invalid agent id");
  for (const SubscriptionReport& s : m->subscriptions) {
    FUZZ_CHECK(validate_type_name(s.type).is_ok(), "decoded an invalid type name");
  }
  return 0;
}
