// The cpu backend against the ref backend: each kernel ISA this CPU supports, each operator
// on random inputs, and whole-model logits / greedy output on a synthetic checkpoint.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include <fmt/format.h>

#include "backend/cpu/attention.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/kernels.h"
#include "backend/host_tensor.h"
#include "backend/quant.h"
#include "backend/ref/ref_backend.h"
#include "common/error.h"
#include "model/internlm2.h"
#include "runtime/generator.h"
#include "runtime/loaded_model.h"
#include "synth/synth.h"

namespace ilm {
namespace {

std::vector<float> random_vec(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0, peak = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]));
    peak = std::max(peak, std::abs(static_cast<double>(b[i])));
  }
  return worst / std::max(peak, 1e-30);
}


TEST(CpuKernels, GenericIsAlwaysAvailableAndBestIsDetected) {
  const auto isas = cpu::supported_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.back(), "generic");
  EXPECT_EQ(cpu::best_kernels(Precision::Exact).isa, isas.front());
  EXPECT_TRUE(cpu::best_kernels(Precision::Fast).isa == "avx512bf16" || cpu::best_kernels(Precision::Fast).isa == isas.front());
  EXPECT_EQ(cpu::kernels_for("no-such-isa"), nullptr);
}

TEST(CpuKernels, MatmulMatchesRefForEveryIsaDtypeAndTail) {
  RefBackend ref(1);
  for (auto isa : cpu::supported_isas()) {
    CpuBackend cpu(2, Precision::Exact, std::string(isa));
    for (DType dt : {DType::BF16, DType::F16, DType::F32}) {
      for (auto [T, N, K] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
               {1, 1, 1}, {1, 7, 37}, {3, 9, 64}, {5, 13, 100}, {9, 16, 256}, {17, 5, 33}}) {
        HostTensor w(dt, {N, K}, random_vec(static_cast<size_t>(N * K), 1, 0.1f));
        HostTensor b(dt, {N}, random_vec(static_cast<size_t>(N), 2));
        auto wr = ref.load_weight(w.ref), wc = cpu.load_weight(w.ref);
        auto br = ref.load_weight(b.ref), bc = cpu.load_weight(b.ref);
        const auto x = random_vec(static_cast<size_t>(T * K), 3);
        std::vector<float> yr(static_cast<size_t>(T * N)), yc(yr.size());
        ref.matmul(x.data(), T, *wr, br.get(), yr.data());
        cpu.matmul(x.data(), T, *wc, bc.get(), yc.data());
        EXPECT_LT(rel_err(yc, yr), 1e-5) << isa << " " << dtype_name(dt) << " T" << T << " N" << N << " K" << K;
      }
    }
  }
}

// The kernels' KV widening gives exactly what kv_row_f32 (the definition every backend reads
// the cache by) gives, for every element type and a head slice that is not a multiple of 16.
TEST(CpuKernels, WidenEqualsKvRowF32) {
  for (auto isa : cpu::supported_isas()) {
    const cpu::Kernels& k = *cpu::kernels_for(isa);
    for (DType t : {DType::F32, DType::BF16, DType::F16, DType::I8}) {
      const int64_t nkv = 3, hd = 37;
      KvCache cache(1, nkv, hd, 2, t);
      cache.reserve_more(2);
      KvView kv = cache.layer(0, 2);
      const auto v = random_vec(static_cast<size_t>(nkv * hd), 19, 3.0f);
      kv_row_store(kv, kv.k(1), v.data());
      std::vector<float> want(static_cast<size_t>(hd)), got(want.size());
      for (int64_t g = 0; g < nkv; ++g) {
        const float* w = kv_row_f32(kv, kv.k(1), g, want.data());
        k.widen(static_cast<const std::byte*>(kv.k(1)) + g * hd * kv.elem_bytes, t, kv_row_scale(kv, kv.k(1), g), hd,
                got.data());
        for (int64_t i = 0; i < hd; ++i) ASSERT_EQ(got[static_cast<size_t>(i)], w[i]) << isa << " " << dtype_name(t);
      }
    }
  }
}

