// Stage 4, precision: the chosen backend against the ref backend on the same weights over the
// fixed prompt set — per-position logits error, KL divergence, top-1 agreement, and greedy
// sequences over N tokens — and, with --golden, against logits produced elsewhere (e.g. by the
// official Hugging Face implementation through tools/hf_reference.py).
#include <algorithm>
#include <cmath>
#include <fstream>

#include <fmt/format.h>

#include "common/error.h"
#include "io/json_file.h"
#include "model/registry.h"
#include "runtime/sampler.h"
#include "validate/precision.h"
#include "validate/prompts.h"
#include "validate/stages.h"

namespace ilm::validate {

namespace fs = std::filesystem;

RowCompare compare_row(std::span<const float> test, std::span<const float> ref, double tie_rel) {
  RowCompare r;
  double peak = 0;
  size_t at = 0, bt = 0;
  double mt = -INFINITY, mr = -INFINITY;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double a = test[i], b = ref[i];
    const double d = std::fabs(a - b);
    if (!(d <= r.max_abs)) r.max_abs = std::isnan(d) ? INFINITY : d;
    peak = std::max(peak, std::fabs(b));
    if (a > mt) mt = a, at = i;
    if (b > mr) mr = b, bt = i;
  }
  r.rel = peak > 0 ? r.max_abs / peak : (r.max_abs > 0 ? INFINITY : 0);
  // KL(p_ref || p_test) with log-sum-exp in double.
  double zr = 0, zt = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    zr += std::exp(static_cast<double>(ref[i]) - mr);
    zt += std::exp(static_cast<double>(test[i]) - mt);
  }
  const double lzr = mr + std::log(zr), lzt = mt + std::log(zt);
  double kl = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double lpr = ref[i] - lzr, lpt = test[i] - lzt;
    kl += std::exp(lpr) * (lpr - lpt);
  }
  r.kl = std::isfinite(kl) ? std::max(0.0, kl) : INFINITY;
  r.top1_agree = at == bt;
  if (!r.top1_agree) r.near_tie = static_cast<double>(ref[bt]) - static_cast<double>(ref[at]) <= 2 * tie_rel * peak;
  return r;
}

void LogitsSummary::add(const RowCompare& r) {
  ++positions;
  top1_agree += r.top1_agree ? 1 : 0;
  near_ties += r.near_tie ? 1 : 0;
  max_abs = std::max(max_abs, r.max_abs);
  max_rel = std::max(max_rel, r.rel);
  max_kl = std::max(max_kl, r.kl);
  kl_sum_ += r.kl;
}

void LogitsSummary::finish() { mean_kl = positions ? kl_sum_ / static_cast<double>(positions) : 0; }
double LogitsSummary::top1_rate() const {
  return positions ? static_cast<double>(top1_agree + near_ties) / static_cast<double>(positions) : 1;
}
double LogitsSummary::top1_rate_raw() const {
  return positions ? static_cast<double>(top1_agree) / static_cast<double>(positions) : 1;
}

namespace {
nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json("inf"); }
}  // namespace

nlohmann::json LogitsSummary::to_json() const {
  return {{"positions", positions},   {"max_abs", num(max_abs)},     {"max_rel", num(max_rel)},
          {"mean_kl", num(mean_kl)}, {"max_kl", num(max_kl)},       {"top1_agree", top1_agree},
          {"near_ties", near_ties},  {"top1_rate", top1_rate()},   {"top1_rate_raw", top1_rate_raw()}};
}

namespace {

std::vector<float> all_logits(CausalLM& lm, std::span<const TokenId> ids) {
  const int64_t V = lm.config().vocab_size;
  std::vector<float> out(ids.size() * static_cast<size_t>(V));
  KvCache cache = lm.new_cache(static_cast<int64_t>(ids.size()));
  lm.forward(ids, cache, out, true);
  return out;
}

struct Greedy {
  std::vector<TokenId> tokens;
  std::vector<double> margins;  // top1 - top2 score per step
  std::vector<double> peaks;    // max |score| per step
  std::vector<std::vector<float>> logits;
};

Greedy greedy(CausalLM& lm, std::span<const TokenId> prompt, int64_t n, bool keep_logits) {
  const int64_t V = lm.config().vocab_size;
  Greedy g;
  std::vector<float> logits(static_cast<size_t>(V));
  KvCache cache = lm.new_cache(static_cast<int64_t>(prompt.size()) + n + 1);
  lm.forward(prompt, cache, logits, false);
  for (int64_t i = 0; i < n; ++i) {
    const TokenId t = argmax(logits);
    float second = -INFINITY, peak = 0;
    for (int64_t v = 0; v < V; ++v) {
      if (v != t) second = std::max(second, logits[static_cast<size_t>(v)]);
      peak = std::max(peak, std::fabs(logits[static_cast<size_t>(v)]));
    }
    g.peaks.push_back(peak);
    g.tokens.push_back(t);
    g.margins.push_back(static_cast<double>(logits[static_cast<size_t>(t)]) - second);
    if (keep_logits) g.logits.push_back(logits);
    if (i + 1 < n) {
      const TokenId one[1] = {t};
      lm.forward(one, cache, logits, false);
    }
  }
  return g;
}

}  // namespace

