// Sampler: greedy, penalties, temperature / top-k / top-p / min-p against direct
// transcriptions of the Hugging Face warpers, the draw's distribution and determinism,
// parameter validation, and logprobs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"
#include "runtime/sampler.h"

namespace ilm {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

using Ids = std::vector<TokenId>;
using IdSet = std::set<TokenId>;

SamplingParams make_params(float temperature, int32_t top_k = 0, float top_p = 1.0f,
                           float min_p = 0.0f, uint64_t seed = 0) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  p.seed = seed;
  return p;
}

// Tokens still drawable after sample() processed `logits` in place.
IdSet support_of(const std::vector<float>& logits) {
  IdSet s;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (!std::isnan(logits[i]) && logits[i] != -kInf) s.insert(static_cast<TokenId>(i));
  }
  return s;
}

std::vector<float> random_logits(size_t n, float sigma, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

// ---- Reference warpers: line-by-line transcriptions of transformers' LogitsWarpers ----

std::vector<double> softmax(const std::vector<float>& scores) {
  double mx = -std::numeric_limits<double>::infinity();
  for (float s : scores) mx = std::max(mx, double{s});
  std::vector<double> p(scores.size());
  double sum = 0;
  for (size_t i = 0; i < scores.size(); ++i) sum += p[i] = std::exp(double{scores[i]} - mx);
  for (double& x : p) x /= sum;
  return p;
}

// TemperatureLogitsWarper: scores = scores / temperature (float32).
void hf_temperature(std::vector<float>& scores, float temperature) {
  for (float& s : scores) {
    s = s / temperature;
    if (std::isnan(s)) s = -kInf;
  }
}

// TopKLogitsWarper:
//   top_k = min(self.top_k, scores.size(-1))
//   indices_to_remove = scores < torch.topk(scores, top_k)[0][..., -1, None]
//   scores = scores.masked_fill(indices_to_remove, -inf)
void hf_top_k(std::vector<float>& scores, int top_k) {
  if (top_k == 0) return;
  const size_t k = std::min(static_cast<size_t>(top_k), scores.size());
  std::vector<float> sorted = scores;
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  const float kth = sorted[k - 1];
  for (float& s : scores) {
    if (s < kth) s = -kInf;
  }
}

// TopPLogitsWarper:
//   sorted_logits, sorted_indices = torch.sort(scores, descending=False)
//   cumulative_probs = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
//   sorted_indices_to_remove = cumulative_probs <= (1 - top_p)
//   sorted_indices_to_remove[..., -min_tokens_to_keep:] = 0     (min_tokens_to_keep = 1)
//   indices_to_remove = sorted_indices_to_remove.scatter(1, sorted_indices, ...)
// torch.sort leaves the order of equal scores unspecified; the convention here (and in the
// sampler) is that among equal scores the lower id counts as the more likely one, so ascending
// order puts higher ids first.
void hf_top_p(std::vector<float>& scores, float top_p) {
  if (top_p >= 1.0f) return;
  std::vector<TokenId> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](TokenId a, TokenId b) {
    const float sa = scores[static_cast<size_t>(a)], sb = scores[static_cast<size_t>(b)];
    return sa < sb || (sa == sb && a > b);
  });
  std::vector<float> sorted_logits;
  for (TokenId id : order) sorted_logits.push_back(scores[static_cast<size_t>(id)]);
  const std::vector<double> probs = softmax(sorted_logits);
  std::vector<bool> remove(order.size());
  double cumulative = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    cumulative += probs[i];
    remove[i] = cumulative <= 1.0 - double{top_p};
  }
  remove.back() = false;
  for (size_t i = 0; i < order.size(); ++i) {
    if (remove[i]) scores[static_cast<size_t>(order[i])] = -kInf;
  }
}

// MinPLogitsWarper:
//   probs = torch.softmax(scores, dim=-1)
//   top_probs, _ = probs.max(dim=-1, keepdim=True)
//   tokens_to_remove = probs < (self.min_p * top_probs)
//   (the most likely token is always kept)
void hf_min_p(std::vector<float>& scores, float min_p) {
  if (min_p == 0.0f) return;
  const std::vector<double> probs = softmax(scores);
  const double top = *std::max_element(probs.begin(), probs.end());
  const size_t best = static_cast<size_t>(std::max_element(probs.begin(), probs.end()) -
                                          probs.begin());
  for (size_t i = 0; i < scores.size(); ++i) {
    if (i != best && probs[i] < double{min_p} * top) scores[i] = -kInf;
  }
}

