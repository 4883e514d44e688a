// Tensor parallelism's building blocks: a rank's ranges (TpShard), the tensor slices, and the
// one-process communicator. The sharded forward itself is checked end to end against one
// process by tests/python/test_tensor_parallel.py (mpirun).
#include <gtest/gtest.h>

#include <numeric>

#include "backend/host_tensor.h"
#include "backend/quant.h"
#include "common/error.h"
#include "common/thread_pool.h"
#include "model/tp_shard.h"
#include "parallel/communicator.h"

namespace ilm {
namespace {

ModelConfig tiny_config() {
  ModelConfig c;
  c.hidden_size = 256;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 32;
  c.intermediate_size = 512;
  c.vocab_size = 1001;  // not divisible by the ranks: the last rank takes the remainder
  return c;
}

TEST(TpShard, RanksCoverEverythingOnce) {
  const ModelConfig c = tiny_config();
  int64_t vocab = 0;
  for (int r = 0; r < 2; ++r) {
    const TpShard s = TpShard::of(c, r, 2, {});
    EXPECT_EQ(s.kv_begin, r);
    EXPECT_EQ(s.kv_end, r + 1);
    EXPECT_EQ(s.ffn_begin, 256 * r);
    EXPECT_EQ(s.ffn_end - s.ffn_begin, 256);
    EXPECT_EQ(s.vocab_begin, vocab);
    EXPECT_EQ(s.vocab_end - s.vocab_begin, s.vocab_rows(r));
    vocab = s.vocab_end;
  }
  EXPECT_EQ(vocab, 1001);
}

TEST(TpShard, RefusesSplitsThatDoNotFit) {
  const ModelConfig c = tiny_config();
  EXPECT_THROW(TpShard::of(c, 0, 4, {}), Error);  // 2 KV heads
  // wo's slice is 4 heads x 32 = 128 columns: int4:256 groups would straddle ranks.
  EXPECT_THROW(TpShard::of(c, 0, 2, {QuantFormat::Int4, 256}), Error);
  EXPECT_NO_THROW(TpShard::of(c, 1, 2, {QuantFormat::Int4, 128}));
}

TEST(TpShard, SlicesRowsInPlaceAndColumnsByCopy) {
  std::vector<float> v(6 * 64);
  std::iota(v.begin(), v.end(), 0.0f);
  HostTensor t(DType::F32, {6, 64}, v);
  const TensorRef rows = slice_rows(t.ref, 2, 5);
  EXPECT_EQ(rows.shape, (std::vector<int64_t>{3, 64}));
  EXPECT_EQ(rows.data, t.ref.data + 2 * 64 * 4);
  const auto cols = slice_columns(t.ref, 32, 64);
  ASSERT_EQ(cols->ref.shape, (std::vector<int64_t>{6, 32}));
  const auto* f = reinterpret_cast<const float*>(cols->ref.data);
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t c = 0; c < 32; ++c) ASSERT_EQ(f[r * 32 + c], v[static_cast<size_t>(r * 64 + 32 + c)]);
  EXPECT_THROW(slice_rows(t.ref, 4, 7), Error);
  EXPECT_THROW(slice_columns(t.ref, 0, 65), Error);
}

TEST(TpShard, QuantizedSlicesDequantizeToTheSameValues) {
  std::vector<float> v(8 * 128);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i * 37) % 101) / 50.0f - 1.0f;
  HostTensor t(DType::F32, {8, 128}, v);
  ThreadPool pool(1);
  for (QuantFormat f : {QuantFormat::Int8, QuantFormat::Int4}) {
    const QuantizedMatrix q = quantize(t.ref, {f, 32}, pool);
    const QuantizedMatrix s = slice_quantized(q, 2, 6, 64, 128);
    ASSERT_EQ(s.rows, 4);
    ASSERT_EQ(s.cols, 64);
    std::vector<float> full(128), part(64);
    for (int64_t r = 0; r < 4; ++r) {
      q.dequantize_row(r + 2, full.data());
      s.dequantize_row(r, part.data());
      for (int64_t c = 0; c < 64; ++c) ASSERT_EQ(part[static_cast<size_t>(c)], full[static_cast<size_t>(64 + c)]);
    }
    EXPECT_THROW(slice_quantized(q, 0, 8, 16, 128), Error);  // splits a group
  }
}

TEST(Communicator, OneProcessIsAJobOfOne) {
  LocalCommunicator comm;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.size(), 1);
  std::vector<float> x = {1, 2, 3};
  comm.all_reduce_sum(x);
  EXPECT_EQ(x, (std::vector<float>{1, 2, 3}));
  std::vector<float> out(3);
  const std::vector<int64_t> counts = {3};
  comm.gather(x, counts, out, 0);
  EXPECT_EQ(out, x);
  EXPECT_NO_THROW(make_communicator(1));
  EXPECT_THROW(make_communicator(0), Error);
  if (!mpi_available()) {
    EXPECT_THROW(make_communicator(2), Error);
  }
}

}  // namespace
}  // namespace ilm
