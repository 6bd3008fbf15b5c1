#pragma once
// JSON text in and out, with the limits the codec keeps (shared/codec.h):
// parse_json refuses nesting deeper than kMaxJsonDepth before building the
// tree (later passes over it recurse, and JSON input is decoded as msgpack
// whose nesting limit leaves room for the message around a value);
// dump_json never throws on strings that are not UTF-8 (msgpack str does not
// promise UTF-8): such bytes become U+FFFD.
//
// Thread-safety: pure functions.

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "shared/status.h"

namespace ds {

inline constexpr int kMaxJsonDepth = 32;

// InvalidArgument ("invalid JSON: ...") for text that is not JSON, nests
// deeper than kMaxJsonDepth, or is too large to hold.
Result<nlohmann::json> parse_json(std::string_view text);
std::string dump_json(const nlohmann::json& j);

}  // namespace ds
