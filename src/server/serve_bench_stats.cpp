#include "server/serve_bench_stats.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

namespace ilm::serve_bench {

double percentile_sorted(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

Summary summarize(std::vector<double> values) {
  Summary s;
  s.count = values.size();
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  const double n = static_cast<double>(values.size());
  s.mean = std::accumulate(values.begin(), values.end(), 0.0) / n;
  double ss = 0;
  for (double v : values) ss += (v - s.mean) * (v - s.mean);
  s.stddev = std::sqrt(ss / n);
  s.median = percentile_sorted(values, 50);
  s.p90 = percentile_sorted(values, 90);
  s.p99 = percentile_sorted(values, 99);
  s.min = values.front();
  s.max = values.back();
  return s;
}

Summary scaled(Summary s, double f) {
  s.mean *= f;
  s.median *= f;
  s.p90 *= f;
  s.p99 *= f;
  s.stddev *= f;
  s.min *= f;
  s.max *= f;
  return s;
}

LevelMetrics compute_metrics(const std::vector<RequestRecord>& records, double duration_s) {
  LevelMetrics m;
  m.num_requests = static_cast<int>(records.size());
  m.duration_s = duration_s;
  std::vector<double> ttft, tpot, itl, e2el;
  std::map<std::string, int> error_counts;
  std::vector<std::string> error_order;
  int64_t max_tokens_sum = 0;
  for (const RequestRecord& r : records) {
    if (!r.ok) {
      ++m.failed;
      if (error_counts[r.error]++ == 0) error_order.push_back(r.error);
      continue;
    }
    ++m.completed;
    m.total_input_tokens += r.prompt_tokens;
    m.total_output_tokens += r.output_tokens;
    max_tokens_sum += r.max_tokens;
    if (r.max_tokens > 0 && r.output_tokens < r.max_tokens) ++m.stopped_early;
    if (!r.usage_reported) ++m.usage_missing;
    if (r.has_ttft) ttft.push_back(r.ttft);
    if (r.has_tpot()) tpot.push_back(r.tpot());
    const std::vector<double> gaps = r.itl();
    itl.insert(itl.end(), gaps.begin(), gaps.end());
    e2el.push_back(r.e2el());
  }
  for (const std::string& e : error_order) m.errors.push_back({e, error_counts[e]});
  std::stable_sort(m.errors.begin(), m.errors.end(),
                   [](const ErrorCount& a, const ErrorCount& b) { return a.count > b.count; });
  if (m.completed > 0) {
    const double n = m.completed;
    m.mean_input_len = static_cast<double>(m.total_input_tokens) / n;
    m.mean_output_len = static_cast<double>(m.total_output_tokens) / n;
    m.mean_max_tokens = static_cast<double>(max_tokens_sum) / n;
  }
  if (duration_s > 0) {
    m.request_throughput = m.completed / duration_s;
    m.output_throughput = static_cast<double>(m.total_output_tokens) / duration_s;
    m.total_token_throughput = static_cast<double>(m.total_input_tokens + m.total_output_tokens) / duration_s;
  }
  m.ttft_ms = scaled(summarize(std::move(ttft)), 1e3);
  m.tpot_ms = scaled(summarize(std::move(tpot)), 1e3);
  m.itl_ms = scaled(summarize(std::move(itl)), 1e3);
  m.e2el_ms = scaled(summarize(std::move(e2el)), 1e3);
  return m;
}

std::vector<double> gaps_overlapping(const std::vector<RequestRecord>& streams, double t0, double t1) {
  std::vector<double> gaps;
  for (const RequestRecord& r : streams)
    for (size_t i = 1; i < r.token_times.size(); ++i) {
      const double a = r.token_times[i - 1], b = r.token_times[i];
      if (b > t0 && a < t1) gaps.push_back(b - a);
    }
  return gaps;
}

}  // namespace ilm::serve_bench