std::vector<float> hf_pipeline(std::vector<float> scores, const SamplingParams& p) {
  hf_temperature(scores, p.temperature);
  hf_top_k(scores, p.top_k);
  hf_top_p(scores, p.top_p);
  hf_min_p(scores, p.min_p);
  return scores;
}

// Runs one sample() on a copy of `logits` and returns the processed copy.
std::vector<float> processed(const SamplingParams& p, std::vector<float> logits,
                             const Ids& prompt = {}, const Ids& generated = {},
                             TokenId* chosen = nullptr) {
  Sampler s(p);
  const TokenId t = s.sample(logits, prompt, generated);
  if (chosen != nullptr) *chosen = t;
  return logits;
}

// ---- argmax / greedy ----

struct ArgmaxCase {
  const char* name;
  std::vector<float> logits;
  TokenId expected;
};

TEST(Argmax, TableOfCases) {
  const std::vector<ArgmaxCase> cases = {
      {"plain max", {1.0f, 3.0f, 2.0f}, 1},
      {"max at the end", {1.0f, 2.0f, 3.0f}, 2},
      {"tie takes lowest id", {3.0f, 3.0f, 1.0f}, 0},
      {"tie later in the row", {1.0f, 5.0f, 5.0f, 5.0f}, 1},
      {"leading NaN ignored", {kNaN, 1.0f, 2.0f}, 2},
      {"NaN in the middle ignored", {1.0f, kNaN, 0.5f}, 0},
      {"NaN next to -inf", {-kInf, -1.0f, kNaN}, 1},
      {"all NaN gives 0", {kNaN, kNaN}, 0},
      {"all -inf gives 0", {-kInf, -kInf}, 0},
      {"+inf wins, lowest id", {1.0f, kInf, kInf}, 1},
      {"negative values", {-3.0f, -1.0f, -2.0f}, 1},
      {"single entry", {-7.0f}, 0},
  };
  for (const ArgmaxCase& c : cases) {
    EXPECT_EQ(argmax(c.logits), c.expected) << c.name;
    for (uint64_t seed : {0ull, 1ull, 99ull}) {
      std::vector<float> l = c.logits;
      Sampler s(make_params(0.0f, 3, 0.5f, 0.5f, seed));  // warpers don't matter for greedy
      EXPECT_EQ(s.sample(l, {}, {}), c.expected) << c.name << " seed " << seed;
    }
  }
  EXPECT_THROW(argmax({}), Error);
}

TEST(SamplerGreedy, TopK1AtPositiveTemperatureMatchesGreedy) {
  for (uint32_t trial = 0; trial < 40; ++trial) {
    std::vector<float> logits = random_logits(1000, 3.0f, trial);
    const TokenId expected = argmax(logits);
    for (float temperature : {0.3f, 1.0f, 2.5f}) {
      std::vector<float> l = logits;
      Sampler s(make_params(temperature, 1, 1.0f, 0.0f, trial * 7 + 1));
      EXPECT_EQ(s.sample(l, {}, {}), expected) << "trial " << trial << " T " << temperature;
    }
  }
}

// ---- determinism ----

TEST(SamplerDeterminism, SameSeedSameSequenceDifferentSeedsDiffer) {
  const std::vector<float> logits = random_logits(50, 1.0f, 5);
  auto draw_sequence = [&](uint64_t seed, const SamplingParams& base) {
    SamplingParams p = base;
    p.seed = seed;
    Sampler s(p);
    Ids out;
    for (int i = 0; i < 1000; ++i) {
      std::vector<float> l = logits;
      out.push_back(s.sample(l, {}, out));
    }
    return out;
  };
  for (const SamplingParams& base :
       {make_params(1.0f), make_params(0.8f, 20, 0.9f), make_params(1.2f, 0, 0.95f, 0.05f)}) {
    SamplingParams pen = base;
    pen.repetition_penalty = 1.1f;
    pen.frequency_penalty = 0.01f;
    for (const SamplingParams& p : {base, pen}) {
      const Ids a = draw_sequence(1234, p);
      const Ids b = draw_sequence(1234, p);
      const Ids c = draw_sequence(1235, p);
      const Ids d = draw_sequence(0, p);
      EXPECT_EQ(a, b);
      EXPECT_GT(IdSet(a.begin(), a.end()).size(), 5u) << "draws should actually vary";
      size_t differ_c = 0, differ_d = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        differ_c += a[i] != c[i] ? 1 : 0;
        differ_d += a[i] != d[i] ? 1 : 0;
      }
      EXPECT_GT(differ_c, 100u);
      EXPECT_GT(differ_d, 100u);
    }
  }
}

