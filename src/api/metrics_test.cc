#include "api/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <thread>

namespace corral::metrics {
namespace {

TEST(MetricsTest, RendersCountersGaugesAndHelpInRegistrationOrder) {
  Registry r;
  Counter& c = r.AddCounter("corral_reaped_total", "Children reaped.\nSecond line \\ too.");
  Gauge& g = r.AddGauge("corral_cells_running", "Cells running now.");
  c.Inc();
  c.Inc(2);
  g.Set(5);
  g.Add(-1.5);
  EXPECT_EQ(r.Render(),
            "# HELP corral_reaped_total Children reaped.\\nSecond line \\\\ too.\n"
            "# TYPE corral_reaped_total counter\n"
            "corral_reaped_total 3\n"
            "# HELP corral_cells_running Cells running now.\n"
            "# TYPE corral_cells_running gauge\n"
            "corral_cells_running 3.5\n");
}

TEST(MetricsTest, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  Registry r;
  Histogram& h = r.AddHistogram("corral_spawn_seconds", "Spawn time.", {0.1, 1});
  h.Observe(0.05);
  h.Observe(0.1);  // on the bound: le="0.1"
  h.Observe(0.5);
  h.Observe(7);
  std::string text = r.Render();
  EXPECT_NE(text.find("corral_spawn_seconds_bucket{le=\"0.1\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("corral_spawn_seconds_bucket{le=\"1\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("corral_spawn_seconds_bucket{le=\"+Inf\"} 4\n"), std::string::npos);
  EXPECT_NE(text.find("corral_spawn_seconds_sum 7.65\n"), std::string::npos);
  EXPECT_NE(text.find("corral_spawn_seconds_count 4\n"), std::string::npos);
}

TEST(MetricsTest, FamiliesAreBoundedAndCountDrops) {
  Registry r;
  auto& f = r.AddGaugeFamily("corral_host_zombies_by_parent", "Zombies.", {"pid", "comm"}, 2);
  ASSERT_NE(f.With({"1", "init"}), nullptr);
  ASSERT_NE(f.With({"2", "a\"b\\c\nd"}), nullptr);
  EXPECT_EQ(f.With({"3", "third"}), nullptr);  // full
  EXPECT_EQ(f.With({"only-one-value"}), nullptr);
  EXPECT_NE(f.With({"1", "init"}), nullptr);  // existing series still reachable
  f.With({"1", "init"})->Set(4);
  EXPECT_EQ(f.size(), 2u);
  EXPECT_EQ(f.dropped(), 2u);
  std::string text = r.Render();
  EXPECT_NE(text.find("corral_host_zombies_by_parent{pid=\"1\",comm=\"init\"} 4\n"),
            std::string::npos);
  EXPECT_NE(text.find("comm=\"a\\\"b\\\\c\\nd\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(
      text.find("corral_metrics_series_dropped_total{metric=\"corral_host_zombies_by_parent\"} 2"),
      std::string::npos);
  f.Clear();
  EXPECT_EQ(f.size(), 0u);
  EXPECT_NE(f.With({"3", "third"}), nullptr);
}

TEST(MetricsTest, RegisteringTwiceReturnsTheSameMetric) {
  Registry r;
  Counter& a = r.AddCounter("corral_x_total", "x");
  Counter& b = r.AddCounter("corral_x_total", "x");
  EXPECT_EQ(&a, &b);
  auto& f1 = r.AddCounterFamily("corral_cells_total", "c", {"state"}, 8);
  auto& f2 = r.AddCounterFamily("corral_cells_total", "c", {"state"}, 8);
  EXPECT_EQ(&f1, &f2);
}

TEST(MetricsDeathTest, ConflictingOrInvalidRegistrationsAbort) {
  EXPECT_DEATH(
      {
        Registry r;
        r.AddCounter("corral_x", "x");
        r.AddGauge("corral_x", "x");
      },
      "registered twice");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddGauge("0bad", "x");
      },
      "invalid metric name");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddGaugeFamily("corral_y", "y", {"le"}, 1);
      },
      "invalid label name");
}

TEST(MetricsTest, CallbackGaugesAndHistogramFamilies) {
  Registry r;
  int calls = 0;
  r.AddCallbackGauge("corral_open_fds", "fds", [&] { return ++calls * 10.0; });
  auto& h = r.AddHistogramFamily("corral_lat_seconds", "lat", {"op"}, 4, {1});
  h.With({"run"})->Observe(0.5);
  std::string text = r.Render();
  EXPECT_NE(text.find("corral_open_fds 10\n"), std::string::npos);
  EXPECT_NE(text.find("corral_lat_seconds_bucket{op=\"run\",le=\"1\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("corral_lat_seconds_count{op=\"run\"} 1\n"), std::string::npos);
  EXPECT_NE(r.Render().find("corral_open_fds 20\n"), std::string::npos);
}

TEST(MetricsTest, FormatsSpecialValues) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(-3), "-3");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(1e20), "1e+20");
  EXPECT_EQ(FormatValue(NAN), "NaN");
  EXPECT_EQ(FormatValue(INFINITY), "+Inf");
  EXPECT_EQ(FormatValue(-INFINITY), "-Inf");
  EXPECT_EQ(FormatValue(32768), "32768");
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  Registry r;
  Counter& c = r.AddCounter("corral_c_total", "c");
  auto& f = r.AddCounterFamily("corral_f_total", "f", {"k"}, 4);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.Inc();
        f.With({"a"})->Inc();
        if (i % 1000 == 0) (void)r.Render();
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(c.value(), 40000);
  EXPECT_EQ(f.With({"a"})->value(), 40000);
}

}  // namespace
}  // namespace corral::metrics
