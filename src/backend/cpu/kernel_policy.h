#pragma once
// The tiling and approximation policy every CPU kernel set follows, in one place so that a fix
// lands in all of them (a review found AVX-512 slicing K by the activation footprint, NEON by
// K alone and AVX2 never, and two exp clamps).
//
// Slicing K is cache blocking only: the exact kernels sum each kSliceColumns-wide slice to a
// scalar and add the slices in order whether or not the loop is cut there, and the bf16 kernel
// carries its 16 lane sums across a cut exactly, so no choice here changes a result bit.
#include <cstdint>

namespace ilm::cpu::policy {

// Columns per summation slice of the exact (f32-activation) kernels.
inline constexpr int64_t kSliceColumns = 1024;
// Activations of all tokens x one slice are kept under this many bytes (L2-resident while the
// weights stream through).
inline constexpr int64_t kActivationBlockBytes = 512 * 1024;

// Columns per pass over the weights for T tokens of K f32 activations: whole rows while the
// activations fit the block, else one summation slice at a time.
inline int64_t f32_pass_columns(int64_t T, int64_t K) {
  return T * K * 4 <= kActivationBlockBytes ? K : kSliceColumns;
}

// e^x (softmax, SiLU): the Cephes expf reduction and polynomial, zero below kExpZeroBelow
// (where e^x leaves the normal floats), NaN for NaN, clamped above at kExpClampHigh.
inline constexpr float kExpZeroBelow = -87.3f;
inline constexpr float kExpClampHigh = 88.7f;
inline constexpr float kLog2e = 1.44269504088896341f;
inline constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
inline constexpr float kExpPoly[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                      4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

}  // namespace ilm::cpu::policy