// A query's attention output does not depend on which other queries share the call: 70
// positions at once (three query blocks, several key tiles and segments: the prompt schedule)
// equal each position alone and a 5-position batch (the decode schedule), bit for bit, so
// chunked, batched and recomputed prompts give what decode gives.
TEST(CpuBackendOps, AttentionOfAPositionIsTheSameAloneOrInABlock) {
  for (auto isa : cpu::supported_isas()) {
    CpuBackend cpu(2, Precision::Exact, std::string(isa));
    // Paged caches with blocks of 7 (the f32 cache is read in place, in runs across blocks)
    // and a contiguous one.
    for (auto [t, block] : std::vector<std::pair<DType, int64_t>>{
             {DType::BF16, 0}, {DType::F32, 7}, {DType::I8, 7}, {DType::F16, 7}}) {
      const int64_t nh = 12, nkv = 3, hd = 64, T = 70, past = 600, L = past + T;
      std::shared_ptr<KvBlockPool> pool;
      if (block > 0) pool = std::make_shared<KvBlockPool>(1, nkv, hd, block, (L + block - 1) / block, t);
      KvCache cache = block > 0 ? KvCache(pool, L) : KvCache(1, nkv, hd, L, t);
      cache.reserve_more(L);
      KvView kv = cache.layer(0, L);
      const auto k = random_vec(static_cast<size_t>(L * nkv * hd), 15);
      const auto v = random_vec(k.size(), 16);
      const int64_t row = nkv * hd;
      for (int64_t p = 0; p < L; ++p) {
        kv_row_store(kv, kv.k(p), k.data() + p * row);
        kv_row_store(kv, kv.v(p), v.data() + p * row);
      }
      const auto q = random_vec(static_cast<size_t>(T * nh * hd), 17);
      std::vector<float> all(q.size()), one(static_cast<size_t>(nh * hd));
      cpu.attention(q.data(), T, nh, nkv, hd, kv, past, all.data());
      for (int64_t i = 0; i < T; ++i) {
        cpu.attention(q.data() + i * nh * hd, 1, nh, nkv, hd, kv, past + i, one.data());
        for (int64_t e = 0; e < nh * hd; ++e)
          ASSERT_EQ(one[static_cast<size_t>(e)], all[static_cast<size_t>(i * nh * hd + e)])
              << isa << " " << dtype_name(t) << " block " << block << " t" << i << " e" << e;
      }
      std::vector<float> five(static_cast<size_t>(5 * nh * hd));
      cpu.attention(q.data() + 10 * nh * hd, 5, nh, nkv, hd, kv, past + 10, five.data());
      for (int64_t e = 0; e < 5 * nh * hd; ++e)
        ASSERT_EQ(five[static_cast<size_t>(e)], all[static_cast<size_t>(10 * nh * hd + e)])
            << isa << " " << dtype_name(t) << " block " << block << " e" << e;
    }
  }
}

// The decode schedule's fused kernels (keys transposed and widened in registers, P · V read
// from the cache, the vector softmax step) give the same bits as the same set without them
// (f32 copies, gemm, the portable softmax), on every KV type, for decode, small batches and
// prompts, and for a head size the fused kernels do not take (24: the fallback alone).
TEST(CpuBackendOps, FusedDecodeAttentionKernelsGiveTheSameBitsAsTheUnfusedPath) {
  ThreadPool pool(2);
  int checked = 0;
  for (auto isa : cpu::supported_isas()) {
    const cpu::Kernels& fused = *cpu::kernels_for(isa);
    if (!fused.widen_transpose && !fused.gemm_kv_rows && !fused.exp_row) continue;
    cpu::Kernels plain = fused;
    plain.widen_transpose = nullptr;
    plain.gemm_kv_rows = nullptr;
    plain.exp_row = nullptr;
    for (DType t : {DType::F32, DType::BF16, DType::F16, DType::I8})
      for (int64_t hd : {64, 24}) {
        const int64_t nh = 8, nkv = 2, block = 7, L = 700;
        auto kv_pool = std::make_shared<KvBlockPool>(1, nkv, hd, block, (L + block - 1) / block, t);
        KvCache cache(kv_pool, L);
        cache.reserve_more(L);
        KvView kv = cache.layer(0, L);
        const auto k = random_vec(static_cast<size_t>(L * nkv * hd), 25);
        const auto v = random_vec(k.size(), 26);
        for (int64_t p = 0; p < L; ++p) {
          kv_row_store(kv, kv.k(p), k.data() + p * nkv * hd);
          kv_row_store(kv, kv.v(p), v.data() + p * nkv * hd);
        }
        for (int64_t T : {1, 3, 8, 20}) {
          const auto q = random_vec(static_cast<size_t>(T * nh * hd), 27 + static_cast<uint32_t>(T));
          std::vector<float> a(q.size()), b(q.size());
          cpu::attention(fused, pool, q.data(), T, nh, nkv, hd, kv, L - T, a.data());
          cpu::attention(plain, pool, q.data(), T, nh, nkv, hd, kv, L - T, b.data());
          for (size_t e = 0; e < a.size(); ++e)
            ASSERT_EQ(a[e], b[e]) << isa << " " << dtype_name(t) << " hd " << hd << " T " << T << " e" << e;
          ++checked;
        }
      }
  }
  if (checked == 0) GTEST_SKIP() << "no kernel set with fused attention kernels on this CPU";
}

