#pragma once
// Logging setup shared by every binary: spdlog to stderr with a process name
// and a level from config or the command line.

#include <string>
#include <string_view>

#include "shared/status.h"

namespace ds {

// Level names: trace, debug, info, warn, error, critical, off.
Status validate_log_level(std::string_view level);
// Sets the default logger: "<time> <level> [<process>] message" on stderr.
void init_logging(std::string_view process, std::string_view level);

}  // namespace ds
