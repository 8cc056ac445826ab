#include "api/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace corral::metrics {

namespace {

enum Type {
  kCounter,
  kGauge,
  kHistogram,
  kCounterFamily,
  kGaugeFamily,
  kHistogramFamily,
  kCallback
};

const char* TypeName(int t) {
  switch (t) {
    case kCounter:
    case kCounterFamily: return "counter";
    case kHistogram:
    case kHistogramFamily: return "histogram";
    default: return "gauge";
  }
}

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "corral: internal error: metrics: %s\n", msg.c_str());
  std::abort();
}

// The text format's escapes: backslash and newline everywhere, and inside a label value (`quotes`)
// the double quote too.
std::string Escape(const std::string& s, bool quotes) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"' && quotes) {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// {a="x",b="y"} plus an optional extra label (le for histogram buckets).
std::string LabelText(const std::vector<std::string>& names, const std::vector<std::string>& values,
                      const std::string& extra_name = "", const std::string& extra_value = "") {
  if (names.empty() && extra_name.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += names[i] + "=\"" + EscapeLabelValue(values[i]) + '"';
  }
  if (!extra_name.empty()) {
    if (!names.empty()) out += ',';
    out += extra_name + "=\"" + extra_value + '"';
  }
  return out + "}";
}

void RenderHistogram(std::string* out, const std::string& name, const Histogram& h,
                     const std::vector<std::string>& names,
                     const std::vector<std::string>& values) {
  Histogram::Snapshot s = h.snapshot();
  for (size_t i = 0; i < s.bounds.size(); ++i) {
    *out += name + "_bucket" + LabelText(names, values, "le", FormatValue(s.bounds[i])) + ' ' +
            std::to_string(s.cumulative[i]) + '\n';
  }
  *out += name + "_bucket" + LabelText(names, values, "le", "+Inf") + ' ' +
          std::to_string(s.count) + '\n';
  *out += name + "_sum" + LabelText(names, values) + ' ' + FormatValue(s.sum) + '\n';
  *out += name + "_count" + LabelText(names, values) + ' ' + std::to_string(s.count) + '\n';
}

}  // namespace

struct Registry::Entry {
  Entry(std::string n, std::string h, int t, std::vector<std::string> l)
      : name(std::move(n)), help(std::move(h)), type(t), labels(std::move(l)) {}
  std::string name;
  std::string help;
  int type;
  std::vector<std::string> labels;
  std::unique_ptr<Counter> counter;
  std::unique_ptr<Gauge> gauge;
  std::unique_ptr<Histogram> histogram;
  std::unique_ptr<Family<Counter>> counters;
  std::unique_ptr<Family<Gauge>> gauges;
  std::unique_ptr<Family<Histogram>> histograms;
  std::function<double()> callback;
};

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  for (size_t i = 1; i < bounds_.size(); ++i) {
    if (!(bounds_[i] > bounds_[i - 1])) Die("histogram bounds must increase strictly");
  }
  counts_.assign(bounds_.size() + 1, 0);
}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[i];
  sum_ += v;
  ++count_;
}

Histogram::Snapshot Histogram::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  Snapshot s;
  s.bounds = bounds_;
  uint64_t acc = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    acc += counts_[i];
    s.cumulative.push_back(acc);
  }
  s.sum = sum_;
  s.count = count_;
  return s;
}

std::vector<double> DefaultBuckets() {
  return {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.17g", v);
    // Prefer the shortest text that reads back exactly.
    for (int prec = 6; prec < 17; ++prec) {
      char shorter[64];
      std::snprintf(shorter, sizeof shorter, "%.*g", prec, v);
      if (std::strtod(shorter, nullptr) == v) return shorter;
    }
  }
  return buf;
}

std::string EscapeLabelValue(const std::string& v) { return Escape(v, /*quotes=*/true); }

bool ValidMetricName(const std::string& n) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool ValidLabelName(const std::string& n) {
  if (n.empty() || n.rfind("__", 0) == 0 || n == "le" || n.find(':') != std::string::npos) {
    return false;
  }
  return ValidMetricName(n);
}

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Entry& Registry::FindOrAdd(const std::string& name, const std::string& help, int type,
                                     const std::vector<std::string>& labels,
                                     const std::function<void(Entry*)>& make) {
  if (!ValidMetricName(name)) Die("invalid metric name '" + name + "'");
  for (const std::string& l : labels) {
    if (!ValidLabelName(l)) Die("invalid label name '" + l + "' on " + name);
  }
  for (auto& e : entries_) {
    if (e->name != name) continue;
    if (e->type != type || e->labels != labels) {
      Die("'" + name + "' registered twice with a different type or labels");
    }
    return *e;
  }
  auto e = std::make_unique<Entry>(name, help, type, labels);
  if (make) make(e.get());
  entries_.push_back(std::move(e));
  return *entries_.back();
}

