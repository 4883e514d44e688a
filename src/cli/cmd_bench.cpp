// `internlm bench`: pp / tg throughput with the machine's limits measured in the same run.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/commands.h"
#include "common/error.h"
#include "cli/common.h"
#include "common/progress.h"
#include "perf/model_bench.h"
#include "runtime/loaded_model.h"
#include "runtime/tensor_parallel.h"

namespace ilm::cli {

namespace {

struct BenchArgs {
  ModelArgs model;
  bool json = false;
  bool no_kv_prefault = false;
  std::string kv_dtype = "f32", contexts;
  BenchOptions opts;
};

// "1024,4096" (k suffix allowed: "4k" = 4096) -> lengths; throws ilm::Error on anything else.
std::vector<int64_t> parse_contexts(const std::string& text) {
  std::vector<int64_t> out;
  for (const std::string& given : split_commas(text)) {
    std::string item = given;
    int64_t mult = 1;
    if (!item.empty() && (item.back() == 'k' || item.back() == 'K')) {
      mult = 1024;
      item.pop_back();
    }
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < 0 || v > (int64_t{1} << 40))
      throw Error(fmt::format("--context: '{}' is not a token count (e.g. 4096 or 4k)", given));
    out.push_back(static_cast<int64_t>(v) * mult);
  }
  return out;
}

// --tp N: every rank probes the machine at once (no rank waits in an MPI receive meanwhile:
// those poll and would take a core from the probe), then rank 0 runs the benchmark while the
// others follow; once rank 0's TpLeader stops them, every rank sends rank 0 its figures
// (weight bytes per token, RSS). Returns the result on rank 0, nothing on the others.
std::optional<BenchResult> bench_tp(LoadedModel& m, BenchOptions opts) {
  Communicator& comm = *m.comm;
  const int N = comm.size();
  check_bench_options(m, opts);  // on every rank: a bad option ends them all at once
  // Synthesising a long context takes rank 0 longer than a follower waits for the next step
  // (INTERNLM_TP_TIMEOUT), and would fill rank 0's KV heads only.
  for (const int64_t n : opts.contexts)
    if (n > 0) throw Error("bench --tp: --context is not supported yet under tensor parallelism (use --tp 1)");
  comm.barrier(600);
  if (comm.rank() == 0) std::fprintf(stderr, "bench: machine probes on all %d ranks at once\n", N);
  const MachineFigures fig = probe_machine(m, 2, opts.probe_compute);
  comm.barrier(600);
  const uint64_t weight_bytes = m.lm->decode_weight_bytes();
  std::optional<BenchResult> r;
  if (m.follower()) {
    follow(*m.lm, comm);
  } else {
    opts.machine = &fig;
    r = run_bench(m, opts, [](const std::string& s) { std::fprintf(stderr, "bench: %s\n", s.c_str()); });
    m.lm.reset();  // rank 0's TpLeader: stops the followers
  }
  // Every rank's figures to everyone, one broadcast per rank (exact 64-bit values).
  std::vector<BenchResult::RankFigures> ranks(static_cast<size_t>(N));
  for (int j = 0; j < N; ++j) {
    uint64_t v[3] = {weight_bytes, j == 0 && r ? r->rss_bytes : process_rss_bytes(), process_peak_rss_bytes()};
    comm.broadcast(std::as_writable_bytes(std::span<uint64_t>(v)), j);
    ranks[static_cast<size_t>(j)] = {v[0], v[1], v[2]};
  }
  if (!r) return r;
  r->ranks = std::move(ranks);
  r->probes = fmt::format(
      "run by all {} ranks at the same time before the runs, none of them waiting in MPI meanwhile: each figure is "
      "rank 0's share of its machine with the other ranks on it probing too (none during or after the runs)",
      N);
  return r;
}

void bench(const BenchArgs& a) {
  // Load progress on stderr: a line redrawn in place on a terminal, plain lines otherwise.
  BenchOptions opts = a.opts;
  opts.kv_dtype = parse_kv_cache_dtype_arg(a.kv_dtype);
  opts.kv_prefault = !a.no_kv_prefault;
  if (!a.contexts.empty()) opts.contexts = parse_contexts(a.contexts);
  const std::unique_ptr<LoadProgress> progress = make_load_progress("bench");
  LoadedModel m = a.model.load(progress.get());
  const bool tp = m.comm && m.comm->size() > 1;
  std::optional<BenchResult> tp_result;
  if (tp) {
    tp_result = bench_tp(m, opts);
    if (!tp_result) return;  // a follower: rank 0 reports
  }
  BenchResult r = tp ? std::move(*tp_result)
                     : run_bench(m, opts, [](const std::string& s) { std::fprintf(stderr, "bench: %s\n", s.c_str()); });
  nlohmann::json j = r.to_json();
  j["model"] = m.dir.string();
  j["backend"] = m.backend->name();
  j["threads"] = m.backend->threads();
  j["prompt_tokens"] = a.opts.prompt_tokens;
  j["gen_tokens"] = a.opts.gen_tokens;
  j["reps"] = a.opts.reps;
  j["kv_prefault"] = opts.kv_prefault;
  j["weight_bytes"] = m.store->total_bytes();
  j["precision"] = precision_name(m.backend->precision());
  if (a.json) {
    fmt::print("{}\n", j.dump(2));
    return;
  }
  const double gb = static_cast<double>(m.store->total_bytes()) / 1e9;
  fmt::print("model {} ({:.2f} GB weights), backend {} ({} precision), {} threads, {:.0f}% of the decode weights in "
             "huge pages\n",
             m.dir.string(), gb, m.backend->name(), precision_name(m.backend->precision()), m.backend->threads(),
             100 * r.weights_huge_page_share);
  // Under --tp the work is the whole job's and the peaks are rank 0's: the ratios are per rank.
  const double pp_rank = r.pp_gflops / r.tp;
  if (a.opts.prompt_tokens > 0)
    fmt::print("pp{:<5} {:8.2f} ± {:.2f} tok/s   {:.1f} GFLOP/s = {:.1f}% of f32 FMA peak {:.1f}{}{}\n",
             a.opts.prompt_tokens, r.pp_tokens_per_s.mean, r.pp_tokens_per_s.stddev, r.pp_gflops,
             100 * pp_rank / r.fma_peak_gflops, r.fma_peak_gflops,
             r.bf16_peak_gflops ? fmt::format(", {:.1f}% of bf16 dot peak {:.1f}", 100 * pp_rank / *r.bf16_peak_gflops,
                                              *r.bf16_peak_gflops)
                                : std::string(),
             r.tp > 1 ? fmt::format(" (GFLOP/s of all {} ranks; the ratios: 1/{} of it against rank 0's peaks)", r.tp, r.tp)
                      : std::string());
  if (r.int8_peak_gops && a.opts.prompt_tokens > 0)
    fmt::print("              int8 dot-product peak {:.1f} GOP/s (pp = {:.1f}% of it)\n", *r.int8_peak_gops,
               100 * pp_rank / *r.int8_peak_gops);
  fmt::print("KV cache {}: {:.1f} KiB per cached token (all layers, K and V{})\n", kv_cache_dtype_name(r.kv_dtype),
             static_cast<double>(r.kv_bytes_per_cached_token) / 1024.0, r.tp > 1 ? ", rank 0's KV heads" : "");
  for (const ContextDecode& d : r.contexts) {
    if (d.context == 0 && r.contexts.size() == 1) break;  // the plain tg line below says it all
    std::vector<double> bw = d.bandwidth_before_gbps;
    bw.insert(bw.end(), d.bandwidth_after_gbps.begin(), d.bandwidth_after_gbps.end());
    fmt::print("tg{:<5} @ context {:<6} {:8.2f} ± {:.2f} tok/s   {:.3f} GB/token ({:.3f} GB of it KV); {:.1f}%-{:.1f}% of "
               "the roofline at {:.1f}-{:.1f} GB/s{}\n",
               a.opts.gen_tokens, d.context, d.tg_tokens_per_s.mean, d.tg_tokens_per_s.stddev,
               d.decode_bytes_per_token / 1e9, d.kv_bytes_per_token / 1e9, 100 * d.roofline_ratio_low,
               100 * d.roofline_ratio_high, *std::min_element(bw.begin(), bw.end()),
               *std::max_element(bw.begin(), bw.end()),
               d.synthesized ? fmt::format(" (the {} cached tokens synthesised into the cache in {:.1f} s, not prefilled)",
                                           d.context, d.synth_seconds)
                             : std::string());
  }
  // The first context's tg in full (bandwidths, the weight read); the same as before --context.
  std::vector<double> bw = r.bandwidth_before_gbps;
  bw.insert(bw.end(), r.bandwidth_after_gbps.begin(), r.bandwidth_after_gbps.end());
  fmt::print("tg{:<5} {:8.2f} ± {:.2f} tok/s   {:.2f} GB/token{}; read bandwidth {:.1f}-{:.1f} GB/s {};\n"
             "              {:.1f}%-{:.1f}% of the bandwidth roofline{}\n",
             a.opts.gen_tokens, r.tg_tokens_per_s.mean, r.tg_tokens_per_s.stddev, r.decode_bytes_per_token / 1e9,
             r.tp > 1 ? " (rank 0's shard)" : "", *std::min_element(bw.begin(), bw.end()),
             *std::max_element(bw.begin(), bw.end()),
             r.tp > 1 ? "(rank 0, all ranks probing at once, before the runs)" : "around the runs",
             100 * r.tg_roofline_ratio_low, 100 * r.tg_roofline_ratio_high,
             r.contexts.front().context > 0 ? fmt::format(" (at context {})", r.contexts.front().context) : std::string());
  if (!r.weight_read_before_gbps.empty() && r.tg_weight_read_ratio_low > 0) {
    std::vector<double> wr = r.weight_read_before_gbps;
    wr.insert(wr.end(), r.weight_read_after_gbps.begin(), r.weight_read_after_gbps.end());
    fmt::print("              streaming read of the weights' own memory {:.1f}-{:.1f} GB/s {}: tg = "
               "{:.1f}%-{:.1f}% of it\n",
               *std::min_element(wr.begin(), wr.end()), *std::max_element(wr.begin(), wr.end()),
               r.tp > 1 ? "(rank 0's shard, before the runs)" : "around the runs",
               100 * r.tg_weight_read_ratio_low, 100 * r.tg_weight_read_ratio_high);
  }
  if (r.batch > 1)
    fmt::print("batch{:<3} {:8.2f} ± {:.2f} tok/s aggregate over {} sequences = {:.2f}x single-sequence decode\n",
               r.batch, r.batch_tg_tokens_per_s.mean, r.batch_tg_tokens_per_s.stddev, r.batch,
               r.batch_tg_tokens_per_s.mean / r.tg_tokens_per_s.mean);
  if (r.tp == 1) {
    fmt::print("memory  RSS {:.2f} GB, peak {:.2f} GB (includes the {:.2f} GB bandwidth-probe buffer)\n",
               static_cast<double>(r.rss_bytes) / 1e9, static_cast<double>(r.peak_rss_bytes) / 1e9,
               static_cast<double>(r.probe_buffer_bytes) / 1e9);
    return;
  }
  // --tp: what the ranks read and send per token, and each rank's memory.
  const ModelConfig& c = m.config;
  uint64_t total = 0;
  std::string per_rank, rss, peak;
  for (size_t i = 0; i < r.ranks.size(); ++i) {
    total += r.ranks[i].weight_bytes;
    const char* sep = i ? " / " : "";
    per_rank += fmt::format("{}{:.3f}", sep, static_cast<double>(r.ranks[i].weight_bytes) / 1e9);
    rss += fmt::format("{}{:.2f}", sep, static_cast<double>(r.ranks[i].rss_bytes) / 1e9);
    peak += fmt::format("{}{:.2f}", sep, static_cast<double>(r.ranks[i].peak_rss_bytes) / 1e9);
  }
  fmt::print("tp {}    weights read per decode token: {:.3f} GB by rank 0 (its shard); {:.3f} GB over all ranks "
             "({} GB)\n",
             r.tp, static_cast<double>(r.rank_weight_bytes) / 1e9, static_cast<double>(total) / 1e9, per_rank);
  fmt::print("        reduced {:.1f} KiB per token (rank 0's sends: 2 sums x {} layers x {} hidden x 4 B x 2(N-1)/N; "
             "rank 0 receives the logits gather); collectives {:.1f}% of tg step time ({:.3f} of {:.3f} s)\n",
             r.comm_bytes_per_token() / 1024.0, c.num_layers, c.hidden_size, 100 * r.comm_share(), r.comm_seconds,
             r.tg_seconds);
  fmt::print("        machine probes: {}\n", r.probes);
  fmt::print("memory  RSS per rank {} GB (rank 0 after the runs, the others once stopped), peak {} GB (each "
             "includes the {:.2f} GB probe buffer)\n",
             rss, peak, static_cast<double>(r.probe_buffer_bytes) / 1e9);
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand("bench", "Prefill / decode throughput vs this machine's measured limits");
  a->model.add_to(*cmd);
  a->model.add_tp_to(*cmd);
  cmd->add_option("-p,--prompt-tokens", a->opts.prompt_tokens, "Prompt length for pp (0: no pp)")->check(CLI::NonNegativeNumber);
  cmd->add_option("-n,--gen-tokens", a->opts.gen_tokens, "Tokens generated for tg")->check(CLI::PositiveNumber);
  cmd->add_option("-r,--reps", a->opts.reps, "Repetitions (after one warm-up)")->check(CLI::PositiveNumber);
  cmd->add_option("-b,--batch", a->opts.batch, "Also measure batched decode of this many sequences (e.g. 16)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--context", a->contexts,
                  "Decode after N cached tokens, synthesised directly into the KV cache (not prefilled); a list "
                  "times each (e.g. 1024,4096,16k,32k; default 0: after BOS alone). Bytes per token count the KV "
                  "of every layer at that context");
  add_kv_cache_dtype_option(*cmd, a->kv_dtype, "of pp and tg");
  cmd->add_flag("--no-kv-prefault", a->no_kv_prefault,
                "Do not fault in the KV memory before timing tg (shows what first-touch page faults cost)");
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->callback([a] { bench(*a); });
}

}  // namespace ilm::cli
