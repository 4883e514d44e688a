#include "perf/machine_probe.h"

#include <algorithm>
#include <chrono>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include "backend/cpu/kernels.h"

namespace ilm {

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

MachineProbe::MachineProbe(int threads, size_t buffer_bytes)
    : pool_(threads), buffer_(buffer_bytes / sizeof(float), 1.0f) {}

double MachineProbe::read_bandwidth_gbps(int passes) {
  const auto& k = cpu::best_kernels();
  const int64_t n = static_cast<int64_t>(buffer_.size());
  std::vector<float> partial(static_cast<size_t>(pool_.size()), 0.0f);
  double best = 0;
  for (int p = 0; p < passes; ++p) {
    const double t0 = now_s();
    pool_.parallel_for(pool_.size(), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t lo = n * i / pool_.size(), hi = n * (i + 1) / pool_.size();
        partial[static_cast<size_t>(i)] = k.read_sum(buffer_.data() + lo, hi - lo);
      }
    });
    const double dt = now_s() - t0;
    for (float v : partial) sink_ = sink_ + v;
    best = std::max(best, static_cast<double>(buffer_bytes()) / dt / 1e9);
  }
  return best;
}

double MachineProbe::read_bandwidth_gbps(const std::vector<std::span<const std::byte>>& memory) {
  const auto& k = cpu::best_kernels();
  size_t total = 0;
  for (auto s : memory) total += s.size() / sizeof(float) * sizeof(float);
  if (total == 0) return 0;
  const int n = pool_.size();
  std::vector<float> partial(static_cast<size_t>(n), 0.0f);
  const double t0 = now_s();
  pool_.parallel_for(n, [&](int64_t b, int64_t e) {
#if defined(__x86_64__)
    // Weight bytes read as floats may be subnormal: flush them, so no assist slows the adds.
    const unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040);
#endif
    for (int64_t i = b; i < e; ++i) {
      // Thread i reads bytes [lo, hi) of the concatenation, span by span.
      const size_t lo = total * static_cast<size_t>(i) / static_cast<size_t>(n) / 64 * 64;
      const size_t hi = i + 1 == n ? total : total * static_cast<size_t>(i + 1) / static_cast<size_t>(n) / 64 * 64;
      size_t at = 0;
      float s = 0;
      for (auto m : memory) {
        const size_t len = m.size() / sizeof(float) * sizeof(float);
        const size_t a = std::max(lo, at), z = std::min(hi, at + len);
        if (a < z) s += k.read_sum(reinterpret_cast<const float*>(m.data() + (a - at)), static_cast<int64_t>((z - a) / sizeof(float)));
        at += len;
      }
      partial[static_cast<size_t>(i)] = s;
    }
#if defined(__x86_64__)
    _mm_setcsr(csr);
#endif
  });
  const double dt = now_s() - t0;
  for (float v : partial) sink_ = sink_ + v;
  return static_cast<double>(total) / dt / 1e9;
}

double MachineProbe::run_loop_gflops(float (*loop)(int64_t), int64_t flops_per_iter) {
  const int64_t iters = 20'000'000;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<float> out(static_cast<size_t>(pool_.size()));
    const double t0 = now_s();
    pool_.parallel_for(pool_.size(), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) out[static_cast<size_t>(i)] = loop(iters);
    });
    const double dt = now_s() - t0;
    for (float v : out) sink_ = sink_ + v;
    best = std::max(best, static_cast<double>(iters) * flops_per_iter * pool_.size() / dt / 1e9);
  }
  return best;
}

double MachineProbe::fma_peak_gflops() {
  const auto& k = cpu::best_kernels();
  return run_loop_gflops(k.fma_loop, k.fma_loop_flops_per_iter);
}

std::optional<double> MachineProbe::bf16_dot_peak_gflops() {
  const auto* p = cpu::bf16_dot_probe();
  if (!p) return std::nullopt;
  return run_loop_gflops(p->loop, p->ops_per_iter);
}

std::optional<double> MachineProbe::int8_dot_peak_gops() {
  const auto* p = cpu::int8_dot_probe();
  if (!p) return std::nullopt;
  return run_loop_gflops(p->loop, p->ops_per_iter);
}

}  // namespace ilm