// ---- the draw's distribution ----

struct DistributionCase {
  const char* name;
  SamplingParams params;
};

TEST(SamplerDistribution, EmpiricalFrequenciesMatchProbabilities) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f};
  const std::vector<DistributionCase> cases = {
      {"T=1", make_params(1.0f, 0, 1.0f, 0.0f, 11)},
      {"T=0.5", make_params(0.5f, 0, 1.0f, 0.0f, 12)},
      {"T=2", make_params(2.0f, 0, 1.0f, 0.0f, 13)},
      {"T=1 top_k=2", make_params(1.0f, 2, 1.0f, 0.0f, 14)},
      {"T=1.5 top_p=0.8", make_params(1.5f, 0, 0.8f, 0.0f, 15)},
      {"T=1 min_p=0.2", make_params(1.0f, 0, 1.0f, 0.2f, 16)},
  };
  constexpr int kDraws = 200000;
  for (const DistributionCase& c : cases) {
    // Expected: softmax of the surviving, temperature-scaled scores.
    const std::vector<double> expected = softmax(hf_pipeline(logits, c.params));
    Sampler s(c.params);
    std::vector<int> counts(logits.size(), 0);
    for (int i = 0; i < kDraws; ++i) {
      std::vector<float> l = logits;
      ++counts[static_cast<size_t>(s.sample(l, {}, {}))];
    }
    double chi2 = 0;
    for (size_t t = 0; t < logits.size(); ++t) {
      const double mean = kDraws * expected[t];
      if (expected[t] == 0) {
        EXPECT_EQ(counts[t], 0) << c.name << " token " << t << " was filtered out";
        continue;
      }
      const double sd = std::sqrt(kDraws * expected[t] * (1 - expected[t]));
      EXPECT_LT(std::abs(counts[t] - mean), 5 * sd)
          << c.name << " token " << t << " count " << counts[t] << " expected " << mean;
      chi2 += (counts[t] - mean) * (counts[t] - mean) / mean;
    }
    // At most 3 degrees of freedom: P(chi2 > 30) < 2e-6.
    EXPECT_LT(chi2, 30.0) << c.name;
  }
}

// ---- top-k ----

struct SupportCase {
  const char* name;
  std::vector<float> logits;
  SamplingParams params;
  IdSet expected;
};

// Checks the support both through the processed logits and through actual draws.
void check_support(const SupportCase& c) {
  const std::vector<float> after = processed(c.params, c.logits);
  EXPECT_EQ(support_of(after), c.expected) << c.name;
  EXPECT_EQ(support_of(hf_pipeline(c.logits, c.params)), c.expected)
      << c.name << " (reference transcription)";
  Sampler s(c.params);
  IdSet drawn;
  for (int i = 0; i < 3000; ++i) {
    std::vector<float> l = c.logits;
    drawn.insert(s.sample(l, {}, {}));
  }
  EXPECT_EQ(drawn, c.expected) << c.name << " (draws)";
}

TEST(SamplerTopK, KeepsExactlyTheKLargestWithBoundaryTies) {
  const std::vector<float> l = {0.5f, 3.0f, -1.0f, 2.0f, 2.0f, 7.0f, kNaN, -kInf};
  // Temperature 5 flattens the distribution so 3000 draws hit every survivor.
  const std::vector<SupportCase> cases = {
      {"k=1", l, make_params(5.0f, 1), {5}},
      {"k=2", l, make_params(5.0f, 2), {5, 1}},
      {"k=3 tie at the boundary keeps both", l, make_params(5.0f, 3), {5, 1, 3, 4}},
      {"k=4", l, make_params(5.0f, 4), {5, 1, 3, 4}},
      {"k=5", l, make_params(5.0f, 5), {5, 1, 3, 4, 0}},
      {"k=6 all finite", l, make_params(5.0f, 6), {0, 1, 2, 3, 4, 5}},
      {"k larger than vocab", l, make_params(5.0f, 100), {0, 1, 2, 3, 4, 5}},
      {"k=0 is off", l, make_params(5.0f, 0), {0, 1, 2, 3, 4, 5}},
      {"all tied", {1.0f, 1.0f, 1.0f}, make_params(1.0f, 1), {0, 1, 2}},
  };
  for (const SupportCase& c : cases) check_support(c);
}

