#pragma once
// JSON text in and out, with the limits the codec keeps (shared/codec.h):
// parse_json refuses nesting deeper than kMaxJsonDepth before building the
// tree (later passes over it recurse, and JSON input is decoded as msgpack
// whose nesting limit leaves room for the message around a value);
// dump_json never throws on strings that are not UTF-8 (msgpack str does not
// promise UTF-8): such bytes become U+FFFD. Decoders refuse such strings in
// JSON values first (is_valid_utf8): two keys that differ only in invalid
// bytes would otherwise become one key, and the value would change.
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

// Whether `s` is well-formed UTF-8 (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF), as JSON text must be.
bool is_valid_utf8(std::string_view s);

}  // namespace ds
