#include "shared/status.h"

#include <array>

namespace ds {
namespace {
constexpr std::array<std::string_view, 9> kNames = {
    "ok",          "invalid_argument",  "not_found",
    "already_exists", "unavailable",    "deadline_exceeded",
    "data_loss",   "permission_denied", "internal",
};
}  // namespace

std::string_view status_code_name(StatusCode code) {
  return kNames[static_cast<size_t>(code)];
}

StatusCode status_code_from_name(std::string_view name) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == name) return static_cast<StatusCode>(i);
  }
  return StatusCode::kInternal;
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  std::string s(status_code_name(code_));
  s += ": ";
  s += message_;
  return s;
}

Status Status::with_context(std::string_view context) const {
  if (is_ok()) return *this;
  std::string m(context);
  m += ": ";
  m += message_;
  return Status(code_, std::move(m));
}

}  // namespace ds
