#include "shared/log.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <sstream>
#include <string>

namespace ds {
namespace {

TEST(LogTest, ControlCharactersAreWrittenAsVisibleEscapes) {
  EXPECT_EQ(escape_control_chars("plain text, UTF-8 \xc3\xa9t\xc3\xa9"), "plain text, UTF-8 \xc3\xa9t\xc3\xa9");
  EXPECT_EQ(escape_control_chars("a\nb\rc\td"), "a\\nb\\rc\\td");
  EXPECT_EQ(escape_control_chars(std::string("nul\0x", 5)), "nul\\x00x");
  EXPECT_EQ(escape_control_chars("\x1b[31mred\x7f"), "\\x1b[31mred\\x7f");
  // U+009B (CSI as a C1 control) and U+0085 (NEL), UTF-8 encoded.
  EXPECT_EQ(escape_control_chars("x\xc2\x9b" "2Jy\xc2\x85z"), "x\\xc2\\x9b2Jy\\xc2\\x85z");
  // U+00A0 is not a control.
  EXPECT_EQ(escape_control_chars("\xc2\xa0"), "\xc2\xa0");
  EXPECT_EQ(escape_control_chars("\xc2"), "\xc2");
  EXPECT_EQ(escape_control_chars(""), "");
}

// What the hub does with a producer's name: one call, one line, whatever
// the value holds.
TEST(LogTest, AForgedLineInAValueStaysInsideOneLogLine) {
  const auto previous = spdlog::default_logger();
  ::testing::internal::CaptureStderr();
  init_logging("log-test", "info");
  const std::string producer = "erp\n2026-01-01T00:00:00.000 critical [hub] forged\r\x1b[2K";
  spdlog::info("ingest from producer '{}'", producer);
  spdlog::default_logger()->flush();
  const std::string out = ::testing::internal::GetCapturedStderr();
  spdlog::set_default_logger(previous);
  spdlog::drop("log-test");
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.find('\n'), out.size() - 1) << out;
  EXPECT_EQ(out.find('\r'), std::string::npos) << out;
  EXPECT_EQ(out.find('\x1b'), std::string::npos) << out;
  EXPECT_NE(out.find("[log-test] ingest from producer 'erp\\n2026-01-01T00:00:00.000 critical [hub] forged\\r\\x1b[2K'"),
            std::string::npos)
      << out;
}

// Captures what one log call writes in `format` (stderr is a file here, not
// a terminal: no colour codes).
std::string log_once(LogFormat format, const std::string& producer) {
  const auto previous = spdlog::default_logger();
  ::testing::internal::CaptureStderr();
  init_logging("log-test", "info", format);
  spdlog::warn("ingest from producer '{}'", producer);
  spdlog::default_logger()->flush();
  std::string out = ::testing::internal::GetCapturedStderr();
  spdlog::set_default_logger(previous);
  spdlog::drop("log-test");
  return out;
}

TEST(LogTest, TextLinesCarryUtcTimesAndNoColourOffATerminal) {
  const std::string out = log_once(LogFormat::kText, "erp");
  // "2026-12-06T17:10:00.123Z warn  [log-test] ...": the offset is Z, whatever TZ says.
  ASSERT_GE(out.size(), 25u) << out;
  EXPECT_EQ(out[10], 'T') << out;
  EXPECT_EQ(out.substr(23, 2), "Z ") << out;
  EXPECT_NE(out.find(" warning [log-test] ingest from producer 'erp'\n"), std::string::npos) << out;
  EXPECT_EQ(out.find('\x1b'), std::string::npos) << "colour codes in a file: " << out;
}

TEST(LogTest, JsonLinesAreOneObjectEachWithEveryControlEscaped) {
  // A newline, a carriage return, ESC and a C1 control (U+009B) in a value,
  // and bytes that are not UTF-8.
  const std::string producer = "erp\n{\"level\":\"critical\"}\r\x1b[2K\xc2\x9b\xff";
  const std::string out = log_once(LogFormat::kJson, producer);
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.find('\n'), out.size() - 1) << out;
  for (char c : out.substr(0, out.size() - 1)) {
    ASSERT_TRUE(c >= 0x20 && c < 0x7f) << "a raw byte " << static_cast<int>(static_cast<unsigned char>(c)) << " in "
                                        << out;
  }
  const nlohmann::json line = nlohmann::json::parse(out);
  EXPECT_EQ(line.at("level"), "warning");
  EXPECT_EQ(line.at("process"), "log-test");
  EXPECT_EQ(line.at("msg"), "ingest from producer 'erp\n{\"level\":\"critical\"}\r\x1b[2K\xc2\x9b\xef\xbf\xbd'");
  const std::string ts = line.at("ts");
  ASSERT_EQ(ts.size(), 24u) << ts;
  EXPECT_EQ(ts[10], 'T');
  EXPECT_EQ(ts.back(), 'Z');
}

TEST(LogTest, FormatNames) {
  EXPECT_EQ(*parse_log_format("text"), LogFormat::kText);
  EXPECT_EQ(*parse_log_format("json"), LogFormat::kJson);
  EXPECT_EQ(parse_log_format("JSON").status().message(), "unknown log format 'JSON' (expected text or json)");
}

}  // namespace
}  // namespace ds
