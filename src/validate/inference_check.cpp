// Stage 5, inference: the prompt set (Chinese introduction, English Q&A, code, arithmetic, long
// answer, multi-turn, stop string, unicode, raw completion) generated at temperature 0 twice:
// outputs, token counts, per-prompt latency, and whether both runs are identical.
#include <algorithm>

#include <fmt/format.h>

#include "common/error.h"
#include "runtime/generator.h"
#include "tokenizer/tokenizer.h"
#include "validate/prompts.h"
#include "validate/stages.h"

namespace ilm::validate {

namespace {

struct Run {
  std::vector<TokenId> tokens;
  std::string text, finish;
  int64_t prompt_tokens = 0, completion_tokens = 0;
  double seconds = 0, prefill_tps = 0, decode_tps = 0;
  std::string stop_hit;  // the stop string that ended it
};

Run run_prompt(LoadedModel& m, const std::vector<TokenId>& ids, const PromptSpec& p, int64_t max_tokens) {
  Run r;
  GenerateOptions g;
  g.max_tokens = max_tokens;
  g.sampling.temperature = 0;
  g.stop_ids = m.stop_ids();
  g.sample_vocab = m.tokenizer->vocab_size();
  StreamDecoder dec(*m.tokenizer, true);
  const double t0 = now_seconds();
  const GenerateResult res = generate(*m.lm, ids, g, [&](TokenId t) {
    r.tokens.push_back(t);
    r.text += dec.push(t);
    for (const auto& s : p.stop) {
      const auto at = r.text.find(s);
      if (at != std::string::npos) {
        r.text.resize(at);
        r.stop_hit = s;
        return false;
      }
    }
    return true;
  });
  if (r.stop_hit.empty()) r.text += dec.flush();
  r.seconds = now_seconds() - t0;
  r.finish = r.stop_hit.empty() ? res.finish_reason : "stop_string";
  r.prompt_tokens = res.prompt_tokens;
  r.completion_tokens = res.completion_tokens;
  r.prefill_tps = res.prefill_tokens_per_second();
  r.decode_tps = res.decode_tokens_per_second();
  return r;
}

}  // namespace

void stage_inference(Context& ctx, StageResult& r) {
  const Options& o = ctx.opts;
  if (!ctx.model) {
    r.skip(fmt::format("the model did not load ({})", ctx.model_error));
    return;
  }
  std::vector<PromptSpec> prompts;
  try {
    prompts = load_prompts(o.prompts_file);
  } catch (const Error& e) {
    r.expect(false, "inference.prompts", "Prompt set readable", e.what());
    return;
  }
  LoadedModel& m = *ctx.model;
  const int64_t cap = static_cast<int64_t>(ctx.th.get("inference.quick_max_tokens"));
  const double max_latency = ctx.th.get("inference.max_latency_s");
  const bool need_det = ctx.th.get("inference.require_deterministic") > 0;
  nlohmann::json rows = nlohmann::json::array();
  std::vector<std::string> nondet, errors, leaked, bad_utf8, over_budget, slow;
  for (const auto& p : prompts) {
    const int64_t max_tokens = ctx.quick() ? std::min(p.max_tokens, cap) : p.max_tokens;
    ctx.note(fmt::format("{} ({}), max_tokens {}, twice", p.id, p.category, max_tokens));
    nlohmann::json row = {{"id", p.id}, {"category", p.category}, {"max_tokens", max_tokens}, {"stop", p.stop}};
    try {
      const auto ids = prompt_ids(p, *m.tokenizer);
      const Run a = run_prompt(m, ids, p, max_tokens);
      const Run b = run_prompt(m, ids, p, max_tokens);
      const bool same = a.tokens == b.tokens && a.text == b.text;
      if (!same) nondet.push_back(p.id);
      for (const auto& s : p.stop)
        if (a.text.find(s) != std::string::npos) leaked.push_back(p.id);
      if (!is_valid_utf8(a.text)) bad_utf8.push_back(p.id);
      if (a.completion_tokens > max_tokens) over_budget.push_back(p.id);
      if (max_latency > 0 && std::max(a.seconds, b.seconds) > max_latency) slow.push_back(p.id);
      row["prompt_tokens"] = a.prompt_tokens;
      row["completion_tokens"] = a.completion_tokens;
      row["output"] = a.text;
      row["output_tokens"] = a.tokens;
      row["finish_reason"] = a.finish;
      row["stop_hit"] = a.stop_hit;
      row["latency_s"] = {a.seconds, b.seconds};
      row["prefill_tokens_per_s"] = a.prefill_tps;
      row["decode_tokens_per_s"] = a.decode_tps;
      row["deterministic"] = same;
      Check c;
      c.id = fmt::format("inference.{}", p.id);
      c.name = fmt::format("{} ({})", p.id, p.category);
      c.status = same || !need_det ? Status::Pass : Status::Fail;
      if (a.tokens.empty() && c.status == Status::Pass) c.status = Status::Warn;
      c.value = a.seconds;
      c.unit = std::string(1, 's');
      c.detail = fmt::format("{} prompt + {} completion tokens, finish {}{}, {:.3f} s / {:.3f} s{}{}",
                             a.prompt_tokens, a.completion_tokens, a.finish,
                             a.stop_hit.empty() ? "" : fmt::format(" ({:?})", a.stop_hit), a.seconds, b.seconds,
                             same ? ", both runs identical" : ", RUNS DIFFER",
                             a.tokens.empty() ? "; empty output (the first token was a stop token)" : "");
      c.source = fmt::format("generate() on {} at temperature 0, max_tokens {}, prompt from {}", o.backend, max_tokens,
                             o.prompts_file.filename().string());
      r.add(c);
    } catch (const Error& e) {
      errors.push_back(fmt::format("{}: {}", p.id, e.what()));
      row["error"] = e.what();
      r.expect(false, fmt::format("inference.{}", p.id), fmt::format("{} ({})", p.id, p.category), e.what());
    }
    rows.push_back(row);
  }
  r.data["prompts"] = rows;
  r.data["settings"] = {{"file", o.prompts_file.string()}, {"temperature", 0}, {"runs", 2},
                        {"max_tokens_cap", ctx.quick() ? nlohmann::json(cap) : nlohmann::json()}};
  auto sum = [&](std::string id, std::string name, const std::vector<std::string>& bad, std::string ok_detail,
                 std::string bad_detail, bool hard = true) {
    Check c;
    c.id = fmt::format("inference.{}", id);
    c.name = std::move(name);
    c.status = bad.empty() ? Status::Pass : (hard ? Status::Fail : Status::Warn);
    c.detail = bad.empty() ? std::move(ok_detail) : fmt::format("{}: {}", bad_detail, fmt::join(bad, ", "));
    c.value = static_cast<double>(bad.size());
    c.threshold = 0;
    c.source = fmt::format("{} prompts of {}, temperature 0, two runs each", prompts.size(), o.prompts_file.filename().string());
    r.add(c);
  };
  sum("determinism", "Determinism (two runs identical)", nondet,
      fmt::format("all {} prompts gave identical tokens and text twice", prompts.size()), "outputs differ between runs",
      need_det);
  sum("stop_strings", "Stop strings never in the output", leaked, "no output contains its stop string",
      "stop string present in the output");
  sum("utf8", "Outputs are valid UTF-8", bad_utf8, "every output is valid UTF-8", "invalid UTF-8 in");
  sum("budget", "Completion within max_tokens", over_budget, "every completion within its max_tokens",
      "more tokens than max_tokens");
  if (max_latency > 0)
    sum("latency", "Per-prompt latency", slow, fmt::format("every prompt within {} s", max_latency),
        fmt::format("slower than {} s", max_latency));
}

}  // namespace ilm::validate
