#include "server/serve_bench_run.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "common/error.h"

namespace ilm::serve_bench {

std::vector<double> arrival_offsets(int count, double rate, uint64_t seed) {
  std::vector<double> out(static_cast<size_t>(std::max(count, 0)), 0.0);
  if (!std::isfinite(rate) || rate <= 0) return out;
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> gap(rate);
  double t = 0;
  for (size_t i = 1; i < out.size(); ++i) {
    t += gap(rng);
    out[i] = t;
  }
  return out;
}

namespace {

void sleep_until_s(double t) {
  const double wait = t - now_s();
  if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
}

RequestRecord send(const ApiClient& api, const std::string& model, const BenchRequest& r) {
  return api.stream(endpoint_of(r), request_body(r, model), r.chat, r.prompt_len, r.max_tokens);
}

}  // namespace

LevelResult run_level(const ApiClient& api, const std::string& model, const std::vector<BenchRequest>& requests,
                      const LevelOptions& opts, Progress& progress, const std::string& label) {
  LevelResult res;
  const int n = static_cast<int>(requests.size());
  res.records.resize(requests.size());
  const std::vector<double> arrivals = arrival_offsets(n, opts.request_rate, opts.seed);
  std::atomic<int> next{0};
  progress.start(label, n);
  res.start = now_s();
  const int workers = std::clamp(opts.concurrency, 1, std::max(n, 1));
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(workers));
  for (int w = 0; w < workers; ++w)
    threads.emplace_back([&] {
      for (int i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
        const auto k = static_cast<size_t>(i);
        sleep_until_s(res.start + arrivals[k]);
        res.records[k] = send(api, model, requests[k]);
        progress.request_done(res.records[k].ok, res.records[k].output_tokens);
      }
    });
  for (auto& t : threads) t.join();
  double end = res.start;
  for (const auto& r : res.records) end = std::max(end, r.end);
  progress.finish();
  res.metrics = compute_metrics(res.records, end - res.start);
  res.metrics.concurrency = opts.concurrency;
  res.metrics.request_rate = opts.request_rate;
  return res;
}

void run_warmup(const ApiClient& api, const std::string& model, const std::vector<BenchRequest>& requests,
                Progress& progress) {
  progress.start("warm-up", static_cast<int>(requests.size()));
  for (const BenchRequest& r : requests) {
    RequestRecord rec = send(api, model, r);
    progress.request_done(rec.ok, rec.output_tokens);
    if (!rec.ok) {
      progress.finish();
      throw Error(fmt::format("warm-up request to {}{} failed: {}", api.url().str(), endpoint_of(r), rec.error));
    }
  }
  progress.finish();
}

}  // namespace ilm::serve_bench