Counter& Registry::AddCounter(const std::string& name, const std::string& help) {
  std::lock_guard<std::mutex> lock(mu_);
  return *FindOrAdd(name, help, kCounter, {}, [](Entry* e) {
            e->counter = std::make_unique<Counter>();
          }).counter;
}

Gauge& Registry::AddGauge(const std::string& name, const std::string& help) {
  std::lock_guard<std::mutex> lock(mu_);
  return *FindOrAdd(name, help, kGauge, {}, [](Entry* e) {
            e->gauge = std::make_unique<Gauge>();
          }).gauge;
}

Histogram& Registry::AddHistogram(const std::string& name, const std::string& help,
                                  std::vector<double> bounds) {
  std::lock_guard<std::mutex> lock(mu_);
  return *FindOrAdd(name, help, kHistogram, {}, [&](Entry* e) {
            e->histogram = std::make_unique<Histogram>(std::move(bounds));
          }).histogram;
}

Family<Counter>& Registry::AddCounterFamily(const std::string& name, const std::string& help,
                                            std::vector<std::string> labels, size_t max_series) {
  std::lock_guard<std::mutex> lock(mu_);
  return *FindOrAdd(name, help, kCounterFamily, labels, [&](Entry* e) {
            e->counters = std::make_unique<Family<Counter>>(
                std::move(labels), max_series, [] { return std::make_unique<Counter>(); });
          }).counters;
}

Family<Gauge>& Registry::AddGaugeFamily(const std::string& name, const std::string& help,
                                        std::vector<std::string> labels, size_t max_series) {
  std::lock_guard<std::mutex> lock(mu_);
  return *FindOrAdd(name, help, kGaugeFamily, labels, [&](Entry* e) {
            e->gauges = std::make_unique<Family<Gauge>>(std::move(labels), max_series,
                                                        [] { return std::make_unique<Gauge>(); });
          }).gauges;
}

Family<Histogram>& Registry::AddHistogramFamily(const std::string& name, const std::string& help,
                                                std::vector<std::string> labels, size_t max_series,
                                                std::vector<double> bounds) {
  std::lock_guard<std::mutex> lock(mu_);
  return *FindOrAdd(name, help, kHistogramFamily, labels, [&](Entry* e) {
            Histogram check(bounds);  // dies now, not at first use, on bad bounds
            e->histograms = std::make_unique<Family<Histogram>>(
                std::move(labels), max_series,
                [bounds] { return std::make_unique<Histogram>(bounds); });
          }).histograms;
}

void Registry::AddCallbackGauge(const std::string& name, const std::string& help,
                                std::function<double()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  FindOrAdd(name, help, kCallback, {}, nullptr).callback = std::move(fn);  // a second one replaces
}

std::string Registry::Render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  std::vector<std::pair<std::string, uint64_t>> drops;
  for (const auto& e : entries_) {
    out += "# HELP " + e->name + ' ' + Escape(e->help, /*quotes=*/false) + '\n';
    out += "# TYPE " + e->name + ' ' + TypeName(e->type) + '\n';
    switch (e->type) {
      case kCounter: out += e->name + ' ' + FormatValue(e->counter->value()) + '\n'; break;
      case kGauge: out += e->name + ' ' + FormatValue(e->gauge->value()) + '\n'; break;
      case kCallback: out += e->name + ' ' + FormatValue(e->callback()) + '\n'; break;
      case kHistogram: RenderHistogram(&out, e->name, *e->histogram, {}, {}); break;
      case kCounterFamily:
        e->counters->ForEach([&](const std::vector<std::string>& v, const Counter& c) {
          out += e->name + LabelText(e->labels, v) + ' ' + FormatValue(c.value()) + '\n';
        });
        if (uint64_t d = e->counters->dropped()) drops.emplace_back(e->name, d);
        break;
      case kGaugeFamily:
        e->gauges->ForEach([&](const std::vector<std::string>& v, const Gauge& g) {
          out += e->name + LabelText(e->labels, v) + ' ' + FormatValue(g.value()) + '\n';
        });
        if (uint64_t d = e->gauges->dropped()) drops.emplace_back(e->name, d);
        break;
      case kHistogramFamily:
        e->histograms->ForEach([&](const std::vector<std::string>& v, const Histogram& h) {
          RenderHistogram(&out, e->name, h, e->labels, v);
        });
        if (uint64_t d = e->histograms->dropped()) drops.emplace_back(e->name, d);
        break;
    }
  }
  if (!drops.empty()) {
    out +=
        "# HELP corral_metrics_series_dropped_total Label sets refused because their "
        "family was full.\n# TYPE corral_metrics_series_dropped_total counter\n";
    for (const auto& [name, n] : drops) {
      out += "corral_metrics_series_dropped_total{metric=\"" + name + "\"} " + std::to_string(n) +
             '\n';
    }
  }
  return out;
}

}  // namespace corral::metrics
