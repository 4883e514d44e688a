#pragma once
// `internlm bench-serve`: the results as text (vLLM's layout, per level, then one line per level)
// and as JSON (settings, per-level metrics, every request's raw record).
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/serve_bench_run.h"

namespace ilm::serve_bench {

std::string format_level(const LevelMetrics& m);                // the block for one level
std::string format_level_table(const std::vector<LevelMetrics>& levels);  // one line per level

nlohmann::json rate_json(double request_rate);  // a number, or "inf"
nlohmann::json summary_json(const Summary& s);
nlohmann::json metrics_json(const LevelMetrics& m);
// ok, error, http_status, start_s (from `origin`), ttft_s, e2el_s, prompt_tokens,
// output_tokens, usage_reported, max_tokens, finish_reason, itl_s: [...]
nlohmann::json record_json(const RequestRecord& r, double origin);
nlohmann::json level_json(const LevelResult& level);  // metrics + "requests"

}  // namespace ilm::serve_bench
