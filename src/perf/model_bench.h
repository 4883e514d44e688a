#pragma once
// `internlm bench`: prompt processing (pp) and text generation (tg) throughput of a loaded
// model, with this machine's limits measured in the same run and the ratios to them.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/loaded_model.h"

namespace ilm {

// The machine's limits as MachineProbe measures them (perf/machine_probe.h).
struct MachineFigures {
  std::vector<double> read_gbps;         // read bandwidth of a buffer well above the last-level cache
  std::vector<double> weight_read_gbps;  // a streaming read of this process's decode weights
  double fma_peak_gflops = 0;
  std::optional<double> bf16_peak_gflops, int8_peak_gops;
  uint64_t probe_buffer_bytes = 0;
  // Of the decode weights' memory, mapped in huge pages (one /proc/self/smaps read per span:
  // seconds for a 7b shard, longer than a follower waits for rank 0's next step).
  double weights_huge_page_share = 0;
};

// Tensor parallelism: every rank of the job calls this at the same moment (cmd_bench: between
// two barriers), so no rank is waiting inside an MPI receive meanwhile (OpenMPI's receives and
// our collectives poll, and would take a core from the probe). The figures are this rank's
// share of its machine while the other ranks on it probe too, the same load as tg's. `samples`
// read-bandwidth passes; the compute peaks when `compute`.
MachineFigures probe_machine(LoadedModel& m, int samples, bool compute);

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
  // Figures measured beforehand (tensor parallelism: by every rank at once, probe_machine):
  // run_bench then measures nothing itself and uses these for the ratios; the bandwidth
  // figures land in the "before" lists, the "after" lists stay empty.
  const MachineFigures* machine = nullptr;
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
  // Sets the four ratios from tg_tokens_per_s, decode_bytes_per_token and the probes: the
  // roofline at the highest and at the lowest bandwidth seen around tg.
  void compute_ratios();
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
  uint64_t kv_bytes_per_cached_token = 0;  // all layers, K and V, in kv_dtype (this rank's KV heads)

  // Tensor parallelism (--tp N, N > 1; to_json adds "tensor_parallel" only then). run_bench
  // runs on rank 0 and measures rank 0: decode_bytes_per_token, the bandwidths and the
  // rooflines are rank 0's shard against rank 0's share of its machine.
  int tp = 1;
  uint64_t rank_weight_bytes = 0;  // decode weight bytes per token of this rank's shard
  // Over every timed tg step (all contexts and repetitions): Communicator::bytes_reduced()
  // and seconds_in_collectives() deltas, divided by the tokens and by the steps' wall time.
  uint64_t comm_bytes = 0;
  double comm_seconds = 0, tg_seconds = 0;
  int64_t tg_tokens = 0;
  double comm_bytes_per_token() const { return tg_tokens ? static_cast<double>(comm_bytes) / static_cast<double>(tg_tokens) : 0.0; }
  double comm_share() const { return tg_seconds > 0 ? comm_seconds / tg_seconds : 0.0; }
  // Filled by the caller (cmd_bench) from every rank once the followers stop: per rank r,
  // its decode weight bytes per token, VmRSS and VmHWM.
  struct RankFigures {
    uint64_t weight_bytes = 0, rss_bytes = 0, peak_rss_bytes = 0;
  };
  std::vector<RankFigures> ranks;
  std::string probes;  // how the machine was measured under --tp (printed and in the JSON)

  nlohmann::json to_json() const;
};

// Throws ilm::Error when `opts` does not fit the model (-n, -r, -p, --context against the
// context limit); run_bench checks the same first. Under --tp every rank checks before the
// job starts, so a bad option ends every rank at once.
void check_bench_options(const LoadedModel& m, const BenchOptions& opts);

// VmRSS / VmHWM of this process from /proc (Linux); 0 elsewhere.
uint64_t process_rss_bytes();
uint64_t process_peak_rss_bytes();

BenchResult run_bench(LoadedModel& m, const BenchOptions& opts,
                      const std::function<void(const std::string&)>& progress = {});

}  // namespace ilm
