#pragma once
// `internlm bench-serve --save-result`: one level's results under the keys `vllm bench serve`
// writes (vllm/benchmarks/serve.py's result_json), so scripts that read vLLM's files read ours.
#include <string>

#include <nlohmann/json.hpp>

#include "server/serve_bench_run.h"

namespace ilm::serve_bench {

struct VllmRunInfo {
  std::string backend = "openai";
  std::string model_id;
  std::string date;  // "%Y%m%d-%H%M%S", local time, as vLLM stamps it
  int num_prompts = 0;
};

// date, backend, model_id, num_prompts, request_rate, max_concurrency, duration, completed,
// failed, total_*_tokens, *_throughput, {mean,median,std,p99}_{ttft,tpot,itl,e2el}_ms, and per
// request: input_lens, output_lens, ttfts (s), itls (s), generated_texts, errors ("" when ok).
nlohmann::json vllm_result_json(const VllmRunInfo& info, const LevelResult& level);

// vLLM's default name: "{backend}-{rate}qps-concurrency{c}-{model id's last part}-{date}.json".
std::string vllm_result_filename(const VllmRunInfo& info, double request_rate, int concurrency);

}  // namespace ilm::serve_bench
