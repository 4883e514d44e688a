#pragma once
// Single-sequence generation: prefill the prompt, then sample one token per step until a
// stop id, the token budget or the context limit.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "model/causal_lm.h"
#include "runtime/sampler.h"

namespace ilm {

struct GenerateOptions {
  int64_t max_tokens = 256;
  SamplingParams sampling;
  std::vector<TokenId> stop_ids;
  int64_t context_limit = 0;  // 0: the model's
  DType kv_dtype = DType::F32;  // KV cache element type (run --kv-cache-dtype)
  int64_t sample_vocab = 0;   // > 0: only ids below this can be sampled (the tokenizer's size,
                              // when the model's vocab is padded beyond it)
};

struct GenerateResult {
  std::vector<TokenId> tokens;  // generated, without the stop token
  std::string finish_reason;    // "stop" (stop id or callback), "length"
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;  // sampled tokens, the stop token included
  double prefill_seconds = 0, decode_seconds = 0;
  int64_t decode_steps = 0;  // forwards after the prefill

  double prefill_tokens_per_second() const;
  double decode_tokens_per_second() const;
};

// on_token is called for each generated token (not for the stop token); returning false
// stops generation with finish_reason "stop". Throws ilm::Error when the prompt is empty or
// does not fit the context.
GenerateResult generate(CausalLM& lm, std::span<const TokenId> prompt, const GenerateOptions& opts,
                        const std::function<bool(TokenId)>& on_token = {});

}  // namespace ilm