TEST(SamplerTopK, LargeVocabularyMatchesReference) {
  const std::vector<float> logits = random_logits(92544, 2.0f, 77);
  for (int k : {1, 2, 40, 1000, 4096, 4097, 20000}) {  // heap and nth_element selections
    const SamplingParams p = make_params(0.9f, k, 1.0f, 0.0f, 3);
    const IdSet got = support_of(processed(p, logits));
    EXPECT_EQ(got.size(), static_cast<size_t>(k));
    EXPECT_EQ(got, support_of(hf_pipeline(logits, p))) << "k " << k;
  }
}

// ---- top-p ----

TEST(SamplerTopP, BoundaryCasesMatchHuggingFace) {
  // Four equal scores: every probability and partial sum is exact (0.25 steps), so these
  // sit exactly on HF's `cumulative <= 1 - top_p` boundary.
  const std::vector<float> flat = {0.0f, 0.0f, 0.0f, 0.0f};
  const std::vector<float> two_flat = {0.0f, -kInf, 0.0f, kNaN};
  const std::vector<float> four_of_six = {0.0f, 0.0f, -5.0f, 0.0f, 0.0f, -5.0f};
  const std::vector<SupportCase> cases = {
      {"p=0.25 exactly one quarter", flat, make_params(1.0f, 0, 0.25f), {0}},
      {"p=0.2", flat, make_params(1.0f, 0, 0.2f), {0}},
      {"p=0.3", flat, make_params(1.0f, 0, 0.3f), {0, 1}},
      {"p=0.5 exactly two quarters", flat, make_params(1.0f, 0, 0.5f), {0, 1}},
      {"p=0.75 exactly three quarters", flat, make_params(1.0f, 0, 0.75f), {0, 1, 2}},
      {"p=0.76", flat, make_params(1.0f, 0, 0.76f), {0, 1, 2, 3}},
      {"p=1 is off", flat, make_params(1.0f, 0, 1.0f), {0, 1, 2, 3}},
      {"tiny p keeps the most likely", flat, make_params(1.0f, 0, 1e-6f), {0}},
      {"p=0.5 of two", two_flat, make_params(1.0f, 0, 0.5f), {0}},
      {"p=0.51 of two", two_flat, make_params(1.0f, 0, 0.51f), {0, 2}},
      // top_k=4 removes the two -5 tokens first, leaving four exact quarters.
      {"top_k=4 then p=0.5", four_of_six, make_params(1.0f, 4, 0.5f), {0, 1}},
      {"top_k=4 then p just above half", four_of_six, make_params(1.0f, 4, 0.500001f),
       {0, 1, 3}},
      {"top_k=4 then p=0.75", four_of_six, make_params(1.0f, 4, 0.75f), {0, 1, 3}},
      {"without top_k the -5 tokens carry mass", four_of_six, make_params(1.0f, 0, 0.75f),
       {0, 1, 3, 4}},
      {"top_k ties keep all four", flat, make_params(1.0f, 2, 0.500001f), {0, 1, 2}},
      {"dominant token", {10.0f, 0.0f, 0.0f}, make_params(1.0f, 0, 0.9f), {0}},
      {"temperature flattens first", {2.0f, 0.0f, 0.0f}, make_params(4.0f, 0, 0.5f), {0, 1}},
  };
  for (const SupportCase& c : cases) check_support(c);
}

TEST(SamplerTopP, RandomCasesMatchHuggingFaceTranscription) {
  std::mt19937 gen(2024);
  std::uniform_int_distribution<int> vocab_dist(1, 300);
  std::uniform_real_distribution<float> p_dist(0.01f, 1.0f);
  const float sigmas[] = {0.5f, 2.0f, 6.0f};
  const float temps[] = {0.3f, 0.7f, 1.0f, 1.8f};
  const int ks[] = {0, 0, 1, 5, 50};
  const float min_ps[] = {0.0f, 0.0f, 0.05f, 0.3f};
  for (int trial = 0; trial < 400; ++trial) {
    const size_t vocab = static_cast<size_t>(vocab_dist(gen));
    std::vector<float> logits =
        random_logits(vocab, sigmas[trial % 3], static_cast<uint32_t>(trial));
    for (size_t i = 0; i + 1 < vocab; i += 7) logits[i + 1] = logits[i];  // some ties
    if (trial % 5 == 0) logits[0] = -kInf;
    const SamplingParams p = make_params(temps[trial % 4], ks[trial % 5], p_dist(gen),
                                         min_ps[trial % 4], static_cast<uint64_t>(trial));
    TokenId chosen = -1;
    const std::vector<float> after = processed(p, logits, {}, {}, &chosen);
    const IdSet got = support_of(after);
    EXPECT_EQ(got, support_of(hf_pipeline(logits, p)))
        << "trial " << trial << " vocab " << vocab << " T " << p.temperature << " k "
        << p.top_k << " p " << p.top_p << " min_p " << p.min_p;
    EXPECT_TRUE(got.count(chosen)) << "trial " << trial;
    // Survivors keep their temperature-scaled score.
    for (TokenId id : got) {
      EXPECT_EQ(after[static_cast<size_t>(id)],
                logits[static_cast<size_t>(id)] / p.temperature);
    }
  }
}

