// The ref backend's operators against hand-computed values.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/ref/ref_backend.h"
#include "common/error.h"
#include "model/kv_cache.h"

namespace ilm {
namespace {

struct F32Tensor {
  std::vector<float> data;
  TensorRef ref;
  F32Tensor(std::string name, std::vector<int64_t> shape, std::vector<float> values)
      : data(std::move(values)) {
    ref.name = std::move(name);
    ref.dtype = DType::F32;
    ref.shape = std::move(shape);
    ref.data = reinterpret_cast<const std::byte*>(data.data());
    ref.nbytes = data.size() * 4;
    ref.file = "test";
  }
};

TEST(RefBackend, MatmulIsXTimesWTransposedPlusBias) {
  RefBackend be(2);
  F32Tensor w("w", {3, 2}, {1, 2, 3, 4, 5, 6});
  F32Tensor b("b", {3}, {0.5f, -1, 2});
  auto W = be.load_weight(w.ref);
  auto B = be.load_weight(b.ref);
  const float x[4] = {1, 1, 2, -1};
  float y[6];
  be.matmul(x, 2, *W, B.get(), y);
  const float want[6] = {3.5f, 6, 13, 0.5f, 1, 6};
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(y[i], want[i]) << i;
}

TEST(RefBackend, Bf16WeightsAreUsedInPlace) {
  RefBackend be(1);
  std::vector<uint16_t> raw = {f32_to_bf16(1.5f), f32_to_bf16(-2.0f)};
  TensorRef t;
  t.name = "w";
  t.dtype = DType::BF16;
  t.shape = {1, 2};
  t.data = reinterpret_cast<const std::byte*>(raw.data());
  t.nbytes = 4;
  auto W = be.load_weight(t);
  const float x[2] = {2, 1};
  float y = 0;
  be.matmul(x, 1, *W, nullptr, &y);
  EXPECT_FLOAT_EQ(y, 1.0f);
}

TEST(RefBackend, RmsNorm) {
  RefBackend be(1);
  F32Tensor w("n", {2}, {2, 0.5f});
  auto W = be.load_weight(w.ref);
  const float x[2] = {3, 4};
  float y[2];
  be.rmsnorm(x, 1, *W, 0.0f, y);
  const float rms = std::sqrt((9.0f + 16.0f) / 2.0f);
  EXPECT_NEAR(y[0], 2 * 3 / rms, 1e-6);
  EXPECT_NEAR(y[1], 0.5f * 4 / rms, 1e-6);
}

TEST(RefBackend, RopeRotatesHalvesByPositionTimesFrequency) {
  RefBackend be(1);
  RopeSpec spec;
  spec.inv_freq = {1.0f, 0.25f};
  // head_dim 4: pairs (0,2) and (1,3).
  float x[4] = {1, 2, 3, 4};
  const int64_t pos[1] = {2};
  be.rope(x, 1, 1, 4, 4, pos, spec);
  const double a0 = 2.0, a1 = 0.5;
  EXPECT_NEAR(x[0], 1 * std::cos(a0) - 3 * std::sin(a0), 1e-6);
  EXPECT_NEAR(x[2], 3 * std::cos(a0) + 1 * std::sin(a0), 1e-6);
  EXPECT_NEAR(x[1], 2 * std::cos(a1) - 4 * std::sin(a1), 1e-6);
  EXPECT_NEAR(x[3], 4 * std::cos(a1) + 2 * std::sin(a1), 1e-6);
  spec.position_divisor = 2.0f;  // linear scaling: position 2 behaves as 1
  float y[4] = {1, 0, 0, 0};
  be.rope(y, 1, 1, 4, 4, pos, spec);
  EXPECT_NEAR(y[0], std::cos(1.0), 1e-6);
  EXPECT_NEAR(y[2], std::sin(1.0), 1e-6);
}

TEST(RefBackend, AttentionIsCausalAndGroupsQueryHeads) {
  RefBackend be(2);
  // 2 query heads sharing 1 kv head, head_dim 1, 2 positions.
  KvCache cache(1, 1, 1, 4);
  cache.reserve_more(2);
  KvView kv = cache.layer(0, 2);
  *static_cast<float*>(kv.k(0)) = 1;
  *static_cast<float*>(kv.k(1)) = 2;
  *static_cast<float*>(kv.v(0)) = 10;
  *static_cast<float*>(kv.v(1)) = 20;
  const float q[4] = {1, -1, 0.5f, 0};  // [T=2, heads=2, hd=1]
  float out[4];
  be.attention(q, 2, 2, 1, 1, kv, 0, out);
  // Position 0 sees only key 0.
  EXPECT_FLOAT_EQ(out[0], 10);
  EXPECT_FLOAT_EQ(out[1], 10);
  // Position 1, head 0: scores 0.5*1, 0.5*2; head 1: equal scores.
  const double p1 = std::exp(1.0) / (std::exp(0.5) + std::exp(1.0));
  EXPECT_NEAR(out[2], 10 * (1 - p1) + 20 * p1, 1e-5);
  EXPECT_NEAR(out[3], 15, 1e-5);
}

TEST(RefBackend, SiluMulAndAdd) {
  RefBackend be(1);
  const float g[2] = {0, 2}, u[2] = {3, 4};
  float o[2];
  be.silu_mul(g, u, 2, o);
  EXPECT_FLOAT_EQ(o[0], 0);
  EXPECT_NEAR(o[1], 2 / (1 + std::exp(-2.0)) * 4, 1e-6);
  be.add(o, u, 2);
  EXPECT_NEAR(o[0], 3, 1e-6);
}

TEST(RefBackend, EmbeddingRejectsOutOfRangeIds) {
  RefBackend be(1);
  F32Tensor e("e", {2, 2}, {1, 2, 3, 4});
  auto E = be.load_weight(e.ref);
  float out[4];
  const TokenId ok[2] = {1, 0};
  be.embedding(*E, ok, out);
  EXPECT_EQ(out[0], 3);
  EXPECT_EQ(out[3], 2);
  const TokenId bad[1] = {2};
  EXPECT_THROW(be.embedding(*E, bad, out), Error);
}

TEST(KvCache, GrowsKeepsContentsAndEnforcesCapacity) {
  KvCache c(2, 1, 2, 5);
  c.reserve_more(1);
  static_cast<float*>(c.layer(1, 1).k(0))[1] = 7;
  c.advance(1);
  c.reserve_more(3);
  EXPECT_EQ(static_cast<float*>(c.layer(1, 4).k(0))[1], 7);
  c.advance(3);
  EXPECT_EQ(c.length(), 4);
  EXPECT_THROW(c.reserve_more(2), Error);
  c.truncate(2);
  EXPECT_EQ(c.length(), 2);
}

}  // namespace
}  // namespace ilm
