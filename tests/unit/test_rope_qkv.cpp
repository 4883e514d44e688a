// RoPE base / inverse frequencies (official dynamic NTK numbers) and the fused wqkv layout.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "model/internlm2.h"
#include "model/rope.h"

namespace ilm {
namespace {

ModelConfig tiny_config(int64_t max_pos, RopeScaling::Type type, double factor) {
  ModelConfig c;
  c.hidden_size = 256;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 32;
  c.max_position_embeddings = max_pos;
  c.rope_theta = 1e6;
  c.rope_scaling = {type, factor};
  return c;
}

TEST(RopeBase, DynamicNtkMatchesOfficialValues) {
  // Values from the spec, computed with the official code (tiny copy: M 128, hd 32, f 2).
  const auto c = tiny_config(128, RopeScaling::Type::Dynamic, 2.0);
  EXPECT_EQ(rope_base(c, 1), 1e6);
  EXPECT_EQ(rope_base(c, 128), 1e6);  // L == M: no rebuild
  EXPECT_NEAR(rope_base(c, 129) / 1.016675e6, 1.0, 1e-6);
  EXPECT_NEAR(rope_base(c, 200) / 2.234513e6, 1.0, 1e-6);
  EXPECT_NEAR(rope_base(c, 300) / 4.022668e6, 1.0, 1e-6);
}

TEST(RopeBase, SevenBValues) {
  ModelConfig c = tiny_config(32768, RopeScaling::Type::Dynamic, 2.0);
  c.head_dim = 128;
  EXPECT_EQ(rope_base(c, 32768), 1e6);
  EXPECT_NEAR(rope_base(c, 40000) / 1.4498e6, 1.0, 1e-4);
  EXPECT_NEAR(rope_base(c, 49152) / 2.0221e6, 1.0, 1e-4);
  EXPECT_NEAR(rope_base(c, 65536) / 3.0528e6, 1.0, 1e-4);
}

TEST(RopeBase, NoneAndLinearKeepTheta) {
  EXPECT_EQ(rope_base(tiny_config(128, RopeScaling::Type::None, 1.0), 10000), 1e6);
  auto lin = tiny_config(128, RopeScaling::Type::Linear, 2.0);
  EXPECT_EQ(rope_base(lin, 10000), 1e6);
  EXPECT_EQ(rope_spec(lin, 10).position_divisor, 2.0f);
}

TEST(RopeSpec, InverseFrequenciesAreF32AsTorchBuildsThem) {
  const auto c = tiny_config(128, RopeScaling::Type::None, 1.0);
  const RopeSpec s = rope_spec(c, 5);
  ASSERT_EQ(s.inv_freq.size(), 16u);
  EXPECT_EQ(s.inv_freq[0], 1.0f);
  for (size_t d = 0; d < s.inv_freq.size(); ++d) {
    const double exact = std::pow(1e6, -2.0 * static_cast<double>(d) / 32.0);
    EXPECT_NEAR(s.inv_freq[d] / exact, 1.0, 1e-6) << d;
    EXPECT_EQ(s.inv_freq[d], 1.0f / std::pow(1e6f, static_cast<float>(2 * d) / 32.0f));
  }
}

TEST(QkvLayout, InterleavedPerKvGroup) {
  // 7B: 32 heads, 8 kv heads, G = 4, hd 128: each group holds 4 q heads, then k, then v.
  const QkvLayout l{32, 8, 128};
  EXPECT_EQ(l.width(), 6144);
  EXPECT_EQ(l.query_offset(0), 0);
  EXPECT_EQ(l.query_offset(3), 3 * 128);
  EXPECT_EQ(l.key_offset(0), 4 * 128);
  EXPECT_EQ(l.value_offset(0), 5 * 128);
  EXPECT_EQ(l.query_offset(4), 6 * 128);  // first query head of group 1
  EXPECT_EQ(l.key_offset(7), (7 * 6 + 4) * 128);
  EXPECT_EQ(l.value_offset(7), (7 * 6 + 5) * 128);
  // Every row is used exactly once.
  std::set<int64_t> starts;
  for (int64_t h = 0; h < 32; ++h) starts.insert(l.query_offset(h));
  for (int64_t g = 0; g < 8; ++g) {
    starts.insert(l.key_offset(g));
    starts.insert(l.value_offset(g));
  }
  EXPECT_EQ(starts.size(), 48u);
  EXPECT_EQ(*starts.rbegin(), 6144 - 128);
}

}  // namespace
}  // namespace ilm
