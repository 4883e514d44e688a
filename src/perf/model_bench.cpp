#include "perf/model_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <numeric>
#include <optional>
#include <random>
#include <string>

#include <fmt/format.h>

#include "common/error.h"
#include "io/mapped_file.h"
#include "perf/machine_probe.h"
#include "perf/synthetic_context.h"
#include "runtime/sampler.h"

namespace ilm {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// VmRSS / VmHWM from /proc (Linux); 0 elsewhere.
uint64_t proc_status_kb(const std::string& key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key + ":", 0) == 0) return std::stoull(line.substr(key.size() + 1)) * 1024;
  return 0;
}

std::vector<TokenId> random_prompt(int64_t n, int64_t vocab, int64_t seed) {
  std::mt19937_64 rng(static_cast<uint64_t>(seed));
  // Ordinary pieces only (skip control, byte and added tokens at both ends of the vocab).
  const auto lo = static_cast<TokenId>(std::min<int64_t>(1000, vocab / 2));
  const auto hi = static_cast<TokenId>(std::max<int64_t>(lo, std::min<int64_t>(vocab, 92000) - 1));
  std::uniform_int_distribution<TokenId> d(lo, hi);
  std::vector<TokenId> ids(static_cast<size_t>(n), 1);  // starts with BOS
  for (size_t i = 1; i < ids.size(); ++i) ids[i] = d(rng);
  return ids;
}

}  // namespace

Stat Stat::of(std::vector<double> v) {
  Stat s;
  s.samples = std::move(v);
  if (s.samples.empty()) return s;
  s.mean = std::accumulate(s.samples.begin(), s.samples.end(), 0.0) / static_cast<double>(s.samples.size());
  double var = 0;
  for (double x : s.samples) var += (x - s.mean) * (x - s.mean);
  s.stddev = s.samples.size() > 1 ? std::sqrt(var / static_cast<double>(s.samples.size() - 1)) : 0.0;
  return s;
}

namespace {

double huge_page_share(const std::vector<std::span<const std::byte>>& memory) {
  size_t all = 0, huge = 0;
  for (auto s : memory) {
    all += s.size();
    huge += huge_mapped_bytes(s.data(), s.size());  // per span: spans of one mapping overlap in smaps
  }
  return all ? std::min(1.0, static_cast<double>(huge) / static_cast<double>(all)) : 0.0;
}

}  // namespace

uint64_t process_rss_bytes() { return proc_status_kb("VmRSS"); }
uint64_t process_peak_rss_bytes() { return proc_status_kb("VmHWM"); }

MachineFigures probe_machine(LoadedModel& m, int samples, bool compute) {
  MachineFigures f;
  MachineProbe probe(m.backend->threads());
  f.probe_buffer_bytes = probe.buffer_bytes();
  const auto weight_memory = m.lm->decode_weight_memory();
  for (int i = 0; i < samples; ++i) {
    f.read_gbps.push_back(probe.read_bandwidth_gbps());
    f.weight_read_gbps.push_back(probe.read_bandwidth_gbps(weight_memory));
  }
  f.weights_huge_page_share = huge_page_share(weight_memory);
  if (compute) {
    f.fma_peak_gflops = probe.fma_peak_gflops();
    f.bf16_peak_gflops = probe.bf16_dot_peak_gflops();
    f.int8_peak_gops = probe.int8_dot_peak_gops();
  }
  return f;
}

void check_bench_options(const LoadedModel& m, const BenchOptions& o) {
  if (o.prompt_tokens < 0 || o.gen_tokens < 1 || o.reps < 1) throw Error("bench: -n and -r must be >= 1, -p >= 0");
  const CausalLM& lm = *m.lm;
  if (o.prompt_tokens + o.gen_tokens + 1 > lm.context_limit())
    throw Error(fmt::format("bench: -p + -n exceeds the context limit {}", lm.context_limit()));
  if (o.contexts.empty()) throw Error("bench: --context needs at least one length");
  for (int64_t n : o.contexts)
    if (n < 0 || n + o.gen_tokens + 1 > lm.context_limit())
      throw Error(fmt::format("bench: --context {} + -n {} + 1 exceeds the context limit {} (or is negative)", n,
                              o.gen_tokens, lm.context_limit()));
}

