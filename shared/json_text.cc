#include "shared/json_text.h"

#include <new>

namespace ds {

std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
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
