// Kernel microbenchmarks (Google Benchmark): matmul per kernel ISA and weight format at the
// 7B model's shapes, and attention over a growing KV cache. Not run in CI; see
// docs/PERFORMANCE.md. Example:
//   build/kernel_bench --benchmark_filter='Matmul/avx512/bf16' --benchmark_min_time=1
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/kernels.h"
#include "backend/quant.h"
#include "model/kv_cache.h"

namespace {

using namespace ilm;

std::vector<float> random_vec(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 0.02f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

struct Matrix {
  std::vector<uint16_t> bf16;
  TensorRef ref;
  Matrix(int64_t rows, int64_t cols) {
    const auto v = random_vec(static_cast<size_t>(rows * cols), 1);
    for (float f : v) bf16.push_back(f32_to_bf16(f));
    ref.name = fmt::format("w{}x{}", rows, cols);
    ref.file = fmt::format("bench");
    ref.dtype = DType::BF16;
    ref.shape = {rows, cols};
    ref.data = reinterpret_cast<const std::byte*>(bf16.data());
    ref.nbytes = bf16.size() * 2;
  }
};

// args: rows, cols, tokens
void BM_Matmul(benchmark::State& state, const std::string& isa, const std::string& format) {
  const int64_t N = state.range(0), K = state.range(1), T = state.range(2);
  if (!cpu::kernels_for(isa)) {
    state.SkipWithError("ISA not supported on this CPU");
    return;
  }
  CpuBackend be(0, Precision::Fast, isa);
  Matrix m(N, K);
  auto w = be.load_weight(m.ref, parse_quant(format == "bf16" ? "none" : format));
  const auto x = random_vec(static_cast<size_t>(T * K), 2);
  std::vector<float> y(static_cast<size_t>(T * N));
  for (auto _ : state) {
    be.matmul(x.data(), T, *w, nullptr, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["weight_GB/s"] = benchmark::Counter(static_cast<double>(w->bytes), benchmark::Counter::kIsIterationInvariantRate,
                                                     benchmark::Counter::kIs1000);
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(N * K * T) / 1e9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

// Layer 0 of `cache` holding ctx random rows of `row` values (stored in the cache's type) as
// both keys and values.
KvView filled_cache(KvCache& cache, int64_t ctx, int64_t row) {
  cache.reserve_more(ctx);
  KvView kv = cache.layer(0, ctx);
  const auto k = random_vec(static_cast<size_t>(ctx * row), 3);
  for (int64_t p = 0; p < ctx; ++p) {
    kv_row_store(kv, kv.k(p), k.data() + p * row);
    kv_row_store(kv, kv.v(p), k.data() + p * row);
  }
  return kv;
}

// args: context length, KV element type (0 f32, 1 bf16, 2 int8); one decode query, 7B head
// layout (32 heads, 8 KV heads, hd 128). kv_GB/s counts the cache's own bytes.
void BM_AttentionDecode(benchmark::State& state) {
  const int64_t ctx = state.range(0), nh = 32, nkv = 8, hd = 128;
  const DType t = state.range(1) == 0 ? DType::F32 : state.range(1) == 1 ? DType::BF16 : DType::I8;
  CpuBackend be(0);
  KvCache cache(1, nkv, hd, ctx, t);
  const KvView kv = filled_cache(cache, ctx, nkv * hd);
  const auto q = random_vec(static_cast<size_t>(nh * hd), 4);
  std::vector<float> out(q.size());
  for (auto _ : state) {
    be.attention(q.data(), 1, nh, nkv, hd, kv, ctx - 1, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["kv_GB/s"] = benchmark::Counter(2.0 * static_cast<double>(ctx * kv_row_bytes(nkv, hd, t)),
                                                 benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

// args: context length before the chunk; a 512-token prompt chunk, 7B head layout.
void BM_AttentionPrefill(benchmark::State& state) {
  const int64_t past = state.range(0), T = 512, nh = 32, nkv = 8, hd = 128, ctx = past + T;
  CpuBackend be(0);
  KvCache cache(1, nkv, hd, ctx);
  const KvView kv = filled_cache(cache, ctx, nkv * hd);
  const auto q = random_vec(static_cast<size_t>(T * nh * hd), 4);
  std::vector<float> out(q.size());
  for (auto _ : state) {
    be.attention(q.data(), T, nh, nkv, hd, kv, past, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  // QK^T and PV over the causal pairs: 2 x 2 x heads x hd flops per (query, visible key).
  const double pairs = static_cast<double>(T) * static_cast<double>(past) + static_cast<double>(T * (T + 1) / 2);
  state.counters["GFLOP/s"] = benchmark::Counter(4.0 * static_cast<double>(nh * hd) * pairs / 1e9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void register_all() {
  for (const char* isa_name : {"avx512bf16", "avx512vnni", "avx512", "avx2", "neon", "generic"}) {
    for (const char* format_name : {"bf16", "int8", "int4"}) {
      const std::string isa(isa_name), format(format_name);
      if (isa == "avx512vnni" && format == "bf16") continue;  // same bf16 kernels as avx512
      const std::string name = fmt::format("Matmul/{}/{}", isa, format);
      auto* b = benchmark::RegisterBenchmark(name.c_str(),
                                             [isa, format](benchmark::State& s) { BM_Matmul(s, isa, format); });
      b->ArgNames({"rows", "cols", "tokens"})->Unit(benchmark::kMillisecond)->UseRealTime();
      b->Args({4096, 4096, 1})->Args({14336, 4096, 1})->Args({4096, 14336, 1});
      b->Args({4096, 4096, 16})->Args({4096, 4096, 128})->Args({14336, 4096, 512})->Args({4096, 14336, 512});
    }
  }
  benchmark::RegisterBenchmark("AttentionDecode", BM_AttentionDecode)
      ->ArgNames({"ctx", "kv"})
      ->ArgsProduct({{1024, 4096, 16384}, {0, 1, 2}})
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("AttentionPrefill512", BM_AttentionPrefill)
      ->Arg(0)->Arg(4096)->Arg(16384)->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
