#include "shared/log.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

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

}  // namespace
}  // namespace ds
