#pragma once
// Logging setup shared by every binary: spdlog to stderr with a process name,
// a level and a format from config ([log] level, format) or the command line.
// Times are UTC ("2026-12-06T17:10:00.123Z"). Colour marks the level only
// when stderr is a terminal; a file, pipe or journal gets plain text.
//
// Formats: "text", one line "<time> <level> [<process>] message"; "json",
// one JSON object per line for log shippers:
//   {"level":"info","msg":"...","process":"hub","ts":"2026-12-06T17:10:00.123Z"}
// with every non-ASCII character written as \uXXXX, so control characters
// (C0, DEL, C1) never reach the output raw.
//
// One log call is always one line. Messages carry values that came from
// outside (a producer's name, a record key, an HTTP path, a peer's error
// text); the formatter installed by init_logging() escapes every control
// character inside the message (escape_control_chars), so no value can end
// the line early and forge a line of its own, nor send terminal escape
// sequences to whoever reads the log. Call sites need not escape anything.

#include <string>
#include <string_view>

#include "shared/status.h"

namespace ds {

enum class LogFormat { kText, kJson };

// Level names: trace, debug, info, warn, error, critical, off.
Status validate_log_level(std::string_view level);
// "text" or "json".
Result<LogFormat> parse_log_format(std::string_view name);
// Sets the default logger on stderr in `format`; in text the message is
// escaped by escape_control_chars.
void init_logging(std::string_view process, std::string_view level, LogFormat format = LogFormat::kText);

// `text` with every C0 control character (0x00-0x1f), DEL (0x7f) and every
// UTF-8 encoded C1 control (U+0080-U+009F, which some terminals take as
// escape sequences) written as a visible escape: "\n", "\r", "\t", else
// "\xNN" per byte. Everything else, including other UTF-8, is unchanged.
std::string escape_control_chars(std::string_view text);

}  // namespace ds
