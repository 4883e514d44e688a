// bench-serve statistics: numpy-compatible percentiles, the per-level metrics of vLLM's
// benchmark_serving (TTFT, TPOT, pooled ITL, E2EL, throughputs), failure accounting, windows.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "server/serve_bench_run.h"
#include "server/serve_bench_stats.h"

namespace ilm::serve_bench {
namespace {

TEST(ServeBenchStats, PercentileInterpolatesLikeNumpy) {
  const std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 0), 1);
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 100), 4);
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 50), 2.5);   // np.percentile([1,2,3,4], 50)
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 90), 3.7);   // np.percentile([1,2,3,4], 90)
  EXPECT_NEAR(percentile_sorted(v, 99), 3.97, 1e-12);
  EXPECT_DOUBLE_EQ(percentile_sorted({7}, 99), 7);
  EXPECT_DOUBLE_EQ(percentile_sorted({}, 50), 0);
}

TEST(ServeBenchStats, SummaryOfUnsortedValues) {
  const Summary s = summarize({5, 1, 4, 2, 3});
  EXPECT_EQ(s.count, 5u);
  EXPECT_DOUBLE_EQ(s.mean, 3);
  EXPECT_DOUBLE_EQ(s.median, 3);
  EXPECT_DOUBLE_EQ(s.p90, 4.6);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 5);
  EXPECT_DOUBLE_EQ(s.stddev, std::sqrt(2.0));  // population, as np.std
  const Summary ms = scaled(s, 1e3);
  EXPECT_DOUBLE_EQ(ms.p90, 4600);
  EXPECT_EQ(summarize({}).count, 0u);
}

// A completed request sent at `start` whose content chunks arrive at `times`.
RequestRecord done(double start, std::vector<double> times, int64_t out_tokens, int64_t prompt = 10,
                   int64_t max_tokens = 0) {
  RequestRecord r;
  r.ok = true;
  r.start = start;
  r.token_times = std::move(times);
  r.end = r.token_times.back() + 0.001;
  r.ttft = r.token_times.front() - start;
  r.has_ttft = true;
  r.output_tokens = out_tokens;
  r.usage_reported = true;
  r.prompt_tokens = prompt;
  r.max_tokens = max_tokens ? max_tokens : out_tokens;
  return r;
}

TEST(ServeBenchStats, LevelMetricsFollowBenchmarkServing) {
  std::vector<RequestRecord> recs;
  recs.push_back(done(0.0, {0.5, 0.6, 0.7, 0.8}, 4));      // ttft 0.5, e2e 0.801, tpot (0.301)/3
  recs.push_back(done(1.0, {1.2, 1.4}, 8, 20, 16));         // usage says 8 tokens in 2 chunks; stopped early
  recs.push_back(done(2.0, {2.1}, 1));                      // one token: no TPOT, no ITL
  RequestRecord bad;
  bad.error = "HTTP 503: busy";
  bad.http_status = 503;
  recs.push_back(bad);
  recs.push_back(bad);
  const LevelMetrics m = compute_metrics(recs, 4.0);
  EXPECT_EQ(m.num_requests, 5);
  EXPECT_EQ(m.completed, 3);
  EXPECT_EQ(m.failed, 2);
  ASSERT_EQ(m.errors.size(), 1u);
  EXPECT_EQ(m.errors[0].count, 2);
  EXPECT_EQ(m.errors[0].error, "HTTP 503: busy");
  EXPECT_EQ(m.total_input_tokens, 40);
  EXPECT_EQ(m.total_output_tokens, 13);
  EXPECT_EQ(m.stopped_early, 1);
  EXPECT_DOUBLE_EQ(m.request_throughput, 3 / 4.0);
  EXPECT_DOUBLE_EQ(m.output_throughput, 13 / 4.0);
  EXPECT_DOUBLE_EQ(m.total_token_throughput, 53 / 4.0);
  EXPECT_NEAR(m.mean_output_len, 13 / 3.0, 1e-12);
  EXPECT_EQ(m.ttft_ms.count, 3u);
  EXPECT_NEAR(m.ttft_ms.median, 200, 1e-9);
  EXPECT_NEAR(m.ttft_ms.mean, (500 + 200 + 100) / 3.0, 1e-9);
  // TPOT only for output_tokens > 1, and from usage, not from the chunk count.
  EXPECT_EQ(m.tpot_ms.count, 2u);
  const double tpot0 = (0.801 - 0.5) / 3 * 1e3, tpot1 = (0.401 - 0.2) / 7 * 1e3;
  EXPECT_NEAR(m.tpot_ms.mean, (tpot0 + tpot1) / 2, 1e-9);
  // ITL pooled over requests: 3 gaps of 100 ms and 1 of 200 ms.
  EXPECT_EQ(m.itl_ms.count, 4u);
  EXPECT_NEAR(m.itl_ms.median, 100, 1e-9);
  EXPECT_NEAR(m.itl_ms.max, 200, 1e-9);
  EXPECT_EQ(m.e2el_ms.count, 3u);
}

TEST(ServeBenchStats, NothingCompleted) {
  RequestRecord bad;
  bad.error = "request failed: Connection";
  const LevelMetrics m = compute_metrics({bad}, 1.0);
  EXPECT_EQ(m.completed, 0);
  EXPECT_EQ(m.failed, 1);
  EXPECT_EQ(m.output_throughput, 0);
  EXPECT_EQ(m.ttft_ms.count, 0u);
}

TEST(ServeBenchStats, GapsOverlappingAWindowIncludeStraddlingStalls) {
  // Tokens every 0.1 s, then a 1 s stall from 1.0 to 2.0, then every 0.1 s again.
  RequestRecord r = done(0, {0.8, 0.9, 1.0, 2.0, 2.1}, 5);
  const auto gaps = gaps_overlapping({r}, 1.5, 1.9);  // the stall covers the whole window
  ASSERT_EQ(gaps.size(), 1u);
  EXPECT_NEAR(gaps[0], 1.0, 1e-12);
  EXPECT_EQ(gaps_overlapping({r}, 0.85, 1.0).size(), 2u);  // [0.8,0.9] and [0.9,1.0]
  EXPECT_EQ(gaps_overlapping({r}, 3.0, 4.0).size(), 0u);
}

TEST(ServeBenchStats, PoissonArrivals) {
  const auto inf = arrival_offsets(5, std::numeric_limits<double>::infinity(), 1);
  for (double t : inf) EXPECT_EQ(t, 0);
  const auto a = arrival_offsets(2000, 10.0, 42);
  EXPECT_EQ(a[0], 0);
  for (size_t i = 1; i < a.size(); ++i) EXPECT_GE(a[i], a[i - 1]);
  EXPECT_NEAR(a.back() / 1999.0, 0.1, 0.01);  // mean gap 1/rate
  EXPECT_EQ(arrival_offsets(50, 10.0, 42), arrival_offsets(50, 10.0, 42));
  EXPECT_NE(arrival_offsets(50, 10.0, 42), arrival_offsets(50, 10.0, 43));
}

TEST(ServeBenchStats, RecordTpotAndItl) {
  RequestRecord r = done(0, {0.3, 0.35, 0.45}, 3);
  r.end = 0.45;
  EXPECT_TRUE(r.has_tpot());
  EXPECT_NEAR(r.tpot(), (0.45 - 0.3) / 2, 1e-12);
  const auto itl = r.itl();
  ASSERT_EQ(itl.size(), 2u);
  EXPECT_NEAR(itl[1], 0.1, 1e-12);
}

}  // namespace
}  // namespace ilm::serve_bench
