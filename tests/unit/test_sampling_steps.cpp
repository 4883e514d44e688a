// Each sampling step alone (runtime/sampling_steps.h), then the new request-level controls
// through the Sampler: logit_bias and min_tokens.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "common/error.h"
#include "runtime/sampler.h"
#include "runtime/sampling_steps.h"

namespace ilm {
namespace {

using namespace sampling;
constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<TokenId> alive_ids(const Candidates& c) {
  std::vector<TokenId> ids;
  for (size_t i = 0; i < c.n; ++i) ids.push_back(c.items[i].second);
  std::sort(ids.begin(), ids.end());
  return ids;
}

TEST(SamplingSteps, RepetitionPenaltyOncePerDistinctIdAndMarksCleared) {
  std::vector<float> l = {2.0f, -2.0f, 4.0f, 1.0f};
  std::vector<int32_t> marks(4, 0);
  const std::vector<TokenId> prompt = {0, 1, 0}, gen = {1, 0};
  apply_repetition_penalty(l, prompt, gen, 2.0f, marks);
  EXPECT_EQ(l, (std::vector<float>{1.0f, -4.0f, 4.0f, 1.0f}));
  EXPECT_EQ(marks, (std::vector<int32_t>(4, 0)));
  apply_repetition_penalty(l, prompt, gen, 1.0f, marks);  // 1: off
  EXPECT_EQ(l, (std::vector<float>{1.0f, -4.0f, 4.0f, 1.0f}));
}

TEST(SamplingSteps, PresenceAndFrequencyCountGeneratedTokensOnly) {
  std::vector<float> l = {0.0f, 0.0f, 0.0f};
  std::vector<int32_t> counts(3, 0);
  const std::vector<TokenId> gen = {2, 2, 0, 2};
  apply_presence_frequency(l, gen, 0.5f, 0.25f, counts);
  EXPECT_FLOAT_EQ(l[0], -0.25f - 0.5f);
  EXPECT_FLOAT_EQ(l[1], 0.0f);
  EXPECT_FLOAT_EQ(l[2], -0.75f - 0.5f);
  EXPECT_EQ(counts, (std::vector<int32_t>(3, 0)));
}

TEST(SamplingSteps, LogitBiasAddsAndBanRemoves) {
  std::vector<float> l = {1.0f, 2.0f, 3.0f};
  const std::vector<std::pair<TokenId, float>> bias = {{0, 5.0f}, {2, -100.0f}};
  apply_logit_bias(l, bias);
  EXPECT_EQ(l, (std::vector<float>{6.0f, 2.0f, -97.0f}));
  const std::vector<TokenId> banned = {1};
  ban(l, banned);
  EXPECT_EQ(l[1], -kInf);
}

TEST(SamplingSteps, TemperatureBuildsCandidatesWithoutNaNOrMinusInf) {
  std::vector<float> l = {1.0f, std::nanf(""), -kInf, 3.0f};
  Candidates c;
  ASSERT_TRUE(scale_by_temperature(l, 0.5f, c));
  EXPECT_EQ(alive_ids(c), (std::vector<TokenId>{0, 3}));
  EXPECT_EQ(l[0], 2.0f);
  EXPECT_EQ(l[1], -kInf);  // NaN reads -inf afterwards
  EXPECT_EQ(c.max_score, 6.0);
  std::vector<float> none = {-kInf, std::nanf("")};
  EXPECT_FALSE(scale_by_temperature(none, 1.0f, c));
}

TEST(SamplingSteps, TopKKeepsTiesAtTheBoundary) {
  std::vector<float> l = {1.0f, 3.0f, 2.0f, 3.0f, 2.0f, 0.0f};
  Candidates c;
  scale_by_temperature(l, 1.0f, c);
  keep_top_k(c, 2);
  EXPECT_EQ(alive_ids(c), (std::vector<TokenId>{1, 3}));
  scale_by_temperature(l, 1.0f, c);
  keep_top_k(c, 3);  // the 3rd largest (2) is tied: both 2s stay
  EXPECT_EQ(alive_ids(c), (std::vector<TokenId>{1, 2, 3, 4}));
  EXPECT_EQ(c.sorted, c.n);
  scale_by_temperature(l, 1.0f, c);
  keep_top_k(c, 0);  // off
  EXPECT_EQ(c.n, 6u);
}

// Top-p against a brute force over random rows: sort, keep while the mass before is < p.
TEST(SamplingSteps, TopPMatchesBruteForce) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<float> l(300);
    for (float& v : l) v = nd(rng);
    const double p = 0.05 + 0.9 * (trial % 19) / 18.0;
    std::vector<std::pair<float, TokenId>> all;
    for (size_t i = 0; i < l.size(); ++i) all.emplace_back(l[i], static_cast<TokenId>(i));
    std::sort(all.begin(), all.end(), ranks_before);
    const double mx = all[0].first;
    double total = 0.0;
    for (auto& [s, id] : all) total += std::exp(s - mx);
    std::vector<TokenId> want;
    double mass = 0.0;
    for (auto& [s, id] : all) {
      if (mass >= p) break;
      want.push_back(id);
      mass += std::exp(s - mx) / total;
    }
    std::sort(want.begin(), want.end());
    Candidates c;
    scale_by_temperature(l, 1.0f, c);
    keep_top_p(c, p);
    EXPECT_EQ(alive_ids(c), want) << "trial " << trial << " p " << p;
  }
}

