// Fuzz target: the agent's decoding of a snapshot page from the hub
// (decode_snapshot_reply).
// Checks: no crash or leak; errors are InvalidArgument; a decoded page
// round-trips to the same bytes (values may be NaN: compared through their
// encoding); at most kMaxSnapshotPage records; the encoded size stays within
// the bound the hub cuts pages by (snapshot_reply_overhead + encoded_size
// per record).

#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ds;
  auto decode = [](std::string_view b) { return decode_snapshot_reply(b); };
  Result<SnapshotReply> m = fuzz::check_decoder(fuzz::as_view(data, size), decode, /*compare_values=*/false);
  if (!m.is_ok() || m->error) return 0;
  FUZZ_CHECK(m->records.size() <= kMaxSnapshotPage, "a page larger than kMaxSnapshotPage");
  size_t bound = snapshot_reply_overhead();
  for (const SnapshotRecord& r : m->records) bound += encoded_size(r);
  FUZZ_CHECK(encode(*m).size() <= bound, "a snapshot page encodes larger than its size bound");
  return 0;
}
