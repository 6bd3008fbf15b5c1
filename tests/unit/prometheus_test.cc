// The Prometheus text writer (shared/prometheus.h): families, escaping,
// values, histograms. `promtool check metrics` on real hub and agent output
// is in tests/integration/metrics_prometheus_test.cc.
#include "shared/prometheus.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <thread>
#include <vector>

namespace ds {
namespace {

using Kind = PrometheusWriter::Kind;

TEST(PrometheusWriterTest, CounterHasHelpTypeAndSample) {
  PrometheusWriter w;
  w.counter("x_requests_total", "Requests.", 3);
  EXPECT_EQ(w.text(), "# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\nx_requests_total 3\n");
}

TEST(PrometheusWriterTest, LabelValuesAreEscaped) {
  PrometheusWriter w;
  w.family("x_agent_lag_versions", Kind::kGauge, "Lag.");
  w.sample("x_agent_lag_versions", {{"agent", "a\"b\\c\nd"}, {"type", "prices"}}, 7);
  EXPECT_EQ(w.text(),
            "# HELP x_agent_lag_versions Lag.\n# TYPE x_agent_lag_versions gauge\n"
            "x_agent_lag_versions{agent=\"a\\\"b\\\\c\\nd\",type=\"prices\"} 7\n");
}

TEST(PrometheusWriterTest, HelpIsEscapedButKeepsQuotes) {
  EXPECT_EQ(PrometheusWriter::escape_help("a \"b\" \\ c\nd"), "a \"b\" \\\\ c\\nd");
}

TEST(PrometheusWriterTest, ValuesPrintExactly) {
  EXPECT_EQ(PrometheusWriter::format_value(0), "0");
  EXPECT_EQ(PrometheusWriter::format_value(12345678901234), "12345678901234");
  EXPECT_EQ(PrometheusWriter::format_value(-2), "-2");
  EXPECT_EQ(PrometheusWriter::format_value(0.25), "0.25");
  EXPECT_EQ(PrometheusWriter::format_value(0.0005), "0.0005");
  EXPECT_EQ(std::stod(PrometheusWriter::format_value(0.1 + 0.2)), 0.1 + 0.2);  // round trip
  EXPECT_EQ(PrometheusWriter::format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(PrometheusWriter::format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(PrometheusWriter::format_value(std::nan("")), "NaN");
}

TEST(PrometheusWriterTest, AFamilyIsAnnouncedOnce) {
  PrometheusWriter w;
  w.gauge("x_up", "Up.", 1);
  EXPECT_THROW(w.gauge("x_up", "Up.", 1), std::logic_error);
}

TEST(PrometheusWriterTest, SamplesMustFollowTheirFamily) {
  PrometheusWriter w;
  w.gauge("x_a", "A.", 1);
  w.gauge("x_b", "B.", 1);
  EXPECT_THROW(w.sample("x_a", {}, 2), std::logic_error);
}

TEST(PrometheusWriterTest, InvalidNamesAreRefused) {
  PrometheusWriter w;
  EXPECT_THROW(w.gauge("9lives", "x", 1), std::logic_error);
  EXPECT_THROW(w.gauge("a-b", "x", 1), std::logic_error);
  w.family("x_ok", Kind::kGauge, "x");
  EXPECT_THROW(w.sample("x_ok", {{"bad-label", "v"}}, 1), std::logic_error);
}

TEST(HistogramTest, BucketsAreCumulativeWithInfAndCount) {
  Histogram h{0.1, 1, 10};
  for (double v : {0.05, 0.1, 0.5, 1.0, 5.0, 100.0}) h.observe(v);
  PrometheusWriter w;
  w.family("x_seconds", Kind::kHistogram, "Durations.");
  h.write(w, "x_seconds", {{"type", "t"}});
  EXPECT_EQ(w.text(),
            "# HELP x_seconds Durations.\n# TYPE x_seconds histogram\n"
            "x_seconds_bucket{type=\"t\",le=\"0.1\"} 2\n"  // a value on a bound counts in that bucket
            "x_seconds_bucket{type=\"t\",le=\"1\"} 4\n"
            "x_seconds_bucket{type=\"t\",le=\"10\"} 5\n"
            "x_seconds_bucket{type=\"t\",le=\"+Inf\"} 6\n"
            "x_seconds_sum{type=\"t\"} 106.65\n"
            "x_seconds_count{type=\"t\"} 6\n");
  EXPECT_EQ(h.count(), 6u);
}

TEST(HistogramTest, BoundsMustIncrease) {
  EXPECT_THROW((Histogram{1, 1}), std::logic_error);
  EXPECT_THROW((Histogram{2, 1}), std::logic_error);
}

TEST(HistogramTest, ConcurrentObservationsAreAllCounted) {
  Histogram h(Histogram::latency_seconds());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&h] {
      for (int i = 0; i < 10000; ++i) h.observe(0.001 * (i % 7));
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(h.count(), 40000u);
  PrometheusWriter w;
  w.family("x_seconds", Kind::kHistogram, "x");
  h.write(w, "x_seconds");
  EXPECT_NE(w.text().find("x_seconds_count 40000\n"), std::string::npos);
  EXPECT_NE(w.text().find("x_seconds_bucket{le=\"+Inf\"} 40000\n"), std::string::npos);
}

}  // namespace
}  // namespace ds
