// Long contexts, cpu against ref, on every KV cache element type: more keys than several
// attention segments (256 keys each) and positions past max_position_embeddings, where
// dynamic NTK rescales the RoPE base every step. A tiny checkpoint with
// max_position_embeddings 256 and dynamic:4 (context limit 1024) stands in for a 32k
// checkpoint run to 64k+. Also the context `bench --context` synthesises into the cache.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include <fmt/format.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/kernels.h"
#include "model/internlm2.h"
#include "model/rope.h"
#include "perf/synthetic_context.h"
#include "runtime/loaded_model.h"
#include "synth/synth.h"

namespace ilm {
namespace {

double rel_err(std::span<const float> a, std::span<const float> b) {
  double worst = 0, peak = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]));
    peak = std::max(peak, std::abs(static_cast<double>(b[i])));
  }
  return worst / std::max(peak, 1e-30);
}

constexpr DType kKvTypes[] = {DType::F32, DType::BF16, DType::F16, DType::I8};

class LongContext : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::filesystem::temp_directory_path() / fmt::format("ilm-long-context-{}", ::getpid());
    SynthOptions o;
    o.preset = "tiny";
    o.seed = 23;
    o.max_position_embeddings = 256;  // one attention segment
    o.rope_scaling = "dynamic:4";     // context limit 1024
    o.out = dir_;
    o.tokenizer_dir = INTERNLM_TEST_TOKENIZER_DIR;
    write_synthetic_checkpoint(o);
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }
  static std::filesystem::path dir_;

  // Prefills `prompt_len` random tokens in one forward, then decodes `steps` more one at a
  // time (greedy on the ref logits, so both backends see the same tokens); returns the logits
  // of the last prompt position and of every decode step, [1 + steps, V].
  static std::vector<float> run(CausalLM& lm, DType kv, int64_t prompt_len, int64_t steps,
                                const std::vector<TokenId>& tokens) {
    const int64_t V = lm.config().vocab_size;
    std::vector<float> out(static_cast<size_t>((1 + steps) * V));
    KvCache cache = lm.new_cache_as(prompt_len + steps, kv);
    std::span<const TokenId> all(tokens);
    lm.forward(all.first(static_cast<size_t>(prompt_len)), cache, std::span<float>(out).first(static_cast<size_t>(V)),
               false);
    for (int64_t s = 0; s < steps; ++s)
      lm.forward(all.subspan(static_cast<size_t>(prompt_len + s), 1), cache,
                 std::span<float>(out).subspan(static_cast<size_t>((1 + s) * V), static_cast<size_t>(V)), false);
    EXPECT_EQ(cache.length(), prompt_len + steps);
    return out;
  }
};
std::filesystem::path LongContext::dir_;

std::vector<TokenId> random_tokens(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<TokenId> d(1000, 60000);
  std::vector<TokenId> ids(n, 1);
  for (size_t i = 1; i < n; ++i) ids[i] = d(rng);
  return ids;
}

TEST_F(LongContext, PastMaxPositionEmbeddingsAndManySegmentsMatchRefOnEveryKvType) {
  LoadedModel ref = LoadedModel::load(dir_, {"ref", 2, {}});
  ASSERT_EQ(ref.config.max_position_embeddings, 256);
  ASSERT_EQ(ref.lm->context_limit(), 1024);
  // 600 prompt tokens (3 segments, past max_position_embeddings: the prefill's NTK base is
  // already scaled) and 100 decode steps to 700 positions, the base changing every step.
  const int64_t P = 600, S = 100, V = ref.config.vocab_size;
  ASSERT_GT(rope_base(ref.config, P + S), rope_base(ref.config, P));  // NTK really moves
  const auto tokens = random_tokens(static_cast<size_t>(P + S), 5);
  for (DType kv : kKvTypes) {
    const auto lr = run(*ref.lm, kv, P, S, tokens);
    struct Path {
      Precision precision;
      const char* isa;
      double bound;
    };
    std::vector<Path> paths = {{Precision::Exact, "", 1e-3}};
    // bf16 activations: the bound of the whole-model test of the fast path (CpuModelPrecision).
    if (cpu::kernels_for("avx512bf16")) paths.push_back({Precision::Fast, "avx512bf16", 1e-2});
    for (const Path& path : paths) {
      CpuBackend backend(2, path.precision, path.isa);
      InternLM2 lm(ref.config, *ref.store, backend);
      const auto lc = run(lm, kv, P, S, tokens);
      double worst = 0;
      for (int64_t s = 0; s <= S; ++s) {
        const double e = rel_err(std::span<const float>(lc).subspan(static_cast<size_t>(s * V), static_cast<size_t>(V)),
                                 std::span<const float>(lr).subspan(static_cast<size_t>(s * V), static_cast<size_t>(V)));
        worst = std::max(worst, e);
        EXPECT_LT(e, path.bound) << kv_cache_dtype_name(kv) << " " << precision_name(path.precision) << " position "
                                 << P - 1 + s;
      }
      std::printf("kv %s, %s: worst logits rel err over positions %lld..%lld: %.2e\n",
                  std::string(kv_cache_dtype_name(kv)).c_str(), std::string(precision_name(path.precision)).c_str(),
                  static_cast<long long>(P - 1), static_cast<long long>(P + S - 1), worst);
    }
  }
}