BenchResult run_bench(LoadedModel& m, const BenchOptions& o,
                      const std::function<void(const std::string&)>& progress) {
  auto say = [&](const std::string& s) {
    if (progress) progress(s);
  };
  check_bench_options(m, o);
  CausalLM& lm = *m.lm;
  const ModelConfig& c = m.config;
  Communicator* const comm = m.comm.get();
  const MachineFigures* const given = o.machine;
  const int64_t V = c.vocab_size, H = c.hidden_size;
  BenchResult r;
  r.tp = comm ? comm->size() : 1;
  // Figures given (--tp): no probe here, so no buffer either (probe_machine freed its own).
  std::optional<MachineProbe> probe;
  if (!given) probe.emplace(m.backend->threads());
  r.probe_buffer_bytes = given ? given->probe_buffer_bytes : probe->buffer_bytes();

  // Bytes one decode step streams: every weight once (one embedding row, the whole head),
  // plus the KV cache read by attention (K and V of every layer, in the cache's element type,
  // an int8 row's scales included) at the mean context of the timed steps: after N cached
  // tokens and the first token, step i attends over N + 2 + i positions.
  // Under --tp: this rank's shard, and its KV heads (n_kv / N of them).
  r.rank_weight_bytes = lm.decode_weight_bytes();
  const double weights = static_cast<double>(r.rank_weight_bytes);
  r.kv_dtype = o.kv_dtype;
  r.kv_bytes_per_cached_token = lm.kv_bytes_per_token(o.kv_dtype) / static_cast<uint64_t>(r.tp);
  const double kv_per_pos = static_cast<double>(r.kv_bytes_per_cached_token);
  for (int64_t n : o.contexts) {
    ContextDecode d;
    d.context = n;
    d.synthesized = n > 0;
    d.kv_bytes_per_token = kv_per_pos * (static_cast<double>(n) + 1.0 + (static_cast<double>(o.gen_tokens) + 1.0) / 2.0);
    d.decode_bytes_per_token = weights + d.kv_bytes_per_token;
    r.contexts.push_back(d);
  }
  r.decode_bytes_per_token = r.contexts.front().decode_bytes_per_token;

  // Prefill work: matmuls of every layer for every token, the head for the last token only,
  // attention QK and PV over the causal triangle.
  const double layer_params = static_cast<double>(c.num_layers) *
                              static_cast<double>((c.num_heads + 2 * c.num_kv_heads) * c.head_dim * H +
                                                  H * c.num_heads * c.head_dim + 3 * H * c.intermediate_size);
  const double T = static_cast<double>(o.prompt_tokens);  // 0: no pp runs
  r.prefill_flops = 2.0 * T * layer_params + 2.0 * static_cast<double>(V * H) +
                    static_cast<double>(c.num_layers) * 2.0 * 2.0 * static_cast<double>(c.num_heads * c.head_dim) * T * (T + 1) / 2.0;

  const auto prompt = random_prompt(o.prompt_tokens, V, o.seed);
  std::vector<float> logits(static_cast<size_t>(V));

  say("warm-up (pages every weight in)");
  {
    KvCache cache = lm.new_cache_as(64, o.kv_dtype);
    const auto warm = random_prompt(o.prompt_tokens > 0 ? std::min<int64_t>(o.prompt_tokens, 16) : 16, V, o.seed);
    lm.forward(warm, cache, logits, false);
    const TokenId one[1] = {argmax(logits)};
    lm.forward(one, cache, logits, false);
  }

  const auto weight_memory = lm.decode_weight_memory();
  r.weights_huge_page_share = given ? given->weights_huge_page_share : huge_page_share(weight_memory);
  std::vector<double> pp;
  for (int rep = 0; rep < o.reps && o.prompt_tokens > 0; ++rep) {
    say(fmt::format("pp{} run {}/{}", o.prompt_tokens, rep + 1, o.reps));
    KvCache cache = lm.new_cache_as(o.prompt_tokens, o.kv_dtype);
    const double t0 = now_s();
    lm.forward(prompt, cache, logits, false);
    pp.push_back(T / (now_s() - t0));
  }
  for (ContextDecode& d : r.contexts) {
    KvCache cache = lm.new_cache_as(d.context + o.gen_tokens + 1, o.kv_dtype);
    if (o.kv_prefault) cache.prefault(d.context + o.gen_tokens + 1);
    if (d.context > 0) {
      say(fmt::format("synthesising {} cached tokens into the {} KV cache", d.context, kv_cache_dtype_name(o.kv_dtype)));
      const double t0 = now_s();
      fill_synthetic_context(cache, d.context, static_cast<uint64_t>(o.seed));
      d.synth_seconds = now_s() - t0;
    }
    std::vector<double> tg;
    for (int rep = 0; rep < o.reps; ++rep) {
      say(fmt::format("tg{} at context {} run {}/{}{}", o.gen_tokens, d.context, rep + 1, o.reps,
                      probe ? " (bandwidth probe before and after)" : ""));
      cache.truncate(d.context);  // each repetition decodes the same positions
      if (probe) {
        d.bandwidth_before_gbps.push_back(probe->read_bandwidth_gbps());
        d.weight_read_before_gbps.push_back(probe->read_bandwidth_gbps(weight_memory));
      }
      const TokenId bos[1] = {1};
      lm.forward(bos, cache, logits, false);
      const uint64_t bytes0 = comm ? comm->bytes_reduced() : 0;
      const double comm0 = comm ? comm->seconds_in_collectives() : 0.0;
      const double t0 = now_s();
      for (int64_t i = 0; i < o.gen_tokens; ++i) {
        const TokenId next[1] = {argmax(logits)};
        lm.forward(next, cache, logits, false);
      }
      const double dt = now_s() - t0;
      tg.push_back(static_cast<double>(o.gen_tokens) / dt);
      if (comm) {
        r.comm_bytes += comm->bytes_reduced() - bytes0;
        r.comm_seconds += comm->seconds_in_collectives() - comm0;
      }
      r.tg_seconds += dt;
      r.tg_tokens += o.gen_tokens;
      if (probe) {
        d.bandwidth_after_gbps.push_back(probe->read_bandwidth_gbps());
        d.weight_read_after_gbps.push_back(probe->read_bandwidth_gbps(weight_memory));
      }
    }
    if (given) {
      d.bandwidth_before_gbps = given->read_gbps;
      d.weight_read_before_gbps = given->weight_read_gbps;
    }
    d.tg_tokens_per_s = Stat::of(tg);
    d.compute_ratios();
  }
  {
    const ContextDecode& d = r.contexts.front();  // the top-level tg fields, as before --context
    r.tg_tokens_per_s = d.tg_tokens_per_s;
    r.bandwidth_before_gbps = d.bandwidth_before_gbps;
    r.bandwidth_after_gbps = d.bandwidth_after_gbps;
    r.weight_read_before_gbps = d.weight_read_before_gbps;
    r.weight_read_after_gbps = d.weight_read_after_gbps;
    r.tg_roofline_ratio_low = d.roofline_ratio_low;
    r.tg_roofline_ratio_high = d.roofline_ratio_high;
    r.tg_weight_read_ratio_low = d.weight_read_ratio_low;
    r.tg_weight_read_ratio_high = d.weight_read_ratio_high;
  }
  if (o.batch > 1) {
    // Batched decode: `batch` sequences, each with its own short prompt, step together; one
    // forward_batch per step reads the weights once for all of them.
    std::vector<double> agg;
    for (int rep = 0; rep < o.reps; ++rep) {
      say(fmt::format("batched tg{} x {} sequences, run {}/{}", o.gen_tokens, o.batch, rep + 1, o.reps));
      std::vector<KvCache> caches;
      std::vector<std::vector<float>> out(static_cast<size_t>(o.batch), std::vector<float>(static_cast<size_t>(V)));
      std::vector<TokenId> next(static_cast<size_t>(o.batch));
      for (int64_t b = 0; b < o.batch; ++b) {
        caches.push_back(lm.new_cache_as(o.gen_tokens + 8, o.kv_dtype));
        const auto p = random_prompt(8, V, o.seed + 100 + b);
        lm.forward(p, caches.back(), out[static_cast<size_t>(b)], false);
        next[static_cast<size_t>(b)] = argmax(out[static_cast<size_t>(b)]);
      }
      const double t0 = now_s();
      for (int64_t i = 0; i < o.gen_tokens; ++i) {
        std::vector<SequenceInput> batch;
        for (int64_t b = 0; b < o.batch; ++b)
          batch.push_back({std::span<const TokenId>(&next[static_cast<size_t>(b)], 1), &caches[static_cast<size_t>(b)],
                           out[static_cast<size_t>(b)], false});
        lm.forward_batch(batch);
        for (int64_t b = 0; b < o.batch; ++b) next[static_cast<size_t>(b)] = argmax(out[static_cast<size_t>(b)]);
      }
      agg.push_back(static_cast<double>(o.gen_tokens * o.batch) / (now_s() - t0));
    }
    r.batch = o.batch;
    r.batch_tg_tokens_per_s = Stat::of(agg);
  }
  r.pp_tokens_per_s = Stat::of(pp);
  r.rss_bytes = proc_status_kb("VmRSS");
  r.peak_rss_bytes = proc_status_kb("VmHWM");
  r.pp_gflops = T > 0 ? r.prefill_flops * r.pp_tokens_per_s.mean / T / 1e9 : 0.0;

  if (given) {
    r.fma_peak_gflops = given->fma_peak_gflops;
    r.bf16_peak_gflops = given->bf16_peak_gflops;
    r.int8_peak_gops = given->int8_peak_gops;
  } else if (o.probe_compute) {
    say("compute peaks (f32 FMA, bf16 dot)");
    r.fma_peak_gflops = probe->fma_peak_gflops();
    r.bf16_peak_gflops = probe->bf16_dot_peak_gflops();
    r.int8_peak_gops = probe->int8_dot_peak_gops();
  }
  return r;
}

