#pragma once
// Validation of decoded ingest records against their type, before anything
// is queued or stored: the step between decoding (shared/codec.h) and
// IngestWriter::submit on both ingest paths (NATS and HTTP). Kept apart from
// the writer so it can be used, tested and fuzzed (tests/fuzz/) without a
// store, a broker or the writer thread.
//
// Thread-safety: a plain function of its arguments; any thread.

#include <cstdint>
#include <optional>
#include <vector>

#include "shared/config.h"
#include "shared/messages.h"
#include "shared/status.h"

namespace ds {

// Checks every record of a batch of `type` without touching the store:
// non-empty key, fields against the schema (normalised in place), and the
// partition rules of docs/protocol.md: for a partitioned type the partition
// comes from the partition column or the record's `partition` (they must
// agree, pass validate_partition, and the column, when absent, is filled in
// from it); an unpartitioned type takes no partition. Rules that need the
// stored row (no moves between partitions, new keys need a partition) are
// checked at commit. A record whose change alone, in a delta batch, would
// encode to more than `max_batch_bytes` (StreamPublisher::max_batch_bytes: the
// server's max_payload less headroom) could never be published and is
// refused. Returns the first bad record's error and index.
struct Rejection {
  Status status;
  std::optional<uint32_t> index;
};
std::optional<Rejection> validate_ingest_records(const TypeConfig& type, std::vector<IngestRecord>& records,
                                                 size_t max_batch_bytes);

}  // namespace ds
