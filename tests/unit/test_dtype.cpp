// DType table and the exact 16-bit float conversions, checked against an independent
// reference built from double arithmetic (round to nearest, ties to even).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "common/dtype.h"

namespace {

using ilm::DType;

bool is_f16_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x03ffu) != 0; }
bool is_bf16_nan(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x007fu) != 0; }

// Value of a non-negative finite f16 bit pattern (0..0x7bff), and 65536 for 0x7c00, the "next"
// value that rounding to infinity corresponds to.
double f16_value(uint32_t h) {
  const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0) return std::ldexp(static_cast<double>(m), -24);
  return std::ldexp(1.0 + m / 1024.0, static_cast<int>(e) - 15);
}

// Independent reference for f32 -> f16 (finite or infinite input, not NaN).
uint16_t ref_f32_to_f16(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(f));
  if (a >= 65520.0) return sign | 0x7c00;  // max finite 65504 + half an ulp (16), ties go to even = inf
  // Largest h in [0, 0x7bff] with value <= a.
  uint32_t lo = 0, hi = 0x7bff;
  while (lo < hi) {
    const uint32_t mid = (lo + hi + 1) / 2;
    if (f16_value(mid) <= a)
      lo = mid;
    else
      hi = mid - 1;
  }
  const double vlo = f16_value(lo);
  if (vlo == a) return sign | static_cast<uint16_t>(lo);
  const double vhi = f16_value(lo + 1);
  const double dlo = a - vlo, dhi = vhi - a;
  uint32_t r;
  if (dlo < dhi)
    r = lo;
  else if (dhi < dlo)
    r = lo + 1;
  else
    r = (lo & 1u) ? lo + 1 : lo;
  return sign | static_cast<uint16_t>(r);
}

// Independent reference for f32 -> bf16 (not NaN).
uint16_t ref_f32_to_bf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t absu = u & 0x7fffffffu;
  if (absu == 0x7f800000u) return sign | 0x7f80;
  const uint32_t lo = absu & 0xffff0000u, hi = lo + 0x10000u;
  auto value = [](uint32_t bits) {
    if (bits == 0x7f800000u) return std::ldexp(1.0, 128);
    return static_cast<double>(std::bit_cast<float>(bits));
  };
  const double a = value(absu), vlo = value(lo), vhi = value(hi);
  const double dlo = a - vlo, dhi = vhi - a;
  uint32_t r;
  if (dlo < dhi)
    r = lo;
  else if (dhi < dlo)
    r = hi;
  else
    r = ((lo >> 16) & 1u) ? hi : lo;
  return sign | static_cast<uint16_t>(r >> 16);
}

TEST(DTypeTable, SizesNamesAndParsing) {
  const struct {
    DType t;
    const char* name;
    size_t size;
    bool weight;
  } cases[] = {
      {DType::F32, "F32", 4, true},   {DType::F16, "F16", 2, true},   {DType::BF16, "BF16", 2, true},
      {DType::F64, "F64", 8, false},  {DType::I64, "I64", 8, false},  {DType::I32, "I32", 4, false},
      {DType::I16, "I16", 2, false},  {DType::I8, "I8", 1, false},    {DType::U8, "U8", 1, false},
      {DType::BOOL, "BOOL", 1, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(ilm::dtype_size(c.t), c.size);
    EXPECT_EQ(ilm::dtype_name(c.t), c.name);
    ASSERT_TRUE(ilm::parse_dtype(c.name).has_value());
    EXPECT_EQ(*ilm::parse_dtype(c.name), c.t);
    EXPECT_EQ(ilm::is_weight_dtype(c.t), c.weight);
  }
  for (const char* bad : {"", "Q4", "f32", "bf16", "F8_E4M3X", "F32 ", "FLOAT"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(ilm::parse_dtype(bad).has_value());
  }
}

TEST(DTypeF16, DecodeExhaustiveAgainstFormula) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const float f = ilm::f16_to_f32(static_cast<uint16_t>(h));
    const bool neg = (h & 0x8000u) != 0;
    const uint32_t mag = h & 0x7fffu;
    if (is_f16_nan(static_cast<uint16_t>(h))) {
      EXPECT_TRUE(std::isnan(f)) << std::hex << h;
      continue;
    }
    EXPECT_EQ(std::signbit(f), neg) << std::hex << h;
    if (mag == 0x7c00u) {
      EXPECT_TRUE(std::isinf(f)) << std::hex << h;
      continue;
    }
    EXPECT_EQ(static_cast<double>(std::fabs(f)), f16_value(mag)) << std::hex << h;
  }
}

TEST(DTypeF16, ExhaustiveRoundTrip) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const uint16_t x = static_cast<uint16_t>(h);
    const uint16_t back = ilm::f32_to_f16(ilm::f16_to_f32(x));
    if (is_f16_nan(x))
      EXPECT_TRUE(is_f16_nan(back)) << std::hex << h << " -> " << back;
    else
      EXPECT_EQ(back, x) << std::hex << h;
  }
}

