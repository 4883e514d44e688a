#pragma once
// `internlm bench-serve`: runs one concurrency level — at most `concurrency` requests in flight,
// arrivals paced by a Poisson process of `request_rate` req/s (infinity: all at once) — and the
// warm-up before measuring.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "server/serve_bench_client.h"
#include "server/serve_bench_dataset.h"
#include "server/serve_bench_progress.h"
#include "server/serve_bench_stats.h"

namespace ilm::serve_bench {

struct LevelOptions {
  int concurrency = 1;
  double request_rate = std::numeric_limits<double>::infinity();
  uint64_t seed = 0;  // for the arrival times
};

struct LevelResult {
  LevelMetrics metrics;
  std::vector<RequestRecord> records;  // in request order
  double start = 0;                    // now_s() when the level began
};

// Arrival offsets (seconds from the level start) of `count` requests: all 0 for an infinite
// rate, else the partial sums of exponential gaps of mean 1/rate, the first at 0.
std::vector<double> arrival_offsets(int count, double rate, uint64_t seed);

LevelResult run_level(const ApiClient& api, const std::string& model, const std::vector<BenchRequest>& requests,
                      const LevelOptions& opts, Progress& progress, const std::string& label);

// Sends `requests` one after another; throws ilm::Error with the first failure (a benchmark
// against a server that cannot answer one request would only measure errors).
void run_warmup(const ApiClient& api, const std::string& model, const std::vector<BenchRequest>& requests,
                Progress& progress);

}  // namespace ilm::serve_bench
