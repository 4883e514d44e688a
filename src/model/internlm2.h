#pragma once
// InternLM2 / InternLM2.5 (architecture "InternLM2ForCausalLM"): the whole forward pass,
// written once over the backend's operator set.
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "io/tensor_store.h"
#include "model/causal_lm.h"
#include "model/config.h"
#include "model/tp_shard.h"

namespace ilm {

class Communicator;

// Where each head lives in the output of the fused wqkv projection. The checkpoint's rows are
// grouped per KV head g: its G query heads, then key head g, then value head g (hd rows each).
// Keeping the matrix fused costs nothing (one matmul, weights used in place); the interleave
// is resolved on the (small) activations with these offsets.
struct QkvLayout {
  int64_t n_heads, n_kv_heads, head_dim;
  int64_t group() const { return n_heads / n_kv_heads; }
  int64_t width() const { return (n_heads + 2 * n_kv_heads) * head_dim; }
  int64_t query_offset(int64_t h) const { return (h / group() * (group() + 2) + h % group()) * head_dim; }
  int64_t key_offset(int64_t g) const { return (g * (group() + 2) + group()) * head_dim; }
  int64_t value_offset(int64_t g) const { return key_offset(g) + head_dim; }
};

class InternLM2 final : public CausalLM {
 public:
  // Checks that every tensor the config implies is present with the right shape; errors name
  // the tensor, its file, and the expected and actual shapes.
  // `quant` applies to the projection matrices and the output head; the embedding table
  // (read one row per token) and the norms stay as stored.
  // `comm` (a job of several ranks): this rank loads only its shard (model/tp_shard.h), keeps
  // the KV cache of its own KV heads, and sums the partial results of wo and w2 over the ranks
  // (Communicator::all_reduce_sum, a fixed order); logits are gathered to rank 0 (the other
  // ranks' logits buffers are left as they are).
  InternLM2(const ModelConfig& cfg, const TensorStore& store, Backend& backend,
            const QuantSpec& quant = {}, Communicator* comm = nullptr);

  const ModelConfig& config() const override { return cfg_; }
  void forward(std::span<const TokenId> ids, KvCache& cache, std::span<float> logits,
               bool all_logits) override;
  void forward_batch(std::span<SequenceInput> batch) override;
  KvCache new_cache(int64_t capacity) const override;
  std::shared_ptr<KvBlockPool> new_kv_pool(int64_t block_size, int64_t max_blocks,
                                          DType dtype) const override;
  std::vector<std::string> weight_names() const override;
  std::vector<std::string> matrix_names() const override { return matrix_names_; }
  uint64_t decode_weight_bytes() const override;
  std::vector<std::span<const std::byte>> decode_weight_memory() const override;

  // Tokens processed per pass through the layers: bounds activation memory for long prompts.
  // Splitting is exact: chunks see earlier chunks through the cache, and every chunk of one
  // sequence's forward uses the RoPE base of that whole forward.
  static constexpr int64_t kMaxChunk = 512;

 private:
  struct Layer {
    std::unique_ptr<Weight> attention_norm, wqkv, wqkv_bias, wo, wo_bias, ffn_norm, w1, w3, w2;
  };
  struct Segment {
    size_t seq;           // index in the batch
    int64_t start, len;   // a run of that sequence's new tokens
  };
  void run_pass(const std::vector<Segment>& segs, std::span<SequenceInput> batch,
                const std::vector<RopeSpec>& ropes);

  void reduce(float* x, int64_t n);
  void head(const float* h, int64_t R, const std::vector<float*>& dest, bool contiguous);

  ModelConfig cfg_;
  Backend& be_;
  Communicator* comm_;  // null or a job of one rank: unsharded
  TpShard shard_;
  QkvLayout qkv_;       // this rank's heads
  std::vector<std::unique_ptr<OwnedTensor>> owned_;  // column slices the backend uses in place
  std::unique_ptr<Weight> tok_embeddings_, norm_, output_;
  std::vector<Layer> layers_;
  std::vector<std::string> matrix_names_;
};

}  // namespace ilm
