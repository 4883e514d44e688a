#pragma once
// The steps from a row of logits to a token, each on its own so each can be tested alone.
// Sampler::sample runs them in Hugging Face generate()'s order, with the OpenAI / vLLM
// additions where they sit in vLLM:
//   penalties (repetition; presence / frequency) -> logit bias -> banned tokens (min_tokens)
//   -> grammar mask -> temperature (builds the candidate set) -> top-k -> top-p -> min-p -> draw.
// Greedy decoding (temperature 0) stops after the bans with an argmax.
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace ilm {

using TokenId = int32_t;

namespace sampling {

using Candidate = std::pair<float, TokenId>;  // (score, id)

// Descending score, lower id first on ties: a total order on NaN-free candidates, so every
// partial sort gives the same answer on every standard library.
bool ranks_before(const Candidate& a, const Candidate& b);

// --- steps on the scores themselves (in place) ---

// Hugging Face's repetition penalty: once per distinct id of prompt + generated, a positive
// score is divided by `penalty`, a negative one multiplied. `marks` is vocab-sized scratch,
// all zero on entry and on return.
void apply_repetition_penalty(std::span<float> logits, std::span<const TokenId> prompt,
                              std::span<const TokenId> generated, float penalty, std::vector<int32_t>& marks);

// OpenAI's presence / frequency penalties over the generated tokens: score -= frequency x
// count + presence (count > 0). `counts` as `marks` above.
void apply_presence_frequency(std::span<float> logits, std::span<const TokenId> generated, float presence,
                              float frequency, std::vector<int32_t>& counts);

// OpenAI's logit_bias: each listed id's score gets its bias added (ids are in range).
void apply_logit_bias(std::span<float> logits, std::span<const std::pair<TokenId, float>> bias);

// The listed ids (in range) can no longer be chosen: their scores become -inf.
void ban(std::span<float> logits, std::span<const TokenId> ids);

// A grammar's verdict for the next token (structured output): `allowed` is a bit per id; the
// end-of-reply ids are allowed exactly when `end_allowed` (the text so far is complete).
struct TokenMask {
  const std::vector<uint64_t>* allowed = nullptr;
  std::span<const TokenId> end_ids;
  bool end_allowed = false;
  bool only_end = false;  // nothing but an end id may come (the value is complete): min_tokens yields
};
// Every id the mask does not allow scores -inf (ids past the bit set too).
void apply_mask(std::span<float> logits, const TokenMask& mask);

// --- steps on the candidate set ---

// The tokens still drawable: items[0, n) alive, items[0, sorted) in ranks_before order. The
// highest score (max_score) always survives every filter.
struct Candidates {
  std::vector<Candidate> items;
  size_t n = 0;
  size_t sorted = 0;
  size_t initial = 0;  // candidates before any filter
  double max_score = 0.0;
  // scratch kept between calls
  std::vector<Candidate> spare;
  std::vector<float> heap;
  std::vector<double> weights;
};

// Divides every score by the temperature (in float, as HF does); NaN becomes -inf; every
// token not at -inf becomes a candidate. False when no token has any probability.
bool scale_by_temperature(std::span<float> logits, float temperature, Candidates& c);

// Keeps every token scoring >= the k-th largest score (ties at the boundary all survive).
void keep_top_k(Candidates& c, size_t k);
// Keeps tokens, most likely first, while the mass before each is < p (the first always stays).
void keep_top_p(Candidates& c, double p);
// Keeps tokens with p >= min_p x p_max (order kept: the draw depends on it).
void keep_min_p(Candidates& c, double min_p);

// The filtered-out tokens read -inf in `logits`, like HF's processed scores.
void write_back(const Candidates& c, std::span<float> logits);

// Inverse CDF over the survivors in their current order at the uniform u in [0, 1).
TokenId draw(Candidates& c, double u);

// exp(score - max_score): a candidate's probability relative to the most likely one (the +inf
// tokens share all the mass when the best score is +inf).
double relative_weight(float score, double max_score);

}  // namespace sampling
}  // namespace ilm
