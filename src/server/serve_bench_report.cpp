#include "server/serve_bench_report.h"

#include <cmath>

#include <fmt/format.h>

namespace ilm::serve_bench {

namespace {

std::string rate_text(double rate) { return std::isfinite(rate) ? fmt::format("{:.2f}", rate) : std::string("inf"); }

void row(std::string& out, const std::string& name, const std::string& value) {
  out += fmt::format("{:<40} {}\n", name + ":", value);
}

void header(std::string& out, const std::string& title, char fill) {
  constexpr size_t width = 50;
  const std::string t = title.empty() ? std::string() : fmt::format(" {} ", title);
  const size_t left = t.size() < width ? (width - t.size()) / 2 : 0;
  const size_t right = t.size() < width ? width - t.size() - left : 0;
  out += fmt::format("{}{}{}\n", std::string(left, fill), t, std::string(right, fill));
}

void latency(std::string& out, const std::string& title, const std::string& name, const Summary& s) {
  header(out, title, '-');
  row(out, fmt::format("Mean {} (ms)", name), fmt::format("{:.2f}", s.mean));
  row(out, fmt::format("Median {} (ms)", name), fmt::format("{:.2f}", s.median));
  row(out, fmt::format("P90 {} (ms)", name), fmt::format("{:.2f}", s.p90));
  row(out, fmt::format("P99 {} (ms)", name), fmt::format("{:.2f}", s.p99));
}

}  // namespace

std::string format_level(const LevelMetrics& m) {
  std::string out;
  header(out, fmt::format("Serving Benchmark Result (concurrency {})", m.concurrency), '=');
  row(out, "Maximum concurrency", fmt::format("{}", m.concurrency));
  row(out, "Request rate (req/s)", rate_text(m.request_rate));
  row(out, "Successful requests", fmt::format("{}", m.completed));
  row(out, "Failed requests", fmt::format("{}", m.failed));
  row(out, "Benchmark duration (s)", fmt::format("{:.2f}", m.duration_s));
  row(out, "Total input tokens", fmt::format("{}", m.total_input_tokens));
  row(out, "Total generated tokens", fmt::format("{}", m.total_output_tokens));
  row(out, "Mean output length (tokens)",
      fmt::format("{:.1f} of max_tokens {:.1f}{}", m.mean_output_len, m.mean_max_tokens,
                  m.stopped_early ? fmt::format(" ({} requests stopped early)", m.stopped_early) : std::string()));
  if (m.usage_missing)
    row(out, "Requests without usage", fmt::format("{} (their output tokens are counted as chunks)", m.usage_missing));
  row(out, "Request throughput (req/s)", fmt::format("{:.2f}", m.request_throughput));
  row(out, "Output token throughput (tok/s)", fmt::format("{:.2f}", m.output_throughput));
  row(out, "Total token throughput (tok/s)", fmt::format("{:.2f}", m.total_token_throughput));
  latency(out, "Time to First Token", "TTFT", m.ttft_ms);
  latency(out, "Time per Output Token (excl. 1st token)", "TPOT", m.tpot_ms);
  latency(out, "Inter-token Latency", "ITL", m.itl_ms);
  latency(out, "End-to-end Latency", "E2EL", m.e2el_ms);
  if (!m.errors.empty()) {
    header(out, "Errors", '-');
    for (const ErrorCount& e : m.errors) out += fmt::format("{} x {}\n", e.count, e.error);
  }
  header(out, "", '=');
  return out;
}

std::string format_level_table(const std::vector<LevelMetrics>& levels) {
  std::string out = fmt::format("{:>5} {:>6} {:>6} {:>8} {:>10} {:>10} {:>19} {:>9} {:>19} {:>10} {:>9}\n", "conc",
                                "ok", "failed", "req/s", "out tok/s", "tot tok/s", "TTFT med/P99 ms", "TPOT ms",
                                "ITL med/P99 ms", "E2EL ms", "mean out");
  for (const LevelMetrics& m : levels)
    out += fmt::format("{:>5} {:>6} {:>6} {:>8.2f} {:>10.2f} {:>10.2f} {:>19} {:>9.2f} {:>19} {:>10.1f} {:>9.1f}\n",
                       m.concurrency, m.completed, m.failed, m.request_throughput, m.output_throughput,
                       m.total_token_throughput, fmt::format("{:.1f}/{:.1f}", m.ttft_ms.median, m.ttft_ms.p99),
                       m.tpot_ms.mean, fmt::format("{:.1f}/{:.1f}", m.itl_ms.median, m.itl_ms.p99), m.e2el_ms.median,
                       m.mean_output_len);
  return out;
}

nlohmann::json rate_json(double request_rate) {
  return std::isfinite(request_rate) ? nlohmann::json(request_rate) : nlohmann::json("inf");
}

nlohmann::json summary_json(const Summary& s) {
  return {{"count", s.count}, {"mean", s.mean}, {"median", s.median}, {"p90", s.p90}, {"p99", s.p99},
          {"std", s.stddev},  {"min", s.min},   {"max", s.max}};
}

nlohmann::json metrics_json(const LevelMetrics& m) {
  nlohmann::json errors = nlohmann::json::array();
  for (const ErrorCount& e : m.errors) errors.push_back({{"error", e.error}, {"count", e.count}});
  return {{"concurrency", m.concurrency},
          {"request_rate", rate_json(m.request_rate)},
          {"num_requests", m.num_requests},
          {"completed", m.completed},
          {"failed", m.failed},
          {"errors", errors},
          {"duration_s", m.duration_s},
          {"total_input_tokens", m.total_input_tokens},
          {"total_output_tokens", m.total_output_tokens},
          {"mean_input_len", m.mean_input_len},
          {"mean_output_len", m.mean_output_len},
          {"mean_max_tokens", m.mean_max_tokens},
          {"stopped_early", m.stopped_early},
          {"usage_missing", m.usage_missing},
          {"request_throughput", m.request_throughput},
          {"output_throughput", m.output_throughput},
          {"total_token_throughput", m.total_token_throughput},
          {"ttft_ms", summary_json(m.ttft_ms)},
          {"tpot_ms", summary_json(m.tpot_ms)},
          {"itl_ms", summary_json(m.itl_ms)},
          {"e2el_ms", summary_json(m.e2el_ms)}};
}

nlohmann::json record_json(const RequestRecord& r, double origin) {
  nlohmann::json j = {{"ok", r.ok},
                      {"http_status", r.http_status},
                      {"start_s", r.start - origin},
                      {"e2el_s", r.e2el()},
                      {"prompt_tokens", r.prompt_tokens},
                      {"output_tokens", r.output_tokens},
                      {"usage_reported", r.usage_reported},
                      {"max_tokens", r.max_tokens},
                      {"finish_reason", r.finish_reason},
                      {"itl_s", r.itl()}};
  j["ttft_s"] = r.has_ttft ? nlohmann::json(r.ttft) : nlohmann::json();
  j["tpot_s"] = r.has_tpot() ? nlohmann::json(r.tpot()) : nlohmann::json();
  if (!r.ok) j["error"] = r.error;
  if (r.cancelled) j["cancelled"] = true;
  return j;
}

nlohmann::json level_json(const LevelResult& level) {
  nlohmann::json j = metrics_json(level.metrics);
  nlohmann::json reqs = nlohmann::json::array();
  for (const RequestRecord& r : level.records) reqs.push_back(record_json(r, level.start));
  j["requests"] = std::move(reqs);
  return j;
}

}  // namespace ilm::serve_bench
