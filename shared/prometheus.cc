#include "shared/prometheus.h"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

namespace ds {
namespace {

bool valid_name(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

std::string_view kind_name(PrometheusWriter::Kind kind) {
  switch (kind) {
    case PrometheusWriter::Kind::kCounter: return "counter";
    case PrometheusWriter::Kind::kGauge: return "gauge";
    case PrometheusWriter::Kind::kHistogram: return "histogram";
  }
  return "untyped";
}

}  // namespace

std::string PrometheusWriter::escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string PrometheusWriter::escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string PrometheusWriter::format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 9.007199254740992e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);  // shortest form that reads back to the same double
}

void PrometheusWriter::family(std::string_view name, Kind kind, std::string_view help) {
  if (!valid_name(name)) throw std::logic_error("prometheus: invalid metric name '" + std::string(name) + "'");
  if (!announced_.insert(std::string(name)).second) {
    throw std::logic_error("prometheus: metric family '" + std::string(name) + "' announced twice");
  }
  current_ = std::string(name);
  out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, escape_help(help), name, kind_name(kind));
}

void PrometheusWriter::sample(std::string_view name, const MetricLabels& labels, double value,
                              std::string_view suffix) {
  if (name != current_) {
    throw std::logic_error("prometheus: sample of '" + std::string(name) + "' outside its family (current '" +
                           current_ + "')");
  }
  out_ += name;
  out_ += suffix;
  if (!labels.empty()) {
    out_ += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
      if (!valid_name(k) || k.find(':') != std::string::npos) {
        throw std::logic_error("prometheus: invalid label name '" + k + "'");
      }
      if (!first) out_ += ',';
      first = false;
      out_ += k;
      out_ += "=\"";
      out_ += escape_label_value(v);
      out_ += '"';
    }
    out_ += '}';
  }
  out_ += ' ';
  out_ += format_value(value);
  out_ += '\n';
}

void PrometheusWriter::counter(std::string_view name, std::string_view help, double value) {
  family(name, Kind::kCounter, help);
  sample(name, {}, value);
}

void PrometheusWriter::gauge(std::string_view name, std::string_view help, double value) {
  family(name, Kind::kGauge, help);
  sample(name, {}, value);
}

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i]) || (i > 0 && bounds_[i] <= bounds_[i - 1])) {
      throw std::logic_error("histogram: bucket bounds must be finite and strictly increasing");
    }
  }
  counts_ = std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1);
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;  // "le": a value on a bound counts in that bucket
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  double sum = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(sum, sum + value, std::memory_order_relaxed)) {
  }
}

uint64_t Histogram::count() const {
  uint64_t n = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) n += counts_[i].load(std::memory_order_relaxed);
  return n;
}

void Histogram::write(PrometheusWriter& w, std::string_view name, const MetricLabels& labels) const {
  uint64_t cumulative = 0;
  MetricLabels with_le = labels;
  with_le.emplace_back("le", "");
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    with_le.back().second = i < bounds_.size() ? PrometheusWriter::format_value(bounds_[i]) : "+Inf";
    w.sample(name, with_le, static_cast<double>(cumulative), "_bucket");
  }
  w.sample(name, labels, sum_.load(std::memory_order_relaxed), "_sum");
  w.sample(name, labels, static_cast<double>(cumulative), "_count");
}

std::vector<double> Histogram::latency_seconds() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

std::vector<double> Histogram::sizes() { return {1, 10, 100, 500, 1000, 5000, 10000, 50000}; }

}  // namespace ds