// A NaN or infinity in the input gives non-finite outputs on every kernel set, as f32
// arithmetic would (quantized kernels must not round it away; the vectorised exp must not
// clamp a NaN).
TEST(CpuKernels, NanPropagates) {
  for (auto isa : cpu::supported_isas()) {
    const cpu::Kernels& kt = *cpu::kernels_for(isa);
    float e[4] = {NAN, -INFINITY, 0.0f, -100.0f};
    kt.exp(e, 4);
    EXPECT_TRUE(std::isnan(e[0])) << isa;
    EXPECT_EQ(e[1], 0.0f) << isa;
    EXPECT_EQ(e[2], 1.0f) << isa;
    EXPECT_EQ(e[3], 0.0f) << isa;
    CpuBackend cpu(2, Precision::Exact, std::string(isa));
    for (const char* fmt_name : {"none", "int8", "int4"}) {
      const int64_t N = 20, K = 64;
      HostTensor w(DType::BF16, {N, K}, random_vec(static_cast<size_t>(N * K), 35, 0.02f));
      auto wc = cpu.load_weight(w.ref, parse_quant(fmt_name));
      for (int64_t at : {0, 5, 20, 63, -1}) {  // -1: an infinity at 7 (f32 gives ±inf or NaN)
        auto x = random_vec(static_cast<size_t>(2 * K), 36);
        x[static_cast<size_t>(K + (at < 0 ? 7 : at))] = at < 0 ? INFINITY : NAN;  // token 1 only
        std::vector<float> y(static_cast<size_t>(2 * N));
        cpu.matmul(x.data(), 2, *wc, nullptr, y.data());
        for (int64_t r = 0; r < N; ++r) {
          EXPECT_FALSE(std::isnan(y[static_cast<size_t>(r)])) << isa << " " << fmt_name;
          EXPECT_FALSE(std::isfinite(y[static_cast<size_t>(N + r)])) << isa << " " << fmt_name << " at " << at;
        }
      }
    }
  }
}

TEST(CpuBackendOps, AttentionMatchesRefAcrossKeyTiles) {
  RefBackend ref(1);
  for (auto isa : cpu::supported_isas()) {
    CpuBackend cpu(2, Precision::Exact, std::string(isa));
    for (DType kv_type : {DType::F32, DType::BF16, DType::F16})
    for (auto [T, past] : std::vector<std::pair<int64_t, int64_t>>{{1, 0}, {1, 200}, {7, 0}, {5, 130}, {70, 60}}) {
      const int64_t nh = 8, nkv = 2, hd = 32;
      KvCache cache(1, nkv, hd, past + T, kv_type);
      cache.reserve_more(past + T);
      KvView kv = cache.layer(0, past + T);
      const auto k = random_vec(static_cast<size_t>((past + T) * nkv * hd), 5);
      const auto v = random_vec(k.size(), 6);
      const int64_t row = nkv * hd;
      for (int64_t p = 0; p < past + T; ++p) {
        kv_row_store(kv.k(p), kv_type, k.data() + p * row, row);
        kv_row_store(kv.v(p), kv_type, v.data() + p * row, row);
      }
      const auto q = random_vec(static_cast<size_t>(T * nh * hd), 7);
      std::vector<float> outr(q.size()), outc(q.size());
      // Both read the same (rounded) cache: only kernel error remains.
      ref.attention(q.data(), T, nh, nkv, hd, kv, past, outr.data());
      cpu.attention(q.data(), T, nh, nkv, hd, kv, past, outc.data());
      EXPECT_LT(rel_err(outc, outr), 1e-5) << isa << " " << dtype_name(kv_type) << " T" << T << " past" << past;
    }
  }
}

