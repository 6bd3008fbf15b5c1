#pragma once
// The hub's change log form of a change's fields (hub/change_log.h),
// implemented with the codec's own msgpack writer and reader (shared/codec.cc,
// shared/codec_decode.cc), so the log and the messages encode values the
// same way.
//
// A msgpack map {column: value} written like the fields of encode(DeltaBatch)
// (a real is always float64, so 3.0 and -0.0 read back as they were), except
// that a json column's value is its JSON text as a str, so writing needs no
// JSON parse. encode clears `out` first, so a caller reuses one buffer.
// decode reads the values by `schema`'s column types (a str of a json column
// is JsonText; an integer in a real column, as logs written before reals were
// always float64 hold, is that real); anything else is DataLoss naming the
// column.
//
// Thread-safety: pure functions.

#include <string>
#include <string_view>

#include "shared/schema.h"
#include "shared/status.h"

namespace ds {

void encode_logged_fields(const Fields& fields, std::string& out);
Result<Fields> decode_logged_fields(std::string_view bytes, const TypeSchema& schema);

}  // namespace ds
