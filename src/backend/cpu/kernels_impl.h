#pragma once
// Internal: the per-ISA kernel tables, defined in kernels_<isa>.cpp (each compiled with its
// own target flags) and picked by kernels.cpp.
#include "backend/cpu/kernels.h"

namespace ilm::cpu {

extern const Kernels kGenericKernels;
#if defined(__x86_64__) || defined(_M_X64)
extern const Kernels kAvx2Kernels;
extern const Kernels kAvx512Kernels;
extern const Kernels kAvx512Bf16Kernels;
extern const DotPeakProbe kBf16DotProbe;
extern const DotPeakProbe kInt8DotProbe;
#endif

}  // namespace ilm::cpu
