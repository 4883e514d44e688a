#include "runtime/generator.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <fmt/format.h>

#include "common/error.h"

namespace ilm {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

double GenerateResult::prefill_tokens_per_second() const {
  return prefill_seconds > 0 ? static_cast<double>(prompt_tokens) / prefill_seconds : 0.0;
}
double GenerateResult::decode_tokens_per_second() const {
  return decode_seconds > 0 ? static_cast<double>(decode_steps) / decode_seconds : 0.0;
}

GenerateResult generate(CausalLM& lm, std::span<const TokenId> prompt, const GenerateOptions& opts,
                        const std::function<bool(TokenId)>& on_token) {
  opts.sampling.validate();
  const int64_t limit = opts.context_limit > 0 ? opts.context_limit : lm.context_limit();
  const int64_t P = static_cast<int64_t>(prompt.size());
  if (P == 0) throw Error("the prompt is empty");
  if (P >= limit)
    throw Error(fmt::format("the prompt has {} tokens, which leaves no room in the context limit "
                            "of {} tokens",
                            P, limit));
  if (opts.max_tokens < 0) throw Error("max_tokens must be >= 0");

  GenerateResult res;
  res.prompt_tokens = P;
  const int64_t budget = std::min(opts.max_tokens, limit - P);
  const int64_t V = lm.config().vocab_size;
  KvCache cache = lm.new_cache_as(P + budget, opts.kv_dtype);
  Sampler sampler(opts.sampling);
  std::vector<float> logits(static_cast<size_t>(V));

  if (budget == 0) {
    res.finish_reason = "length";
    return res;
  }
  auto t0 = std::chrono::steady_clock::now();
  lm.forward(prompt, cache, logits, /*all_logits=*/false);
  res.prefill_seconds = seconds_since(t0);

  auto t1 = std::chrono::steady_clock::now();
  for (;;) {
    if (opts.sample_vocab > 0 && opts.sample_vocab < V)
      std::fill(logits.begin() + opts.sample_vocab, logits.end(), -INFINITY);
    require_finite_logits(logits);
    const TokenId next = sampler.sample(logits, prompt, res.tokens);
    ++res.completion_tokens;
    if (std::find(opts.stop_ids.begin(), opts.stop_ids.end(), next) != opts.stop_ids.end()) {
      res.finish_reason = "stop";
      break;
    }
    res.tokens.push_back(next);
    if (on_token && !on_token(next)) {
      res.finish_reason = "stop";
      break;
    }
    if (static_cast<int64_t>(res.tokens.size()) >= budget) {
      res.finish_reason = "length";
      break;
    }
    const TokenId one[1] = {next};
    lm.forward(one, cache, logits, false);
    ++res.decode_steps;
  }
  res.decode_seconds = seconds_since(t1);
  return res;
}

}  // namespace ilm