// An int8 cache: both backends dequantize the same int8 values and per-head scales (kv_row_f32),
// so only kernel error remains. Blocks of 5 positions (not a divisor of the 64-key tile), the
// second layer of two, KV heads of very different magnitudes, queries crossing tiles and blocks.
TEST(CpuBackendOps, Int8KvAttentionMatchesRefAcrossKeyTilesAndBlocks) {
  RefBackend ref(1);
  double worst = 0;
  for (auto isa : cpu::supported_isas()) {
    CpuBackend cpu(2, Precision::Exact, std::string(isa));
    for (auto [nh, nkv, hd] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{8, 2, 32}, {3, 3, 20}})
    for (auto [T, past] : std::vector<std::pair<int64_t, int64_t>>{{1, 0}, {1, 200}, {7, 0}, {5, 130}, {70, 61}}) {
      const int64_t L = past + T, row = nkv * hd, block = 5;
      auto pool = std::make_shared<KvBlockPool>(2, nkv, hd, block, (L + block - 1) / block, DType::I8);
      KvCache cache(pool, L);
      cache.reserve_more(L);
      KvView kv = cache.layer(1, L);
      auto k = random_vec(static_cast<size_t>(L * row), 15), v = random_vec(k.size(), 16);
      for (size_t i = 0; i < k.size(); ++i) {
        if ((static_cast<int64_t>(i) / hd) % nkv != 1) continue;  // KV head 1 is large
        k[i] *= 4.0f;
        v[i] *= 50.0f;
      }
      for (int64_t p = 0; p < L; ++p) {
        kv_row_store(kv, kv.k(p), k.data() + p * row);
        kv_row_store(kv, kv.v(p), v.data() + p * row);
      }
      const auto q = random_vec(static_cast<size_t>(T * nh * hd), 17, 0.3f);
      std::vector<float> outr(q.size()), outc(q.size());
      ref.attention(q.data(), T, nh, nkv, hd, kv, past, outr.data());
      cpu.attention(q.data(), T, nh, nkv, hd, kv, past, outc.data());
      const double e = rel_err(outc, outr);
      worst = std::max(worst, e);
      EXPECT_LT(e, 1e-5) << isa << " nh" << nh << " nkv" << nkv << " hd" << hd << " T" << T << " past" << past;
    }
  }
  std::printf("int8 KV attention: cpu vs ref max rel err %.2e\n", worst);
}

TEST(CpuBackendOps, NormRopeSiluMatchRef) {
  RefBackend ref(1);
  CpuBackend cpu(2);
  HostTensor w(DType::BF16, {256}, random_vec(256, 8));
  auto wr = ref.load_weight(w.ref), wc = cpu.load_weight(w.ref);
  const auto x = random_vec(3 * 256, 9);
  std::vector<float> yr(x.size()), yc(x.size());
  ref.rmsnorm(x.data(), 3, *wr, 1e-5f, yr.data());
  cpu.rmsnorm(x.data(), 3, *wc, 1e-5f, yc.data());
  EXPECT_LT(rel_err(yc, yr), 1e-6);

  RopeSpec spec;
  for (int d = 0; d < 16; ++d) spec.inv_freq.push_back(std::pow(1e6f, -d / 16.0f));
  std::vector<int64_t> pos = {0, 5, 40000};
  auto a = x, b = x;
  ref.rope(a.data(), 3, 8, 32, 256, pos, spec);
  cpu.rope(b.data(), 3, 8, 32, 256, pos, spec);
  EXPECT_LT(rel_err(b, a), 1e-6);

  const auto g = random_vec(1000, 10, 3.0f), u = random_vec(1000, 11);
  std::vector<float> sr(1000), sc(1000);
  ref.silu_mul(g.data(), u.data(), 1000, sr.data());
  cpu.silu_mul(g.data(), u.data(), 1000, sc.data());
  EXPECT_LT(rel_err(sc, sr), 1e-6);
}

