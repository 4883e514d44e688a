#pragma once
// `internlm bench-serve --scenario`: the three serving targets, each measured and judged.
//   throughput       output-token throughput at concurrency 16 >= 6x concurrency 1
//   prefix           TTFT of a request sharing a ~1000-token system prompt with an earlier one
//                    <= 10% of the first's TTFT, both on an idle server and while the first decodes
//   chunked-prefill  ITL P99 / median of four decoding streams, over the prefill of a 2000-token
//                    prompt plus an equal stretch before it, <= 4
#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "server/serve_bench_client.h"
#include "server/serve_bench_progress.h"

namespace ilm::serve_bench {

struct ScenarioOptions {
  uint64_t seed = 0;          // prompts (fresh per run by default, so no earlier cache helps)
  int64_t input_len = 256;    // throughput prompts; the chunked-prefill streams' prompts
  int64_t output_len = 128;   // throughput max_tokens
  int num_prompts = 0;        // throughput requests per level; 0: 2 x concurrency (at least 4)
  int64_t prefix_len = 1000;  // system prompt of the prefix scenario (tokens)
  int64_t prefix_decode_tokens = 128;  // max_tokens of the first prefix request (decodes while the third arrives)
  int64_t long_prompt_len = 2000;      // the prompt prefilled while four streams decode
  int64_t stream_tokens = 1024;        // max_tokens of the four streams (cancelled once measured)
  double timeout_s = 600;              // the longest wait for a scenario step
};

struct ScenarioResult {
  std::string name;
  bool pass = false;
  double ratio = 0;
  double target = 0;
  std::string op;      // ">=" or "<=": how ratio must compare to target
  std::string what;    // what the ratio is, in words
  std::string note;    // why a measurement is inconclusive (then pass = false), or ""
  nlohmann::json details;
};

// "PASS throughput: out tok/s c16 / c1 = 7.21 (target >= 6)"; FAIL lines add the note.
std::string verdict_line(const ScenarioResult& r);

using Log = std::function<void(const std::string&)>;

ScenarioResult run_throughput_scenario(const ApiClient& api, const std::string& model, const ScenarioOptions& o,
                                       Progress& progress, const Log& log);
ScenarioResult run_prefix_scenario(const ApiClient& api, const std::string& model, const ScenarioOptions& o,
                                   const Log& log);
ScenarioResult run_chunked_prefill_scenario(const ApiClient& api, const std::string& model,
                                            const ScenarioOptions& o, const Log& log);

// Deterministic filler text of random common English words (about one token each).
std::string filler_text(size_t words, uint64_t seed);

}  // namespace ilm::serve_bench
