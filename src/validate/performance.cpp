// Stage 7, performance: prefill and decode throughput with the ratios to this machine's measured
// bandwidth and FMA peak (perf/model_bench, what `internlm bench` prints); serving latency
// (TTFT / TPOT / ITL / E2EL percentiles) and throughput per concurrency level from
// `internlm bench-serve` against `internlm serve`; and a context-length sweep of decode speed
// against its bandwidth roofline (and prefill time where it fits) within a time budget.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "common/error.h"
#include "io/json_file.h"
#include "model/kv_cache.h"
#include "perf/machine_probe.h"
#include "perf/model_bench.h"
#include "perf/synthetic_context.h"
#include "runtime/sampler.h"
#include "validate/serve_process.h"
#include "validate/stages.h"

namespace ilm::validate {

namespace {

using nlohmann::json;

std::vector<TokenId> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const auto lo = static_cast<TokenId>(std::min<int64_t>(1000, vocab / 2));
  const auto hi = static_cast<TokenId>(std::max<int64_t>(lo, std::min<int64_t>(vocab, 92000) - 1));
  std::uniform_int_distribution<TokenId> d(lo, hi);
  std::vector<TokenId> ids(static_cast<size_t>(n), 1);
  for (size_t i = 1; i < ids.size(); ++i) ids[i] = d(rng);
  return ids;
}

// A figure held to a limit when the limit is set (> 0), else recorded as info.
Check limit_check(std::string id, std::string name, double value, double limit, bool is_min, std::string unit,
                  std::string detail, std::string source) {
  Check c;
  c.id = std::move(id);
  c.name = std::move(name);
  c.value = std::isfinite(value) ? json(value) : json();
  c.unit = std::move(unit);
  c.source = std::move(source);
  if (limit > 0) {
    c.threshold = limit;
    const bool ok = std::isfinite(value) && (is_min ? value >= limit : value <= limit);
    c.status = ok ? Status::Pass : Status::Fail;
    c.detail = fmt::format("{}; {} {}", detail, is_min ? "minimum" : "maximum", limit);
  } else {
    c.status = Status::Info;
    c.detail = fmt::format("{} (no limit set)", detail);
  }
  return c;
}

void model_bench_part(Context& ctx, StageResult& r) {
  LoadedModel& m = *ctx.model;
  BenchOptions bo;
  const std::string mode = ctx.quick() ? "quick" : "full";
  bo.prompt_tokens = static_cast<int64_t>(ctx.th.get(fmt::format("performance.{}_pp_tokens", mode)));
  bo.gen_tokens = static_cast<int64_t>(ctx.th.get(fmt::format("performance.{}_tg_tokens", mode)));
  bo.reps = static_cast<int>(ctx.th.get(fmt::format("performance.{}_reps", mode)));
  const int64_t limit = m.lm->context_limit();
  bo.prompt_tokens = std::min(bo.prompt_tokens, std::max<int64_t>(1, limit / 2));
  bo.gen_tokens = std::min(bo.gen_tokens, std::max<int64_t>(1, limit / 4));
  const std::string src = fmt::format(
      "perf/model_bench as `internlm bench --model {} --backend {} --quant {} -p {} -n {} "
      "-r {}`: bandwidth probed before and after each decode run, f32 FMA peak in "
      "the same run",
      ctx.opts.model_dir.string(), ctx.opts.backend, ctx.opts.quant, bo.prompt_tokens, bo.gen_tokens, bo.reps);
  BenchResult b;
  try {
    b = run_bench(m, bo, [&](const std::string& s) { ctx.note(fmt::format("bench: {}", s)); });
  } catch (const Error& e) {
    r.add(limit_check("performance.bench", "Throughput benchmark", NAN, 1, true, "", e.what(), src));
    return;
  }
  json bj = b.to_json();
  bj["settings"] = {{"pp_tokens", bo.prompt_tokens},
                    {"tg_tokens", bo.gen_tokens},
                    {"reps", bo.reps},
                    {"threads", m.backend->threads()}};
  r.data["bench"] = bj;
  const double bw_hi = std::max(*std::max_element(b.bandwidth_before_gbps.begin(), b.bandwidth_before_gbps.end()),
                                *std::max_element(b.bandwidth_after_gbps.begin(), b.bandwidth_after_gbps.end()));
  const double small = ctx.checkpoint.is_object() ? weights_in_format(ctx.checkpoint, ctx.opts.quant) : 0;
  const std::string cache_note =
      small > 0 && small < 256e6 ? " (weights this small stay in the CPU caches: the ratio is not a bandwidth figure)"
                                 : "";
  r.add(limit_check("performance.prefill", "Prefill throughput", b.pp_tokens_per_s.mean,
                    ctx.th.get("performance.min_prefill_tokens_per_s"), true, "tok/s",
                    fmt::format("pp{}: {:.1f} ± {:.1f} tok/s ({:.1f} GFLOP/s)", bo.prompt_tokens,
                                b.pp_tokens_per_s.mean, b.pp_tokens_per_s.stddev, b.pp_gflops),
                    src));
  r.add(limit_check(
      "performance.decode", "Decode throughput", b.tg_tokens_per_s.mean,
      ctx.th.get("performance.min_decode_tokens_per_s"), true, "tok/s",
      fmt::format("tg{}: {:.1f} ± {:.1f} tok/s", bo.gen_tokens, b.tg_tokens_per_s.mean, b.tg_tokens_per_s.stddev),
      src));
  r.add(limit_check("performance.decode_roofline", "Decode vs bandwidth roofline", b.tg_roofline_ratio_low,
                    ctx.th.get("performance.min_decode_roofline_ratio"), true, "",
                    fmt::format("{:.1f}%–{:.1f}% of the read-bandwidth roofline ({} per token; {:.1f} GB/s fastest "
                                "probe){}",
                                100 * b.tg_roofline_ratio_low, 100 * b.tg_roofline_ratio_high,
                                gb(b.decode_bytes_per_token), bw_hi, cache_note),
                    src));
  const double fma_ratio = b.fma_peak_gflops > 0 ? b.pp_gflops / b.fma_peak_gflops : NAN;
  r.add(limit_check(
      "performance.prefill_fma", "Prefill vs f32 FMA peak", fma_ratio, ctx.th.get("performance.min_prefill_fma_ratio"),
      true, "",
      fmt::format("{:.1f}% of the measured f32 FMA peak ({:.1f} of {:.1f} GFLOP/s){}", 100 * fma_ratio, b.pp_gflops,
                  b.fma_peak_gflops,
                  b.bf16_peak_gflops ? fmt::format("; bf16 dot peak {:.1f} GFLOP/s", *b.bf16_peak_gflops) : ""),
      src));
}

void serving_part(Context& ctx, StageResult& r) {
  const Options& o = ctx.opts;
  const auto& levels = ctx.th.list("serving.concurrency");
  std::vector<std::string> conc;
  int max_c = 1;
  for (double c : levels) {
    conc.push_back(std::to_string(static_cast<int>(c)));
    max_c = std::max(max_c, static_cast<int>(c));
  }
  const std::string mode = ctx.quick() ? "quick" : "full";
  const int64_t in_len = static_cast<int64_t>(ctx.th.get(fmt::format("serving.{}_input_len", mode)));
  const int64_t out_len = static_cast<int64_t>(ctx.th.get(fmt::format("serving.{}_output_len", mode)));
  ServeProcess serve;
  try {
    ctx.note("starting internlm serve for bench-serve");
    serve = start_serve(ctx, "serve-bench", {"--max-seqs", std::to_string(max_c)});
  } catch (const Error& e) {
    r.add(limit_check("performance.serving", "Serving benchmark", NAN, 1, true, "", e.what(), ""));
    return;
  }
  const auto json_path = o.out_dir / "bench-serve.json";
  std::vector<std::string> argv = {o.self_exe.string(),
                                   "bench-serve",
                                   "--url",
                                   serve.url(),
                                   "--concurrency",
                                   fmt::format("{}", fmt::join(conc, ",")),
                                   "--input-len",
                                   std::to_string(in_len),
                                   "--output-len",
                                   std::to_string(out_len),
                                   "--seed",
                                   "1",
                                   "--json",
                                   json_path.string(),
                                   "--progress-interval",
                                   "10"};
  if (const auto n = static_cast<int64_t>(ctx.th.get("serving.num_prompts")); n > 0) {
    argv.push_back("--num-prompts");
    argv.push_back(std::to_string(n));
  }
  const std::string cmd = shell_join(argv);
  r.data["serving_command"] = cmd;
  r.data["serve_command"] = shell_join(serve.argv);
  ctx.note(fmt::format("bench-serve at concurrency {} ({} prompt tokens, {} output tokens)", fmt::join(conc, ","),
                       in_len, out_len));
  std::error_code ec;
  std::filesystem::remove(json_path, ec);
  // The time allowed: serving.timeout_s, or twice the time the run should take at the prefill
  // and single-sequence decode rates measured just before, if that is longer (a 7B model's
  // --full levels take ~10 minutes on 2 cores: the fixed limit alone cut them off).
  double timeout = ctx.th.get("serving.timeout_s");
  if (r.data.contains("bench")) {
    const double pp = r.data["bench"]["pp_tokens_per_s"]["mean"].get<double>();
    const double tg = r.data["bench"]["tg_tokens_per_s"]["mean"].get<double>();
    const auto n_fixed = static_cast<int64_t>(ctx.th.get("serving.num_prompts"));
    double predicted = 0;
    for (double c : levels) {
      const int64_t n = n_fixed > 0 ? n_fixed : std::max<int64_t>(4, 2 * static_cast<int64_t>(c));
      const auto waves = static_cast<double>((n + static_cast<int64_t>(c) - 1) / static_cast<int64_t>(c));
      if (pp > 0 && tg > 0)
        predicted += static_cast<double>(n * in_len) / pp + waves * static_cast<double>(out_len) / tg;
    }
    if (2 * predicted > timeout) {
      timeout = 2 * predicted;
      ctx.note(fmt::format("bench-serve allowed {:.0f} s (twice the {:.0f} s predicted from this run's pp and tg rates)",
                           timeout, predicted));
    }
  }
  r.data["serving_timeout_s"] = timeout;
  std::optional<int> st;
  try {
    st = run_command(argv, o.out_dir / "bench-serve.log", o.out_dir / "bench-serve.log", timeout);
  } catch (const Error& e) {
    serve.proc->stop(30);
    r.add(limit_check("performance.serving", "Serving benchmark", NAN, 1, true, "", e.what(), cmd));
    return;
  }
  serve.proc->stop(30);
  const std::string src = fmt::format("{} against {}", cmd, shell_join(serve.argv));
  json bs;
  try {
    bs = read_json_file(json_path);
  } catch (const Error& e) {
    r.add(limit_check("performance.serving", "Serving benchmark", NAN, 1, true, "",
                      fmt::format("bench-serve {} and wrote no result ({}); last lines of bench-serve.log:\n{}",
                                  st ? fmt::format("exited {}", *st) : std::string("timed out"), e.what(),
                                  tail_lines(o.out_dir / "bench-serve.log", 6)),
                      src));
    return;
  }
  json lv = json::array();
  int64_t failed = 0;
  for (const auto& L : bs.value("levels", json::array())) {
    json row = {{"concurrency", L["concurrency"]},
                {"completed", L["completed"]},
                {"failed", L["failed"]},
                {"duration_s", L["duration_s"]},
                {"request_throughput", L["request_throughput"]},
                {"output_throughput", L["output_throughput"]},
                {"total_token_throughput", L["total_token_throughput"]},
                {"mean_output_len", L["mean_output_len"]},
                {"ttft_ms", L["ttft_ms"]},
                {"tpot_ms", L["tpot_ms"]},
                {"itl_ms", L["itl_ms"]},
                {"e2el_ms", L["e2el_ms"]}};
    std::vector<double> ttft, e2el;
    for (const auto& q : L.value("requests", json::array())) {
      if (!q.value("ok", false)) continue;
      if (q["ttft_s"].is_number()) ttft.push_back(q["ttft_s"].get<double>() * 1000);
      if (q["e2el_s"].is_number()) e2el.push_back(q["e2el_s"].get<double>() * 1000);
    }
    std::sort(ttft.begin(), ttft.end());
    std::sort(e2el.begin(), e2el.end());
    row["ttft_ms_samples"] = ttft;
    row["e2el_ms_samples"] = e2el;
    failed += L.value("failed", int64_t{0});
    lv.push_back(row);
  }
  r.data["serving"] = {{"levels", lv}, {"input_len", in_len}, {"output_len", out_len}, {"exit_status", st ? *st : -1}};
  {
    Check c;
    c.id = "performance.serving_failures";
    c.name = "Serving: failed requests";
    const double lim = ctx.th.get("serving.max_failed_requests");
    c.value = static_cast<double>(failed);
    c.threshold = lim;
    const bool ok = static_cast<double>(failed) <= lim && !lv.empty() && st && *st == 0;
    c.status = ok ? Status::Pass : Status::Fail;
    c.detail = lv.empty() ? "bench-serve reported no levels"
                          : fmt::format("{} failed request(s) over {} level(s) (bench-serve exit {}); allowed {}",
                                        failed, lv.size(), st ? *st : -1, lim);
    c.source = src;
    r.add(c);
  }
  for (const auto& L : lv) {
    const int c = L["concurrency"].get<int>();
    auto p99 = [&](const char* k) { return L[k].is_object() ? L[k].value("p99", NAN) : NAN; };
    auto med = [&](const char* k) { return L[k].is_object() ? L[k].value("median", NAN) : NAN; };
    const std::string base = fmt::format("performance.serving_c{}", c);
    r.add(limit_check(base + ".ttft", fmt::format("TTFT P99 @ concurrency {}", c), p99("ttft_ms"),
                      ctx.th.get("serving.max_ttft_p99_ms"), false, "ms",
                      fmt::format("TTFT median {:.1f} ms, P90 {:.1f} ms, P99 {:.1f} ms", med("ttft_ms"),
                                  L["ttft_ms"].value("p90", NAN), p99("ttft_ms")),
                      src));
    r.add(limit_check(base + ".tpot", fmt::format("TPOT P99 @ concurrency {}", c), p99("tpot_ms"),
                      ctx.th.get("serving.max_tpot_p99_ms"), false, "ms",
                      fmt::format("TPOT median {:.2f} ms, P99 {:.2f} ms; ITL median {:.2f} ms, P99 {:.2f} ms",
                                  med("tpot_ms"), p99("tpot_ms"), med("itl_ms"), p99("itl_ms")),
                      src));
    r.add(limit_check(base + ".itl", fmt::format("ITL P99 @ concurrency {}", c), p99("itl_ms"),
                      ctx.th.get("serving.max_itl_p99_ms"), false, "ms",
                      fmt::format("ITL P90 {:.2f} ms, P99 {:.2f} ms", L["itl_ms"].value("p90", NAN), p99("itl_ms")),
                      src));
    r.add(limit_check(
        base + ".e2el", fmt::format("E2E latency P99 @ concurrency {}", c), p99("e2el_ms"),
        ctx.th.get("serving.max_e2el_p99_ms"), false, "ms",
        fmt::format("E2EL median {:.1f} ms, P99 {:.1f} ms; {:.1f} output tok/s, {:.2f} req/s", med("e2el_ms"),
                    p99("e2el_ms"), L["output_throughput"].get<double>(), L["request_throughput"].get<double>()),
        src));
  }
  if (lv.size() >= 2) {
    const double lo = lv.front()["output_throughput"].get<double>(), hi = lv.back()["output_throughput"].get<double>();
    r.add(limit_check("performance.serving_scaling", "Throughput scaling", lo > 0 ? hi / lo : NAN,
                      ctx.th.get("serving.min_throughput_scaling"), true, "x",
                      fmt::format("output throughput {:.1f} tok/s at concurrency {} vs {:.1f} at {}: {:.2f}x", hi,
                                  lv.back()["concurrency"].get<int>(), lo, lv.front()["concurrency"].get<int>(),
                                  lo > 0 ? hi / lo : NAN),
                      src));
  }
}

// One length of the sweep: D greedy decode steps after L cached tokens, timed, with the read
// bandwidth probed right before and after, so the row carries its own roofline (weights + the
// KV of every layer at that context, in the cache's dtype, per token).
json sweep_decode(LoadedModel& m, MachineProbe& probe, KvCache& cache, std::vector<float>& logits, int64_t D,
                  DType kv_t) {
  const double bw0 = probe.read_bandwidth_gbps();
  const double t1 = now_seconds();
  for (int64_t i = 0; i < D; ++i) {
    const TokenId next[1] = {argmax(logits)};
    m.lm->forward(next, cache, logits, false);
  }
  const double decode = now_seconds() - t1;
  ContextDecode d;
  d.tg_tokens_per_s = Stat::of({static_cast<double>(D) / decode});
  // The mean context of the timed steps: the KV bytes a step reads grow by one row per step.
  const double mean_ctx = static_cast<double>(cache.length()) - static_cast<double>(D + 1) / 2.0;
  d.decode_bytes_per_token = static_cast<double>(m.lm->decode_weight_bytes()) +
                             static_cast<double>(m.lm->kv_bytes_per_token(kv_t)) * mean_ctx;
  d.bandwidth_before_gbps = {bw0};
  d.bandwidth_after_gbps = {probe.read_bandwidth_gbps()};
  d.compute_ratios();
  const double bw_hi = std::max(bw0, d.bandwidth_after_gbps[0]);
  return {{"decode_tokens_per_s", d.tg_tokens_per_s.mean},
          {"decode_tokens", D},
          {"bytes_per_token", d.decode_bytes_per_token},
          {"bandwidth_gbps", {bw0, d.bandwidth_after_gbps[0]}},
          {"roofline_tokens_per_s", bw_hi * 1e9 / d.decode_bytes_per_token},
          {"roofline_ratio", {{"vs_highest_bandwidth", d.roofline_ratio_low},
                              {"vs_lowest_bandwidth", d.roofline_ratio_high}}}};
}

// The context sweep: decode speed against its bandwidth roofline at every length, and the
// prefill time where it fits the budget. A length whose prefill is predicted to overrun the
// budget (a 32k-token prompt takes the better part of an hour on a 2-core machine with a 7B
// model) is decoded after a context synthesised directly into the KV cache instead
// (perf/synthetic_context.h: the same bytes and work per step; only the logits are made up),
// and the row says so.
void sweep_part(Context& ctx, StageResult& r) {
  LoadedModel& m = *ctx.model;
  const std::string mode = ctx.quick() ? "quick" : "full";
  const auto& lengths = ctx.th.list(fmt::format("sweep.{}_lengths", mode));
  const double budget = ctx.th.get(fmt::format("sweep.{}_budget_s", mode));
  const int64_t D = std::max<int64_t>(1, static_cast<int64_t>(ctx.th.get("sweep.decode_tokens")));
  const int64_t limit = m.lm->context_limit();
  const int64_t V = m.config.vocab_size;
  const DType kv_t = parse_kv_cache_dtype(ctx.opts.kv_dtype).value_or(DType::F32);
  const double kv_per_token = static_cast<double>(m.lm->kv_bytes_per_token(kv_t));
  double pp_rate = r.data.contains("bench") ? r.data["bench"]["pp_tokens_per_s"]["mean"].get<double>() : 0;
  const double t_start = now_seconds();
  json rows = json::array();
  double last_len = 0, last_prefill = 0;
  int measured = 0;
  std::vector<float> logits(static_cast<size_t>(V));
  MachineProbe probe(m.backend->threads());
  for (double lf : lengths) {
    const auto L = static_cast<int64_t>(lf);
    json row = {{"length", L}};
    const double elapsed = now_seconds() - t_start;
    // Quadratic in the length (attention) from the previous prefill: conservative for big models.
    const double predicted = last_prefill > 0
                                 ? last_prefill * std::pow(static_cast<double>(L) / last_len, 2.0)
                                 : (pp_rate > 0 ? 1.2 * static_cast<double>(L) / pp_rate : 0);
    const MemoryInfo mem = memory_info();
    const double kv = kv_per_token * static_cast<double>(L + D + 1);
    std::string skip;
    if (L + D + 1 > limit)
      skip = fmt::format("beyond the model's context limit {}", limit);
    else if (kv + static_cast<double>(probe.buffer_bytes()) > mem.available_bytes * 0.9)
      skip = fmt::format("needs {} of {} KV cache, {} available", gb(kv), kv_cache_dtype_name(kv_t),
                         gb(mem.available_bytes));
    else if (elapsed >= budget && measured > 0)  // the first length is always measured
      skip = fmt::format("the {} s budget (sweep.{}_budget_s) is spent", budget, mode);
    if (!skip.empty()) {
      row["skipped"] = skip;
      rows.push_back(row);
      ctx.note(fmt::format("sweep {}: skipped: {}", L, skip));
      continue;
    }
    KvCache cache = m.lm->new_cache_as(L + D + 1, kv_t);
    if (predicted > 0 && elapsed + predicted > budget) {
      row["context"] = "synthesized";
      row["prefill_skipped"] = fmt::format("predicted {:.0f} s would overrun the {} s budget (sweep.{}_budget_s; {:.0f} s used)",
                                           predicted, budget, mode, elapsed);
      ctx.note(fmt::format("sweep {}: {} synthesised cached tokens (prefill skipped: {}), then {} decode steps", L, L,
                           row["prefill_skipped"].get<std::string>(), D));
      fill_synthetic_context(cache, L, static_cast<uint64_t>(L));
      const TokenId first[1] = {1};
      m.lm->forward(first, cache, logits, false);
    } else {
      ctx.note(fmt::format("sweep {}: prefill, then {} decode steps", L, D));
      const auto ids = random_ids(L, V, static_cast<uint64_t>(L));
      const double t0 = now_seconds();
      m.lm->forward(ids, cache, logits, false);
      const double prefill = now_seconds() - t0;
      row["context"] = "prefilled";
      row["prefill_s"] = prefill;
      row["prefill_tokens_per_s"] = static_cast<double>(L) / prefill;
      last_len = static_cast<double>(L);
      last_prefill = prefill;
    }
    row.update(sweep_decode(m, probe, cache, logits, D, kv_t));
    rows.push_back(row);
    ++measured;
  }
  r.data["sweep"] = {{"rows", rows},
                     {"budget_s", budget},
                     {"decode_tokens", D},
                     {"context_limit", limit},
                     {"kv_cache_dtype", kv_cache_dtype_name(kv_t)}};
  const std::string src = fmt::format(
      "one sequence per length: a random-token prompt prefilled in one forward (chunks of 512 inside) where "
      "the budget allows, else that many cached tokens synthesised into the KV cache; then {} greedy decode "
      "steps, the read bandwidth probed before and after (roofline = bandwidth / (decode weights + KV of every "
      "layer at that context)); {} KV cache, backend {}, budget {} s",
      D, kv_cache_dtype_name(kv_t), ctx.opts.backend, budget);
  std::vector<const json*> done;
  for (const auto& row : rows)
    if (row.contains("decode_tokens_per_s")) done.push_back(&row);
  std::vector<std::string> parts;
  for (const auto& row : rows) {
    const int64_t len = row["length"].get<int64_t>();
    if (!row.contains("decode_tokens_per_s")) {
      parts.push_back(fmt::format("{}: skipped ({})", len, row["skipped"].get<std::string>()));
      continue;
    }
    const std::string pre = row.contains("prefill_s") ? fmt::format("prefill {:.2f} s", row["prefill_s"].get<double>())
                                                      : std::string("synthesised context");
    parts.push_back(fmt::format("{}: {}, decode {:.2f} tok/s = {:.0f}% of its roofline", len, pre,
                                row["decode_tokens_per_s"].get<double>(),
                                100 * row["roofline_ratio"]["vs_highest_bandwidth"].get<double>()));
  }
  if (done.empty()) {
    Check c;
    c.id = "performance.sweep";
    c.name = "Context-length sweep";
    c.status = Status::Skip;
    c.detail = fmt::format("skipped: {}", fmt::join(parts, "; "));
    c.source = src;
    r.add(c);
    return;
  }
  const double first = (*done.front())["decode_tokens_per_s"].get<double>();
  const double last = (*done.back())["decode_tokens_per_s"].get<double>();
  r.add(limit_check("performance.sweep", "Context-length sweep", first > 0 ? last / first : NAN,
                    ctx.th.get("sweep.min_decode_speed_ratio"), true, "x",
                    fmt::format("{}; decode at the longest over the shortest length {:.2f}x", fmt::join(parts, "; "),
                                first > 0 ? last / first : NAN),
                    src));
}

}  // namespace

void stage_performance(Context& ctx, StageResult& r) {
  if (!ctx.model) {
    r.skip(fmt::format("the model did not load ({})", ctx.model_error));
    return;
  }
  model_bench_part(ctx, r);
  serving_part(ctx, r);
  sweep_part(ctx, r);
}

}  // namespace ilm::validate