TEST(SamplerTopP, LargeVocabularyMatchesReference) {
  // Flat enough that top-p needs tens of thousands of tokens: exercises the chunked sort.
  const std::vector<float> logits = random_logits(92544, 1.0f, 78);
  for (const SamplingParams& p : {make_params(1.0f, 0, 0.9f), make_params(0.7f, 0, 0.5f),
                                  make_params(1.0f, 0, 0.999f), make_params(0.2f, 0, 0.3f),
                                  make_params(1.0f, 50, 0.9f)}) {
    EXPECT_EQ(support_of(processed(p, logits)), support_of(hf_pipeline(logits, p)))
        << "T " << p.temperature << " k " << p.top_k << " p " << p.top_p;
  }
}

TEST(SamplerTopP, InfiniteScoresShareTheMassEqually) {
  // 3e38 / 1e-3 overflows to +inf for the first 200 ids: those share all the mass equally
  // (1/200 each, lower id first), so top_p = 0.9 keeps ids 0..179. The best score being
  // infinite also takes the plain chunked-sort path of top-p.
  std::vector<float> logits = random_logits(1000, 1.0f, 4);
  for (size_t i = 0; i < 200; ++i) logits[i] = 3e38f;
  IdSet expected;
  for (TokenId i = 0; i < 180; ++i) expected.insert(i);
  const SamplingParams p = make_params(1e-3f, 0, 0.9f, 0.0f, 8);
  EXPECT_EQ(support_of(processed(p, logits)), expected);
  Sampler s(p);
  for (int i = 0; i < 200; ++i) {
    std::vector<float> l = logits;
    EXPECT_TRUE(expected.count(s.sample(l, {}, {})));
  }
}

// ---- min-p ----

TEST(SamplerMinP, KeepsTokensWithinRatioOfTheMostLikely) {
  // Probability ratios to the best token: 1, 0.5, 0.1, 0.05.
  const std::vector<float> l = {0.0f, std::log(0.5f), std::log(0.1f), std::log(0.05f)};
  const std::vector<SupportCase> cases = {
      {"min_p=0.2", l, make_params(1.0f, 0, 1.0f, 0.2f), {0, 1}},
      {"min_p=0.08", l, make_params(1.0f, 0, 1.0f, 0.08f), {0, 1, 2}},
      {"min_p=0.04", l, make_params(1.0f, 0, 1.0f, 0.04f), {0, 1, 2, 3}},
      {"min_p=0 is off", l, make_params(1.0f, 0, 1.0f, 0.0f), {0, 1, 2, 3}},
      // After temperature 0.5 the ratios square: 0.25, 0.01, 0.0025.
      {"T=0.5 min_p=0.2", l, make_params(0.5f, 0, 1.0f, 0.2f), {0, 1}},
      {"T=0.5 min_p=0.3", l, make_params(0.5f, 0, 1.0f, 0.3f), {0}},
      // After temperature 2 they become sqrt: 0.707, 0.316, 0.224.
      {"T=2 min_p=0.3", l, make_params(2.0f, 0, 1.0f, 0.3f), {0, 1, 2}},
      {"min_p=1 keeps only the best", l, make_params(1.0f, 0, 1.0f, 1.0f), {0}},
      {"after top_k=2", l, make_params(1.0f, 2, 1.0f, 0.08f), {0, 1}},
  };
  for (const SupportCase& c : cases) check_support(c);
  // HF's mask `probs < min_p * top_prob` keeps every token tied for the maximum.
  check_support({"min_p=1 with a tie", {0.0f, 0.0f, -1.0f}, make_params(1.0f, 0, 1.0f, 1.0f),
                 {0, 1}});
}