TEST(DTypeF16, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(ilm::f32_to_f16(0.0f), 0x0000);
  EXPECT_EQ(ilm::f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(ilm::f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(ilm::f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(ilm::f32_to_f16(inf), 0x7c00);
  EXPECT_EQ(ilm::f32_to_f16(-inf), 0xfc00);
  EXPECT_TRUE(is_f16_nan(ilm::f32_to_f16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(is_f16_nan(ilm::f32_to_f16(std::bit_cast<float>(0x7f800001u))));  // signalling
  EXPECT_TRUE(is_f16_nan(ilm::f32_to_f16(std::bit_cast<float>(0xffc00000u))));
  EXPECT_TRUE(is_f16_nan(ilm::f32_to_f16(std::bit_cast<float>(0x7f802000u))));  // payload only in low bits
  EXPECT_TRUE(std::isnan(ilm::f16_to_f32(0x7e00)));
  EXPECT_EQ(ilm::f16_to_f32(0x7c00), inf);
  EXPECT_EQ(ilm::f16_to_f32(0xfc00), -inf);
  // Overflow boundary: 65504 is the largest finite, 65520 (half an ulp above) rounds to inf.
  EXPECT_EQ(ilm::f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(ilm::f32_to_f16(65519.996f), 0x7bff);
  EXPECT_EQ(ilm::f32_to_f16(65520.0f), 0x7c00);
  EXPECT_EQ(ilm::f32_to_f16(1e10f), 0x7c00);
  EXPECT_EQ(ilm::f32_to_f16(-1e10f), 0xfc00);
  // Rounding to nearest even in the normal range: 1 + 2^-11 is halfway between 1 and 1 + 2^-10.
  EXPECT_EQ(ilm::f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(ilm::f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(ilm::f32_to_f16(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)), 0x3c01);
  // Subnormals: 2^-24 is the smallest; 2^-25 is a tie that goes to zero (even).
  EXPECT_EQ(ilm::f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(ilm::f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(ilm::f32_to_f16(-std::ldexp(1.0f, -25)), 0x8000);
  EXPECT_EQ(ilm::f32_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(ilm::f32_to_f16(1.5f * std::ldexp(1.0f, -24)), 0x0002);  // tie 1|2 -> 2
  EXPECT_EQ(ilm::f32_to_f16(2.5f * std::ldexp(1.0f, -24)), 0x0002);  // tie 2|3 -> 2
  EXPECT_EQ(ilm::f32_to_f16(1e-30f), 0x0000);
  EXPECT_EQ(ilm::f32_to_f16(std::numeric_limits<float>::denorm_min()), 0x0000);
  // Largest subnormal and rounding up into the smallest normal.
  EXPECT_EQ(ilm::f32_to_f16(std::ldexp(1023.0f, -24)), 0x03ff);
  EXPECT_EQ(ilm::f32_to_f16(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -25)), 0x0400);
  EXPECT_EQ(ilm::f32_to_f16(std::ldexp(1.0f, -14)), 0x0400);
  EXPECT_EQ(ilm::f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(ilm::f16_to_f32(0x83ff), -std::ldexp(1023.0f, -24));
}

// Every rounding boundary: each f16 value, the midpoints to its neighbours, and one f32 ulp
// either side of those points.
TEST(DTypeF16, EncodeAllBoundariesAgainstReference) {
  for (uint32_t h = 0; h <= 0x7bff; ++h) {
    const double v = f16_value(h);
    const double mid = (v + f16_value(h + 1)) / 2;  // exact in double
    for (double p : {v, mid}) {
      const float c = static_cast<float>(p);  // exact: a midpoint needs at most 12 significant bits
      ASSERT_EQ(static_cast<double>(c), p);
      for (float x : {c, std::nextafter(c, 0.0f), std::nextafter(c, 1e30f)}) {
        for (float s : {x, -x}) {
          ASSERT_EQ(ilm::f32_to_f16(s), ref_f32_to_f16(s))
              << "x=" << s << " bits=" << std::hex << std::bit_cast<uint32_t>(s);
        }
      }
    }
  }
}

TEST(DTypeF16, EncodeSampledF32AgainstReference) {
  // A stride through all 2^32 bit patterns (prime step, so every exponent and many mantissas).
  for (uint64_t i = 0; i < (1ull << 32); i += 4099) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(i));
    const uint16_t got = ilm::f32_to_f16(f);
    if (std::isnan(f)) {
      ASSERT_TRUE(is_f16_nan(got)) << std::hex << i;
      continue;
    }
    ASSERT_EQ(got, ref_f32_to_f16(f)) << "bits=" << std::hex << i;
  }
}

TEST(DTypeBF16, ExhaustiveDecodeAndRoundTrip) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const uint16_t x = static_cast<uint16_t>(h);
    const float f = ilm::bf16_to_f32(x);
    EXPECT_EQ(std::bit_cast<uint32_t>(f), h << 16);
    const uint16_t back = ilm::f32_to_bf16(f);
    if (is_bf16_nan(x)) {
      EXPECT_TRUE(is_bf16_nan(back)) << std::hex << h;
      EXPECT_TRUE(back & 0x40) << "NaN must come back quiet: " << std::hex << h;
      EXPECT_EQ(back & 0x8000, x & 0x8000) << std::hex << h;
    } else {
      EXPECT_EQ(back, x) << std::hex << h;
    }
  }
}

TEST(DTypeBF16, SpecialValuesAndRounding) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(ilm::f32_to_bf16(0.0f), 0x0000);
  EXPECT_EQ(ilm::f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(ilm::f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(ilm::f32_to_bf16(inf), 0x7f80);
  EXPECT_EQ(ilm::f32_to_bf16(-inf), 0xff80);
  // NaNs stay NaN and become quiet, including ones whose payload lives only in the low half.
  EXPECT_EQ(ilm::f32_to_bf16(std::bit_cast<float>(0x7f800001u)), 0x7fc0);
  EXPECT_EQ(ilm::f32_to_bf16(std::bit_cast<float>(0xff800001u)), 0xffc0);
  EXPECT_EQ(ilm::f32_to_bf16(std::bit_cast<float>(0x7fc00000u)), 0x7fc0);
  EXPECT_TRUE(is_bf16_nan(ilm::f32_to_bf16(std::bit_cast<float>(0x7fffffffu))));
  // Ties to even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7.
  EXPECT_EQ(ilm::f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(ilm::f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(ilm::f32_to_bf16(std::nextafter(1.0f + std::ldexp(1.0f, -8), 2.0f)), 0x3f81);
  // The largest finite f32 rounds up to infinity (as PyTorch does).
  EXPECT_EQ(ilm::f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(ilm::f32_to_bf16(std::bit_cast<float>(0x7f7f7fffu)), 0x7f7f);
  EXPECT_EQ(ilm::f32_to_bf16(std::bit_cast<float>(0x7f7f8000u)), 0x7f80);  // tie, 0x7f7f odd -> up
  // Subnormals round like everything else.
  EXPECT_EQ(ilm::f32_to_bf16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(ilm::f32_to_bf16(std::bit_cast<float>(0x00018000u)), 0x0002);  // tie 1|2 -> 2
  EXPECT_EQ(ilm::f32_to_bf16(std::bit_cast<float>(0x00008001u)), 0x0001);
  EXPECT_EQ(ilm::f32_to_bf16(std::bit_cast<float>(0x007fffffu)), 0x0080);  // up into the normals
}

TEST(DTypeBF16, EncodeSampledF32AgainstReference) {
  for (uint64_t i = 0; i < (1ull << 32); i += 4093) {
    for (uint32_t bits : {static_cast<uint32_t>(i), static_cast<uint32_t>(i) | 0x8000u,
                          (static_cast<uint32_t>(i) & 0xffff0000u) | 0x8000u}) {
      const float f = std::bit_cast<float>(bits);
      const uint16_t got = ilm::f32_to_bf16(f);
      if (std::isnan(f)) {
        ASSERT_TRUE(is_bf16_nan(got)) << std::hex << bits;
        continue;
      }
      ASSERT_EQ(got, ref_f32_to_bf16(f)) << "bits=" << std::hex << bits;
    }
  }
}

TEST(DTypeLoad, LoadAsF32ForEachWeightType) {
  const float values[] = {0.0f, 1.0f, -2.5f, 65504.0f, std::ldexp(1.0f, -24)};
  std::vector<uint16_t> bf(std::size(values)), hf(std::size(values));
  for (size_t i = 0; i < std::size(values); ++i) {
    bf[i] = ilm::f32_to_bf16(values[i]);
    hf[i] = ilm::f32_to_f16(values[i]);
  }
  // Unaligned storage: load_as_f32 must not assume alignment.
  std::vector<unsigned char> raw(1 + sizeof(values));
  std::memcpy(raw.data() + 1, values, sizeof(values));
  for (size_t i = 0; i < std::size(values); ++i) {
    EXPECT_EQ(ilm::load_as_f32(raw.data() + 1, DType::F32, i), values[i]);
    EXPECT_EQ(ilm::load_as_f32(hf.data(), DType::F16, i), values[i]);  // all exact in f16
    EXPECT_EQ(ilm::load_as_f32(bf.data(), DType::BF16, i), ilm::bf16_to_f32(bf[i]));
  }
  EXPECT_EQ(ilm::load_as_f32(bf.data(), DType::BF16, 2), -2.5f);
}

}  // namespace
