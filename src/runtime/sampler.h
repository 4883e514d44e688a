#pragma once
// Turns a row of logits into the next token through the named steps of sampling_steps.h:
// repetition penalty, presence/frequency penalties, logit bias, bans (min_tokens), a grammar
// mask, temperature, top-k, top-p, min-p, then a draw. temperature == 0 means greedy (argmax, lowest
// id wins ties): no randomness at all, bit-for-bit reproducible.
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "runtime/sampling_steps.h"

namespace ilm {

struct SamplingParams {
  float temperature = 0.0f;         // 0: greedy
  int32_t top_k = 0;                // 0: off
  float top_p = 1.0f;               // 1: off
  float min_p = 0.0f;               // 0: off; keep tokens with p >= min_p * p_max
  float repetition_penalty = 1.0f;  // HF semantics over prompt + generated tokens; 1: off
  float presence_penalty = 0.0f;    // OpenAI semantics over generated tokens; 0: off
  float frequency_penalty = 0.0f;   // OpenAI semantics over generated tokens; 0: off
  // OpenAI's logit_bias: (id, bias in [-100, 100]) added to the scores after the penalties.
  std::vector<std::pair<TokenId, float>> logit_bias;
  // vLLM's min_tokens: while fewer tokens than this have been generated, `end_ids` (the ids
  // that would end the reply; the engine sets them to the request's stop ids) cannot be chosen.
  int32_t min_tokens = 0;
  std::vector<TokenId> end_ids;
  // Ids that can never be chosen (tool_choice "none": the action markers).
  std::vector<TokenId> banned;
  uint64_t seed = 0;

  // Throws ilm::Error naming the field when out of range (temperature < 0, top_p not in
  // (0, 1], top_k < 0, min_p not in [0, 1], repetition_penalty <= 0, penalties not in [-2, 2],
  // a bias not in [-100, 100] or an id < 0, min_tokens < 0, any NaN). Ids above the vocabulary
  // are checked by the sampler, which knows its size.
  void validate() const;
};

struct TokenLogprob {
  TokenId id;
  float logprob;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // Picks the next token. `logits` (vocab-sized) is modified in place: on return it holds
  // the processed scores (penalties applied; when temperature > 0 also divided by the
  // temperature, with every token that top-k/top-p/min-p removed, and any NaN, set to -inf).
  // `prompt` and `generated` are the sequence so far (penalties need them); an id outside
  // [0, vocab) throws ilm::Error. Deterministic given the seed and the sequence of calls:
  // each call with temperature > 0 consumes exactly one uniform from the generator.
  // `mask` (structured output): only the tokens it allows can be drawn, in every mode.
  TokenId sample(std::span<float> logits, std::span<const TokenId> prompt,
                 std::span<const TokenId> generated, const sampling::TokenMask* mask = nullptr);

  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  uint64_t rng_state_[4];
  sampling::Candidates candidates_;
  std::vector<int32_t> counts_;   // vocab-sized, all zero between calls
  double next_uniform();  // [0, 1)
};

// log-softmax of the raw logits: the chosen token's logprob and the `n` most likely tokens
// (descending, ties by lower id). Used for OpenAI logprobs.
std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, int n);
float token_logprob(std::span<const float> logits, TokenId id);

// Index of the largest value, lowest index on ties; NaN never wins.
TokenId argmax(std::span<const float> logits);

// Throws ilm::Error when the model's logits hold a NaN or an infinity: a broken checkpoint or
// config (say rope_theta 1e-320) must fail the request, never pass for a generation. (The
// sampler itself stays robust to NaN: it is also used on masked and penalised scores.)
void require_finite_logits(std::span<const float> logits);

}  // namespace ilm
