#include "backend/cpu/kernels.h"

#include <string>
#include <vector>

#include "backend/cpu/kernels_impl.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif

namespace ilm::cpu {

namespace {

#if defined(__x86_64__) || defined(_M_X64)
// F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does not know "f16c".
bool has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}
bool has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
}
bool has_avx512_vnni() { return has_avx512() && __builtin_cpu_supports("avx512vnni"); }
bool has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
}
#endif

}  // namespace

uint8_t* thread_scratch(ScratchSlot slot, int64_t bytes) {
  thread_local std::vector<uint8_t> buffers[static_cast<int>(ScratchSlot::kCount)];
  auto& b = buffers[static_cast<int>(slot)];
  if (static_cast<int64_t>(b.size()) < bytes) b.resize(static_cast<size_t>(bytes));
  return b.data();
}

const Kernels* kernels_for(std::string_view isa) {
#if defined(__x86_64__) || defined(_M_X64)
  if (isa == "avx512bf16") return has_avx512_vnni() && __builtin_cpu_supports("avx512bf16") ? &kAvx512Bf16Kernels : nullptr;
  if (isa == "avx512vnni") return has_avx512_vnni() ? &kAvx512VnniKernels : nullptr;
  if (isa == "avx512") return has_avx512() ? &kAvx512Kernels : nullptr;
  if (isa == "avx2") return has_avx2() ? &kAvx2Kernels : nullptr;
#endif
#if defined(__aarch64__)
  if (isa == "neon") return &kNeonKernels;
#endif
  if (isa == "generic") return &kGenericKernels;
  return nullptr;
}

std::vector<std::string_view> supported_isas() {
  std::vector<std::string_view> out;
  for (std::string_view isa : {"avx512vnni", "avx512", "avx2", "neon", "generic"})
    if (kernels_for(isa)) out.push_back(isa);
  return out;
}

std::vector<std::string_view> compiled_isas() {
  std::vector<std::string_view> out;
#if defined(__x86_64__) || defined(_M_X64)
  out.insert(out.end(), {"avx512bf16", "avx512vnni", "avx512", "avx2"});
#endif
#if defined(__aarch64__)
  out.push_back("neon");
#endif
  out.push_back("generic");
  return out;
}

const Kernels& best_kernels(Precision p) {
  static const Kernels* exact = kernels_for(supported_isas().front());
  static const Kernels* fast = [] {
    const Kernels* f = kernels_for("avx512bf16");
    return f ? f : exact;
  }();
  return p == Precision::Fast ? *fast : *exact;
}

const DotPeakProbe* bf16_dot_probe() {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512f")) return &kBf16DotProbe;
#endif
  return nullptr;
}

const DotPeakProbe* int8_dot_probe() {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512f")) return &kInt8DotProbe;
#endif
  return nullptr;
}

std::vector<std::string> cpu_features() {
  std::vector<std::string> f;
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
#define ILM_FEATURE(name) \
  if (__builtin_cpu_supports(name)) f.emplace_back(name);
  ILM_FEATURE("sse4.2")
  ILM_FEATURE("avx")
  ILM_FEATURE("avx2")
  ILM_FEATURE("fma")
  if (has_f16c()) f.emplace_back("f16c");
  ILM_FEATURE("avx512f")
  ILM_FEATURE("avx512bw")
  ILM_FEATURE("avx512vl")
  ILM_FEATURE("avx512vnni")
  ILM_FEATURE("avx512bf16")
#undef ILM_FEATURE
#elif defined(__aarch64__)
  f.emplace_back("neon");
#endif
  return f;
}

}  // namespace ilm::cpu
