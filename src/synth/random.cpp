#include "synth/random.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "common/error.h"

#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

// Values must not depend on the compiler contracting a*b+c into FMA (it would change the last
// bit of some values and so, rarely, a bf16 rounding). GCC in ISO mode (-std=c++20) does not
// contract; clang needs to be told.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

namespace ilm::synth {

namespace {

constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr int kBlock = 256;  // pairs per inner block (stack arrays, vectorised loops)

// z[2k], z[2k+1] = the Box-Muller pair number j0 + k, for k in [0, count).
void normal_pairs(uint64_t key, uint64_t j0, int count, float* z) {
  uint32_t ha[kBlock], hb[kBlock];
  float r2[kBlock];
  for (int k = 0; k < count; ++k) {
    const uint64_t h = mix64(key + (j0 + static_cast<uint64_t>(k) + 1) * kGamma);
    ha[k] = static_cast<uint32_t>(h >> 40);            // 24 bits: radius
    hb[k] = static_cast<uint32_t>(h >> 8) & 0xffffffu;  // 24 bits: angle
  }
  // -2 ln(u1), u1 = (ha + 1) / 2^24 in (0, 1]. ln via u1 = m * 2^e with m in [sqrt(1/2),
  // sqrt(2)) and ln(m) = 2 atanh(t), t = (m - 1) / (m + 1), |t| < 0.172.
  for (int k = 0; k < count; ++k) {
    const float u1 = static_cast<float>(static_cast<int32_t>(ha[k] + 1)) * (1.0f / 16777216.0f);
    uint32_t bits;
    std::memcpy(&bits, &u1, 4);
    int32_t e = static_cast<int32_t>((bits >> 23) & 0xffu) - 127;
    const uint32_t mbits = (bits & 0x007fffffu) | 0x3f800000u;
    float m;
    std::memcpy(&m, &mbits, 4);
    const int32_t big = static_cast<int32_t>(mbits > 0x3fb504f3u);  // m > sqrt(2)
    m = m * (1.0f - 0.5f * static_cast<float>(big));
    e += big;
    const float t = (m - 1.0f) / (m + 1.0f);
    const float t2 = t * t;
    const float lm =
        2.0f * t * (1.0f + t2 * (0.33333333f + t2 * (0.2f + t2 * (0.14285714f + t2 * 0.11111111f))));
    const float ln = lm + static_cast<float>(e) * 0.69314718f;
    r2[k] = -2.0f * ln;
  }
  // Kept apart: std::sqrt's errno path would stop the other loops from vectorising. Both
  // paths are the correctly rounded IEEE square root, so the values are the same.
  int k4 = 0;
#if defined(__SSE2__)
  for (; k4 + 4 <= count; k4 += 4) _mm_storeu_ps(r2 + k4, _mm_sqrt_ps(_mm_loadu_ps(r2 + k4)));
#endif
  for (; k4 < count; ++k4) r2[k4] = std::sqrt(r2[k4]);
  // Angle 2*pi*hb/2^24 = quadrant q * pi/2 + pi/4 + th, th in [-pi/4, pi/4).
  for (int k = 0; k < count; ++k) {
    const uint32_t q = hb[k] >> 22;
    const float f = static_cast<float>(static_cast<int32_t>(hb[k] & 0x3fffffu)) * (1.0f / 4194304.0f);
    const float th = (f - 0.5f) * 1.57079633f;
    const float th2 = th * th;
    const float s = th * (1.0f + th2 * (-1.6666667e-1f + th2 * (8.3333333e-3f +
                                                                th2 * (-1.9841270e-4f + th2 * 2.7557319e-6f))));
    const float c = 1.0f + th2 * (-0.5f + th2 * (4.1666667e-2f +
                                                 th2 * (-1.3888889e-3f + th2 * (2.4801587e-5f - th2 * 2.7557319e-7f))));
    const float h = 0.70710678f;
    const float cs = (c - s) * h, sn = (s + c) * h;  // cos, sin of (pi/4 + th)
    // Rotate by q quarter turns: q=0 (cs, sn), 1 (-sn, cs), 2 (-cs, -sn), 3 (sn, -cs).
    const float sign = 1.0f - 2.0f * static_cast<float>(static_cast<int32_t>(q >> 1));
    const float swap = static_cast<float>(static_cast<int32_t>(q & 1u));
    const float c0 = sign * (cs + swap * (-sn - cs));
    const float s0 = sign * (sn + swap * (cs - sn));
    z[2 * k] = r2[k] * c0;
    z[2 * k + 1] = r2[k] * s0;
  }
}

}  // namespace

uint64_t stream_key(uint64_t seed, std::string_view tensor_name) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char ch : tensor_name) {
    h ^= ch;
    h *= 0x100000001b3ull;
  }
  return mix64(mix64(seed ^ 0x5eed5eed5eed5eedull) ^ mix64(h));
}

void fill_normal_f32(uint64_t key, uint64_t first, size_t n, float mean, float stddev, float* out) {
  float z[2 * kBlock];
  const uint64_t end = first + n;
  uint64_t i = first;
  while (i < end) {
    const uint64_t j0 = i / 2;
    const uint64_t pairs_left = (end - 2 * j0 + 1) / 2;
    const int count = static_cast<int>(pairs_left < kBlock ? pairs_left : kBlock);
    normal_pairs(key, j0, count, z);
    const uint64_t block_end = std::min<uint64_t>(end, 2 * (j0 + static_cast<uint64_t>(count)));
    const size_t skip = static_cast<size_t>(i - 2 * j0);
    const size_t m = static_cast<size_t>(block_end - i);
    float* dst = out + (i - first);
    for (size_t k = 0; k < m; ++k) dst[k] = z[skip + k] * stddev + mean;
    i = block_end;
  }
}

void fill_normal(uint64_t key, uint64_t first, size_t n, float mean, float stddev, DType dtype,
                 std::byte* out) {
  if (dtype != DType::F32 && dtype != DType::BF16)
    throw Error("synthetic weights can only be F32 or BF16, not " + std::string(dtype_name(dtype)));
  constexpr size_t kChunk = 2 * kBlock;
  float buf[kChunk];
  for (size_t done = 0; done < n;) {
    const size_t m = std::min(kChunk, n - done);
    fill_normal_f32(key, first + done, m, mean, stddev, buf);
    if (dtype == DType::F32) {
      std::memcpy(out + 4 * done, buf, 4 * m);
    } else {
      uint16_t h[kChunk];
      for (size_t k = 0; k < m; ++k) h[k] = f32_to_bf16(buf[k]);
      std::memcpy(out + 2 * done, h, 2 * m);
    }
    done += m;
  }
}

}  // namespace ilm::synth