// Whole-model precision: bf16 weights, cpu vs ref logits within 1e-3 relative
// (max |a - b| / max |b|) for prefill and cached decode, and identical greedy output.
class CpuModelPrecision : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::filesystem::temp_directory_path() / fmt::format("ilm-cpu-precision-{}", ::getpid());
    SynthOptions o;
    o.preset = "tiny";
    o.seed = 11;
    o.max_position_embeddings = 32;  // so the decode below runs with dynamic NTK active
    o.out = dir_;
    o.tokenizer_dir = INTERNLM_TEST_TOKENIZER_DIR;
    write_synthetic_checkpoint(o);
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }
  static std::filesystem::path dir_;
};
std::filesystem::path CpuModelPrecision::dir_;

TEST_F(CpuModelPrecision, LogitsAndGreedyOutputMatchRef) {
  LoadedModel ref = LoadedModel::load(dir_, {"ref", 2, {}});
  const std::vector<TokenId> prompt = ref.tokenizer->encode("Hello, 世界! def f(x): return x * 2");
  const int64_t V = ref.config.vocab_size, P = static_cast<int64_t>(prompt.size());
  KvCache cr = ref.lm->new_cache(128);
  std::vector<float> lr(static_cast<size_t>(P * V));
  ref.lm->forward(prompt, cr, lr, true);
  GenerateOptions o;
  o.max_tokens = 24;  // P + 24 > 32: the NTK base changes every decode step
  const auto gr = generate(*ref.lm, prompt, o);

  for (auto isa : cpu::supported_isas()) {
    CpuBackend backend(2, Precision::Exact, std::string(isa));
    InternLM2 lm(ref.config, *ref.store, backend);
    KvCache cc = lm.new_cache(128);
    std::vector<float> lc(lr.size());
    lm.forward(prompt, cc, lc, true);
    EXPECT_LT(rel_err(lc, lr), 1e-3) << isa << " prefill";
    EXPECT_EQ(generate(lm, prompt, o).tokens, gr.tokens) << isa;
  }
}

}  // namespace
}  // namespace ilm

