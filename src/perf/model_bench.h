#pragma once
// `internlm bench`: prompt processing (pp) and text generation (tg) throughput of a loaded
// model, with this machine's limits measured in the same run and the ratios to them.
#include <cstdint>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/loaded_model.h"

namespace ilm {

struct BenchOptions {
  int64_t prompt_tokens = 512;  // pp
  int64_t gen_tokens = 128;     // tg
  int reps = 3;
  int64_t seed = 1;
  bool probe_compute = true;
  int64_t batch = 0;  // > 1: also measure batched decode of this many sequences
  // tg runs once per entry, after that many cached tokens (0: after BOS alone). Cached tokens
  // beyond 0 are synthesised directly into the cache (perf/synthetic_context.h), not prefilled.
  std::vector<int64_t> contexts = {0};
  DType kv_dtype = DType::F32;  // KV cache element type of pp and tg (--kv-cache-dtype)
  // Fault in the KV memory tg will write before timing it (KvCache::prefault); false times
  // decode with first-touch page faults inside the steps (for before / after comparisons).
  bool kv_prefault = true;
};

struct Stat {
  double mean = 0, stddev = 0;
  std::vector<double> samples;
  static Stat of(std::vector<double> v);
};

// tg after `context` cached tokens; the roofline counts every byte a step reads: the weights
// plus the K and V rows of every layer at the step's context, in the cache's element type.
struct ContextDecode {
  int64_t context = 0;         // cached tokens before the first timed step
  bool synthesized = false;    // those tokens were written into the cache, not prefilled
  double synth_seconds = 0;    // time to write them
  Stat tg_tokens_per_s;
  double kv_bytes_per_token = 0;      // KV bytes a step reads, at the mean context of the timed steps
  double decode_bytes_per_token = 0;  // weights + kv_bytes_per_token
  std::vector<double> bandwidth_before_gbps, bandwidth_after_gbps;
  std::vector<double> weight_read_before_gbps, weight_read_after_gbps;
  double roofline_ratio_low = 0, roofline_ratio_high = 0;        // vs the highest / lowest bandwidth
  double weight_read_ratio_low = 0, weight_read_ratio_high = 0;  // vs the fastest / slowest weight read
  nlohmann::json to_json() const;
};

struct BenchResult {
  Stat pp_tokens_per_s, tg_tokens_per_s;
  Stat batch_tg_tokens_per_s;  // aggregate over the batch (when measured)
  int64_t batch = 0;
  double fma_peak_gflops = 0;
  std::optional<double> bf16_peak_gflops, int8_peak_gops;
  std::vector<double> bandwidth_before_gbps, bandwidth_after_gbps;  // per tg repetition
  // A plain streaming read of the weights' own memory, right before and after each tg run.
  std::vector<double> weight_read_before_gbps, weight_read_after_gbps;
  double tg_weight_read_ratio_low = 0, tg_weight_read_ratio_high = 0;  // vs the faster / slower read
  double weights_huge_page_share = 0;  // of the decode weights' memory, mapped in huge pages
  double decode_bytes_per_token = 0;   // weights + mean KV read per generated token
  double prefill_flops = 0;            // per pp run
  double tg_roofline_ratio_low = 0, tg_roofline_ratio_high = 0;  // vs the faster / slower bracket
  double pp_gflops = 0;
  uint64_t peak_rss_bytes = 0, rss_bytes = 0, probe_buffer_bytes = 0;
  // One entry per BenchOptions::contexts; the tg_* / bandwidth fields above are the first's.
  std::vector<ContextDecode> contexts;
  DType kv_dtype = DType::F32;
  uint64_t kv_bytes_per_cached_token = 0;  // all layers, K and V, in kv_dtype
  nlohmann::json to_json() const;
};

BenchResult run_bench(LoadedModel& m, const BenchOptions& opts,
                      const std::function<void(const std::string&)>& progress = {});

}  // namespace ilm