// ---- penalties ----

struct PenaltyCase {
  const char* name;
  float repetition, presence, frequency;
  Ids prompt, generated;
  std::vector<float> logits, expected;
};

TEST(SamplerPenalties, AppliedInPlaceWithHfAndOpenAiSemantics) {
  const std::vector<float> base = {2.0f, -2.0f, 3.0f, -3.0f, 1.0f, 0.0f};
  const std::vector<PenaltyCase> cases = {
      {"repetition 2: positive divided, negative multiplied, once per distinct id",
       2.0f, 0, 0, {0, 1, 1}, {0, 3, 3, 3, 5}, base, {1.0f, -4.0f, 3.0f, -6.0f, 1.0f, 0.0f}},
      {"repetition 0.5 rewards instead",
       0.5f, 0, 0, {0, 1, 1}, {0, 3, 3, 3}, base, {4.0f, -1.0f, 3.0f, -1.5f, 1.0f, 0.0f}},
      {"repetition covers prompt-only tokens",
       2.0f, 0, 0, {2, 2, 2}, {}, base, {2.0f, -2.0f, 1.5f, -3.0f, 1.0f, 0.0f}},
      {"repetition 1 is off",
       1.0f, 0, 0, {0, 1}, {2, 3}, base, base},
      {"frequency counts generated occurrences, prompt ignored",
       1.0f, 0, 0.5f, {0, 1, 5}, {2, 2, 2, 4}, base, {2.0f, -2.0f, 1.5f, -3.0f, 0.5f, 0.0f}},
      {"presence once per distinct generated id",
       1.0f, 1.0f, 0, {0, 1, 5}, {2, 2, 2, 4}, base, {2.0f, -2.0f, 2.0f, -3.0f, 0.0f, 0.0f}},
      {"presence and frequency together",
       1.0f, 1.0f, 0.5f, {0}, {2, 2, 2, 4}, base, {2.0f, -2.0f, 0.5f, -3.0f, -0.5f, 0.0f}},
      {"negative penalties encourage",
       1.0f, -1.0f, -0.5f, {}, {2, 2, 2, 4}, base, {2.0f, -2.0f, 5.5f, -3.0f, 2.5f, 0.0f}},
      // HF order: repetition first (2 / 2 = 1), then 1 - 0.5 * 2 - 0.25 = -0.25.
      {"repetition before presence/frequency",
       2.0f, 0.25f, 0.5f, {}, {0, 0}, base, {-0.25f, -2.0f, 3.0f, -3.0f, 1.0f, 0.0f}},
  };
  for (const PenaltyCase& c : cases) {
    SamplingParams p = make_params(0.0f);
    p.repetition_penalty = c.repetition;
    p.presence_penalty = c.presence;
    p.frequency_penalty = c.frequency;
    Sampler s(p);
    std::vector<float> l = c.logits;
    const TokenId t = s.sample(l, c.prompt, c.generated);
    for (size_t i = 0; i < l.size(); ++i) EXPECT_FLOAT_EQ(l[i], c.expected[i]) << c.name << " " << i;
    EXPECT_EQ(t, argmax(c.expected)) << c.name;
    // The same sampler again: internal bookkeeping must not leak between calls.
    std::vector<float> again = c.logits;
    s.sample(again, c.prompt, c.generated);
    EXPECT_EQ(again, l) << c.name << " (second call)";
  }
}

TEST(SamplerPenalties, ChangeTheGreedyChoice) {
  SamplingParams p = make_params(0.0f);
  p.repetition_penalty = 1.5f;
  std::vector<float> l = {2.0f, 1.5f};
  EXPECT_EQ(Sampler(p).sample(l, {}, Ids{0}), 1);  // 2 / 1.5 = 1.33 < 1.5
  p.repetition_penalty = 1.0f;
  p.presence_penalty = 0.6f;
  l = {2.0f, 1.5f};
  EXPECT_EQ(Sampler(p).sample(l, Ids{1}, Ids{0}), 1);
}

TEST(SamplerPenalties, AppliedBeforeTemperature) {
  SamplingParams p = make_params(2.0f, 0, 1.0f, 0.0f, 1);
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 1.0f;
  std::vector<float> l = {4.0f, -4.0f, 1.0f};
  Sampler(p).sample(l, Ids{0}, Ids{1});
  EXPECT_FLOAT_EQ(l[0], 1.0f);   // 4 / 2, then / T
  EXPECT_FLOAT_EQ(l[1], -4.5f);  // -4 * 2 - 1, then / T
  EXPECT_FLOAT_EQ(l[2], 0.5f);
}

