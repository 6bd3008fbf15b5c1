#pragma once
// Prometheus text exposition (format 0.0.4) for the hub's and the agent's
// /metrics, and the one metric kind that needs shared state: a histogram with
// fixed buckets.
//
// PrometheusWriter builds one exposition text: for each metric family one
// "# HELP" and one "# TYPE" line, then its samples. It keeps the rules a
// scraper (and `promtool check metrics`) relies on: a family is announced
// once and its samples follow it without another family in between (the
// writer refuses a second announcement of a name: programmer error, thrown at
// once so a test finds it); label values are escaped (\\, \", \n); HELP text
// is escaped (\\, \n); values print as integers when they are integral,
// otherwise with round-trip precision, and as +Inf, -Inf, NaN.
// Names are the caller's: snake_case, base units (seconds, bytes), counters
// ending in _total.
//
// Histogram: observe() from any thread (relaxed atomics, no lock); write()
// reads the buckets once and derives _count from them, so a scrape always
// shows cumulative buckets whose +Inf bucket equals _count even while other
// threads observe (the _sum may then be a moment ahead or behind, never torn).
//
// Thread-safety: a PrometheusWriter belongs to the thread building one text.

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ds {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class PrometheusWriter {
 public:
  enum class Kind { kCounter, kGauge, kHistogram };

  // Announces a family (HELP and TYPE). Throws std::logic_error when `name`
  // was announced before in this text or is not a valid metric name.
  void family(std::string_view name, Kind kind, std::string_view help);
  // One sample line of the family announced last. `suffix` is "" or, for
  // histograms, "_bucket", "_sum", "_count".
  void sample(std::string_view name, const MetricLabels& labels, double value, std::string_view suffix = "");

  // Shorthands: a family with one unlabelled sample.
  void counter(std::string_view name, std::string_view help, double value);
  void gauge(std::string_view name, std::string_view help, double value);

  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }

  // The escaped forms (exposed for tests).
  static std::string escape_label_value(std::string_view v);
  static std::string escape_help(std::string_view v);
  static std::string format_value(double v);

 private:
  std::string out_;
  std::string current_;            // the family being written
  std::set<std::string> announced_;
};

class Histogram {
 public:
  // `upper_bounds`: strictly increasing finite bucket bounds; +Inf is added.
  explicit Histogram(std::vector<double> upper_bounds);
  Histogram(std::initializer_list<double> upper_bounds) : Histogram(std::vector<double>(upper_bounds)) {}
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void observe(double value);
  // Writes the _bucket, _sum and _count samples (the family must have been
  // announced as a histogram).
  void write(PrometheusWriter& w, std::string_view name, const MetricLabels& labels = {}) const;
  uint64_t count() const;

  // Common bucket sets.
  static std::vector<double> latency_seconds();  // 0.5 ms .. 60 s
  static std::vector<double> sizes();            // 1 .. 50,000 (records, changes)

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1, the last one for +Inf
  std::atomic<double> sum_{0};
};

}  // namespace ds
