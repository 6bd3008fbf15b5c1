#include "shared/json_text.h"

#include <new>

namespace ds {

std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  const auto byte = [&](size_t at) { return static_cast<unsigned char>(s[at]); };
  const auto continuation = [&](size_t at, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return at < s.size() && byte(at) >= lo && byte(at) <= hi;
  };
  while (i < s.size()) {
    const unsigned char b = byte(i);
    if (b < 0x80) {
      i += 1;
    } else if (b >= 0xC2 && b <= 0xDF) {
      if (!continuation(i + 1)) return false;
      i += 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      // E0: no overlong forms; ED: no surrogates (U+D800..U+DFFF).
      const unsigned char lo = b == 0xE0 ? 0xA0 : 0x80;
      const unsigned char hi = b == 0xED ? 0x9F : 0xBF;
      if (!continuation(i + 1, lo, hi) || !continuation(i + 2)) return false;
      i += 3;
    } else if (b >= 0xF0 && b <= 0xF4) {
      // F0: no overlong forms; F4: nothing above U+10FFFF.
      const unsigned char lo = b == 0xF0 ? 0x90 : 0x80;
      const unsigned char hi = b == 0xF4 ? 0x8F : 0xBF;
      if (!continuation(i + 1, lo, hi) || !continuation(i + 2) || !continuation(i + 3)) return false;
      i += 4;
    } else {
      return false;  // a continuation byte first, C0/C1, or F5 and above
    }
  }
  return true;
}

Result<nlohmann::json> parse_json(std::string_view text) {
  struct TooDeep {};
  try {
    return nlohmann::json::parse(text, [](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
      if ((event == nlohmann::json::parse_event_t::object_start ||
           event == nlohmann::json::parse_event_t::array_start) &&
          depth >= kMaxJsonDepth) {
        throw TooDeep{};
      }
      return true;
    });
  } catch (const TooDeep&) {
    return Status::invalid_argument("invalid JSON: nesting deeper than " + std::to_string(kMaxJsonDepth) +
                                    " levels");
  } catch (const nlohmann::json::exception& e) {
    return Status::invalid_argument(std::string("invalid JSON: ") + e.what());
  } catch (const std::bad_alloc&) {
    return Status::invalid_argument("invalid JSON: too large to decode");
  }
}

}  // namespace ds