// ---- robustness ----

TEST(SamplerRobustness, NeverDrawsNaNOrMinusInfAndRejectsBadIds) {
  const std::vector<float> l = {kNaN, -kInf, 0.0f, kNaN, 0.0f, -kInf};
  Sampler s(make_params(1.0f, 0, 1.0f, 0.0f, 3));
  IdSet drawn;
  for (int i = 0; i < 500; ++i) {
    std::vector<float> x = l;
    drawn.insert(s.sample(x, {}, {}));
  }
  EXPECT_EQ(drawn, (IdSet{2, 4}));

  std::vector<float> dead = {-kInf, kNaN, -kInf};
  EXPECT_EQ(s.sample(dead, {}, {}), 0);

  std::vector<float> huge = {1.0f, 3e38f, 3e38f, -1.0f};
  Sampler cold(make_params(1e-3f, 0, 0.9f, 0.1f, 4));  // 3e38 / 1e-3 overflows to +inf
  for (int i = 0; i < 50; ++i) {
    std::vector<float> x = huge;
    const TokenId t = cold.sample(x, {}, {});
    EXPECT_TRUE(t == 1 || t == 2) << t;
  }

  std::vector<float> x = {0.0f, 1.0f};
  EXPECT_THROW(s.sample(x, Ids{2}, {}), Error);
  EXPECT_THROW(s.sample(x, {}, Ids{-1}), Error);
  std::vector<float> empty;
  EXPECT_THROW(s.sample(empty, {}, {}), Error);
}

// ---- validate() ----

struct BadParam {
  const char* field;
  std::function<void(SamplingParams&)> set;
};

TEST(SamplerValidate, RejectsEachBadFieldByName) {
  const std::vector<BadParam> cases = {
      {"temperature", [](SamplingParams& p) { p.temperature = -0.1f; }},
      {"temperature", [](SamplingParams& p) { p.temperature = kNaN; }},
      {"temperature", [](SamplingParams& p) { p.temperature = kInf; }},
      {"top_k", [](SamplingParams& p) { p.top_k = -1; }},
      {"top_p", [](SamplingParams& p) { p.top_p = 0.0f; }},
      {"top_p", [](SamplingParams& p) { p.top_p = -0.5f; }},
      {"top_p", [](SamplingParams& p) { p.top_p = 1.01f; }},
      {"top_p", [](SamplingParams& p) { p.top_p = kNaN; }},
      {"min_p", [](SamplingParams& p) { p.min_p = -0.01f; }},
      {"min_p", [](SamplingParams& p) { p.min_p = 1.5f; }},
      {"min_p", [](SamplingParams& p) { p.min_p = kNaN; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = 0.0f; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = -1.0f; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = kNaN; }},
      {"presence_penalty", [](SamplingParams& p) { p.presence_penalty = 2.5f; }},
      {"presence_penalty", [](SamplingParams& p) { p.presence_penalty = -2.01f; }},
      {"presence_penalty", [](SamplingParams& p) { p.presence_penalty = kNaN; }},
      {"frequency_penalty", [](SamplingParams& p) { p.frequency_penalty = 2.01f; }},
      {"frequency_penalty", [](SamplingParams& p) { p.frequency_penalty = -3.0f; }},
      {"frequency_penalty", [](SamplingParams& p) { p.frequency_penalty = kNaN; }},
  };
  for (const BadParam& c : cases) {
    SamplingParams p;
    c.set(p);
    std::string message;
    try {
      p.validate();
    } catch (const Error& e) {
      message = e.what();
    }
    EXPECT_NE(message.find(c.field), std::string::npos)
        << c.field << ": message was '" << message << "'";
    EXPECT_THROW(Sampler{p}, Error) << c.field;
  }
}

TEST(SamplerValidate, AcceptsTheEdgesOfEachRange) {
  const std::vector<std::function<void(SamplingParams&)>> ok = {
      [](SamplingParams&) {},
      [](SamplingParams& p) { p.temperature = 2.0f; },
      [](SamplingParams& p) { p.top_k = 92544; },
      [](SamplingParams& p) { p.top_p = 1e-6f; },
      [](SamplingParams& p) { p.min_p = 1.0f; },
      [](SamplingParams& p) { p.repetition_penalty = 1e-3f; },
      [](SamplingParams& p) { p.presence_penalty = -2.0f; p.frequency_penalty = 2.0f; },
      [](SamplingParams& p) { p.presence_penalty = 2.0f; p.frequency_penalty = -2.0f; },
  };
  for (size_t i = 0; i < ok.size(); ++i) {
    SamplingParams p;
    ok[i](p);
    EXPECT_NO_THROW(p.validate()) << "case " << i;
  }
}