namespace ilm {
namespace {

TEST(Quantization, ParseAndNames) {
  EXPECT_EQ(parse_quant("int8").format, QuantFormat::Int8);
  EXPECT_EQ(parse_quant("int4:128").group, 128);
  EXPECT_EQ(quant_name(parse_quant("int4")), "int4:32");
  EXPECT_EQ(parse_quant("none").format, QuantFormat::None);
  EXPECT_THROW(parse_quant("int3"), Error);
  EXPECT_THROW(parse_quant("int4:48"), Error);
  EXPECT_THROW(parse_quant("int4:x"), Error);
}

TEST(Quantization, RoundTripErrorIsWithinHalfAStep) {
  ThreadPool pool(2);
  for (const char* fmt_name : {"int8", "int4", "int4:128"}) {
    const QuantSpec spec = parse_quant(fmt_name);
    HostTensor w(DType::F32, {3, 256}, random_vec(3 * 256, 21, 0.02f));
    const QuantizedMatrix q = quantize(w.ref, spec, pool);
    std::vector<float> row(256);
    for (int64_t r = 0; r < 3; ++r) {
      q.dequantize_row(r, row.data());
      for (int64_t g = 0; g < 256 / spec.group; ++g) {
        const float d = std::abs(f16_to_f32(q.scales[static_cast<size_t>(r * (256 / spec.group) + g)]));
        for (int64_t k = g * spec.group; k < (g + 1) * spec.group; ++k) {
          const float v = w.f32[static_cast<size_t>(r * 256 + k)];
          // Rounding costs at most half a step; int4's range [-8, 7] is anchored on the
          // largest-magnitude value, so values of the opposite sign beyond 7.5 steps clamp.
          const float steps = std::abs(v) / d > 7.5f ? 1.0f : 0.5f;
          EXPECT_LE(std::abs(row[static_cast<size_t>(k)] - v), steps * d * 1.01f + 1e-7f)
              << fmt_name << " r" << r << " k" << k;
        }
      }
    }
  }
}

// Kernel error told apart from quantization error: cpu kernels vs ref on the same quantized
// weights (ref computes with the dequantized values).
TEST(Quantization, CpuKernelsMatchRefOnTheSameQuantizedWeights) {
  RefBackend ref(1);
  for (auto isa : cpu::supported_isas()) {
    CpuBackend cpu(2, Precision::Exact, std::string(isa));
    // int8:1024: groups wide enough that the VNNI kernels combine their two levels in f32.
    for (const char* fmt_name : {"int8", "int4", "int8:64", "int4:128", "int8:1024"}) {
      const QuantSpec spec = parse_quant(fmt_name);
      for (auto [T, N, K] :
           std::vector<std::tuple<int64_t, int64_t, int64_t>>{{1, 5, 128}, {3, 9, 256}, {6, 13, 512}, {2, 17, 1024}}) {
        if (K % spec.group) continue;
        HostTensor w(DType::BF16, {N, K}, random_vec(static_cast<size_t>(N * K), 31, 0.02f));
        auto wr = ref.load_weight(w.ref, spec), wc = cpu.load_weight(w.ref, spec);
        EXPECT_EQ(wc->quant.format, spec.format);
        const auto x = random_vec(static_cast<size_t>(T * K), 32);
        std::vector<float> yr(static_cast<size_t>(T * N)), yc(yr.size());
        ref.matmul(x.data(), T, *wr, nullptr, yr.data());
        cpu.matmul(x.data(), T, *wc, nullptr, yc.data());
        // The VNNI kernels carry activations in two int8 levels, to max|x| / 64516 per group
        // (~2e-5 relative here); the others compute in f32.
        const double tol = isa == "avx512vnni" ? 1e-4 : 1e-5;
        EXPECT_LT(rel_err(yc, yr), tol) << isa << " " << fmt_name << " T" << T << " N" << N << " K" << K;
      }
    }
  }
}

// A token's result does not depend on the batch it is in (the engine relies on it): T tokens
// in one call equal each token alone, bit for bit, on rows not a multiple of any kernel block;
// bf16 with enough tokens that the GEMM cuts K into cache slices, and a K tail.
TEST(CpuKernels, MatmulIsBatchInvariantForEveryFormat) {
  auto isas = cpu::supported_isas();
  if (cpu::kernels_for("avx512bf16")) isas.push_back("avx512bf16");  // the fast set too
  for (auto isa : isas) {
    CpuBackend cpu(2, Precision::Exact, std::string(isa));
    for (const char* fmt_name : {"none", "int8", "int4:64"}) {
      const bool dense = std::string_view(fmt_name) == "none";
      const int64_t T = dense ? 130 : 9, N = 37, K = dense ? 4500 : 384;  // > one token block, > one K slice
      HostTensor w(DType::BF16, {N, K}, random_vec(static_cast<size_t>(N * K), 33, 0.02f));
      auto wc = cpu.load_weight(w.ref, parse_quant(fmt_name));
      const auto x = random_vec(static_cast<size_t>(T * K), 34);
      std::vector<float> all(static_cast<size_t>(T * N)), one(static_cast<size_t>(N));
      cpu.matmul(x.data(), T, *wc, nullptr, all.data());
      for (int64_t t = 0; t < T; ++t) {
        cpu.matmul(x.data() + t * K, 1, *wc, nullptr, one.data());
        for (int64_t r = 0; r < N; ++r)
          ASSERT_EQ(one[static_cast<size_t>(r)], all[static_cast<size_t>(t * N + r)]) << isa << " " << fmt_name << " t" << t << " r" << r;
      }
    }
  }
}

TEST_F(CpuModelPrecision, QuantizedLogitsMatchRefOnTheSameQuantizedWeights) {
  for (const char* fmt_name : {"int8", "int4"}) {
    const QuantSpec spec = parse_quant(fmt_name);
    LoadedModel ref = LoadedModel::load(dir_, {"ref", 2, spec});
    LoadedModel cpu = LoadedModel::load(dir_, {"cpu", 2, spec, Precision::Exact});
    const std::vector<TokenId> prompt = ref.tokenizer->encode("量化 quantization test: int main() { return 0; }");
    const int64_t V = ref.config.vocab_size, P = static_cast<int64_t>(prompt.size());
    KvCache cr = ref.lm->new_cache(P), cc = cpu.lm->new_cache(P);
    std::vector<float> lr(static_cast<size_t>(P * V)), lc(lr.size());
    ref.lm->forward(prompt, cr, lr, true);
    cpu.lm->forward(prompt, cc, lc, true);
    std::printf("%s: cpu (%s) vs ref logits rel err %.2e\n", fmt_name, std::string(CpuBackend(1, Precision::Exact).isa()).c_str(),
                rel_err(lc, lr));
    EXPECT_LT(rel_err(lc, lr), 1e-3) << fmt_name;
  }
}

}  // namespace
}  // namespace ilm

