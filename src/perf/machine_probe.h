#pragma once
// Measures this machine's limits in the same run as a benchmark, so ratios compare like with
// like: read bandwidth (decode is bound by it), f32 FMA and bf16 dot-product peaks (prefill).
#include <cstdint>
#include <cstddef>
#include <optional>
#include <span>
#include <vector>

#include "common/thread_pool.h"

namespace ilm {

class MachineProbe {
 public:
  // threads: as many as the benchmark uses. buffer_bytes: well above the last-level cache.
  explicit MachineProbe(int threads, size_t buffer_bytes = size_t{512} << 20);

  // Read bandwidth in GB/s (1e9 bytes/s): every thread sums its slice with the widest loads
  // the CPU has; best of `passes`.
  double read_bandwidth_gbps(int passes = 3);
  // The same over given memory (e.g. the model's weights where they live: page-cache huge
  // pages or repacked buffers), split evenly over the threads in order; one pass.
  double read_bandwidth_gbps(const std::vector<std::span<const std::byte>>& memory);
  // f32 FMA peak in GFLOP/s over all threads (best of 3).
  double fma_peak_gflops();
  // BF16 dot-product peak in GFLOP/s (vdpbf16ps), when the CPU has it.
  std::optional<double> bf16_dot_peak_gflops();
  // int8 dot-product peak in GOP/s (vpdpbusd), when the CPU has it.
  std::optional<double> int8_dot_peak_gops();
  size_t buffer_bytes() const { return buffer_.size() * sizeof(float); }

 private:
  double run_loop_gflops(float (*loop)(int64_t), int64_t flops_per_iter);
  ThreadPool pool_;
  std::vector<float> buffer_;
  volatile float sink_ = 0;
};

}  // namespace ilm
