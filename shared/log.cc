#include "shared/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

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

void init_logging(std::string_view process, std::string_view level) {
  auto logger = spdlog::stderr_color_mt(std::string(process));
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<EscapedMessageFlag>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%n] %*");
  logger->set_formatter(std::move(formatter));
  logger->set_level(spdlog::level::from_str(std::string(level)));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace ds