TEST(SamplingSteps, MinPKeepsOrderAndTheBest) {
  std::vector<float> l = {0.0f, std::log(0.5f), std::log(0.05f), std::log(0.2f)};
  Candidates c;
  scale_by_temperature(l, 1.0f, c);
  keep_min_p(c, 0.1);
  ASSERT_EQ(c.n, 3u);
  EXPECT_EQ(c.items[0].second, 0);
  EXPECT_EQ(c.items[1].second, 1);
  EXPECT_EQ(c.items[2].second, 3);
  write_back(c, l);
  EXPECT_EQ(l[2], -kInf);
  EXPECT_EQ(l[0], 0.0f);
}

TEST(SamplingSteps, DrawIsTheInverseCdfInCandidateOrder) {
  std::vector<float> l = {0.0f, 0.0f, std::log(2.0f)};  // weights 1, 1, 2 of 4
  Candidates c;
  scale_by_temperature(l, 1.0f, c);
  EXPECT_EQ(draw(c, 0.0), 0);
  EXPECT_EQ(draw(c, 0.24), 0);
  EXPECT_EQ(draw(c, 0.26), 1);
  EXPECT_EQ(draw(c, 0.51), 2);
  EXPECT_EQ(draw(c, std::nextafter(1.0, 0.0)), 2);
}

TEST(SamplerLogitBias, MinusHundredMovesTheGreedyChoiceAndPlusHundredForcesOne) {
  std::vector<float> base = {0.5f, 3.0f, 1.0f, 2.0f};
  SamplingParams p;
  p.logit_bias = {{1, -100.0f}};
  Sampler s(p);
  std::vector<float> l = base;
  EXPECT_EQ(s.sample(l, {}, {}), 3);
  p.logit_bias = {{0, 100.0f}};
  p.temperature = 1.0f;
  Sampler hot(p);
  for (int i = 0; i < 50; ++i) {
    l = base;
    EXPECT_EQ(hot.sample(l, {}, {}), 0);  // e^-97.5 of the mass elsewhere
  }
}

TEST(SamplerLogitBias, RejectsOutOfRangeBiasesAndIds) {
  SamplingParams p;
  p.logit_bias = {{0, 100.5f}};
  EXPECT_THROW(p.validate(), Error);
  p.logit_bias = {{0, std::nanf("")}};
  EXPECT_THROW(p.validate(), Error);
  p.logit_bias = {{-1, 1.0f}};
  EXPECT_THROW(p.validate(), Error);
  p.logit_bias = {{7, 1.0f}};  // beyond this vocabulary: the sampler knows its size
  Sampler s(p);
  std::vector<float> l = {0.0f, 1.0f};
  EXPECT_THROW(s.sample(l, {}, {}), Error);
}

TEST(SamplerMinTokens, EndIdsBannedUntilEnoughTokens) {
  SamplingParams p;
  p.min_tokens = 2;
  p.end_ids = {2};
  Sampler s(p);
  const std::vector<float> base = {0.0f, 1.0f, 5.0f};  // the end id is the greedy choice
  std::vector<TokenId> gen;
  for (int i = 0; i < 3; ++i) {
    std::vector<float> l = base;
    const TokenId t = s.sample(l, {}, gen);
    EXPECT_EQ(t, i < 2 ? 1 : 2) << i;
    gen.push_back(t);
  }
  p.min_tokens = -1;
  EXPECT_THROW(p.validate(), Error);
}

TEST(SamplerMask, OnlyMaskedTokensAndPaddedIdsNever) {
  // Bits for 64 ids; the logits row has 70 (a padded vocabulary): ids 64..69 are never drawn.
  std::vector<uint64_t> bits(1, 0);
  bits[0] |= uint64_t{1} << 5;
  const std::vector<TokenId> ends = {7};
  std::vector<float> base(70, 0.0f);
  base[69] = 50.0f;
  base[7] = 40.0f;
  base[5] = 1.0f;
  TokenMask m{&bits, ends, /*end_allowed=*/false, /*only_end=*/false};
  Sampler greedy(SamplingParams{});
  std::vector<float> l = base;
  EXPECT_EQ(greedy.sample(l, {}, {}, &m), 5);
  m.end_allowed = true;
  l = base;
  EXPECT_EQ(greedy.sample(l, {}, {}, &m), 7);
}

TEST(SamplerMask, MinTokensYieldsWhenTheGrammarAllowsOnlyTheEnd) {
  std::vector<uint64_t> none(2, 0);
  const std::vector<TokenId> ends = {3};
  SamplingParams p;
  p.min_tokens = 5;
  p.end_ids = ends;
  Sampler s(p);
  std::vector<float> l(100, 0.0f);
  TokenMask m{&none, ends, /*end_allowed=*/true, /*only_end=*/true};
  EXPECT_EQ(s.sample(l, {}, {}, &m), 3);  // not token 0 from an all -inf row
}

}  // namespace
}  // namespace ilm