void ContextDecode::compute_ratios() {
  // ratio against each end of the bracket of probes (before and after), if any probe ran
  auto bracket = [&](std::vector<double> v, const std::vector<double>& more, double& vs_high, double& vs_low) {
    v.insert(v.end(), more.begin(), more.end());
    if (v.empty() || *std::min_element(v.begin(), v.end()) <= 0) return;
    const double bytes_per_s = tg_tokens_per_s.mean * decode_bytes_per_token;
    vs_high = bytes_per_s / (*std::max_element(v.begin(), v.end()) * 1e9);
    vs_low = bytes_per_s / (*std::min_element(v.begin(), v.end()) * 1e9);
  };
  bracket(bandwidth_before_gbps, bandwidth_after_gbps, roofline_ratio_low, roofline_ratio_high);
  bracket(weight_read_before_gbps, weight_read_after_gbps, weight_read_ratio_low, weight_read_ratio_high);
}

nlohmann::json ContextDecode::to_json() const {
  return {{"context", context},
          {"synthesized_context", synthesized},
          {"synth_seconds", synth_seconds},
          {"tg_tokens_per_s", {{"mean", tg_tokens_per_s.mean}, {"stddev", tg_tokens_per_s.stddev}, {"samples", tg_tokens_per_s.samples}}},
          {"kv_bytes_per_token", kv_bytes_per_token},
          {"decode_bytes_per_token", decode_bytes_per_token},
          {"bandwidth_before_gbps", bandwidth_before_gbps},
          {"bandwidth_after_gbps", bandwidth_after_gbps},
          {"weight_read_before_gbps", weight_read_before_gbps},
          {"weight_read_after_gbps", weight_read_after_gbps},
          {"tg_roofline_ratio", {{"vs_highest_bandwidth", roofline_ratio_low}, {"vs_lowest_bandwidth", roofline_ratio_high}}},
          {"tg_weight_read_ratio", {{"vs_fastest_read", weight_read_ratio_low}, {"vs_slowest_read", weight_read_ratio_high}}}};
}