namespace ilm {
namespace {

// A batched pass gives every sequence what it gets alone: mixed prefill and decode, different
// cache lengths, a prompt long enough to be split over passes, NTK active for some sequences.
TEST_F(CpuModelPrecision, BatchedForwardEqualsSeparateForwards) {
  for (auto [backend, precision] : {std::pair{"cpu", Precision::Fast}, std::pair{"cpu", Precision::Exact},
                                    std::pair{"ref", Precision::Exact}}) {
    LoadedModel m = LoadedModel::load(dir_, {backend, 2, {}, precision});
    const int64_t V = m.config.vocab_size;
    std::mt19937 rng(3);
    std::uniform_int_distribution<TokenId> tok(3, 90000);
    auto ids_of = [&](int64_t n) {
      std::vector<TokenId> v(static_cast<size_t>(n));
      for (auto& t : v) t = tok(rng);
      return v;
    };
    // (cached tokens, new tokens): decode steps, a prefill, and a long prompt (> kMaxChunk).
    const std::vector<std::pair<int64_t, int64_t>> shapes = {{5, 1}, {40, 1}, {0, 12}, {3, 600}, {30, 4}};
    std::vector<KvCache> solo, together;
    std::vector<std::vector<TokenId>> news;
    for (auto [past, n] : shapes) {
      const auto prefix = ids_of(past);
      news.push_back(ids_of(n));
      for (auto* caches : {&solo, &together}) {
        caches->push_back(m.lm->new_cache(past + n));
        if (past) {
          std::vector<float> scratch(static_cast<size_t>(V));
          m.lm->forward(prefix, caches->back(), scratch, false);
        }
      }
    }
    std::vector<std::vector<float>> want(shapes.size()), got(shapes.size());
    std::vector<SequenceInput> batch;
    for (size_t i = 0; i < shapes.size(); ++i) {
      const bool all = i == 2;  // one sequence asks for every position's logits
      const size_t rows = all ? news[i].size() : 1;
      want[i].resize(rows * static_cast<size_t>(V));
      got[i].resize(want[i].size());
      m.lm->forward(news[i], solo[i], want[i], all);
      batch.push_back({news[i], &together[i], got[i], all});
    }
    m.lm->forward_batch(batch);
    for (size_t i = 0; i < shapes.size(); ++i) {
      EXPECT_EQ(together[i].length(), solo[i].length());
      EXPECT_LT(rel_err(got[i], want[i]), 1e-6) << backend << " " << precision_name(precision) << " sequence " << i;
    }
  }
}

}  // namespace
}  // namespace ilm

