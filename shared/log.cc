#include "shared/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace ds {

Status validate_log_level(std::string_view level) {
  static constexpr std::string_view kLevels[] = {"trace", "debug", "info", "warn",
                                                 "error", "critical", "off"};
  for (auto l : kLevels) {
    if (l == level) return Status::ok();
  }
  return Status::invalid_argument("unknown log level '" + std::string(level) +
                                  "' (expected trace, debug, info, warn, error, critical or off)");
}

void init_logging(std::string_view process, std::string_view level) {
  auto logger = spdlog::stderr_color_mt(std::string(process));
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%n] %v");
  logger->set_level(spdlog::level::from_str(std::string(level)));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace ds