TEST_F(LongContext, ChunkedPrefillPastMaxPositionEqualsOneForward) {
  // A prompt past max_position_embeddings prefilled in chunks (each passing the whole prompt
  // length as rope_length, as the engine does) gives the bits of one forward, on every KV type.
  LoadedModel m = LoadedModel::load(dir_, {"cpu", 2, {}, Precision::Exact});
  const int64_t P = 700, V = m.config.vocab_size;
  const auto tokens = random_tokens(static_cast<size_t>(P), 6);
  for (DType kv : kKvTypes) {
    std::vector<float> one(static_cast<size_t>(V)), chunked(static_cast<size_t>(V));
    KvCache a = m.lm->new_cache_as(P, kv), b = m.lm->new_cache_as(P, kv);
    m.lm->forward(tokens, a, one, false);
    for (int64_t at = 0; at < P; at += 256) {
      const int64_t n = std::min<int64_t>(256, P - at);
      SequenceInput in{std::span<const TokenId>(tokens).subspan(static_cast<size_t>(at), static_cast<size_t>(n)), &b,
                       chunked, false, P, at + n < P};
      m.lm->forward_batch(std::span<SequenceInput>(&in, 1));
    }
    EXPECT_EQ(std::memcmp(one.data(), chunked.data(), one.size() * sizeof(float)), 0) << kv_cache_dtype_name(kv);
  }
}

TEST_F(LongContext, SynthesizedContextIsDeterministicAndDecodesLikeRef) {
  LoadedModel ref = LoadedModel::load(dir_, {"ref", 2, {}});
  CpuBackend backend(2, Precision::Exact, "");
  InternLM2 cpu(ref.config, *ref.store, backend);
  const int64_t N = 900, S = 4, V = ref.config.vocab_size;  // 4 segments, past 256 x 3
  for (DType kv : kKvTypes) {
    KvCache a = ref.lm->new_cache_as(N + S, kv), b = cpu.new_cache_as(N + S, kv);
    a.prefault(N + S);
    fill_synthetic_context(a, N, 7);
    fill_synthetic_context(b, N, 7);
    ASSERT_EQ(a.length(), N);
    // Same seed, same bytes, in the cache's own element type.
    for (int64_t layer = 0; layer < ref.config.num_layers; ++layer) {
      const KvView va = a.layer(layer, N), vb = b.layer(layer, N);
      for (int64_t p : {int64_t{0}, int64_t{255}, int64_t{256}, N - 1}) {
        EXPECT_EQ(std::memcmp(va.k(p), vb.k(p), static_cast<size_t>(va.row_bytes)), 0);
        EXPECT_EQ(std::memcmp(va.v(p), vb.v(p), static_cast<size_t>(va.row_bytes)), 0);
        EXPECT_NE(std::memcmp(va.k(p), va.v(p), static_cast<size_t>(va.row_bytes)), 0);
      }
    }
    std::vector<float> lr(static_cast<size_t>(V)), lc(static_cast<size_t>(V));
    for (int64_t s = 0; s < S; ++s) {
      const TokenId id[1] = {static_cast<TokenId>(1000 + s)};
      ref.lm->forward(id, a, lr, false);
      cpu.forward(id, b, lc, false);
      EXPECT_LT(rel_err(lc, lr), 1e-3) << kv_cache_dtype_name(kv) << " step " << s;
    }
  }
  // A different seed gives different rows.
  KvCache c = cpu.new_cache_as(4, DType::F32), d = cpu.new_cache_as(4, DType::F32);
  fill_synthetic_context(c, 4, 1);
  fill_synthetic_context(d, 4, 2);
  EXPECT_NE(std::memcmp(c.layer(0, 4).k(3), d.layer(0, 4).k(3), static_cast<size_t>(c.pool().row_bytes())), 0);
}

}  // namespace
}  // namespace ilm