namespace ilm {
namespace {

// The fast kernels: the error they cost is bounded and stated, not hidden, and the same for a
// token alone as in a batch (activations rounded to bf16 whatever T is).
TEST_F(CpuModelPrecision, Bf16ActivationKernelsStayWithinTheirStatedError) {
  if (!cpu::kernels_for("avx512bf16")) GTEST_SKIP() << "CPU has no AVX512_BF16";
  RefBackend ref(2);
  CpuBackend fast(2, Precision::Fast, "avx512bf16");
  EXPECT_EQ(fast.precision(), Precision::Fast);
  HostTensor w(DType::BF16, {64, 512}, random_vec(64 * 512, 41, 0.02f));
  auto wr = ref.load_weight(w.ref), wc = fast.load_weight(w.ref);
  const auto x = random_vec(8 * 512, 42);
  std::vector<float> yr(8 * 64), yc(yr.size());
  ref.matmul(x.data(), 8, *wr, nullptr, yr.data());
  fast.matmul(x.data(), 8, *wc, nullptr, yc.data());
  const double kernel_err = rel_err(yc, yr);
  EXPECT_GT(kernel_err, 0.0);   // it really takes the bf16 path
  EXPECT_LT(kernel_err, 8e-3);  // bf16 rounding of activations: 2^-9 relative per element
  for (int64_t t = 0; t < 8; ++t) {
    std::vector<float> y1(64);
    fast.matmul(x.data() + t * 512, 1, *wc, nullptr, y1.data());
    EXPECT_TRUE(std::equal(y1.begin(), y1.end(), yc.begin() + t * 64)) << "token " << t << " alone differs";
  }
  // Every tail of the tiling: token tiles (T % 4), row groups (rows % 6), K slices and K % 32.
  for (auto [T, N, K] : {std::tuple{1, 1, 31}, std::tuple{3, 5, 100}, std::tuple{7, 37, 2111}, std::tuple{130, 41, 4500}}) {
    HostTensor wt(DType::BF16, {N, K}, random_vec(static_cast<size_t>(N * K), 43, 0.02f));
    auto wtr = ref.load_weight(wt.ref), wtc = fast.load_weight(wt.ref);
    const auto xt = random_vec(static_cast<size_t>(T * K), 44);
    std::vector<float> ytr(static_cast<size_t>(T * N)), ytc(ytr.size());
    ref.matmul(xt.data(), T, *wtr, nullptr, ytr.data());
    fast.matmul(xt.data(), T, *wtc, nullptr, ytc.data());
    EXPECT_LT(rel_err(ytc, ytr), 8e-3) << "T " << T << " N " << N << " K " << K;
  }
  // Quantized weights keep two int8 activation levels on the fast path (one level broke the
  // precision rule three times over).
  for (const char* fmt_name : {"int8", "int4"}) {
    auto qr = ref.load_weight(w.ref, parse_quant(fmt_name)), qc = fast.load_weight(w.ref, parse_quant(fmt_name));
    ref.matmul(x.data(), 8, *qr, nullptr, yr.data());
    fast.matmul(x.data(), 8, *qc, nullptr, yc.data());
    const double q_err = rel_err(yc, yr);
    std::printf("avx512bf16 %s: kernel rel err %.2e\n", fmt_name, q_err);
    EXPECT_LT(q_err, 1e-4) << fmt_name;
  }

LoadedModel m = LoadedModel::load(dir_, {"ref", 2, {}});
  InternLM2 lm(m.config, *m.store, fast);
  const auto prompt = m.tokenizer->encode("bf16 activations: 你好, world");
  const int64_t V = m.config.vocab_size, P = static_cast<int64_t>(prompt.size());
  KvCache cr = m.lm->new_cache(P), cc = lm.new_cache(P);
  std::vector<float> lr(static_cast<size_t>(P * V)), lc(lr.size());
  m.lm->forward(prompt, cr, lr, true);
  lm.forward(prompt, cc, lc, true);
  const double model_err = rel_err(lc, lr);
  std::printf("avx512bf16: kernel rel err %.2e, logits rel err %.2e\n", kernel_err, model_err);
  EXPECT_LT(model_err, 1e-2);
}

}  // namespace
}  // namespace ilm

namespace ilm {
namespace {

// safetensors does not require aligned offsets: a tensor at an odd address still computes
// the same result (through an aligned copy), on every backend.
TEST(CpuBackendOps, UnalignedTensorDataGivesTheSameResult) {
  HostTensor w(DType::F32, {5, 40}, random_vec(200, 51));
  std::vector<std::byte> raw(w.ref.nbytes + 1);
  std::memcpy(raw.data() + 1, w.ref.data, w.ref.nbytes);
  TensorRef odd = w.ref;
  odd.data = raw.data() + 1;
  const auto x = random_vec(2 * 40, 52);
  RefBackend ref(1);
  CpuBackend cpu(2);
  for (Backend* be : {static_cast<Backend*>(&ref), static_cast<Backend*>(&cpu)}) {
    auto a = be->load_weight(w.ref), b = be->load_weight(odd);
    std::vector<float> ya(10), yb(10);
    be->matmul(x.data(), 2, *a, nullptr, ya.data());
    be->matmul(x.data(), 2, *b, nullptr, yb.data());
    EXPECT_EQ(ya, yb) << be->name();
  }
}

}  // namespace
}  // namespace ilm