nlohmann::json BenchResult::to_json() const {
  auto stat = [](const Stat& s) { return nlohmann::json{{"mean", s.mean}, {"stddev", s.stddev}, {"samples", s.samples}}; };
  nlohmann::json j = {
      {"pp_tokens_per_s", stat(pp_tokens_per_s)},
      {"tg_tokens_per_s", stat(tg_tokens_per_s)},
      {"bandwidth_before_gbps", bandwidth_before_gbps},
      {"bandwidth_after_gbps", bandwidth_after_gbps},
      {"weight_read_before_gbps", weight_read_before_gbps},
      {"weight_read_after_gbps", weight_read_after_gbps},
      {"tg_weight_read_ratio", {{"vs_fastest_read", tg_weight_read_ratio_low}, {"vs_slowest_read", tg_weight_read_ratio_high}}},
      {"weights_huge_page_share", weights_huge_page_share},
      {"decode_bytes_per_token", decode_bytes_per_token},
      {"tg_roofline_ratio", {{"vs_highest_bandwidth", tg_roofline_ratio_low}, {"vs_lowest_bandwidth", tg_roofline_ratio_high}}},
      {"prefill_flops", prefill_flops},
      {"pp_gflops", pp_gflops},
      {"fma_peak_gflops", fma_peak_gflops},
      {"pp_ratio_to_fma_peak", fma_peak_gflops > 0 ? pp_gflops / tp / fma_peak_gflops : 0.0},
      {"rss_bytes", rss_bytes},
      {"batch", batch},
      {"peak_rss_bytes", peak_rss_bytes},
      {"probe_buffer_bytes", probe_buffer_bytes},
      {"kv_cache_dtype", std::string(kv_cache_dtype_name(kv_dtype))},
      {"kv_bytes_per_cached_token", kv_bytes_per_cached_token},
  };
  j["contexts"] = nlohmann::json::array();
  for (const ContextDecode& d : contexts) j["contexts"].push_back(d.to_json());
  if (batch > 1) {
    j["batch_tg_tokens_per_s"] = stat(batch_tg_tokens_per_s);
    j["batch_speedup_vs_single"] = batch_tg_tokens_per_s.mean / tg_tokens_per_s.mean;
  }
  if (int8_peak_gops) {
    j["int8_dot_peak_gops"] = *int8_peak_gops;
    j["pp_ratio_to_int8_peak"] = pp_gflops / tp / *int8_peak_gops;
  }
  if (bf16_peak_gflops) {
    j["bf16_dot_peak_gflops"] = *bf16_peak_gflops;
    j["pp_ratio_to_bf16_peak"] = pp_gflops / tp / *bf16_peak_gflops;
  }
  if (tp > 1) {
    // Rank 0's view of the job (the fields above are rank 0's: its shard, its share of the
    // machine; pp_gflops is the whole job's work, the pp ratios are per rank against rank 0's peaks).
    nlohmann::json ranks_json = nlohmann::json::array();
    uint64_t total = 0;
    for (const RankFigures& f : ranks) {
      ranks_json.push_back({{"weight_bytes_per_token", f.weight_bytes}, {"rss_bytes", f.rss_bytes},
                            {"peak_rss_bytes", f.peak_rss_bytes}});
      total += f.weight_bytes;
    }
    j["tensor_parallel"] = {
        {"ranks", tp},
        {"rank0_weight_bytes_per_token", rank_weight_bytes},
        {"total_weight_bytes_per_token", ranks.size() == static_cast<size_t>(tp) ? nlohmann::json(total) : nlohmann::json()},
        {"bytes_reduced_per_token", comm_bytes_per_token()},
        {"collective_seconds_share", comm_share()},
        {"tg_tokens_timed", tg_tokens},
        {"tg_seconds_timed", tg_seconds},
        {"collective_seconds", comm_seconds},
        {"per_rank", ranks_json},
        {"machine_probes", probes},
    };
  }
  return j;
}

}  // namespace ilm
