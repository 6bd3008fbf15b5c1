#pragma once
// The convergence digest shared by hub and agent (DESIGN.md §3, verify): an
// order-independent digest over the (key, version) pairs of the live rows of
// one business type, optionally restricted to one partition. Two replicas
// holding the same live rows at the same versions have equal digests,
// whatever order they were written in.
//
// Exact definition (the agent must compute the same, bit for bit):
//   row_hash(key, version) = SipHash-2-4 with the all-zero 16-byte key
//       (libsodium crypto_shorthash) over the bytes
//       u32_le(len(key)) || key || u64_le(version),
//     read as a little-endian uint64;
//   digest.sum   = sum of row_hash over the live rows, modulo 2^64;
//   digest.count = number of live rows.
// Tombstones (deleted rows) are not live rows. A sum rather than an XOR, so
// two equal rows do not cancel out. hex() prints "<count>:<sum as 16 hex>".
//
// Thread-safety: plain values; no shared state.

#include <cstdint>
#include <string>
#include <string_view>

namespace ds {

uint64_t row_hash(std::string_view key, uint64_t version);

struct Digest {
  uint64_t sum = 0;
  uint64_t count = 0;

  void add(std::string_view key, uint64_t version) {
    sum += row_hash(key, version);
    ++count;
  }
  // "<count>:<sum as 16 lower-case hex digits>"
  std::string hex() const;
  bool operator==(const Digest&) const = default;
};

}  // namespace ds
