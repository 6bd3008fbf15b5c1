#include "shared/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>

#include <nlohmann/json.hpp>

namespace ds {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void append_hex_escape(std::string& out, unsigned char c) {
  out += "\\x";
  out += kHex[c >> 4];
  out += kHex[c & 15];
}

template <typename Out>
void escape_into(std::string_view text, Out&& append) {
  size_t plain_from = 0;
  std::string escaped;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    const bool c1 = c == 0xc2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
                    static_cast<unsigned char>(text[i + 1]) <= 0x9f;
    if (c >= 0x20 && c != 0x7f && !c1) continue;
    append(text.substr(plain_from, i - plain_from));
    escaped.clear();
    switch (c) {
      case '\n': escaped = "\\n"; break;
      case '\r': escaped = "\\r"; break;
      case '\t': escaped = "\\t"; break;
      default:
        append_hex_escape(escaped, c);
        if (c1) append_hex_escape(escaped, static_cast<unsigned char>(text[++i]));
    }
    append(std::string_view(escaped));
    plain_from = i + 1;
  }
  append(text.substr(plain_from));
}

// The "%*" pattern flag: the message text, escaped.
class EscapedMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    escape_into(payload, [&](std::string_view part) { dest.append(part.data(), part.data() + part.size()); });
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<EscapedMessageFlag>(); }
};

// "2026-12-06T17:10:00.123Z" (UTC, milliseconds).
std::string utc_timestamp(spdlog::log_clock::time_point when) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[40];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return std::string(buf, n) + fmt::format(".{:03d}Z", static_cast<int>(ms % 1000));
}

// One JSON object per line (see log.h).
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    nlohmann::json line = {
        {"ts", utc_timestamp(msg.time)},
        {"level", std::string(spdlog::level::to_string_view(msg.level).data(),
                              spdlog::level::to_string_view(msg.level).size())},
        {"process", std::string(msg.logger_name.data(), msg.logger_name.size())},
        {"msg", std::string(msg.payload.data(), msg.payload.size())},
    };
    // ensure_ascii: every non-ASCII character as \uXXXX; bytes that are not
    // UTF-8 become U+FFFD instead of throwing.
    const std::string text = line.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

}  // namespace

std::string escape_control_chars(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  escape_into(text, [&](std::string_view part) { out.append(part); });
  return out;
}

Status validate_log_level(std::string_view level) {
  static constexpr std::string_view kLevels[] = {"trace", "debug", "info", "warn",
                                                 "error", "critical", "off"};
  for (auto l : kLevels) {
    if (l == level) return Status::ok();
  }
  return Status::invalid_argument("unknown log level '" + std::string(level) +
                                  "' (expected trace, debug, info, warn, error, critical or off)");
}

Result<LogFormat> parse_log_format(std::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return Status::invalid_argument("unknown log format '" + std::string(name) + "' (expected text or json)");
}

void init_logging(std::string_view process, std::string_view level, LogFormat format) {
  // Colour only on a terminal (spdlog's automatic mode checks isatty).
  auto logger = spdlog::stderr_color_mt(std::string(process), spdlog::color_mode::automatic);
  if (format == LogFormat::kJson) {
    logger->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    formatter->add_flag<EscapedMessageFlag>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%-5l%$ [%n] %*");
    logger->set_formatter(std::move(formatter));
  }
  logger->set_level(spdlog::level::from_str(std::string(level)));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace ds
