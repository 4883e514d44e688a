#pragma once
// `internlm bench-serve`: percentiles and the per-level metrics of vLLM's benchmark_serving.
#include <cstdint>
#include <string>
#include <vector>

#include "server/serve_bench_record.h"

namespace ilm::serve_bench {

// Linear-interpolation percentile (numpy's default) of already sorted values; p in [0, 100].
// Empty input gives 0.
double percentile_sorted(const std::vector<double>& sorted, double p);

struct Summary {
  size_t count = 0;
  double mean = 0, median = 0, p90 = 0, p99 = 0, stddev = 0, min = 0, max = 0;  // stddev: population
};
Summary summarize(std::vector<double> values);
Summary scaled(Summary s, double factor);  // e.g. seconds -> milliseconds

struct ErrorCount {
  std::string error;  // first failure's message with this text
  int count = 0;
};

struct LevelMetrics {
  int concurrency = 0;
  double request_rate = 0;  // requests/s; infinity = all at once
  int num_requests = 0;
  int completed = 0, failed = 0;
  std::vector<ErrorCount> errors;  // distinct failure messages, most frequent first
  double duration_s = 0;           // first send to last completion
  int64_t total_input_tokens = 0, total_output_tokens = 0;
  double mean_input_len = 0, mean_output_len = 0, mean_max_tokens = 0;
  int stopped_early = 0;      // completed with fewer output tokens than max_tokens
  int usage_missing = 0;      // completed without a `usage` chunk (output tokens = chunks)
  double request_throughput = 0, output_throughput = 0, total_token_throughput = 0;
  Summary ttft_ms, tpot_ms, itl_ms, e2el_ms;  // over completed requests; ITL pooled over them
};

// The metrics of one level from its records; duration_s is the wall time of the whole level.
LevelMetrics compute_metrics(const std::vector<RequestRecord>& records, double duration_s);

// Gaps between successive content chunks of `streams` that overlap the interval [t0, t1]
// (a gap [a, b] with b > t0 and a < t1), so a stall that spans the end of the window counts.
std::vector<double> gaps_overlapping(const std::vector<RequestRecord>& streams, double t0, double t1);

}  // namespace ilm::serve_bench
