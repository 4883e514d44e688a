// `internlm bench`: pp / tg throughput with the machine's limits measured in the same run.
#include <CLI/CLI.hpp>
#include <cstdio>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "common/progress.h"
#include "perf/model_bench.h"
#include "runtime/loaded_model.h"

namespace ilm::cli {

namespace {

struct BenchArgs {
  ModelArgs model;
  bool json = false;
  BenchOptions opts;
};

void bench(const BenchArgs& a) {
  // Load progress on stderr: a line redrawn in place on a terminal, plain lines otherwise.
  const std::unique_ptr<LoadProgress> progress = make_load_progress("bench");
  LoadedModel m = a.model.load(progress.get());
  BenchResult r = run_bench(m, a.opts, [](const std::string& s) { std::fprintf(stderr, "bench: %s\n", s.c_str()); });
  nlohmann::json j = r.to_json();
  j["model"] = m.dir.string();
  j["backend"] = m.backend->name();
  j["threads"] = m.backend->threads();
  j["prompt_tokens"] = a.opts.prompt_tokens;
  j["gen_tokens"] = a.opts.gen_tokens;
  j["reps"] = a.opts.reps;
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
  fmt::print("pp{:<5} {:8.2f} ± {:.2f} tok/s   {:.1f} GFLOP/s = {:.1f}% of f32 FMA peak {:.1f}{}\n",
             a.opts.prompt_tokens, r.pp_tokens_per_s.mean, r.pp_tokens_per_s.stddev, r.pp_gflops,
             100 * r.pp_gflops / r.fma_peak_gflops, r.fma_peak_gflops,
             r.bf16_peak_gflops ? fmt::format(", {:.1f}% of bf16 dot peak {:.1f}", 100 * r.pp_gflops / *r.bf16_peak_gflops,
                                              *r.bf16_peak_gflops)
                                : std::string());
  if (r.int8_peak_gops)
    fmt::print("              int8 dot-product peak {:.1f} GOP/s (pp = {:.1f}% of it)\n", *r.int8_peak_gops,
               100 * r.pp_gflops / *r.int8_peak_gops);
  fmt::print("tg{:<5} {:8.2f} ± {:.2f} tok/s   {:.2f} GB/token; read bandwidth {:.1f}-{:.1f} GB/s around the runs;\n"
             "              {:.1f}%-{:.1f}% of the bandwidth roofline\n",
             a.opts.gen_tokens, r.tg_tokens_per_s.mean, r.tg_tokens_per_s.stddev, r.decode_bytes_per_token / 1e9,
             std::min(*std::min_element(r.bandwidth_before_gbps.begin(), r.bandwidth_before_gbps.end()),
                      *std::min_element(r.bandwidth_after_gbps.begin(), r.bandwidth_after_gbps.end())),
             std::max(*std::max_element(r.bandwidth_before_gbps.begin(), r.bandwidth_before_gbps.end()),
                      *std::max_element(r.bandwidth_after_gbps.begin(), r.bandwidth_after_gbps.end())),
             100 * r.tg_roofline_ratio_low, 100 * r.tg_roofline_ratio_high);
  if (!r.weight_read_before_gbps.empty() && r.tg_weight_read_ratio_low > 0) {
    std::vector<double> wr = r.weight_read_before_gbps;
    wr.insert(wr.end(), r.weight_read_after_gbps.begin(), r.weight_read_after_gbps.end());
    fmt::print("              streaming read of the weights' own memory {:.1f}-{:.1f} GB/s around the runs: tg = "
               "{:.1f}%-{:.1f}% of it\n",
               *std::min_element(wr.begin(), wr.end()), *std::max_element(wr.begin(), wr.end()),
               100 * r.tg_weight_read_ratio_low, 100 * r.tg_weight_read_ratio_high);
  }
  if (r.batch > 1)
    fmt::print("batch{:<3} {:8.2f} ± {:.2f} tok/s aggregate over {} sequences = {:.2f}x single-sequence decode\n",
               r.batch, r.batch_tg_tokens_per_s.mean, r.batch_tg_tokens_per_s.stddev, r.batch,
               r.batch_tg_tokens_per_s.mean / r.tg_tokens_per_s.mean);
  fmt::print("memory  RSS {:.2f} GB, peak {:.2f} GB (includes the {:.2f} GB bandwidth-probe buffer)\n",
             static_cast<double>(r.rss_bytes) / 1e9, static_cast<double>(r.peak_rss_bytes) / 1e9,
             static_cast<double>(r.probe_buffer_bytes) / 1e9);
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand("bench", "Prefill / decode throughput vs this machine's measured limits");
  a->model.add_to(*cmd);
  cmd->add_option("-p,--prompt-tokens", a->opts.prompt_tokens, "Prompt length for pp")->check(CLI::PositiveNumber);
  cmd->add_option("-n,--gen-tokens", a->opts.gen_tokens, "Tokens generated for tg")->check(CLI::PositiveNumber);
  cmd->add_option("-r,--reps", a->opts.reps, "Repetitions (after one warm-up)")->check(CLI::PositiveNumber);
  cmd->add_option("-b,--batch", a->opts.batch, "Also measure batched decode of this many sequences (e.g. 16)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->callback([a] { bench(*a); });
}

}  // namespace ilm::cli
