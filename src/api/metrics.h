// The metrics registry of the whole program: counters, gauges and histograms register
// themselves by name once, and GET /metrics only renders the registry in the Prometheus text
// exposition format (version 0.0.4). Nothing is computed per scrape except callback gauges.
//
//   metrics::Registry reg;
//   metrics::Counter& reaped = reg.AddCounter("corral_reaped_total", "Children reaped.");
//   metrics::Gauge& running = reg.AddGauge("corral_cells_running", "Cells running now.");
//   metrics::Histogram& dur = reg.AddHistogram("corral_cell_duration_seconds",
//                                              "Cell wall time.", metrics::DefaultBuckets());
//   auto& by_state = reg.AddCounterFamily("corral_cells_total", "Cells by end state.",
//                                         {"state"}, /*max_series=*/16);
//   reaped.Inc(); running.Set(3); dur.Observe(0.42);
//   if (auto* c = by_state.With({"timed_out"})) c->Inc();
//   std::string text = reg.Render();
//
// Invariants and hazards:
// - Label sets are bounded by construction: a family holds at most `max_series` series; With()
//   on a new label set past that returns nullptr and counts the drop (rendered as
//   corral_metrics_series_dropped_total{metric=...}), so a storm of distinct values cannot
//   blow up memory or a Prometheus server. Families fed from unbounded sources (PIDs, comms)
//   are rebuilt whole each time (Clear() + With()), as the host exporter does with its top N.
// - References returned by Add*() and pointers from With() stay valid for the registry's life
//   (until Remove()/Clear() for family series). Registering a name twice with the same type and
//   labels returns the existing metric; with a different type or labels it is a programming
//   error and aborts with a message. Invalid metric or label names abort the same way.
// - Thread-safe: counters and gauges are lock-free atomics; histograms and families take a
//   mutex. The event loop thread and a scan thread may update while another thread renders.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace corral::metrics {

class Counter {
 public:
  void Inc(double v = 1) { v_.fetch_add(v, std::memory_order_relaxed); }  // v >= 0
  double value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

class Gauge {
 public:
  void Set(double v) { v_.store(v, std::memory_order_relaxed); }
  void Add(double v) { v_.fetch_add(v, std::memory_order_relaxed); }
  double value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

class Histogram {
 public:
  // `bounds` are the upper bounds of the buckets, strictly increasing; +Inf is implicit.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // one per bound, then the +Inf bucket (== count)
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative), bounds_.size() + 1
  double sum_ = 0;
  uint64_t count_ = 0;
};

// 1 ms .. 5 min, for durations in seconds.
std::vector<double> DefaultBuckets();

// A metric with labels: one series per label-value tuple, at most max_series of them.
template <typename M>
class Family {
 public:
  using Factory = std::function<std::unique_ptr<M>()>;
  Family(std::vector<std::string> label_names, size_t max_series, Factory make)
      : label_names_(std::move(label_names)), max_series_(max_series), make_(std::move(make)) {}

  // The series for `values` (one per label name, in order), created on first use; nullptr when
  // the family is full or the number of values is wrong (the drop is counted).
  M* With(const std::vector<std::string>& values) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = series_.find(values);
    if (it != series_.end()) return it->second.get();
    if (values.size() != label_names_.size() || series_.size() >= max_series_) {
      ++dropped_;
      return nullptr;
    }
    return series_.emplace(values, make_()).first->second.get();
  }
  void Remove(const std::vector<std::string>& values) {
    std::lock_guard<std::mutex> lock(mu_);
    series_.erase(values);
  }
  // Drops every series (pointers from With() become invalid).
  void Clear() {
    std::lock_guard<std::mutex> lock(mu_);
    series_.clear();
  }
  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return series_.size();
  }
  uint64_t dropped() const {
    std::lock_guard<std::mutex> lock(mu_);
    return dropped_;
  }
  const std::vector<std::string>& label_names() const { return label_names_; }
  size_t max_series() const { return max_series_; }

  // Calls fn(values, metric) for every series in label order, under the family's lock.
  template <typename F>
  void ForEach(F&& fn) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [values, m] : series_) fn(values, *m);
  }

 private:
  const std::vector<std::string> label_names_;
  const size_t max_series_;
  const Factory make_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<M>> series_;
  uint64_t dropped_ = 0;
};

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  Counter& AddCounter(const std::string& name, const std::string& help);
  Gauge& AddGauge(const std::string& name, const std::string& help);
  Histogram& AddHistogram(const std::string& name, const std::string& help,
                          std::vector<double> bounds = DefaultBuckets());
  Family<Counter>& AddCounterFamily(const std::string& name, const std::string& help,
                                    std::vector<std::string> label_names, size_t max_series);
  Family<Gauge>& AddGaugeFamily(const std::string& name, const std::string& help,
                                std::vector<std::string> label_names, size_t max_series);
  Family<Histogram>& AddHistogramFamily(const std::string& name, const std::string& help,
                                        std::vector<std::string> label_names, size_t max_series,
                                        std::vector<double> bounds = DefaultBuckets());
  // A gauge computed at render time (cheap things only: it runs on every scrape), e.g. the
  // process's own open fd count.
  void AddCallbackGauge(const std::string& name, const std::string& help,
                        std::function<double()> fn);

  // The whole registry in the Prometheus text format, in registration order.
  std::string Render() const;

 private:
  struct Entry;
  // The entry registered as `name`, made and handed to `make` on first use. Dies on a bad name or
  // label, or on a name registered before with another type or labels. Called under mu_.
  Entry& FindOrAdd(const std::string& name, const std::string& help, int type,
                   const std::vector<std::string>& labels, const std::function<void(Entry*)>& make);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_;
};

// Text-format helpers, exposed for tests and for other exporters.
std::string FormatValue(double v);                   // 3, 0.25, 1e+30, NaN, +Inf, -Inf
std::string EscapeLabelValue(const std::string& v);  // \\ \" \n
bool ValidMetricName(const std::string& name);
bool ValidLabelName(const std::string& name);

}  // namespace corral::metrics
