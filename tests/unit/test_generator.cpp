// Generation loop: stop ids, token budget, context limit, determinism — on a scripted model.
#include <gtest/gtest.h>

#include <vector>

#include "common/error.h"
#include "runtime/generator.h"

namespace ilm {
namespace {

// A model whose next-token distribution is a function of the sequence length, so tests can
// script exactly what greedy decoding produces.
class ScriptedLM final : public CausalLM {
 public:
  explicit ScriptedLM(std::vector<TokenId> script, int64_t vocab = 16, int64_t limit = 64)
      : script_(std::move(script)) {
    cfg_.vocab_size = vocab;
    cfg_.num_layers = 1;
    cfg_.num_kv_heads = 1;
    cfg_.head_dim = 2;
    cfg_.max_position_embeddings = limit;
  }
  const ModelConfig& config() const override { return cfg_; }
  void forward(std::span<const TokenId> ids, KvCache& cache, std::span<float> logits,
               bool all_logits) override {
    ASSERT_FALSE(all_logits);
    cache.reserve_more(static_cast<int64_t>(ids.size()));
    cache.advance(static_cast<int64_t>(ids.size()));
    ++forwards;
    const size_t step = static_cast<size_t>(forwards - 1);
    std::fill(logits.begin(), logits.begin() + cfg_.vocab_size, 0.0f);
    // Slightly different values everywhere so sampling has something to do.
    for (int64_t i = 0; i < cfg_.vocab_size; ++i) logits[static_cast<size_t>(i)] = 0.01f * static_cast<float>(i % 5);
    const TokenId want = step < script_.size() ? script_[step] : 0;
    logits[static_cast<size_t>(want)] = 10.0f;
  }
  void forward_batch(std::span<SequenceInput> batch) override {
    for (auto& in : batch) forward(in.ids, *in.cache, in.logits, in.all_logits);
  }
  KvCache new_cache(int64_t capacity) const override { return KvCache(1, 1, 2, capacity); }
  std::shared_ptr<KvBlockPool> new_kv_pool(int64_t block_size, int64_t max_blocks,
                                          DType dtype) const override {
    return std::make_shared<KvBlockPool>(1, 1, 2, block_size, max_blocks, dtype);
  }
  std::vector<std::string> weight_names() const override { return {}; }
  uint64_t decode_weight_bytes() const override { return 0; }
  std::vector<std::string> matrix_names() const override { return {}; }
  int forwards = 0;

 private:
  ModelConfig cfg_;
  std::vector<TokenId> script_;
};

TEST(Generator, StopsOnStopIdWithoutEmittingIt) {
  ScriptedLM lm({5, 6, 7, 15, 8});
  GenerateOptions o;
  o.max_tokens = 10;
  o.stop_ids = {2, 15};
  std::vector<TokenId> streamed;
  auto r = generate(lm, std::vector<TokenId>{1, 3}, o, [&](TokenId t) {
    streamed.push_back(t);
    return true;
  });
  EXPECT_EQ(r.tokens, (std::vector<TokenId>{5, 6, 7}));
  EXPECT_EQ(streamed, r.tokens);
  EXPECT_EQ(r.finish_reason, "stop");
  EXPECT_EQ(r.completion_tokens, 4);  // the stop token was sampled too
  EXPECT_EQ(r.prompt_tokens, 2);
  EXPECT_EQ(lm.forwards, 4);  // prefill + 3 decode steps; nothing after the stop token
}

TEST(Generator, EveryStopIdCounts) {
  for (TokenId stop : {2, 9, 14}) {
    ScriptedLM lm({4, stop, 4});
    GenerateOptions o;
    o.stop_ids = {2, 9, 14};
    auto r = generate(lm, std::vector<TokenId>{1}, o);
    EXPECT_EQ(r.tokens, std::vector<TokenId>{4}) << stop;
    EXPECT_EQ(r.finish_reason, "stop");
  }
}

TEST(Generator, MaxTokensGivesLength) {
  ScriptedLM lm({3, 3, 3, 3, 3, 3});
  GenerateOptions o;
  o.max_tokens = 4;
  auto r = generate(lm, std::vector<TokenId>{1}, o);
  EXPECT_EQ(r.tokens.size(), 4u);
  EXPECT_EQ(r.finish_reason, "length");
  EXPECT_EQ(lm.forwards, 4);  // the last token needs no forward
}

TEST(Generator, ZeroMaxTokens) {
  ScriptedLM lm({3});
  GenerateOptions o;
  o.max_tokens = 0;
  auto r = generate(lm, std::vector<TokenId>{1}, o);
  EXPECT_TRUE(r.tokens.empty());
  EXPECT_EQ(r.finish_reason, "length");
  EXPECT_EQ(lm.forwards, 0);
}

TEST(Generator, ContextLimitCapsGeneration) {
  ScriptedLM lm(std::vector<TokenId>(100, 3), 16, /*limit=*/8);
  GenerateOptions o;
  o.max_tokens = 100;
  auto r = generate(lm, std::vector<TokenId>{1, 2, 3}, o);
  EXPECT_EQ(r.tokens.size(), 5u);  // 3 prompt + 5 generated = the limit of 8
  EXPECT_EQ(r.finish_reason, "length");
}

TEST(Generator, RejectsEmptyOrOversizedPrompt) {
  ScriptedLM lm({3}, 16, 4);
  GenerateOptions o;
  EXPECT_THROW(generate(lm, std::vector<TokenId>{}, o), Error);
  EXPECT_THROW(generate(lm, std::vector<TokenId>{1, 2, 3, 4}, o), Error);
}

TEST(Generator, CallbackCanStop) {
  ScriptedLM lm({3, 4, 5, 6});
  GenerateOptions o;
  o.max_tokens = 10;
  auto r = generate(lm, std::vector<TokenId>{1}, o, [](TokenId t) { return t != 4; });
  EXPECT_EQ(r.tokens, (std::vector<TokenId>{3, 4}));
  EXPECT_EQ(r.finish_reason, "stop");
}

TEST(Generator, SampledRunsRepeatWithTheSameSeed) {
  GenerateOptions o;
  o.max_tokens = 20;
  o.sampling.temperature = 5.0f;  // flat enough that the scripted token is not always chosen
  o.sampling.seed = 1234;
  ScriptedLM a(std::vector<TokenId>(30, 3)), b(std::vector<TokenId>(30, 3));
  auto ra = generate(a, std::vector<TokenId>{1}, o);
  auto rb = generate(b, std::vector<TokenId>{1}, o);
  EXPECT_EQ(ra.tokens, rb.tokens);
  o.sampling.seed = 99;
  ScriptedLM c(std::vector<TokenId>(30, 3));
  auto rc = generate(c, std::vector<TokenId>{1}, o);
  EXPECT_NE(ra.tokens, rc.tokens);
}

}  // namespace
}  // namespace ilm