void stage_precision(Context& ctx, StageResult& r) {
  const Options& o = ctx.opts;
  if (!ctx.model) {
    r.skip(fmt::format("the model did not load ({})", ctx.model_error));
    return;
  }
  LoadedModel& m = *ctx.model;
  const ModelConfig& cfg = m.config;
  const int64_t V = cfg.vocab_size;
  const double params = ctx.checkpoint.is_object() ? ctx.checkpoint["parameters"].get<double>() : 0;
  std::vector<PromptSpec> prompts;
  try {
    prompts = load_prompts(o.prompts_file);
  } catch (const Error& e) {
    r.skip(e.what());
    return;
  }
  const QuantSpec quant = parse_quant(o.quant);

  // --- Against ref on the same weights ---
  const bool too_big = ctx.quick() && params > ctx.th.get("precision.quick_max_params");
  if (too_big) {
    Check c;
    c.id = "precision.ref";
    c.name = "Backend vs ref";
    c.status = Status::Skip;
    c.detail = fmt::format("skipped: --quick with a {:.2f} B-parameter model (above precision.quick_max_params = {:.3g}); "
                           "the f64 ref backend takes minutes per prompt at this size: run --full",
                           params / 1e9, ctx.th.get("precision.quick_max_params"));
    r.add(c);
  } else {
    std::unique_ptr<Backend> ref_be;
    std::unique_ptr<CausalLM> ref_lm;
    try {
      ref_be = make_backend("ref", o.threads);
      ref_lm = create_model(cfg, *m.store, *ref_be, quant);
    } catch (const Error& e) {
      r.expect(false, "precision.ref_load", "ref backend loads", e.what());
      return;
    }
    // --full on a model above quick_max_params: the ref oracle is bounded by the large_model_* settings.
    const bool large = !ctx.quick() && params > ctx.th.get("precision.quick_max_params");
    size_t n_prompts = static_cast<size_t>(ctx.th.get(
        large ? "precision.large_model_prompts" : ctx.quick() ? "precision.quick_prompts" : "precision.full_prompts"));
    if (n_prompts == 0 || n_prompts > prompts.size()) n_prompts = prompts.size();
    const auto max_tokens = static_cast<size_t>(large ? ctx.th.get("precision.large_model_prompt_tokens")
                                                      : ctx.th.get("precision.max_prompt_tokens") * (ctx.quick() ? 1 : 4));
    const int64_t n_greedy = static_cast<int64_t>(ctx.th.get(large            ? "precision.large_model_greedy_tokens"
                                                             : ctx.quick() ? "precision.quick_greedy_tokens"
                                                                           : "precision.full_greedy_tokens"));
    if (large)
      ctx.note(fmt::format("{:.2f} B parameters: ref comparison bounded to {} prompt(s) of <= {} tokens and {} greedy "
                           "tokens (precision.large_model_*)",
                           params / 1e9, n_prompts, max_tokens, n_greedy));
    const double tol_rel = ctx.th.get(fast_key(o, "precision.max_rel_error"));
    LogitsSummary total;
    nlohmann::json per_prompt = nlohmann::json::array();
    int64_t greedy_total = 0, greedy_agree = 0;
    std::vector<std::string> unexplained;
    std::unique_ptr<CausalLM> unquant_lm;  // for the quantization KL
    std::unique_ptr<Backend> unquant_be;
    LogitsSummary quant_total;
    if (quant.format != QuantFormat::None) {
      unquant_be = make_backend("ref", o.threads);
      unquant_lm = create_model(cfg, *m.store, *unquant_be, {});
    }
    for (size_t pi = 0; pi < n_prompts; ++pi) {
      const PromptSpec& p = prompts[pi];
      auto ids = prompt_ids(p, *m.tokenizer);
      if (ids.size() > max_tokens) ids.resize(max_tokens);
      ctx.note(fmt::format("{}: {} tokens on {} and ref, then {} greedy tokens", p.id, ids.size(), o.backend, n_greedy));
      const auto lt = all_logits(*m.lm, ids);
      const auto lr = all_logits(*ref_lm, ids);
      LogitsSummary s;
      std::vector<double> rel_pos, kl_pos, abs_pos;
      for (size_t t = 0; t < ids.size(); ++t) {
        const auto row = compare_row(std::span<const float>(lt).subspan(t * V, V),
                                     std::span<const float>(lr).subspan(t * V, V), tol_rel);
        s.add(row);
        total.add(row);
        rel_pos.push_back(std::isfinite(row.rel) ? row.rel : 1e30);
        abs_pos.push_back(std::isfinite(row.max_abs) ? row.max_abs : 1e30);
        kl_pos.push_back(std::isfinite(row.kl) ? row.kl : 1e30);
      }
      s.finish();
      if (unquant_lm) {
        const auto lu = all_logits(*unquant_lm, ids);
        for (size_t t = 0; t < ids.size(); ++t)
          quant_total.add(compare_row(std::span<const float>(lt).subspan(t * V, V),
                                      std::span<const float>(lu).subspan(t * V, V), tol_rel));
      }
      // Greedy sequences; a divergence is explained when ref's own top-2 margin at that step is
      // within what the stated tolerance allows (2 x max_rel_error x max|logit|): a near-tie.
      const Greedy gt = greedy(*m.lm, ids, n_greedy, false);
      const Greedy gr = greedy(*ref_lm, ids, n_greedy, false);
      int64_t same = 0;
      while (same < n_greedy && gt.tokens[static_cast<size_t>(same)] == gr.tokens[static_cast<size_t>(same)]) ++same;
      std::string greedy_note = same == n_greedy ? "identical" : "";
      int64_t agree = same;
      if (same < n_greedy) {
        const double margin = gr.margins[static_cast<size_t>(same)];
        const double tol = 2 * tol_rel * gr.peaks[static_cast<size_t>(same)];
        if (margin <= tol) {
          agree = n_greedy;
          greedy_note = fmt::format("diverged at step {} where ref's top-2 margin {} is within the tolerance's {} "
                                    "(near-tie)",
                                    same, sci(margin), sci(tol));
        } else {
          greedy_note = fmt::format("diverged at step {} (ref's top-2 margin {} > {} the tolerance allows)", same,
                                    sci(margin), sci(tol));
          unexplained.push_back(fmt::format("{} at step {}", p.id, same));
        }
      }
      greedy_total += n_greedy;
      greedy_agree += agree;
      nlohmann::json pj = s.to_json();
      pj["id"] = p.id;
      pj["tokens"] = ids.size();
      pj["rel_per_position"] = rel_pos;
      pj["kl_per_position"] = kl_pos;
      pj["abs_per_position"] = abs_pos;
      pj["greedy"] = {{"tokens", n_greedy},
                      {"common_prefix", same},
                      {"note", greedy_note},
                      {"backend", gt.tokens},
                      {"ref", gr.tokens}};
      per_prompt.push_back(pj);
    }
    total.finish();
    r.data["ref"] = {{"summary", total.to_json()},
                     {"prompts", per_prompt},
                     {"settings", {{"prompts", n_prompts}, {"max_prompt_tokens", max_tokens}, {"greedy_tokens", n_greedy}}}};
    const std::string src = fmt::format("{} vs ref (f64) on the same weights{}, {} prompts of data/prompts.jsonl "
                                        "(<= {} tokens each), all positions{}",
                                        o.backend, quant.format == QuantFormat::None ? std::string() : fmt::format(" ({})", quant_name(quant)),
                                        n_prompts, max_tokens,
                                        large ? "; bounded for a large model by precision.large_model_*" : "");
    auto emit = [&](std::string id, std::string name, bool ok, double value, double threshold, std::string detail,
                    std::string unit = "") {
      Check c;
      c.id = fmt::format("precision.{}", id);
      c.name = std::move(name);
      c.status = ok ? Status::Pass : Status::Fail;
      c.value = num(value);
      c.threshold = threshold;
      c.detail = std::move(detail);
      c.unit = std::move(unit);
      c.source = src;
      r.add(c);
    };
    const double tol_kl = ctx.th.get(fast_key(o, "precision.max_mean_kl")),
                 min_top1 = ctx.th.get("precision.min_top1_agreement"),
                 min_greedy = ctx.th.get("precision.min_greedy_agreement");
    emit("logits_rel_error", "Logits relative error vs ref", total.max_rel <= tol_rel, total.max_rel, tol_rel,
         fmt::format("max over {} positions of max|{} - ref| / max|ref|: {} (max abs {}); tolerance {}",
                     total.positions, o.backend, sci(total.max_rel), sci(total.max_abs), sci(tol_rel)));
    emit("kl", "KL divergence vs ref", total.mean_kl <= tol_kl, total.mean_kl, tol_kl,
         fmt::format("mean KL(ref || {}) {} nats, max {}; limit {}", o.backend, sci(total.mean_kl), sci(total.max_kl),
                     sci(tol_kl)),
         "nats");
    emit("top1", "Top-1 agreement vs ref", total.top1_rate() >= min_top1, total.top1_rate(), min_top1,
         fmt::format("{} of {} positions agree ({} more are near-ties: ref's top-2 margin within the tolerance); minimum {}",
                     total.top1_agree, total.positions, total.near_ties, min_top1));
    const double greedy_rate = greedy_total ? static_cast<double>(greedy_agree) / static_cast<double>(greedy_total) : 1;
    emit("greedy", "Greedy sequences vs ref", greedy_rate >= min_greedy, greedy_rate, min_greedy,
         unexplained.empty()
             ? fmt::format("{} prompts x {} greedy tokens: every sequence identical or diverging only at a near-tie",
                           n_prompts, n_greedy)
             : fmt::format("unexplained divergence: {}", fmt::join(unexplained, "; ")));
    if (quant.format != QuantFormat::None) {
      quant_total.finish();
      const std::string key =
          quant.format == QuantFormat::Int8 ? "precision.quant_max_mean_kl_int8" : "precision.quant_max_mean_kl_int4";
      const double lim = ctx.th.get(key);
      r.data["quantization"] = quant_total.to_json();
      emit("quant_kl", "Quantization error (KL vs unquantized ref)", quant_total.mean_kl <= lim, quant_total.mean_kl,
           lim,
           fmt::format("mean KL(ref unquantized || {} {}) {} nats over {} positions, top-1 agreement {:.3f}; limit {}",
                       o.backend, quant_name(quant), sci(quant_total.mean_kl), quant_total.positions,
                       quant_total.top1_rate_raw(), sci(lim)),
           "nats");
    }
  }

  // --- Against golden logits ---
  if (o.golden_dir.empty()) {
    Check c;
    c.id = "precision.golden";
    c.name = "Backend vs golden logits";
    c.status = Status::Skip;
    c.detail = "skipped: no --golden DIR given (make one with tools/hf_reference.py)";
    r.add(c);
    return;
  }
  std::vector<fs::path> metas;
  std::error_code ec;
  for (fs::directory_iterator it(o.golden_dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().extension() == ".json" && fs::exists(it->path().parent_path() / it->path().stem(), ec))
      metas.push_back(it->path());
  std::sort(metas.begin(), metas.end());
  if (metas.empty()) {
    r.expect(false, "precision.golden", "Backend vs golden logits",
             fmt::format("{}: no logits found (expected FILE + FILE.json pairs as `internlm logits` and "
                         "tools/hf_reference.py write them)",
                         o.golden_dir.string()));
    return;
  }
  const double golden_rel = ctx.th.get("precision.golden_max_rel_error");
  LogitsSummary g;
  nlohmann::json files = nlohmann::json::array();
  std::vector<std::string> problems, tok_mismatch;
  size_t tok_checked = 0;
  for (const auto& meta_path : metas) {
    const fs::path raw = meta_path.parent_path() / meta_path.stem();
    try {
      const nlohmann::json meta = read_json_file(meta_path);
      if (!meta.contains("shape") || !meta.contains("ids"))
        throw Error(fmt::format("{}: needs \"shape\" and \"ids\"", meta_path.string()));
      const auto shape = meta["shape"].get<std::vector<int64_t>>();
      const auto ids = meta["ids"].get<std::vector<TokenId>>();
      if (shape.size() != 2 || shape[0] != static_cast<int64_t>(ids.size()) || shape[1] != V)
        throw Error(fmt::format("{}: shape {} does not match {} ids x vocab {}", meta_path.string(),
                                nlohmann::json(shape).dump(), ids.size(), V));
      const uint64_t want = static_cast<uint64_t>(shape[0] * shape[1]) * 4;
      if (fs::file_size(raw) != want)
        throw Error(fmt::format("{}: {} bytes, expected {} (f32 [{}, {}])", raw.string(), fs::file_size(raw), want,
                                shape[0], shape[1]));
      std::vector<float> gl(static_cast<size_t>(shape[0] * shape[1]));
      std::ifstream in(raw, std::ios::binary);
      in.read(reinterpret_cast<char*>(gl.data()), static_cast<std::streamsize>(want));
      if (!in) throw Error(fmt::format("{}: read failed", raw.string()));
      ctx.note(fmt::format("golden {}: {} positions", raw.filename().string(), ids.size()));
      const auto lt = all_logits(*m.lm, ids);
      LogitsSummary s;
      for (size_t t = 0; t < ids.size(); ++t) {
        const auto row = compare_row(std::span<const float>(lt).subspan(t * V, V),
                                     std::span<const float>(gl).subspan(t * V, V), golden_rel);
        s.add(row);
        g.add(row);
      }
      s.finish();
      nlohmann::json fj = s.to_json();
      fj["file"] = raw.filename().string();
      fj["source"] = meta.value("source", std::string("unknown"));
      // The same prompt tokenized here: the tokenizers must agree too.
      if (meta.contains("prompt_id") && meta["prompt_id"].is_string()) {
        for (const auto& p : prompts)
          if (p.id == meta["prompt_id"].get<std::string>()) {
            ++tok_checked;
            const auto mine = prompt_ids(p, *m.tokenizer);
            fj["tokenization_matches"] = mine == ids;
            if (mine != ids) tok_mismatch.push_back(p.id);
          }
      }
      files.push_back(fj);
    } catch (const Error& e) {
      problems.push_back(e.what());
    } catch (const std::exception& e) {
      problems.push_back(fmt::format("{}: {}", meta_path.string(), e.what()));
    }
  }
  g.finish();
  r.data["golden"] = {{"dir", o.golden_dir.string()}, {"summary", g.to_json()}, {"files", files}, {"problems", problems}};
  const std::string src = fmt::format("{} vs the logits in {} (all positions of {} file(s))", o.backend,
                                      o.golden_dir.string(), files.size());
  auto emit = [&](std::string id, std::string name, bool ok, nlohmann::json value, double threshold,
                  std::string detail) {
    Check c;
    c.id = fmt::format("precision.golden_{}", id);
    if (id == "kl") c.unit = "nats";
    c.name = std::move(name);
    c.status = ok ? Status::Pass : Status::Fail;
    c.value = std::move(value);
    c.threshold = threshold;
    c.detail = std::move(detail);
    c.source = src;
    r.add(c);
  };
  if (!problems.empty())
    emit("files", "Golden files readable", false, static_cast<double>(problems.size()), 0,
         fmt::format("{}", fmt::join(problems, "; ")));
  if (g.positions > 0) {
    const double tr = ctx.th.get(fast_key(o, "precision.golden_max_rel_error")), tk = ctx.th.get("precision.golden_max_mean_kl"),
                 t1 = ctx.th.get("precision.golden_min_top1_agreement");
    emit("rel_error", "Logits relative error vs golden", g.max_rel <= tr, num(g.max_rel), tr,
         fmt::format("max over {} positions: {} (max abs {}); tolerance {}", g.positions, sci(g.max_rel),
                     sci(g.max_abs), sci(tr)));
    emit("kl", "KL divergence vs golden", g.mean_kl <= tk, num(g.mean_kl), tk,
         fmt::format("mean KL(golden || {}) {} nats, max {}; limit {}", o.backend, sci(g.mean_kl), sci(g.max_kl),
                     sci(tk)));
    emit("top1", "Top-1 agreement vs golden", g.top1_rate() >= t1, g.top1_rate(), t1,
         fmt::format("{} of {} positions agree ({} near-ties); minimum {}", g.top1_agree, g.positions, g.near_ties, t1));
  }
  if (tok_checked)
    emit("tokenization", "Tokenization vs golden", tok_mismatch.empty(), static_cast<double>(tok_mismatch.size()), 0,
         tok_mismatch.empty()
             ? fmt::format("{} prompt(s) tokenize to the golden files' ids", tok_checked)
             : fmt::format("ids differ from the golden files' for {}", fmt::join(tok_mismatch, ", ")));
}

}  // namespace ilm::validate