// ---- logprobs ----

std::vector<double> reference_log_softmax(const std::vector<float>& logits) {
  long double mx = -std::numeric_limits<long double>::infinity();
  for (float v : logits) {
    if (!std::isnan(v)) mx = std::max(mx, static_cast<long double>(v));
  }
  long double sum = 0;
  for (float v : logits) {
    if (!std::isnan(v)) sum += std::exp(static_cast<long double>(v) - mx);
  }
  std::vector<double> out;
  for (float v : logits) {
    out.push_back(std::isnan(v) ? -std::numeric_limits<double>::infinity()
                                : static_cast<double>(v - mx - std::log(sum)));
  }
  return out;
}

TEST(TopLogprobs, OrderingAndValues) {
  const std::vector<float> l = {1.0f, 3.0f, 2.0f, 3.0f, -kInf, kNaN, 0.0f};
  const std::vector<double> ref = reference_log_softmax(l);
  const std::vector<TokenLogprob> all = top_logprobs(l, 100);
  ASSERT_EQ(all.size(), l.size());
  const Ids expected_order = {1, 3, 2, 0, 6, 4, 5};  // ties by lower id, -inf/NaN last
  double sum = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].id, expected_order[i]) << i;
    const double r = ref[static_cast<size_t>(all[i].id)];
    if (std::isinf(r)) {
      EXPECT_EQ(all[i].logprob, -kInf) << i;
    } else {
      EXPECT_NEAR(all[i].logprob, r, 1e-6) << i;
    }
    EXPECT_EQ(all[i].logprob, token_logprob(l, all[i].id)) << i;
    sum += std::exp(double{all[i].logprob});
  }
  EXPECT_NEAR(sum, 1.0, 1e-6);

  const std::vector<TokenLogprob> top3 = top_logprobs(l, 3);
  ASSERT_EQ(top3.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(top3[i].id, all[i].id);
    EXPECT_EQ(top3[i].logprob, all[i].logprob);
  }
  EXPECT_TRUE(top_logprobs(l, 0).empty());
  EXPECT_TRUE(top_logprobs(l, -1).empty());
  EXPECT_THROW(token_logprob(l, 7), Error);
  EXPECT_THROW(token_logprob(l, -1), Error);
}

TEST(TopLogprobs, StableForLargeLogits) {
  const std::vector<float> l = {1000.0f, 999.0f, -1000.0f};
  const std::vector<TokenLogprob> t = top_logprobs(l, 3);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].id, 0);
  EXPECT_NEAR(t[0].logprob, -std::log1p(std::exp(-1.0)), 1e-6);
  EXPECT_NEAR(t[1].logprob, -1.0 - std::log1p(std::exp(-1.0)), 1e-6);
  EXPECT_NEAR(t[2].logprob, -2000.0 - std::log1p(std::exp(-1.0)), 1e-3);
  for (const TokenLogprob& x : t) EXPECT_TRUE(std::isfinite(x.logprob));
}

TEST(TopLogprobs, FullVocabularySumsToOne) {
  const std::vector<float> l = random_logits(92544, 3.0f, 9);
  const std::vector<TokenLogprob> all = top_logprobs(l, 92544);
  ASSERT_EQ(all.size(), l.size());
  double sum = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    sum += std::exp(double{all[i].logprob});
    if (i > 0) {
      const float prev = l[static_cast<size_t>(all[i - 1].id)];
      const float cur = l[static_cast<size_t>(all[i].id)];
      EXPECT_TRUE(prev > cur || (prev == cur && all[i - 1].id < all[i].id)) << i;
      EXPECT_GE(all[i - 1].logprob, all[i].logprob) << i;
    }
  }
  EXPECT_NEAR(sum, 1.0, 1e-5);
  const std::vector<TokenLogprob> top5 = top_logprobs(l, 5);
  ASSERT_EQ(top5.size(), 5u);
  EXPECT_EQ(top5[0].id, argmax(l));
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(top5[i].id, all[i].id);
    EXPECT_FLOAT_EQ(top5[i].logprob, token_logprob(l, top5[i].id));
  }
}

}  // namespace
}  // namespace ilm
